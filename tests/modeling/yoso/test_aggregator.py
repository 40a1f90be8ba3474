"""Feature pyramid aggregator: shapes, Observation I (IFA == CFA), re-parameterization."""
import pytest
import torch

from fastpan_d2.modeling.yoso.aggregator import FeaturePyramidAggregator, coord_features, ifa_to_cfa_state_dict

IN_CH = (8, 12, 16, 20)
COMP = (4, 6, 8, 10)


def _feats(h, w, seed=0):
    """C2..C5 as a ResNet gives them for an (h*4, w*4) input: sizes halve with ceil."""
    g = torch.Generator().manual_seed(seed)
    sizes = [(h, w)]
    for _ in range(3):
        sizes.append(((sizes[-1][0] + 1) // 2, (sizes[-1][1] + 1) // 2))
    return [torch.randn(2, c, *s, generator=g) for c, s in zip(IN_CH, sizes)]


@pytest.mark.parametrize("hw", [(16, 16), (13, 19)])  # 64x64 and a 50x75-like input (not /32)
@pytest.mark.parametrize("mode", ["IFA", "CFA"])
def test_shapes(hw, mode):
    agg = FeaturePyramidAggregator(IN_CH, COMP, 16, aggregation=mode).eval()
    feats = _feats(*hw)
    pyr = agg.pyramid(feats)
    assert [tuple(p.shape[1:]) for p in pyr] == [(c,) + tuple(f.shape[-2:]) for c, f in zip(COMP, feats)]
    assert agg(feats).shape == (2, 16) + hw


@pytest.mark.parametrize("hw", [(12, 12), (13, 19), (7, 30)])
def test_observation_1_ifa_equals_reparameterized_cfa(hw):
    torch.manual_seed(0)
    agg = FeaturePyramidAggregator(IN_CH, COMP, 16, aggregation="IFA").eval()
    for p in agg.parameters():  # random weights everywhere, incl. DCN offsets and BN stats
        torch.nn.init.normal_(p, std=0.3)
    for m in agg.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.normal_()
            m.running_var.uniform_(0.5, 2)
    feats = [f.double() for f in _feats(*hw, seed=1)]
    agg = agg.double()
    with torch.no_grad():
        pyr = agg.pyramid(feats)
        ifa = agg.aggregate(pyr)
        full_ifa = agg(feats)
        sd = agg.state_dict()
        agg.reparameterize_to_cfa()
        assert agg.aggregation == "CFA" and not hasattr(agg, "ifa")
        cfa = agg.aggregate(pyr)
        full_cfa = agg(feats)
    torch.testing.assert_close(cfa, ifa, atol=1e-10, rtol=1e-10)
    torch.testing.assert_close(full_cfa, full_ifa, atol=1e-10, rtol=1e-10)
    # the state-dict conversion (what tools/convert_yoso_ifa_to_cfa.py does) gives the same model
    cfa_model = FeaturePyramidAggregator(IN_CH, COMP, 16, aggregation="CFA").double().eval()
    cfa_model.load_state_dict(ifa_to_cfa_state_dict(sd, COMP, prefix=""), strict=True)
    with torch.no_grad():
        torch.testing.assert_close(cfa_model(feats), full_ifa, atol=1e-10, rtol=1e-10)
    # float32: equal to float rounding
    with torch.no_grad():
        torch.testing.assert_close(cfa_model.float()([f.float() for f in feats]), full_ifa.float(), atol=1e-4, rtol=1e-4)


def test_state_dict_conversion_known_answer_and_errors():
    w = torch.arange(2 * 10, dtype=torch.float32).view(2, 10, 1, 1)
    sd = {"aggregator.ifa.weight": w, "decoder.x": torch.ones(1)}
    out = ifa_to_cfa_state_dict(sd, (1, 2, 3, 4))
    assert "aggregator.ifa.weight" not in out and torch.equal(out["decoder.x"], torch.ones(1))
    torch.testing.assert_close(out["aggregator.cfa.0.weight"], w[:, :1])
    torch.testing.assert_close(out["aggregator.cfa.3.weight"], w[:, 6:])
    with pytest.raises(KeyError):
        ifa_to_cfa_state_dict(out, (1, 2, 3, 4))
    with pytest.raises(ValueError):
        ifa_to_cfa_state_dict(sd, (1, 2, 3, 5))


def test_coord_features():
    c = coord_features(torch.zeros(1, 3, 3, 5))
    assert c.shape == (1, 2, 3, 5)
    torch.testing.assert_close(c[0, 0, 0], torch.tensor([-1.0, -0.5, 0.0, 0.5, 1.0]))
    torch.testing.assert_close(c[0, 1, :, 0], torch.tensor([-1.0, 0.0, 1.0]))


def test_switches_change_the_network():
    plain = FeaturePyramidAggregator(IN_CH, COMP, 16, deformable=False, coord_conv=False)
    dcn = FeaturePyramidAggregator(IN_CH, COMP, 16)
    assert not any("offset_conv" in n for n, _ in plain.named_parameters())
    assert any("offset_conv" in n for n, _ in dcn.named_parameters())
    assert plain.proj.weight.shape[1] == 16
    assert dcn.proj.weight.shape[1] == 18  # d + 2 coordinate channels
    # DCN offsets start at zero (DCNv2 initialisation)
    assert all(m.offset_conv.weight.abs().sum() == 0 for m in dcn.top_down)
