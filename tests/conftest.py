import os
import sys

import pytest
import torch

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Test folders are packages (same-named test modules in different networks' folders); their
# helper modules (e.g. yoso_testutils.py) are imported by plain name, so put the folders on the path.
for _dirpath, _dirs, _files in os.walk(os.path.dirname(os.path.abspath(__file__))):
    if "__pycache__" not in _dirpath and _dirpath not in sys.path:
        sys.path.append(_dirpath)


@pytest.fixture(scope="session", autouse=True)
def _small_torch():
    torch.manual_seed(0)


@pytest.fixture
def repo_root():
    return REPO
