"""``residual=True``: a context neck that starts exactly as global average pooling."""

import pytest
import torch
from mmpretrain.registry import MODELS

from chrnn_plugin.models import HLSTMNeck, HSRNNeck, RegionSelfAttentionNeck, ReNetNeck

NECKS = {
    'hsrn': (HSRNNeck, {}),
    'hlstm': (HLSTMNeck, {}),
    'attention': (RegionSelfAttentionNeck, dict(num_heads=2)),
    'renet': (ReNetNeck, {}),
}


def _classifier(neck: dict, out_indices=(3,), head_channels: int = 512):
    torch.manual_seed(0)
    return MODELS.build(
        dict(
            type='ImageClassifier',
            backbone=dict(type='ResNet', depth=18, out_indices=out_indices),
            neck=neck,
            head=dict(type='LinearClsHead', num_classes=5, in_channels=head_channels),
        )
    ).eval()


def _same_backbone_and_head(model, reference) -> None:
    model.backbone.load_state_dict(reference.backbone.state_dict())
    model.head.load_state_dict(reference.head.state_dict())


@pytest.mark.parametrize('name', list(NECKS))
def test_logits_equal_the_gap_models_at_initialisation(name):
    gap = _classifier(dict(type='GlobalAveragePooling'))
    cls, kwargs = NECKS[name]
    neck = dict(type=cls.__name__, in_channels=512, hidden_channels=16, residual=True, **kwargs)
    model = _classifier(neck)
    _same_backbone_and_head(model, gap)
    images = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(model(images), gap(images))


def test_two_backbone_levels_feeding_a_head_trained_on_the_last():
    # out_levels='last' keeps the width of the backbone's last level: a head
    # trained on GAP(C5) fits, and the cross-scale input from C4 starts muted.
    gap = _classifier(dict(type='GlobalAveragePooling'), out_indices=(2, 3))
    neck = dict(
        type='HLSTMNeck',
        in_channels=(256, 512),
        hidden_channels=16,
        residual=True,
        out_levels='last',
    )
    model = _classifier(neck, out_indices=(2, 3))
    assert model.neck.output_width == 512
    _same_backbone_and_head(model, gap)
    images = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(model(images), gap(images))


def test_all_levels_concatenate_each_levels_pooled_input():
    neck = HSRNNeck(in_channels=(4, 6), hidden_channels=8, residual=True, extra_levels=1)
    assert neck.map_widths == (4, 6, 6) and neck.output_width == 16
    x = (torch.rand(2, 4, 8, 8), torch.rand(2, 6, 4, 4))
    (vec,) = neck(x)
    coarse = torch.nn.functional.max_pool2d(x[1], 2, ceil_mode=True)
    expected = torch.cat([m.mean(dim=(2, 3)) for m in (*x, coarse)], dim=1)
    assert torch.equal(vec, expected)


@pytest.mark.parametrize('name', ['hsrn', 'attention'])
def test_pooled_shortcut_equals_pooling_the_residual_maps(name):
    cls, kwargs = NECKS[name]
    neck = cls(in_channels=(8, 8), hidden_channels=8, residual=True, **kwargs).double()
    with torch.no_grad():
        for shortcut in neck.shortcuts:
            shortcut.scale.normal_()
    x = (torch.randn(2, 8, 6, 6, dtype=torch.float64), torch.randn(2, 8, 3, 3, dtype=torch.float64))
    maps = neck.forward_maps(x)
    assert [m.shape[1] for m in maps] == [8, 8]
    pooled = torch.cat([m.mean(dim=(2, 3)) for m in maps], dim=1)
    assert torch.allclose(neck(x)[0], pooled, atol=1e-12)
    assert not torch.allclose(pooled, torch.cat([m.mean(dim=(2, 3)) for m in x], dim=1))


def test_the_scale_learns_first_then_the_context():
    torch.manual_seed(0)
    neck = HLSTMNeck(in_channels=4, hidden_channels=8, residual=True)
    x = torch.rand(2, 4, 5, 5)
    neck(x)[0].pow(2).sum().backward()
    level = neck.levels[0]
    assert neck.shortcuts[0].scale.grad.abs().sum() > 0
    # With gamma = 0 nothing reaches the recurrence yet: LayerScale's start.
    assert level.input_proj.weight.grad.abs().sum() == 0
    torch.optim.SGD(neck.parameters(), lr=0.1).step()
    neck.zero_grad()
    neck(x)[0].pow(2).sum().backward()
    assert level.input_proj.weight.grad.abs().sum() > 0


def test_init_cfg_keeps_the_scale_at_zero():
    neck = HSRNNeck(
        in_channels=4,
        hidden_channels=3,
        residual=True,
        init_cfg=dict(type='Constant', layer='Linear', val=0.1, bias=0.0),
    )
    with torch.no_grad():
        neck.shortcuts[0].scale.fill_(1.0)
    neck.init_weights()
    assert torch.all(neck.shortcuts[0].proj.weight == 0.1)
    assert torch.equal(neck.shortcuts[0].scale, torch.zeros(4))


def test_maps_of_different_widths_have_no_single_output_width():
    neck = HSRNNeck(in_channels=(4, 6), hidden_channels=3, residual=True, global_pool=None)
    assert [y.shape[1] for y in neck((torch.rand(2, 4, 4, 4), torch.rand(2, 6, 2, 2)))] == [4, 6]
    with pytest.raises(ValueError, match=r'different widths \(4, 6\).*map_widths'):
        _ = neck.output_width
    assert HSRNNeck(4, 3, residual=True, global_pool=None, out_levels='last').output_width == 4


def test_without_residual_nothing_changes():
    neck = HSRNNeck(in_channels=(4, 6), hidden_channels=3)
    assert len(neck.shortcuts) == 0 and neck.output_width == 6
    assert not any('shortcuts' in key for key in neck.state_dict())


@pytest.mark.parametrize('value', ['yes', 1, None])
def test_residual_must_be_a_bool(value):
    with pytest.raises((TypeError, ValueError), match='residual'):
        HSRNNeck(in_channels=4, hidden_channels=3, residual=value)
