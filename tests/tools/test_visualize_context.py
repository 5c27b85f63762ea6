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
