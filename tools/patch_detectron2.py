"""Patch an unpacked detectron2 v0.6 sdist (PyPI's ``pb1-detectron2``) so it installs and runs
with current numpy / Pillow / Python / torch and without its C++ extension.

Each change is one upstream detectron2 made after v0.6, or a packaging fix:

* the distribution is named ``detectron2`` and builds no extension; ``detectron2/_C.py`` is a
  pure-Python stand-in whose ops raise a clear error (rotated boxes, detectron2's own
  DeformConv, the fast COCOeval) instead of an ImportError at import time;
* model-zoo configs are moved to ``./configs`` where ``setup.py`` packages them from;
* ``np.bool/np.int/np.float/np.str`` -> builtins (removed in numpy 1.24);
* ``Image.LINEAR`` -> ``Image.BILINEAR`` (removed in Pillow 10);
* ``random.sample`` on a set (rejected by Python 3.11);
* ``torch.optim.lr_scheduler._LRScheduler`` -> ``LRScheduler`` (torch 2);
* ``detectron2.export`` no longer fails to import when caffe2 is absent;
* the ``black==21.4b2`` pin is dropped (used only to pretty-print LazyConfig files);
* ``RetinaNetHead`` probes the norm type with ``get_norm(norm, 32)`` instead of ``get_norm(norm, 1)``
  (``MODEL.RETINANET.NORM: GN`` failed with GroupNorm(32, 1)).

Usage: python tools/patch_detectron2.py PATH_TO_UNPACKED_SDIST
"""
import os
import re
import shutil
import sys

C_STANDIN = '''"""Pure-Python stand-in for detectron2's C++/CUDA extension (not built in this install).

Importing works; calling one of its ops raises a RuntimeError naming the op. Install detectron2
from source with its extension (tools/install_detectron2.sh, FASTPAN_D2_SOURCE=upstream) for
rotated boxes, detectron2's own DeformConv and the fast COCOeval.
"""


def get_compiler_version():
    return "not built"


def get_cuda_version():
    return "not built"


def has_cuda():
    return False


def __getattr__(name):
    if name.startswith("__"):
        raise AttributeError(name)

    def _missing(*args, **kwargs):
        raise RuntimeError(
            f"detectron2._C.{name} is not available: this detectron2 was installed without its "
            "C++/CUDA extension. fastpan_d2 does not need it; install upstream detectron2 from "
            "source for this op."
        )

    return _missing
'''


def sub_file(path, pattern, repl, count_expected=None, flags=0):
    with open(path) as f:
        text = f.read()
    new, n = re.subn(pattern, repl, text, flags=flags)
    if count_expected is not None and n < count_expected:
        raise SystemExit(f"patch_detectron2: pattern {pattern!r} not found in {path}")
    with open(path, "w") as f:
        f.write(new)
    return n


def main(root):
    d2 = os.path.join(root, "detectron2")
    if not os.path.isdir(d2):
        raise SystemExit(f"patch_detectron2: {d2} does not exist (not an unpacked detectron2 sdist)")
    setup_py = os.path.join(root, "setup.py")
    sub_file(setup_py, r'name="pb1-detectron2"', 'name="detectron2"', 1)
    sub_file(setup_py, r"ext_modules=get_extensions\(\),", "ext_modules=[],", 1)
    sub_file(setup_py, r'\s*"black==21.4b2",', "", 1)
    with open(os.path.join(d2, "_C.py"), "w") as f:
        f.write(C_STANDIN)

    zoo_configs = os.path.join(d2, "model_zoo", "configs")
    top_configs = os.path.join(root, "configs")
    if os.path.isdir(zoo_configs) and not os.path.islink(zoo_configs) and not os.path.exists(top_configs):
        shutil.move(zoo_configs, top_configs)

    np_alias = re.compile(r"\bnp\.(bool|int|float|str|object)\b(?![_\d])")
    for dirpath, _, files in os.walk(d2):
        for name in files:
            if name.endswith(".py"):
                path = os.path.join(dirpath, name)
                with open(path) as f:
                    text = f.read()
                new = np_alias.sub(lambda m: m.group(1), text)
                if new != text:
                    with open(path, "w") as f:
                        f.write(new)

    sub_file(os.path.join(d2, "data", "transforms", "transform.py"), r"Image\.LINEAR", "Image.BILINEAR", 1)
    sub_file(
        os.path.join(d2, "data", "common.py"),
        r"self\._rng\.sample\(self\._fallback_candidates, k=1\)",
        "self._rng.sample(list(self._fallback_candidates), k=1)",
        1,
    )
    for rel in ("engine/hooks.py", "solver/build.py", "solver/lr_scheduler.py"):
        sub_file(
            os.path.join(d2, rel),
            r"torch\.optim\.lr_scheduler\._LRScheduler\b",
            "torch.optim.lr_scheduler.LRScheduler",
        )
    sub_file(
        os.path.join(d2, "modeling", "meta_arch", "retinanet.py"),
        r"get_norm\(norm, 1\)",
        "get_norm(norm, 32)",
        1,
    )
    export_init = os.path.join(d2, "export", "__init__.py")
    sub_file(
        export_init,
        r"from \.api import \*\n",
        "try:\n    from .api import *  # needs caffe2, which PyTorch no longer ships\nexcept ImportError:\n    pass\n",
        1,
    )
    print(f"patched detectron2 sdist at {root}")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit(__doc__)
    main(sys.argv[1])
