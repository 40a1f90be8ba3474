"""Config set-up and clear command-line errors for ``train_net.py`` and the tools."""
import os
import sys

from detectron2.config import CfgNode
from detectron2.data import DatasetCatalog
from detectron2.engine import default_setup
from detectron2.utils import comm
from detectron2.utils.logger import setup_logger

from ..config import get_fastpan_cfg


class UserInputError(ValueError):
    """A problem with what the user asked for (config file, key, dataset): one clear line."""


def load_cfg(config_file=None, opts=()):
    """detectron2's cfg + fastpan_d2's keys, merged with ``config_file`` and ``opts``.

    Raises ``UserInputError`` naming the config file that does not exist, the unknown key, or the
    dataset that is not registered.
    """
    cfg = get_fastpan_cfg()
    if config_file:
        if not os.path.isfile(config_file):
            raise UserInputError(f"config file does not exist: {config_file}")
        try:
            cfg.merge_from_file(config_file)
        except KeyError as e:
            raise UserInputError(f"unknown config key in {config_file}: {e.args[0]}") from None
    opts = list(opts or [])
    if len(opts) % 2:
        raise UserInputError(f"config overrides must be KEY VALUE pairs, got an odd list: {opts}")
    try:
        cfg.merge_from_list(opts)
    except KeyError as e:
        raise UserInputError(f"unknown config key on the command line: {e.args[0]}") from None
    except (ValueError, AssertionError) as e:
        if str(e).startswith("Non-existent key: "):  # yacs' merge_from_list
            key = str(e)[len("Non-existent key: "):]
            raise UserInputError(f"unknown config key on the command line: {key}") from None
        raise UserInputError(f"bad config override {opts}: {e}") from None
    registered = set(DatasetCatalog.list())
    for name in tuple(cfg.DATASETS.TRAIN) + tuple(cfg.DATASETS.TEST):
        if name not in registered:
            raise UserInputError(
                f"dataset {name!r} is not registered; fastpan_d2 registers: "
                + ", ".join(sorted(n for n in registered if "panoptic" in n or n.startswith("fastpan")))
            )
    return cfg


def setup_cfg(config_file=None, opts=(), args=None, freeze=True):
    """``load_cfg`` + detectron2's ``default_setup`` (output dir, logging, seed) when ``args`` is given."""
    cfg = load_cfg(config_file, opts)
    if freeze:
        cfg.freeze()
    if args is not None:
        default_setup(cfg, args)
        setup_logger(cfg.OUTPUT_DIR, distributed_rank=comm.get_rank(), name="fastpan_d2", abbrev_name="fastpan")
    return cfg


def exit_on_user_error(fn, *args, **kwargs):
    """Run ``fn``; a ``UserInputError`` or a missing file becomes one line on stderr and exit code 2."""
    try:
        return fn(*args, **kwargs)
    except (UserInputError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)


__all__ = ["UserInputError", "load_cfg", "setup_cfg", "exit_on_user_error", "CfgNode"]
