"""tools/visualize_context.py reads the neck's maps through its public API, in process."""

import importlib.util
from pathlib import Path

import pytest
import torch
from torch import nn

TOOL = Path(__file__).resolve().parents[2] / 'tools' / 'visualize_context.py'


@pytest.fixture(scope='module')
def visualize_context():
    spec = importlib.util.spec_from_file_location('chrnn_tool_visualize_context', TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class _Backbone(nn.Module):
    def forward(self, x):
        return (x[:, :2, ::2, ::2] * 2,)


class _NeckWithMaps(nn.Module):
    """Pools in forward; forward_maps gives the maps. Records any attribute set later."""

    def __init__(self) -> None:
        super().__init__()
        self.global_pool = 'avg'
        self.writes = []

    def __setattr__(self, name, value):
        if 'writes' in self.__dict__:
            self.writes.append(name)
        super().__setattr__(name, value)

    def forward_maps(self, inputs):
        return tuple(x + 1 for x in inputs)

    def forward(self, inputs):
        raise AssertionError('the visualiser must not call the pooling forward')


class _Classifier(nn.Module):
    def __init__(self, neck) -> None:
        super().__init__()
        self.backbone = _Backbone()
        if neck is not None:
            self.neck = neck


def test_region_maps_use_forward_maps_and_leave_the_neck_alone(visualize_context):
    neck = _NeckWithMaps()
    x = torch.randn(2, 3, 8, 6)
    (maps,) = visualize_context.region_maps(_Classifier(neck), x)
    torch.testing.assert_close(maps, x[:, :2, ::2, ::2] * 2 + 1)
    assert neck.writes == [] and neck.global_pool == 'avg'


@pytest.mark.parametrize('neck', [None, nn.AdaptiveAvgPool2d(1)], ids=['no neck', 'pooling neck'])
def test_region_maps_without_per_level_maps_are_the_backbone_maps(visualize_context, neck):
    x = torch.randn(2, 3, 8, 6)
    (maps,) = visualize_context.region_maps(_Classifier(neck), x)
    torch.testing.assert_close(maps, x[:, :2, ::2, ::2] * 2)


@pytest.mark.parametrize('neck_type', ['HSRNNeck', 'HLSTMNeck'])
def test_region_maps_of_an_hrnn_neck_are_its_unpooled_output(visualize_context, neck_type):
    import copy

    from mmengine.registry import init_default_scope
    from mmpretrain.registry import MODELS

    init_default_scope('mmpretrain')
    torch.manual_seed(0)
    model = MODELS.build(
        dict(
            type='ImageClassifier',
            backbone=dict(
                type='ResNet_CIFAR', depth=18, stem_channels=8, base_channels=8, out_indices=(3,)
            ),
            neck=dict(type=neck_type, in_channels=64, hidden_channels=4, extra_levels=1),
            head=dict(type='LinearClsHead', num_classes=2, in_channels=8),
        )
    ).eval()
    x = torch.randn(2, 3, 32, 24)
    before = copy.deepcopy(model.state_dict())
    with torch.no_grad():
        maps = visualize_context.region_maps(model, x)
        unpooled = copy.deepcopy(model)
        unpooled.neck.global_pool = None  # what the tool computed before forward_maps existed
        expected = unpooled.neck(unpooled.backbone(x))
    assert [m.shape for m in maps] == [(2, 4, 4, 3), (2, 4, 2, 2)]
    for got, want in zip(maps, expected, strict=True):
        torch.testing.assert_close(got, want, rtol=0, atol=0)
    assert model.neck.global_pool == 'avg'
    for name, value in model.state_dict().items():
        torch.testing.assert_close(value, before[name], rtol=0, atol=0)
