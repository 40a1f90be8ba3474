"""engine/fast_inference.py: BatchNorm folding is exact, channels-last and autocast keep the
outputs, the config keys drive it, and evaluation during training prepares a copy."""
import logging

import pytest
import torch
from detectron2.layers import Conv2d, FrozenBatchNorm2d
from detectron2.modeling import build_model
from torch import nn

from fastpan_d2.engine import Trainer, apply_fast_inference, fast_inference_copy, fold_batchnorm, load_cfg
from fastpan_d2.engine.fast_inference import FOLDABLE_CONVS, resolve_amp_dtype
from fastpan_d2.modeling.common.deform_conv import ModulatedDeformConv2d

BF16 = torch.ops.mkldnn._is_mkldnn_bf16_supported()


def _randomise(norm, g):
    """Running statistics and affine parameters far from the identity."""
    c = norm.running_mean.numel()
    norm.running_mean.copy_(torch.randn(c, generator=g, dtype=norm.running_mean.dtype))
    norm.running_var.copy_(torch.rand(c, generator=g, dtype=norm.running_var.dtype) * 3 + 0.1)
    if norm.weight is not None:
        with torch.no_grad():
            norm.weight.copy_(torch.randn(c, generator=g, dtype=norm.weight.dtype))
            norm.bias.copy_(torch.randn(c, generator=g, dtype=norm.bias.dtype))


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.frozen = Conv2d(3, 8, 3, padding=1, bias=False, norm=FrozenBatchNorm2d(8), activation=nn.ReLU())
        self.bn_bias = Conv2d(8, 8, 3, padding=1, bias=True, norm=nn.BatchNorm2d(8))
        self.bn_plain = Conv2d(8, 6, 1, bias=False, norm=nn.BatchNorm2d(6, affine=False))
        self.deform = ModulatedDeformConv2d(6, 5, 3, bias=False, norm=nn.BatchNorm2d(5), activation=nn.ReLU())
        self.gn = Conv2d(5, 4, 1, norm=nn.GroupNorm(2, 4))  # not foldable: data-dependent

    def forward(self, x):
        return self.gn(self.deform(self.bn_plain(self.bn_bias(self.frozen(x)))))


def _block(dtype=torch.float64):
    g = torch.Generator().manual_seed(0)
    m = Block().to(dtype)
    for mod in m.modules():
        if isinstance(mod, (FrozenBatchNorm2d, nn.BatchNorm2d)):
            _randomise(mod, g)
    nn.init.normal_(m.deform.offset_conv.weight, std=0.1)
    return m.eval()


def test_fold_batchnorm_is_exact():
    m = _block()
    x = torch.randn(2, 3, 9, 11, dtype=torch.float64)
    with torch.no_grad():
        ref = m(x)
        assert fold_batchnorm(m) == 4
        out = m(x)
    assert m.frozen.norm is None and m.bn_bias.norm is None and m.bn_plain.norm is None and m.deform.norm is None
    assert isinstance(m.gn.norm, nn.GroupNorm)
    assert m.frozen.bias is not None and m.bn_plain.bias is not None  # created
    torch.testing.assert_close(out, ref, atol=1e-12, rtol=1e-12)
    assert fold_batchnorm(m) == 0  # nothing left


def test_fold_skips_batchnorm_in_training_mode():
    m = _block().train()
    assert fold_batchnorm(m) == 1  # only the FrozenBatchNorm
    assert isinstance(m.bn_bias.norm, nn.BatchNorm2d)


def test_fold_resnet_backbone_float32():
    """detectron2's R-50 with FrozenBN (the COCO configs' backbone): same features after folding."""
    cfg = load_cfg("configs/COCO-PanopticSegmentation/yoso_R_50_800.yaml", ["MODEL.DEVICE", "cpu"])
    from detectron2.modeling import build_backbone

    torch.manual_seed(0)
    backbone = build_backbone(cfg).eval()
    g = torch.Generator().manual_seed(1)
    for mod in backbone.modules():
        if isinstance(mod, FrozenBatchNorm2d):
            _randomise(mod, g)
            mod.weight.abs_().add_(0.5)  # keep activations in a sane range through 50 layers
            mod.running_var.fill_(1.0)
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        ref = backbone(x)
        assert fold_batchnorm(backbone) == 53  # stem + 16 blocks x 3 + 4 shortcuts
        out = backbone(x)
    for k in ref:
        scale = ref[k].abs().max()
        torch.testing.assert_close(out[k] / scale, ref[k] / scale, atol=1e-5, rtol=0)


