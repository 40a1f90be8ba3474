#!/usr/bin/env bash
# Install detectron2 into the current Python environment.
#
#   tools/install_detectron2.sh [PYTHON]
#
# Two paths:
#  * upstream (GPU clusters, docker): FASTPAN_D2_SOURCE=upstream builds facebookresearch/detectron2
#    at the pinned commit below, with its C++/CUDA extension (needs git, network, a compiler, CUDA).
#  * offline (default here): PyPI's `pb1-detectron2==0.6` sdist, whose Python code is upstream
#    v0.6 byte for byte, installed without the C++ extension and with the fixes upstream made
#    after v0.6 for numpy>=1.24, Pillow>=10, Python 3.11, torch 2 and the removal of caffe2
#    (see tools/patch_detectron2.py).
# Re-running it when detectron2 is already importable is a no-op.
set -euo pipefail
PY=${1:-python}
HERE=$(cd "$(dirname "$0")" && pwd)
D2_UPSTREAM_COMMIT=${D2_UPSTREAM_COMMIT:-e0ec4e189d438848521aee7926f9900e114229f5}  # upstream main, builds with torch 2.x
SDIST_URL=https://files.pythonhosted.org/packages/60/26/48f5bbb7ee492696a21da23303daeecdfe3942c498a70d34108acf63b2bd/pb1-detectron2-0.6.tar.gz
SDIST_SHA256=5d2e9e51e523ec72f6a31cca04b0a515492e9514b773a3d134cedc0677170b29

if "$PY" -c "import detectron2, detectron2.model_zoo, detectron2.evaluation" >/dev/null 2>&1; then
  echo "detectron2 already installed: $("$PY" -c 'import detectron2; print(detectron2.__file__)')"
  exit 0
fi

# Runtime pieces detectron2 needs; pinned where v0.6 needs old behaviour.
"$PY" -m pip install -q "setuptools<81" wheel "iopath>=0.1.7,<0.1.10" "fvcore>=0.1.5,<0.1.6" \
  "pycocotools>=2.0.2" shapely matplotlib termcolor yacs tabulate cloudpickle tqdm tensorboard \
  omegaconf "hydra-core>=1.1" pydot scipy

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
if [ "${FASTPAN_D2_SOURCE:-offline}" = "upstream" ]; then
  git clone -q https://github.com/facebookresearch/detectron2.git "$WORK/detectron2"
  git -C "$WORK/detectron2" checkout -q "$D2_UPSTREAM_COMMIT"
  "$PY" -m pip install --no-build-isolation "$WORK/detectron2"
  exit 0
fi

"$PY" - "$SDIST_URL" "$SDIST_SHA256" "$WORK/d2.tar.gz" <<'PYEOF'
import hashlib, sys, urllib.request
url, sha, out = sys.argv[1:]
data = urllib.request.urlopen(url, timeout=300).read()
got = hashlib.sha256(data).hexdigest()
if got != sha:
    sys.exit(f"detectron2 sdist checksum mismatch: expected {sha}, got {got}")
open(out, "wb").write(data)
PYEOF
tar -xzf "$WORK/d2.tar.gz" -C "$WORK"
"$PY" "$HERE/patch_detectron2.py" "$WORK/pb1-detectron2-0.6"
"$PY" -m pip install -q --no-build-isolation --no-deps "$WORK/pb1-detectron2-0.6"
# panopticapi (cocodataset/panopticapi as published on PyPI); it declares numpy<2 but runs on 2.
"$PY" -m pip install -q --no-deps panopticapi-lite==0.2.0
"$PY" -c "import detectron2, detectron2.evaluation, panopticapi.evaluation; print('detectron2', detectron2.__version__, 'installed')"
