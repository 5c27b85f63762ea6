"""Every wavefront path computes exactly what the per-region reference does.

Every test runs on the registered op with its compiled CPU kernels
(``compiled``, CPU only), with its Triton kernels (``triton``; on the CPU in
Triton's interpreter), in PyTorch operators (``fused``) and on the
plain-PyTorch sweep (``plain``), chosen with ``$CHRNN_WAVEFRONT``.
"""

import pytest
import torch

from chrnn_plugin.models.necks.fused_wavefront import PATHS
from chrnn_plugin.testing.reference import reference_forward

from .helpers import ALL_DIRECTIONS, build_neck, random_maps, select_path

DIRECTION_SETS = [(d,) for d in ALL_DIRECTIONS] + [ALL_DIRECTIONS]

# name -> (input shapes (C, H, W), finest first; neck kwargs)
LEVEL_SETUPS = {
    'one_level': ([(3, 4, 6)], {}),
    'two_uneven_levels': ([(3, 5, 9), (4, 3, 5)], {}),
    'three_levels': ([(2, 6, 6), (3, 3, 3), (2, 2, 2)], {}),
    'extra_levels': ([(3, 5, 7)], dict(extra_levels=2)),
    'no_cross_scale': ([(3, 5, 9), (4, 3, 5)], dict(cross_scale=False)),
    'maps_out': ([(3, 4, 5), (2, 2, 3)], dict(global_pool=None)),
    'max_pool_last': ([(3, 4, 5), (2, 2, 3)], dict(global_pool='max', out_levels='last')),
}


@pytest.fixture(params=PATHS, autouse=True)
def path(request, monkeypatch, device) -> str:
    select_path(request.param, monkeypatch, device)
    return request.param


def _assert_close(fast, slow):
    assert fast.shape == slow.shape
    assert (fast - slow).abs().max().item() <= 1e-10


@pytest.mark.parametrize('unit', ['hsrn_relu', 'hsrn_tanh', 'hlstm', 'hlstm_sum'])
@pytest.mark.parametrize('directions', DIRECTION_SETS, ids=lambda d: '+'.join(d))
@pytest.mark.parametrize('setup', list(LEVEL_SETUPS))
def test_fast_path_matches_reference(unit, directions, setup, path, device):
    if path == 'triton' and device.type == 'cpu' and len(directions) == 1:
        # The interpreter is slow; the four-direction set runs every direction's kernels.
        pytest.skip("Triton's interpreter runs the four-direction set only")
    shapes, kwargs = LEVEL_SETUPS[setup]
    neck = build_neck(
        unit,
        in_channels=tuple(c for c, _, _ in shapes),
        hidden_channels=3,
        out_channels=4,
        directions=directions,
        device=device,
        **kwargs,
    )
    inputs = random_maps(shapes, requires_grad=True, device=device)
    assert neck.levels[0].sweep_path(device, torch.float64) == path

    fast = neck(inputs)
    slow = reference_forward(neck, inputs)
    assert len(fast) == len(slow)
    upstream = [torch.randn_like(y) for y in fast]
    for y_fast, y_slow in zip(fast, slow):
        _assert_close(y_fast, y_slow)

    params = list(neck.parameters())
    grads_fast = torch.autograd.grad(fast, inputs + tuple(params), upstream)
    grads_slow = torch.autograd.grad(slow, inputs + tuple(params), upstream)
    for g_fast, g_slow in zip(grads_fast, grads_slow):
        _assert_close(g_fast, g_slow)


def _skip_the_interpreter(path, device):
    if path == 'triton' and device.type == 'cpu':
        # Hundreds of evaluations: minutes in Triton's interpreter. The tests above
        # compare its gradients with the reference's.
        pytest.skip("gradcheck is too slow in Triton's interpreter")


@pytest.mark.parametrize('unit', ['hsrn_tanh', 'hlstm', 'hlstm_sum'])
def test_gradcheck(unit, path, device):
    _skip_the_interpreter(path, device)
    neck = build_neck(
        unit,
        in_channels=(2, 3),
        hidden_channels=2,
        out_channels=2,
        directions=ALL_DIRECTIONS,
        device=device,
    )
    inputs = random_maps([(2, 3, 4), (3, 2, 2)], requires_grad=True, device=device)
    assert torch.autograd.gradcheck(lambda *xs: neck(xs)[0], inputs)


def test_gradcheck_relu_away_from_kinks(path, device):
    _skip_the_interpreter(path, device)
    # ReLU is not differentiable at 0; finite differences need pre-activations
    # away from it, which a positive bias on the first level gives.
    neck = build_neck('hsrn_relu', in_channels=2, hidden_channels=2, out_channels=2, device=device)
    with torch.no_grad():
        neck.levels[0].input_proj.bias.fill_(3.0)
    (x,) = random_maps([(2, 3, 3)], requires_grad=True, device=device)
    assert torch.autograd.gradcheck(lambda inp: neck(inp)[0], (x,))
