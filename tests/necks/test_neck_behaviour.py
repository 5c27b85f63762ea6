"""Shapes, dependency structure, modes and precision of the necks."""

import pytest
import torch

from chrnn_plugin.models import HLSTMNeck, HSRNNeck
from chrnn_plugin.models.necks.reach_init import LONGEST_TIME_SCALE, chrono_time_scales, mix_spread
from chrnn_plugin.testing.op_counter import OP_GROWTH_LIMIT, count_dispatched_ops

from .helpers import ALL_DIRECTIONS, build_neck, random_maps, two_level_float32

# Region (i', j') influences (i, j) in a single-direction sweep exactly when
# it lies on the side the sweep comes from.
SWEEP_SIDE = {
    'top_left': lambda i, j, a, b: a <= i and b <= j,
    'top_right': lambda i, j, a, b: a <= i and b >= j,
    'bottom_left': lambda i, j, a, b: a >= i and b <= j,
    'bottom_right': lambda i, j, a, b: a >= i and b >= j,
}


def _influence(neck, inputs, level: int, i: int, j: int) -> list[torch.Tensor]:
    """|d y_level[:, :, i, j] / d input| summed over batch and channels, per input."""
    outputs = neck(inputs)
    (grads) = torch.autograd.grad(outputs[level][:, :, i, j].sum(), inputs, allow_unused=True)
    return [
        torch.zeros(x.shape[2:]) if g is None else g.abs().sum(dim=(0, 1))
        for g, x in zip(grads, inputs)
    ]


@pytest.mark.parametrize('unit', ['hsrn_tanh', 'hlstm'])
@pytest.mark.parametrize('direction', ALL_DIRECTIONS)
def test_single_direction_sees_exactly_its_sweep_side(unit, direction):
    neck = build_neck(
        unit, in_channels=2, hidden_channels=3, directions=(direction,), global_pool=None
    )
    inputs = random_maps([(2, 4, 5)], requires_grad=True)
    height, width = 4, 5
    for i in range(height):
        for j in range(width):
            (influence,) = _influence(neck, inputs, 0, i, j)
            for a in range(height):
                for b in range(width):
                    expected = SWEEP_SIDE[direction](i, j, a, b)
                    assert (influence[a, b] > 0).item() == expected, (i, j, a, b)


@pytest.mark.parametrize('unit', ['hsrn_tanh', 'hlstm'])
def test_all_directions_see_the_whole_level(unit):
    neck = build_neck(unit, in_channels=2, hidden_channels=3, global_pool=None)
    inputs = random_maps([(2, 4, 5)], requires_grad=True)
    for i, j in [(0, 0), (3, 4), (1, 2), (0, 4), (3, 0)]:
        (influence,) = _influence(neck, inputs, 0, i, j)
        assert bool((influence > 0).all())


@pytest.mark.parametrize('unit', ['hsrn_tanh', 'hlstm'])
def test_cross_scale_switches_dependency_between_levels(unit):
    shapes = [(2, 4, 4), (3, 2, 2)]
    inputs = random_maps(shapes, requires_grad=True)
    kwargs = dict(in_channels=(2, 3), hidden_channels=3, global_pool=None)
    linked = build_neck(unit, cross_scale=True, **kwargs)
    finer, coarser = _influence(linked, inputs, 1, 1, 1)
    assert bool((finer > 0).any()) and bool((coarser > 0).all())

    separate = build_neck(unit, cross_scale=False, **kwargs)
    finer, coarser = _influence(separate, inputs, 1, 1, 1)
    assert bool((finer == 0).all()) and bool((coarser > 0).all())
    finer, coarser = _influence(separate, inputs, 0, 2, 2)
    assert bool((coarser == 0).all())


@pytest.mark.parametrize('cls', [HSRNNeck, HLSTMNeck])
@pytest.mark.parametrize(
    'kwargs, expected',
    [
        (dict(), [(2, 2 * 6)]),
        (dict(extra_levels=2), [(2, 4 * 6)]),
        (dict(out_levels='last'), [(2, 6)]),
        (dict(global_pool='max'), [(2, 2 * 6)]),
        (dict(global_pool=None), [(2, 6, 7, 7), (2, 6, 4, 4)]),
        (dict(global_pool=None, extra_levels=1), [(2, 6, 7, 7), (2, 6, 4, 4), (2, 6, 2, 2)]),
        (dict(global_pool=None, out_levels='last'), [(2, 6, 4, 4)]),
    ],
)
def test_output_shapes_and_width(cls, kwargs, expected):
    neck = cls(in_channels=(8, 16), hidden_channels=4, out_channels=6, **kwargs)
    outputs = neck(random_maps([(8, 7, 7), (16, 4, 4)], dtype=torch.float32))
    assert [tuple(y.shape) for y in outputs] == expected
    assert all(y.shape[1] == neck.output_width for y in outputs)


