"""tools/convert_yoso_ifa_to_cfa.py converts a checkpoint; the converted model gives the same output."""
import importlib.util

import torch
from detectron2.modeling import build_model

from .yoso_testutils import tiny_cfg

TINY = [
    "MODEL.YOSO.HIDDEN_DIM", "16", "MODEL.YOSO.NUM_PROPOSALS", "10", "MODEL.YOSO.DIM_FEEDFORWARD", "32",
    "MODEL.YOSO.NUM_HEADS", "2", "MODEL.YOSO.AGGREGATOR.COMPRESS_CHANNELS", "[8, 8, 16, 16]",
    "MODEL.YOSO.SHARE_HEADS", "False", "MODEL.YOSO.AUX_SEMANTIC_WEIGHT", "0.0",  # as tiny_cfg
]


def _tool(repo_root):
    spec = importlib.util.spec_from_file_location("convert_yoso", f"{repo_root}/tools/convert_yoso_ifa_to_cfa.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_convert_checkpoint_cli(tmp_path, repo_root, capsys):
    tool = _tool(repo_root)
    torch.manual_seed(0)
    model = build_model(tiny_cfg(repo_root, "MODEL.YOSO.AGGREGATOR.AGGREGATION", "IFA"))
    src, dst = tmp_path / "ifa.pth", tmp_path / "cfa.pth"
    torch.save({"model": model.state_dict(), "iteration": 7}, src)
    config = f"{repo_root}/configs/Synthetic-PanopticSegmentation/yoso.yaml"
    rc = tool.main(["--input", str(src), "--output", str(dst), "--config-file", config, "--check"] + TINY)
    assert rc == 0
    assert "max |IFA - CFA|" in capsys.readouterr().out
    out = torch.load(dst, weights_only=False)
    assert out["iteration"] == 7 and "aggregator.ifa.weight" not in out["model"]
    assert out["model"]["aggregator.cfa.2.weight"].shape == (16, 16, 1, 1)
    torch.testing.assert_close(
        torch.cat([out["model"][f"aggregator.cfa.{i}.weight"] for i in range(4)], 1), model.aggregator.ifa.weight.data
    )
    # converting a CFA checkpoint again is an error with a message, not a stack trace
    rc = tool.main(["--input", str(dst), "--output", str(tmp_path / "x.pth"), "--channels", "8", "8", "16", "16"])
    assert rc == 2 and "No IFA weight" in capsys.readouterr().err
