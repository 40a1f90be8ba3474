# fastpan_d2 — everything installs into .venv from a machine that has only Python.
#   make setup   venv + torch + detectron2 (offline path) + panopticapi + this package (idempotent)
#   make test    the whole test suite
#   make demo    train NET on the synthetic data on CPU, print PQ, write a prediction grid
PYTHON ?= python3
VENV   ?= .venv
VPY    := $(VENV)/bin/python
STAMP  := $(VENV)/.fastpan_d2_installed
NET    ?= single_shot
TORCH_PIN := torch==2.14.1 torchvision==0.29.1

.PHONY: setup test demo benchmark clean-venv

setup: $(STAMP)
	@$(VPY) -c "import fastpan_d2, detectron2, panopticapi" || { rm -f $(STAMP); $(MAKE) $(STAMP); }

$(STAMP): setup.py tools/install_detectron2.sh tools/patch_detectron2.py
	test -x $(VPY) || $(PYTHON) -m venv $(VENV)
	$(VPY) -m pip install -q "setuptools<81" wheel
	$(VPY) -c "import torch, torchvision" 2>/dev/null || $(VPY) -m pip install -q $(TORCH_PIN)
	bash tools/install_detectron2.sh $(VPY)
	$(VPY) -m pip install -q --no-build-isolation -e ".[test]"
	touch $(STAMP)

test: setup
	$(VPY) -m pytest -q tests

demo: setup
	$(VPY) tools/demo.py --net $(NET)

benchmark: setup
	$(VPY) tools/benchmark.py --config-file configs/Synthetic-PanopticSegmentation/$(NET).yaml \
	  --compare-config-file configs/Synthetic-PanopticSegmentation/panoptic_fpn.yaml --input-size 128 128 --iters 20

clean-venv:
	rm -rf $(VENV)
