"""HLSTM stays stable at every map size: bounded cell state, balanced gradients, any dtype.

The bounds checked here are the ones :class:`ConvexLSTMCell2d` states and
proves: on the ``t``-th anti-diagonal of a sweep (``t = 0`` at the origin),
``|c| <= t + 1`` for any weights, and ``|c| <= (1 - s^n) / (1 - s)`` on a map
whose forget gates never exceed ``s``. The two-forget-gate cell
(``cell_merge='sum'``) is run through the same checks to show that they fail.
"""

import math
from contextlib import contextmanager

import pytest
import torch

from chrnn_plugin.models import HLSTMNeck, HSRNNeck
from chrnn_plugin.models.necks.reach_init import LONGEST_TIME_SCALE

MAP_SIZES = [7, 14, 28, 56, 128]
# With its gates at their initial biases, a unit with time scale T keeps
# |c| <= sigma(i) / (1 - sigma(f)) = T / (1 + sqrt(T - 1)), largest at the
# longest time scale. Measured at initialisation with these channels (seeds
# 0-7, 128x128): max |c| 5.7 to 9.4.
SMALL_AT_INIT = LONGEST_TIME_SCALE / (1 + math.sqrt(LONGEST_TIME_SCALE - 1))


def _neck(cls=HLSTMNeck, in_channels: int = 16, hidden_channels: int = 8, **kwargs):
    torch.manual_seed(0)
    return cls(in_channels=in_channels, hidden_channels=hidden_channels, **kwargs)


def _relu_randn(channels: int, size: int, device, dtype=torch.float32, batch: int = 2):
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(batch, channels, size, size, generator=generator)
    return torch.relu(x).to(device=device, dtype=dtype)


@contextmanager
def recorded_steps(neck: HLSTMNeck):
    """Per wavefront step of every level: ``(step, max |c|, max forget gate, c dtype)``."""
    steps = []

    def record(cell, inputs, states):
        pre_activation, left, above = inputs
        if left is not None:
            pre_activation = cell.recurrent_term(pre_activation, left, above)
        d = cell.hidden_channels
        # Gate 1 is the forget gate f of the convex cell, f_h of the sum cell.
        forget = torch.sigmoid(pre_activation[..., d : 2 * d].float())
        step = 0 if left is None else steps[-1][0] + 1
        cell_state = states[1]
        steps.append((step, cell_state.abs().max().item(), forget.max().item(), cell_state.dtype))

    hooks = [level.cell.register_forward_hook(record) for level in neck.levels]
    try:
        yield steps
    finally:
        for hook in hooks:
            hook.remove()


@pytest.mark.parametrize('size', MAP_SIZES)
def test_default_cell_state_stays_under_the_bounds_at_init(size, device):
    neck = _neck().to(device)
    x = _relu_randn(16, size, device)
    with torch.no_grad(), recorded_steps(neck) as steps:
        neck(x)

    assert len(steps) == 2 * size - 1
    for step, largest, _, _ in steps:
        assert largest <= step + 1
    s = max(forget for _, _, forget, _ in steps)
    largest = max(c for _, c, _, _ in steps)
    assert s < 1
    assert largest <= (1 - s ** len(steps)) / (1 - s)
    assert largest <= SMALL_AT_INIT


def test_linear_bound_holds_for_any_weights(device):
    # Forget gates saturated at 1 (bias +20) and every input gate and
    # candidate pushed to 1: the worst case, where |c| grows by 1 per step.
    neck = _neck(in_channels=4, hidden_channels=3, directions=('top_left',)).to(device)
    with torch.no_grad():
        bias = neck.levels[0].input_proj.bias.view(5, 3)
        bias[0].fill_(20.0)  # input gate
        bias[1].fill_(20.0)  # forget gate
        bias[4].fill_(20.0)  # candidate
    with torch.no_grad(), recorded_steps(neck) as steps:
        neck(torch.zeros(2, 4, 9, 9, device=device))
    for step, largest, _, _ in steps:
        assert largest <= step + 1
    # Tight up to what the mix loses at the borders: |c| does grow ~1 per step.
    assert steps[-1][1] > 0.75 * len(steps)


