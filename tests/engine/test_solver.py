"""Optimizer / LR schedule built from the shared SOLVER keys."""
import pytest
import torch
from torch import nn

from fastpan_d2.config import get_fastpan_cfg
from fastpan_d2.engine import build_lr_scheduler, build_optimizer


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.backbone = nn.Linear(4, 4)
        self.head = nn.Linear(4, 2)

    def forward(self, x):
        return self.head(self.backbone(x))


def _cfg(**solver):
    cfg = get_fastpan_cfg()
    for k, v in solver.items():
        setattr(cfg.SOLVER, k, v)
    return cfg


@pytest.mark.parametrize("name, cls", [("SGD", torch.optim.SGD), ("ADAM", torch.optim.Adam), ("ADAMW", torch.optim.AdamW)])
def test_optimizer_kind_and_backbone_multiplier(name, cls):
    net = Net()
    opt = build_optimizer(_cfg(OPTIMIZER=name, BASE_LR=0.1, BACKBONE_MULTIPLIER=0.1, BETAS=(0.9, 0.99)), net)
    assert isinstance(opt, cls)
    lr_of = {id(p): g["lr"] for g in opt.param_groups for p in g["params"]}
    assert lr_of[id(net.backbone.weight)] == pytest.approx(0.01)
    assert lr_of[id(net.head.weight)] == pytest.approx(0.1)
    assert len(lr_of) == 4
    if name != "SGD":
        assert opt.param_groups[0]["betas"] == (0.9, 0.99)


@pytest.mark.parametrize("name", ["SGD", "ADAMW"])
def test_parameter_lr_factor_multiplies_with_the_backbone_multiplier(name):
    """A parameter's ``lr_factor`` attribute scales its LR, on top of BACKBONE_MULTIPLIER."""
    net = Net()
    net.backbone.bias.lr_factor = 0.5
    net.head.weight.lr_factor = 0.01
    opt = build_optimizer(_cfg(OPTIMIZER=name, BASE_LR=0.1, BACKBONE_MULTIPLIER=0.1), net)
    lr_of = {id(p): g["lr"] for g in opt.param_groups for p in g["params"]}
    assert lr_of[id(net.backbone.weight)] == pytest.approx(0.01)
    assert lr_of[id(net.backbone.bias)] == pytest.approx(0.005)
    assert lr_of[id(net.head.weight)] == pytest.approx(0.001)
    assert lr_of[id(net.head.bias)] == pytest.approx(0.1)
    assert len(lr_of) == 4


def test_unknown_optimizer():
    with pytest.raises(ValueError, match="Unknown SOLVER.OPTIMIZER 'LION'"):
        build_optimizer(_cfg(OPTIMIZER="LION"), Net())


def test_full_model_gradient_clipping():
    net = Net()
    cfg = _cfg(OPTIMIZER="SGD", BASE_LR=1.0, MOMENTUM=0.0, WEIGHT_DECAY=0.0, WEIGHT_DECAY_NORM=0.0)
    cfg.SOLVER.CLIP_GRADIENTS.ENABLED = True
    cfg.SOLVER.CLIP_GRADIENTS.CLIP_TYPE = "full_model"
    cfg.SOLVER.CLIP_GRADIENTS.CLIP_VALUE = 0.5
    opt = build_optimizer(cfg, net)
    before = [p.detach().clone() for p in net.parameters()]
    net(torch.full((3, 4), 100.0)).sum().backward()
    opt.step()
    step = torch.cat([(b - p.detach()).flatten() for b, p in zip(before, net.parameters())])
    assert step.norm().item() == pytest.approx(0.5, rel=1e-4)  # lr 1 x clipped total norm 0.5


def test_poly_schedule_values():
    net = Net()
    cfg = _cfg(BASE_LR=0.01, LR_SCHEDULER_NAME="WarmupPolyLR", MAX_ITER=100, WARMUP_ITERS=0, POLY_LR_POWER=0.9)
    opt = build_optimizer(cfg, net)
    sched = build_lr_scheduler(cfg, opt)
    lrs = []
    for _ in range(100):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[0] == pytest.approx(0.01)
    assert lrs[50] == pytest.approx(0.01 * 0.5**0.9)
    assert lrs[99] == pytest.approx(0.01 * 0.01**0.9)