def test_out_channels_defaults_to_hidden_channels_and_single_tensor_input():
    neck = HLSTMNeck(in_channels=8, hidden_channels=5)
    (vec,) = neck(torch.randn(2, 8, 3, 4))
    assert vec.shape == (2, 5) and neck.output_width == 5


def test_one_by_one_maps_and_extra_levels_of_them():
    neck = HSRNNeck(in_channels=4, hidden_channels=3, extra_levels=2, global_pool=None)
    outputs = neck(torch.randn(2, 4, 1, 1))
    assert [tuple(y.shape) for y in outputs] == [(2, 3, 1, 1)] * 3


def _gate_biases(neck, directions: int = 4, d: int = 3):
    return neck.levels[0].input_proj.bias.view(directions, 5, d)


def _assert_orthogonal_blocks(cell, directions: int, d: int):
    for k in range(directions):
        for g in range(5):
            block = torch.cat(
                [cell.weight_h[k, :, g * d : (g + 1) * d], cell.weight_v[k, :, g * d : (g + 1) * d]]
            )
            assert torch.allclose(block.T @ block, torch.eye(d), atol=1e-5)


def test_convex_hlstm_initialisation_is_chrono_with_spread_mixes():
    neck = HLSTMNeck(in_channels=4, hidden_channels=3, directions=('top_left', 'bottom_right'))
    bias = _gate_biases(neck, directions=2).double()
    time_scale = chrono_time_scales(3)
    expected_forget = torch.log(time_scale - 1)
    for k in range(2):
        input_gate, forget, mix, output, candidate = bias[k]
        assert torch.allclose(forget, expected_forget)
        # sigma(f) = 1 - 1 / T: the unit keeps a signal over about T regions.
        assert torch.allclose(torch.sigmoid(forget), 1 - 1 / time_scale)
        assert torch.allclose(input_gate, -0.5 * expected_forget)
        assert torch.allclose(torch.sigmoid(mix), mix_spread(3), atol=1e-6)
        assert torch.equal(output, torch.zeros(3)) and torch.equal(candidate, torch.zeros(3))
    _assert_orthogonal_blocks(neck.levels[0].cell, 2, 3)


def test_sum_hlstm_initialisation_keeps_the_first_release():
    neck = HLSTMNeck(in_channels=4, hidden_channels=3, cell_merge='sum')
    bias = _gate_biases(neck)
    assert torch.equal(bias[:, 1:3], torch.ones(4, 2, 3))
    assert torch.equal(bias[:, [0, 3, 4]], torch.zeros(4, 3, 3))
    _assert_orthogonal_blocks(neck.levels[0].cell, 4, 3)


def test_spreads_cover_the_axes_and_every_slope():
    mix = mix_spread(32)
    assert bool((mix[1:] > mix[:-1]).all()) and 0 < mix[0] < 0.01 and 0.99 < mix[-1] < 1
    # Arcsine quantiles: symmetric about 1/2, denser at the axes than between.
    assert torch.allclose(mix + mix.flip(0), torch.ones(32, dtype=mix.dtype))
    assert (mix < 0.1).sum() > (abs(mix - 0.5) < 0.05).sum()
    time_scale = chrono_time_scales(32)
    assert 2 <= time_scale.min() and time_scale.max() <= LONGEST_TIME_SCALE
    # Long memories among the column-, row- and middle-slope units alike.
    for units in (slice(0, 8), slice(12, 20), slice(24, 32)):
        assert time_scale[units].max() > LONGEST_TIME_SCALE / 2


def test_hsrn_relu_initialisation_is_an_identity_split_by_axis():
    neck = HSRNNeck(in_channels=4, hidden_channels=3)
    cell = neck.levels[0].cell
    mix = mix_spread(3).float()
    assert torch.equal(cell.weight_h, torch.diag(mix).expand(4, 3, 3))
    assert torch.equal(cell.weight_v, torch.diag(1 - mix).expand(4, 3, 3))
    # Each unit keeps a weighted average of its predecessors: weights add up to 1.
    assert torch.allclose(cell.weight_h + cell.weight_v, torch.eye(3).expand(4, 3, 3))


