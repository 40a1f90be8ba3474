import os

import pytest
import torch

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="session", autouse=True)
def _small_torch():
    torch.manual_seed(0)


@pytest.fixture
def repo_root():
    return REPO
