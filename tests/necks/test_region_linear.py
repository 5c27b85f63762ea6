"""The levels' projections between a map and its regions: batched GEMMs, nn.Linear's values."""

import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from chrnn_plugin.models import HSRNNeck
from chrnn_plugin.models.necks.region_linear import map_to_regions, regions_to_map


def _linear(in_features: int, out_features: int, bias: bool, dtype=torch.float64) -> nn.Linear:
    torch.manual_seed(0)
    return nn.Linear(in_features, out_features, bias=bias).to(dtype)


def _reference_to_regions(linear: nn.Linear, x):
    return linear(x.permute(2, 3, 0, 1))


def _reference_to_map(linear: nn.Linear, regions):
    return linear(regions).permute(2, 3, 0, 1).contiguous()


def _grads(output, upstream, tensors):
    return torch.autograd.grad(output, tensors, upstream)


# (H, W, N): the 112 px demo's 28x28 map at batch 3, and a non-square one (>= MIN_REGIONS).
SIZES = [(28, 28, 3), (16, 20, 2)]


# (projection, nn.Linear reference, in and out features, input shape, output shape, grad_fn name)
DIRECTIONS = {
    'map_to_regions': (
        map_to_regions,
        _reference_to_regions,
        (6, 10),
        lambda h, w, n: (n, 6, h, w),
        lambda h, w, n: (h, w, n, 10),
        '_MapToRegionsBackward',
    ),
    'regions_to_map': (
        regions_to_map,
        _reference_to_map,
        (10, 6),
        lambda h, w, n: (h, w, n, 10),
        lambda h, w, n: (n, 6, h, w),
        '_RegionsToMapBackward',
    ),
}


@pytest.mark.parametrize('bias', [True, False])
@pytest.mark.parametrize('height,width,batch', SIZES)
@pytest.mark.parametrize('direction', DIRECTIONS)
def test_projection_matches_linear(direction, height, width, batch, bias):
    project, reference, features, in_shape, out_shape, grad_fn = DIRECTIONS[direction]
    linear = _linear(*features, bias)
    x = torch.randn(in_shape(height, width, batch), dtype=torch.float64, requires_grad=True)
    out = project(linear, x)
    assert type(out.grad_fn).__name__ == grad_fn
    assert out.shape == out_shape(height, width, batch) and out.is_contiguous()
    expected = reference(linear, x)
    torch.testing.assert_close(out, expected, rtol=1e-12, atol=1e-12)
    upstream = torch.randn_like(out)
    params = [x, *linear.parameters()]
    for got, want in zip(_grads(out, upstream, params), _grads(expected, upstream, params)):
        torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)


class _Both(nn.Module):
    """Map -> regions -> map, with a nonlinearity between: the level's two projections."""

    def __init__(self):
        super().__init__()
        self.to_regions, self.to_map = _linear(2, 3, True), _linear(3, 2, True)

    def forward(self, x):
        return regions_to_map(self.to_map, map_to_regions(self.to_regions, x).tanh())


def test_gradcheck_and_second_order():
    module = _Both()
    names = [name for name, _ in module.named_parameters()]
    x = torch.randn(1, 2, 16, 16, dtype=torch.float64, requires_grad=True)
    params = [p.detach().clone().requires_grad_(True) for p in module.parameters()]

    def run(x, *params):
        return torch.func.functional_call(module, dict(zip(names, params)), (x,))

    assert type(run(x, *params).grad_fn).__name__ == '_RegionsToMapBackward'
    assert torch.autograd.gradcheck(run, (x, *params))
    assert torch.autograd.gradgradcheck(run, (x, *params))


def test_the_map_gradient_is_contiguous():
    """What the backbone gets back is an (N, C, H, W) gradient in its own memory order.

    A region-major gradient sent CPU batch norm's backward down a single-threaded
    strided kernel.
    """
    neck = HSRNNeck(in_channels=8, hidden_channels=4, out_channels=8)
    features = torch.randn(2, 8, 28, 28, requires_grad=True)
    seen = []
    x = features * 1.0
    x.register_hook(seen.append)
    neck(x)[0].sum().backward()
    assert seen[0].shape == x.shape and seen[0].is_contiguous()


def test_frozen_input_gets_no_gradient_and_weights_still_learn():
    linear = _linear(6, 10, True)
    x = torch.randn(2, 6, 16, 16, dtype=torch.float64)
    map_to_regions(linear, x).square().sum().backward()
    expected = _linear(6, 10, True)
    _reference_to_regions(expected, x).square().sum().backward()
    torch.testing.assert_close(linear.weight.grad, expected.weight.grad)
    torch.testing.assert_close(linear.bias.grad, expected.bias.grad)


@pytest.mark.parametrize('case', ['channels_last', 'bfloat16', 'small_map'])
def test_other_layouts_and_dtypes_go_through_nn_linear(case):
    x = torch.randn(2, 6, 16, 16)
    if case == 'channels_last':
        linear, x = _linear(6, 10, True, torch.float32), x.to(memory_format=torch.channels_last)
    elif case == 'bfloat16':
        linear, x = _linear(6, 10, True, torch.bfloat16), x.bfloat16()
    else:  # fewer regions than MIN_REGIONS
        linear, x = _linear(6, 10, True, torch.float32), x[:, :, :15, :15].contiguous()
    out = map_to_regions(linear, x.requires_grad_(True))
    assert type(out.grad_fn).__name__ != '_MapToRegionsBackward'
    torch.testing.assert_close(out, _reference_to_regions(linear, x))


def test_mismatched_dtypes_fail_as_nn_linear_does():
    linear = _linear(6, 10, True, torch.float32)
    with pytest.raises(RuntimeError, match='dtype'):
        map_to_regions(linear, torch.randn(2, 6, 5, 4, dtype=torch.float64))


def test_autocast_goes_through_nn_linear():
    linear = _linear(6, 10, True, torch.float32)
    x = torch.randn(2, 6, 16, 16)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        out = map_to_regions(linear, x)
        back = regions_to_map(_linear(10, 6, True, torch.float32), out)
    assert out.dtype == back.dtype == torch.bfloat16


def test_hooks_on_the_linear_still_run():
    linear = _linear(6, 10, True)
    calls = []
    linear.register_forward_hook(lambda module, args, out: calls.append(out.shape))
    out = map_to_regions(linear, torch.randn(2, 6, 16, 16, dtype=torch.float64))
    assert calls == [out.shape] == [(16, 16, 2, 10)]


def _flops(fn) -> int:
    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


@pytest.mark.parametrize('bias', [True, False])
def test_flop_counter_counts_what_nn_linear_counts(bias):
    """The benchmark's FLOPs (and a user's) come from FlopCounterMode: every product must count."""
    to_regions, to_map = _linear(6, 10, bias, torch.float32), _linear(10, 6, bias, torch.float32)
    x = torch.randn(3, 6, 16, 17, requires_grad=True)

    def step(project_in, project_out):
        return lambda: project_out(to_map, project_in(to_regions, x).tanh()).sum().backward()

    ours = _flops(step(map_to_regions, regions_to_map))
    assert ours == _flops(step(_reference_to_regions, _reference_to_map)) > 0
