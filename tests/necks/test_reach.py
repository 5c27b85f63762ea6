"""Reach at initialisation: an output region depends on input regions across the map.

The targets: relative to the neighbour (``d = 1``), at least 1e-2 at ``d = 21``
on a 28x28 map and 1e-3 at ``d = 50`` on a 56x56 map, along rows, columns and
off-axis lines (``d`` columns and ``d // 2`` rows away), with 64 input
channels and 32 hidden units, as a backbone level feeds the neck.
"""

import pytest
import torch

from chrnn_plugin.models import HLSTMNeck, HSRNNeck
from chrnn_plugin.testing.reach import LINES, input_maps, reach_profile

NECKS = {'hsrn': HSRNNeck, 'hlstm': HLSTMNeck}
# (map size, distance, smallest reach allowed on every line)
TARGETS = [(28, 21, 1e-2), (56, 50, 1e-3)]


def _neck(cls, seed: int, **kwargs):
    torch.manual_seed(seed)
    return cls(in_channels=64, hidden_channels=32, **kwargs)


@pytest.mark.parametrize('seed', [0, 1])
@pytest.mark.parametrize('size, distance, target', TARGETS, ids=['28x28', '56x56'])
@pytest.mark.parametrize('name', list(NECKS))
def test_reach_at_initialisation(name, size, distance, target, seed, device):
    neck = _neck(NECKS[name], seed).to(device)
    x = input_maps(64, size, seed=seed + 1, device=device)
    profile = reach_profile(neck, x, distances=(distance,))
    assert set(profile) == set(LINES)
    for line, (reach,) in profile.items():
        assert reach >= target, f'{name} {line} reach {reach:.1e} at d={distance} on {size}x{size}'


def test_an_even_mix_halves_an_axis_signal_per_region(device):
    # The initialisation before the reach rule: 0.5 I on each predecessor.
    neck = _neck(HSRNNeck, 0).to(device)
    cell = neck.levels[0].cell
    with torch.no_grad():
        eye = 0.5 * torch.eye(32, device=device)
        cell.weight_h.copy_(eye.expand_as(cell.weight_h))
        cell.weight_v.copy_(eye.expand_as(cell.weight_v))
    profile = reach_profile(neck, input_maps(64, 28, device=device), (21,), lines=('row',))
    assert profile['row'][0] < 1e-5


@pytest.mark.parametrize(
    'x, distances, message',
    [
        (torch.zeros(2, 4, 6, 8), (1,), 'square map'),
        (torch.zeros(2, 4, 6, 6), (6,), 'leaves the 6x6 map'),
        (torch.zeros(2, 4, 6, 6), (0,), 'leaves the 6x6 map'),
    ],
)
def test_bad_arguments(x, distances, message):
    neck = HSRNNeck(in_channels=4, hidden_channels=4)
    with pytest.raises(ValueError, match=message):
        reach_profile(neck, x, distances)
    with pytest.raises(ValueError, match='unknown line'):
        reach_profile(neck, torch.zeros(2, 4, 6, 6), (1,), lines=('diagonal',))
