"""The necks' public surface: signatures, doctests, per-level maps, cells passed as classes."""

import doctest
import importlib
import inspect

import pytest
import torch

from chrnn_plugin.models import HLSTMNeck, HSRNNeck, RegionSelfAttentionNeck, ReNetNeck
from chrnn_plugin.models.necks.hrnn_level import HRNNLevel
from chrnn_plugin.models.necks.recurrent_cells import (
    ConvexLSTMCell2d,
    RecurrentCell2d,
    SimpleRecurrentCell2d,
    SumLSTMCell2d,
)
from chrnn_plugin.testing.reference import reference_level

DOCTEST_MODULES = [
    'chrnn_plugin.models.necks.hrnn_neck',
    'chrnn_plugin.models.necks.recurrent_cells',
    'chrnn_plugin.models.necks.region_attention',
    'chrnn_plugin.models.necks.renet',
    'chrnn_plugin.models.necks.residual',
    'chrnn_plugin.testing.reach',
]
ALL_NECKS = [HSRNNeck, HLSTMNeck, ReNetNeck, RegionSelfAttentionNeck]


@pytest.mark.parametrize('name', DOCTEST_MODULES)
def test_docstring_examples_run(name):
    torch.manual_seed(0)
    module = importlib.import_module(name)
    result = doctest.testmod(module, extraglobs={'torch': torch}, verbose=False)
    assert result.attempted > 0, f'{name} has no doctest examples'
    assert result.failed == 0


@pytest.mark.parametrize('cls', [HSRNNeck, HLSTMNeck])
def test_neck_signature_is_explicit(cls):
    parameters = inspect.signature(cls).parameters
    kinds = {p.kind for p in parameters.values()}
    assert inspect.Parameter.VAR_POSITIONAL not in kinds
    assert inspect.Parameter.VAR_KEYWORD not in kinds
    unannotated = [n for n, p in parameters.items() if p.annotation is inspect.Parameter.empty]
    assert unannotated == []
    assert {'in_channels', 'hidden_channels', 'directions', 'cell_merge', 'nonlinearity'} <= set(
        parameters
    )
    assert 'Examples:' in cls.__doc__
    # Every argument is documented.
    for name in parameters:
        assert f'    {name} (' in cls.__doc__, name


def _small_neck(cls, **kwargs):
    torch.manual_seed(0)
    return cls(in_channels=(8, 16), hidden_channels=8, out_channels=12, **kwargs).eval()


@pytest.mark.parametrize('cls', ALL_NECKS)
@pytest.mark.parametrize('out_levels', ['all', 'last'])
def test_forward_maps_is_forward_without_pooling(cls, out_levels):
    inputs = (torch.randn(2, 8, 6, 5), torch.randn(2, 16, 3, 3))
    pooled = _small_neck(cls, out_levels=out_levels)
    unpooled = _small_neck(cls, out_levels=out_levels, global_pool=None)
    maps = pooled.forward_maps(inputs)
    expected = unpooled(inputs)
    assert len(maps) == len(expected) == (2 if out_levels == 'all' else 1)
    for got, want in zip(maps, expected):
        assert got.shape[1] == 12
        torch.testing.assert_close(got, want)
    vec = torch.cat([y.mean(dim=(2, 3)) for y in maps], dim=1)
    torch.testing.assert_close(pooled(inputs)[0], vec)
    assert pooled.global_pool == 'avg'  # forward_maps leaves the module as it was


@pytest.mark.parametrize('cls', ALL_NECKS)
def test_forward_maps_checks_its_inputs(cls):
    neck = _small_neck(cls)
    with pytest.raises(ValueError, match=r'expects 2 input levels with channels \(8, 16\)'):
        neck.forward_maps(torch.randn(2, 8, 4, 4))


def test_necks_name_their_cell_class():
    assert HSRNNeck.cell_class is SimpleRecurrentCell2d
    assert HLSTMNeck.cell_classes == {'convex': ConvexLSTMCell2d, 'sum': SumLSTMCell2d}
    for cell_merge, cell_class in HLSTMNeck.cell_classes.items():
        neck = HLSTMNeck(in_channels=4, hidden_channels=3, cell_merge=cell_merge)
        assert type(neck.levels[0].cell) is cell_class
    neck = HSRNNeck(in_channels=4, hidden_channels=3, nonlinearity='tanh')
    assert type(neck.levels[0].cell) is SimpleRecurrentCell2d
    assert neck.levels[0].cell.nonlinearity == 'tanh'


def test_level_defaults_to_the_necks_nonlinearity():
    level = HRNNLevel(SimpleRecurrentCell2d, 4, None, 3, 5, ('top_left',))
    default = inspect.signature(HSRNNeck).parameters['nonlinearity'].default
    assert level.cell.nonlinearity == default == 'relu'


def test_level_takes_a_built_cell():
    cell = SumLSTMCell2d(num_directions=2, hidden_channels=3)
    level = HRNNLevel(cell, 4, 6, 3, 5, ('top_left', 'bottom_right')).double()
    assert level.cell is cell
    x, z = torch.randn(2, 4, 3, 4).double(), torch.randn(2, 6, 3, 4).double()
    torch.testing.assert_close(level(x, z), reference_level(level, x, z))


def test_level_rejects_a_cell_that_does_not_fit():
    cell = ConvexLSTMCell2d(num_directions=1, hidden_channels=3)
    with pytest.raises(
        ValueError, match=r'\(num_directions, hidden_channels\) = \(2, 3\).*\(1, 3\)'
    ):
        HRNNLevel(cell, 4, None, 3, 5, ('top_left', 'top_right'))
    with pytest.raises(ValueError, match='cell_kwargs are for a cell class'):
        HRNNLevel(cell, 4, None, 3, 5, ('top_left',), cell_kwargs=dict(nonlinearity='tanh'))
    with pytest.raises(
        TypeError, match="cell must be a RecurrentCell2d subclass or instance, got 'srn'"
    ):
        HRNNLevel('srn', 4, None, 3, 5, ('top_left',))


def test_reference_refuses_a_cell_it_does_not_know():
    class DoubledCell2d(SimpleRecurrentCell2d):
        pass

    class OtherCell2d(RecurrentCell2d):
        def init_weights(self) -> None:
            torch.nn.init.zeros_(self.weight_h)
            torch.nn.init.zeros_(self.weight_v)

    x = torch.randn(2, 4, 2, 2)
    # A subclass of a known cell keeps its equations; an unknown cell is refused.
    level = HRNNLevel(DoubledCell2d, 4, None, 3, 5, ('top_left',))
    torch.testing.assert_close(level(x), reference_level(level, x, None))
    level = HRNNLevel(OtherCell2d, 4, None, 3, 5, ('top_left',))
    with pytest.raises(TypeError, match='no reference for cell OtherCell2d'):
        reference_level(level, x, None)