def test_init_cfg_does_not_undo_recurrent_initialisation():
    neck = HLSTMNeck(
        in_channels=4,
        hidden_channels=3,
        init_cfg=dict(type='Constant', layer='Linear', val=0.1, bias=0.0),
    )
    neck.init_weights()
    level = neck.levels[0]
    assert torch.all(level.merge.weight == 0.1)
    forget = torch.log(chrono_time_scales(3) - 1).float()
    assert torch.allclose(_gate_biases(neck)[:, 1], forget.expand(4, 3))


def test_state_dict_round_trip():
    source = build_neck(
        'hlstm', dtype=torch.float32, in_channels=(4, 6), hidden_channels=3, extra_levels=1
    )
    target = HLSTMNeck(in_channels=(4, 6), hidden_channels=3, extra_levels=1)
    target.load_state_dict(source.state_dict())
    inputs = random_maps([(4, 5, 5), (6, 3, 3)], dtype=torch.float32)
    assert torch.equal(source(inputs)[0], target(inputs)[0])


@pytest.mark.parametrize('cls', [HSRNNeck, HLSTMNeck])
def test_eval_mode_is_deterministic_and_dropout_trains(cls):
    neck = cls(in_channels=4, hidden_channels=8, dropout=0.5)
    x = torch.randn(2, 4, 3, 3)
    neck.train()
    assert not torch.equal(neck(x)[0], neck(x)[0])
    neck.eval()
    assert torch.equal(neck(x)[0], neck(x)[0])


@pytest.mark.parametrize('cls', [HSRNNeck, HLSTMNeck])
def test_batch_of_one_in_eval_mode(cls):
    neck = cls(in_channels=(4, 6), hidden_channels=3).eval()
    (vec,) = neck((torch.randn(1, 4, 4, 4), torch.randn(1, 6, 2, 2)))
    assert vec.shape == (1, 6)


@pytest.mark.parametrize('amp_dtype', [torch.bfloat16, torch.float16], ids=['bf16', 'fp16'])
@pytest.mark.parametrize('unit', ['hsrn_relu', 'hlstm'])
def test_autocast(unit, amp_dtype, device):
    neck = build_neck(
        unit,
        dtype=torch.float32,
        weight_std=0.2,
        in_channels=(8, 16),
        hidden_channels=8,
        device=device,
    )
    inputs = random_maps(
        [(8, 6, 6), (16, 3, 3)], dtype=torch.float32, requires_grad=True, device=device
    )
    expected = neck(inputs)[0]
    with torch.autocast(device.type, dtype=amp_dtype):
        (vec,) = neck(inputs)
    assert vec.dtype == amp_dtype
    assert torch.isfinite(vec).all()
    scale = expected.abs().max()
    assert (vec.float() - expected).abs().max() <= 0.05 * scale
    vec.float().sum().backward()
    assert all(torch.isfinite(x.grad).all() for x in inputs)


@pytest.mark.parametrize('unit', ['hsrn_relu', 'hlstm'])
def test_torch_compile_traces_one_graph(unit, device):
    neck, inputs = two_level_float32(unit, device)
    # On the GPU, the compiler users get (Triton kernels); on the CPU, the
    # graph capture alone, which needs no C++ toolchain.
    backend = 'inductor' if device.type == 'cuda' else 'aot_eager'
    compiled = torch.compile(neck, backend=backend, fullgraph=True)
    (vec,) = compiled(inputs)
    vec.sum().backward()
    assert torch.allclose(vec, neck(inputs)[0], atol=1e-5)


@pytest.mark.parametrize('unit', ['hsrn_relu', 'hlstm'])
def test_dispatched_ops_grow_with_height_plus_width(unit):
    """Sequential steps are O(H + W): doubling the side about doubles the ops."""

    def forward_backward_ops(side: int) -> int:
        neck = build_neck(unit, dtype=torch.float32, in_channels=4, hidden_channels=2)
        x = torch.randn(1, 4, side, side, requires_grad=True)
        return sum(count_dispatched_ops(lambda: neck(x)[0].sum().backward()).values())

    small, large = forward_backward_ops(14), forward_backward_ops(28)
    assert large <= OP_GROWTH_LIMIT * small


def test_jit_trace_of_a_multi_level_neck():
    # FLOP analysers trace the model; sizes are tensors while tracing.
    neck = HSRNNeck(in_channels=(4, 6), hidden_channels=3).eval()
    inputs = random_maps([(4, 4, 4), (6, 2, 2)], dtype=torch.float32)
    traced = torch.jit.trace(neck, (inputs,), check_trace=False)
    assert torch.allclose(traced(inputs)[0], neck(inputs)[0], atol=1e-6)