def test_sum_cell_breaks_the_bounds(device):
    neck = _neck(cell_merge='sum').to(device)
    with torch.no_grad(), recorded_steps(neck) as steps:
        neck(_relu_randn(16, 14, device))
    assert max(c for _, c, _, _ in steps) > 2 * 14 - 1

    with torch.no_grad():
        (vec,) = neck(_relu_randn(16, 128, device))
    assert not torch.isfinite(vec).all()


@pytest.mark.parametrize('autocast', [False, True], ids=['float32', 'bf16_autocast'])
def test_no_inf_or_nan_at_128(autocast, device):
    neck = _neck().to(device)
    x = _relu_randn(16, 128, device).requires_grad_()
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
        (vec,) = neck(x)
    assert torch.isfinite(vec).all()
    vec.float().sum().backward()
    assert torch.isfinite(x.grad).all()
    assert all(torch.isfinite(p.grad).all() for p in neck.parameters())


def _corner_and_centre(grad_map: torch.Tensor) -> tuple[float, float]:
    """Mean of an ``(S, S)`` map over its four corners and over its centre (2x2 if S is even)."""
    size = grad_map.shape[0]
    corners = grad_map[[0, 0, -1, -1], [0, -1, 0, -1]].mean()
    lo, hi = (size - 1) // 2, size // 2 + 1
    return corners.item(), grad_map[lo:hi, lo:hi].mean().item()


def _corner_to_centre_ratio(neck, device) -> float:
    x = _relu_randn(32, 28, device).requires_grad_()
    neck(x)[0].sum().backward()
    corner, centre = _corner_and_centre(x.grad.abs().mean(dim=(0, 1)))
    return corner / centre


@pytest.mark.parametrize(
    'cls, kwargs',
    [(HSRNNeck, dict(nonlinearity='relu')), (HLSTMNeck, {})],
    ids=['hsrn_relu', 'hlstm'],
)
def test_centre_gets_gradient_within_10x_of_the_corners(cls, kwargs, device):
    neck = _neck(cls, in_channels=32, hidden_channels=16, **kwargs).to(device)
    ratio = _corner_to_centre_ratio(neck, device)
    assert 0.1 <= ratio <= 10


def test_sum_cell_starves_the_centre(device):
    neck = _neck(in_channels=32, hidden_channels=16, cell_merge='sum').to(device)
    assert _corner_to_centre_ratio(neck, device) > 10


@pytest.mark.parametrize('cell_merge', ['convex', 'sum'])
@pytest.mark.parametrize('dtype', [torch.float16, torch.bfloat16], ids=['half', 'bfloat16'])
def test_half_and_bfloat16_models(dtype, cell_merge, device):
    neck = _neck(in_channels=(8, 16), hidden_channels=8, cell_merge=cell_merge).to(device)
    inputs = (_relu_randn(8, 6, device), _relu_randn(16, 3, device))
    expected = neck(inputs)[0]

    neck.to(dtype)
    low = tuple(x.to(dtype).requires_grad_() for x in inputs)
    with recorded_steps(neck) as steps:
        (vec,) = neck(low)
    assert vec.dtype == dtype
    assert {cell_dtype for *_, cell_dtype in steps} == {dtype}
    assert (vec.float() - expected).abs().max() <= 0.05 * expected.abs().max()
    vec.float().sum().backward()
    assert all(x.grad.dtype == dtype and torch.isfinite(x.grad).all() for x in low)


def test_cell_state_is_float32_under_autocast(device):
    neck = _neck().to(device)
    with torch.autocast(device.type, dtype=torch.bfloat16), recorded_steps(neck) as steps:
        (vec,) = neck(_relu_randn(16, 5, device))
    assert vec.dtype == torch.bfloat16
    assert {cell_dtype for *_, cell_dtype in steps} == {torch.float32}


def test_checkpoints_load_across_cell_merges():
    old = _neck(in_channels=(8, 16), hidden_channels=4, cell_merge='sum')
    new = HLSTMNeck(in_channels=(8, 16), hidden_channels=4)
    assert old.state_dict().keys() == new.state_dict().keys()
    new.load_state_dict(old.state_dict())  # strict: same keys, same shapes

    reloaded = HLSTMNeck(in_channels=(8, 16), hidden_channels=4, cell_merge='sum')
    reloaded.load_state_dict(old.state_dict())
    inputs = (torch.randn(2, 8, 5, 5), torch.randn(2, 16, 3, 3))
    assert torch.equal(reloaded(inputs)[0], old(inputs)[0])