def test_channels_last_keeps_outputs():
    m = _block(torch.float32)
    x = torch.randn(2, 3, 9, 11)
    with torch.no_grad():
        ref = m(x)
        apply_fast_inference(m, channels_last=True)
        out = m(x)
    assert m.frozen.weight.is_contiguous(memory_format=torch.channels_last)
    assert m._fast_inference == {"channels_last": True}
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)


@pytest.mark.skipif(not BF16, reason="this CPU has no native bfloat16")
def test_autocast_computes_in_bfloat16_and_returns_float32():
    m = _block(torch.float32)
    x = torch.randn(2, 3, 9, 11)
    with torch.no_grad():
        ref = m(x)
        apply_fast_inference(m, fold=True, channels_last=True, amp=True)
        seen = []
        m.bn_plain.register_forward_hook(lambda mod, i, o: seen.append(o.dtype))
        m.deform.register_forward_hook(lambda mod, i, o: seen.append(o.dtype))
        out = m(x)
    assert seen == [torch.bfloat16, torch.bfloat16]
    assert out.dtype == torch.float32
    assert m._fast_inference["amp_dtype"] == torch.bfloat16 and m._fast_inference["folded_batchnorms"] == 4
    rel = (out - ref).abs().max() / ref.abs().max()
    assert 1e-4 < rel < 5e-2  # bfloat16 rounding, not float32 in disguise


def test_amp_dtype_choice(monkeypatch, caplog):
    assert resolve_amp_dtype("cuda") == torch.float16
    assert resolve_amp_dtype("cuda", "bfloat16") == torch.bfloat16
    with pytest.raises(ValueError, match="TEST.AMP.DTYPE"):
        resolve_amp_dtype("cpu", "float8")
    with pytest.raises(ValueError, match="bfloat16 only"):
        resolve_amp_dtype("cpu", "float16")
    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: False)
    with caplog.at_level(logging.WARNING):
        assert resolve_amp_dtype("cpu") is None
    assert "no native bfloat16" in caplog.text
    m = apply_fast_inference(_block(torch.float32), amp=True)
    assert "forward" not in vars(m) and "amp_dtype" not in m._fast_inference


def test_config_keys_default_off_and_copy_leaves_the_training_model_alone():
    cfg = load_cfg("configs/Synthetic-PanopticSegmentation/yoso.yaml")
    assert not cfg.TEST.FOLD_BATCHNORM and not cfg.TEST.CHANNELS_LAST and not cfg.TEST.AMP.ENABLED
    torch.manual_seed(0)
    model = build_model(cfg).train()
    assert fast_inference_copy(model, cfg) is model
    cfg.merge_from_list(["TEST.FOLD_BATCHNORM", True, "TEST.CHANNELS_LAST", True, "TEST.AMP.ENABLED", BF16])
    fast = fast_inference_copy(model, cfg)
    assert fast is not model and not fast.training and model.training
    assert fast._fast_inference["folded_batchnorms"] > 0
    # the training model keeps every norm (21 convs and 3 deformable convs with BN)
    norms = [m.norm for m in model.modules() if isinstance(m, FOLDABLE_CONVS)]
    assert sum(isinstance(n, nn.BatchNorm2d) for n in norms) == fast._fast_inference["folded_batchnorms"] == 24
    assert model.backbone.stem.conv1.weight.is_contiguous()
    # the copy's folded, channels-last backbone computes what the model's computes in eval mode
    model.eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        ref, out = model.backbone(x), fast.backbone(x.to(memory_format=torch.channels_last))
    for k in ref:
        torch.testing.assert_close(out[k], ref[k], atol=1e-4, rtol=1e-4)


def test_trainer_evaluates_the_fast_copy(monkeypatch):
    cfg = load_cfg("configs/Synthetic-PanopticSegmentation/yoso.yaml",
                   ["TEST.FOLD_BATCHNORM", "True", "TEST.CHANNELS_LAST", "True", "TEST.TIMING.ENABLED", "False"])
    model = build_model(cfg).train()
    seen = []

    def fake_inference(m, loader, evaluator):
        seen.append(m)
        return {"panoptic_seg": {"PQ": 1.0}}

    import fastpan_d2.engine.trainer as trainer_mod

    monkeypatch.setattr(trainer_mod, "inference_on_dataset", fake_inference)
    monkeypatch.setattr(Trainer, "build_test_loader", classmethod(lambda cls, c, name: []))
    res = Trainer.test(cfg, model, evaluators=[None])
    assert res["fastpan_shapes_val"]["panoptic_seg"]["PQ"] == 1.0
    (evaluated,) = seen
    assert evaluated is not model and evaluated._fast_inference["channels_last"]
    assert model.training and model.backbone.stem.conv1.norm is not None
