import os

import pytest

from fastpan_d2.data.datasets import configure_synthetic, register_all_builtin

SMALL = dict(seed=3, image_size=(128, 128), num_train=40, num_val=10)


@pytest.fixture(scope="package")
def synthetic_root(tmp_path_factory):
    return tmp_path_factory.mktemp("synthetic_root")


@pytest.fixture
def synthetic_small(synthetic_root):
    """fastpan_shapes_{train,val} re-registered on a small setting in a temporary root (shared by
    the tests, so it is generated once), restored to the defaults afterwards.
    Returns the setting folder (generated on the first DatasetCatalog.get)."""
    out_dir = configure_synthetic(root=str(synthetic_root), **SMALL)
    yield out_dir
    configure_synthetic()


@pytest.fixture
def fresh_registry():
    """Tests that re-register the real datasets elsewhere restore the default registration."""
    yield
    register_all_builtin()
    assert os.getenv("DETECTRON2_DATASETS", "datasets")  # the default root stays in use
