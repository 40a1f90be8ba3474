"""Dataset registration (real datasets and the built-in synthetic one).

Importing this package registers ``fastpan_shapes_{train,val}`` (+ ``_separated``) with the default
options (generated lazily on first use) and the real datasets under ``$DETECTRON2_DATASETS``
(see ``builtin.py``). Nothing is read from disk at import.
"""
from .builtin import get_dataset_root, register_all_builtin  # noqa: F401
from .synthetic import (  # noqa: F401
    configure_synthetic,
    configure_synthetic_from_cfg,
    ensure_synthetic,
    generate_synthetic,
    get_synthetic_metadata,
)

register_all_builtin()
configure_synthetic()
