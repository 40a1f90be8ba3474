"""Bad input to the entry points fails with one clear line and a non-zero exit code."""
import os
import subprocess
import sys

import pytest

import fastpan_d2  # noqa: F401
from fastpan_d2.engine import UserInputError, load_cfg

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SYN = os.path.join(REPO, "configs", "Synthetic-PanopticSegmentation", "panoptic_fpn.yaml")


def test_unknown_key_on_command_line():
    with pytest.raises(UserInputError, match="MODEL.NOT_A_KEY"):
        load_cfg(SYN, ["MODEL.NOT_A_KEY", "1"])


def test_unknown_key_in_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(f'_BASE_: "{SYN}"\nSOLVER:\n  NOT_A_SOLVER_KEY: 3\n')
    with pytest.raises(UserInputError, match="NOT_A_SOLVER_KEY"):
        load_cfg(str(bad))


def test_missing_config_file(tmp_path):
    with pytest.raises(UserInputError, match="does not exist: .*nope.yaml"):
        load_cfg(str(tmp_path / "nope.yaml"))


def test_unregistered_dataset():
    with pytest.raises(UserInputError, match="'no_such_dataset' is not registered"):
        load_cfg(SYN, ["DATASETS.TEST", "('no_such_dataset',)"])


def test_fastpan_keys_have_paper_independent_defaults():
    cfg = load_cfg(SYN)
    assert cfg.SOLVER.OPTIMIZER == "SGD" and cfg.TEST.TIMING.ENABLED
    assert cfg.INPUT.DATASET_MAPPER_NAME == ""  # Panoptic FPN uses detectron2's DatasetMapper


@pytest.mark.parametrize(
    "argv, expected",
    [
        (["--config-file", "configs/does/not/exist.yaml"], "config file does not exist"),
        (["--config-file", SYN, "MODEL.NOT_A_KEY", "1"], "unknown config key on the command line: MODEL.NOT_A_KEY"),
    ],
)
def test_train_net_prints_one_line_and_exits_2(argv, expected):
    proc = subprocess.run([sys.executable, "train_net.py", *argv], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 2
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and expected in errors[0], proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
