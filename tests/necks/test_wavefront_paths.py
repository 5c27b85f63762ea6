"""Which wavefront path runs, and the registered op under the compiler and autocast."""

import pytest
import torch
from torch.profiler import ProfilerActivity

from chrnn_plugin.models import HLSTMNeck, HSRNNeck
from chrnn_plugin.models.necks import fused_wavefront
from chrnn_plugin.models.necks.fused_wavefront import PATH_ENV_VAR

from .helpers import UNITS, select_path, two_level_float32

CPU, CUDA = torch.device('cpu'), torch.device('cuda')


def _level(neck=HLSTMNeck, **kwargs):
    return neck(in_channels=4, hidden_channels=3, **kwargs).levels[0]


def test_the_default_is_the_compiled_kernels_where_they_apply(monkeypatch):
    monkeypatch.delenv(PATH_ENV_VAR, raising=False)
    for neck in (HSRNNeck, HLSTMNeck):
        level = _level(neck)
        assert level.sweep_path(CPU, torch.float32) == 'compiled'
        assert level.sweep_path(CPU, torch.float64) == 'compiled'
        # bf16 (autocast) input, and any GPU sweep: the plain path.
        assert level.sweep_path(CPU, torch.bfloat16) == 'plain'
        assert level.sweep_path(CUDA, torch.float32) == 'plain'
    # An HLSTM under autocast keeps float32 cells for bf16 gates: not the kernels' case.
    assert _level(HLSTMNeck).to(torch.bfloat16).sweep_path(CPU, torch.bfloat16) == 'plain'


def test_the_switch_picks_every_path(monkeypatch):
    for path in fused_wavefront.PATHS:
        select_path(path, monkeypatch, CPU)
        assert _level().sweep_path(CPU, torch.float32) == path


def test_compiled_where_it_does_not_apply_is_an_error(monkeypatch):
    monkeypatch.setenv(PATH_ENV_VAR, 'compiled')
    with pytest.raises(ValueError, match=r'compiled.*torch.bfloat16 input.*Use fused or plain'):
        _level(HSRNNeck).sweep_path(CPU, torch.bfloat16)
    with pytest.raises(ValueError, match=r'on cuda\. Use fused or plain'):
        _level(HSRNNeck).sweep_path(CUDA, torch.float32)


def test_triton_where_it_does_not_apply_is_an_error(monkeypatch):
    monkeypatch.setenv(PATH_ENV_VAR, 'triton')
    monkeypatch.delenv(fused_wavefront.TRITON_INTERPRET_ENV_VAR, raising=False)
    with pytest.raises(ValueError, match=r'TRITON_INTERPRET=1.*this sweep is on cpu\. Use fused'):
        _level().sweep_path(CPU, torch.float32)
    monkeypatch.setattr(fused_wavefront, 'triton_installed', lambda: False)
    with pytest.raises(ValueError, match=r'triton: Triton is not installed\. Use fused or plain'):
        _level().sweep_path(CUDA, torch.float32)


def test_the_op_names_an_unknown_path():
    pre, weight = torch.zeros(2, 2, 1, 3), torch.zeros(1, 3, 3)
    with pytest.raises(ValueError, match=r"path must be one of \('compiled', 'triton', 'fused'\)"):
        fused_wavefront.wavefront_scan(pre, weight, weight, [0], 'tanh', 'plain')


def test_without_the_kernels_the_default_is_plain_and_compiled_is_an_error(monkeypatch):
    def unavailable():
        raise fused_wavefront.cpu_kernels.KernelBuildError('no C++ compiler (test)')

    monkeypatch.setattr(fused_wavefront, '_kernels_available', lambda: False)
    monkeypatch.setattr(fused_wavefront, '_load_kernels', unavailable)
    monkeypatch.delenv(PATH_ENV_VAR, raising=False)
    assert _level().sweep_path(CPU, torch.float32) == 'plain'
    monkeypatch.setenv(PATH_ENV_VAR, 'compiled')
    with pytest.raises(RuntimeError, match=r'no C\+\+ compiler \(test\)'):
        _level().sweep_path(CPU, torch.float32)


def test_an_unknown_path_is_named(monkeypatch):
    monkeypatch.setenv(PATH_ENV_VAR, 'cuda')
    with pytest.raises(
        ValueError,
        match=r"CHRNN_WAVEFRONT must be one of \('compiled', 'triton', 'fused', 'plain'\), "
        r"got 'cuda'",
    ):
        HSRNNeck(in_channels=4, hidden_channels=3)(torch.zeros(2, 4, 3, 3))


@pytest.mark.parametrize('path', fused_wavefront.OP_PATHS)
def test_a_hooked_cell_runs_on_the_plain_path(path, monkeypatch):
    select_path(path, monkeypatch, CPU)
    neck = HSRNNeck(in_channels=4, hidden_channels=3)
    calls = []
    neck.levels[0].cell.register_forward_hook(lambda *args: calls.append(1))
    neck(torch.rand(2, 4, 3, 3))
    assert len(calls) == 2 * 3 - 1  # one call per anti-diagonal


@pytest.mark.parametrize('path', fused_wavefront.OP_PATHS)
def test_tracing_takes_the_plain_path(path, monkeypatch):
    select_path(path, monkeypatch, CPU)
    neck = HSRNNeck(in_channels=4, hidden_channels=3).eval()
    x = torch.rand(2, 4, 3, 3)
    traced = torch.jit.trace(neck, (x,), check_trace=False)
    assert 'chrnn::wavefront_scan' not in str(traced.inlined_graph)
    assert torch.allclose(traced(x)[0], neck(x)[0], atol=1e-6)


@pytest.mark.parametrize('path', fused_wavefront.OP_PATHS)
def test_export_takes_the_plain_path(path, monkeypatch):
    select_path(path, monkeypatch, CPU)
    neck = HLSTMNeck(in_channels=4, hidden_channels=3).eval()
    x = torch.rand(2, 4, 3, 3)
    program = torch.export.export(neck, (x,))
    assert 'wavefront_scan' not in str(program.graph)
    assert torch.allclose(program.module()(x)[0], neck(x)[0], atol=1e-6)


@pytest.mark.parametrize('path', fused_wavefront.OP_PATHS)
@pytest.mark.parametrize('unit', ['hsrn_relu', 'hlstm'])
def test_compiled_op_is_one_node_with_eager_parity(unit, path, monkeypatch, device):
    select_path(path, monkeypatch, device)
    neck, inputs = two_level_float32(unit, device)
    graphs = []

    def backend(graph_module, example_inputs):
        graphs.append(graph_module)
        return graph_module.forward

    compiled = torch.compile(neck, backend=backend, fullgraph=True)
    (vec,) = compiled(inputs)
    assert torch.allclose(vec, neck(inputs)[0], atol=1e-5)
    code = graphs[0].code
    assert code.count('chrnn.wavefront_scan') == 2  # one op per level
    assert 'baddbmm' not in code  # the sweep's steps are inside the op


@pytest.mark.parametrize('unit', ['hsrn_relu', 'hsrn_tanh', 'hlstm', 'hlstm_sum'])
def test_paths_agree_under_autocast_and_in_half(unit, monkeypatch, device):
    neck, inputs = two_level_float32(unit, device, weight_std=0.3)
    outputs = {}
    for path in ('triton', 'fused', 'plain'):
        select_path(path, monkeypatch, device)
        with torch.autocast(device.type, dtype=torch.bfloat16):
            outputs[path, 'bf16'] = neck(inputs)[0].float()
        outputs[path, 'fp32'] = neck(inputs)[0]
    if device.type == 'cpu':
        monkeypatch.setenv(PATH_ENV_VAR, 'compiled')
        outputs['compiled', 'fp32'] = neck(inputs)[0]
    scale = outputs['plain', 'fp32'].abs().max()
    # Every op path measured here (compiled only on the CPU) against plain.
    for path in [p for p in fused_wavefront.OP_PATHS if (p, 'fp32') in outputs]:
        assert (outputs[path, 'fp32'] - outputs['plain', 'fp32']).abs().max() <= 1e-5 * scale
    for path in ('triton', 'fused'):
        assert (outputs[path, 'bf16'] - outputs['plain', 'fp32']).abs().max() <= 0.05 * scale
    half = neck.to(torch.bfloat16)
    for path in ('triton', 'fused'):
        select_path(path, monkeypatch, device)
        out = half(tuple(x.to(torch.bfloat16) for x in inputs))[0]
        assert out.dtype == torch.bfloat16
        assert (out.float() - outputs['plain', 'fp32']).abs().max() <= 0.05 * scale


@pytest.mark.parametrize('cell', fused_wavefront.CELLS)
def test_every_forward_pairs_with_every_backward(cell, monkeypatch, device):
    # Every op path keeps the same buffers: any path's forward feeds any path's backward.
    paths = [p for p in fused_wavefront.OP_PATHS if p != 'compiled' or device.type == 'cpu']
    for path in paths:
        select_path(path, monkeypatch, device)
    k, d, batch = 4, 3, 2
    gates = 5 if cell in ('convex', 'sum') else 1
    generator = torch.Generator().manual_seed(1)
    pre = torch.randn(4, 6, batch, k * gates * d, generator=generator, dtype=torch.float64)
    weight_h, weight_v = (
        torch.randn(k, d, gates * d, generator=generator, dtype=torch.float64) * 0.4
        for _ in range(2)
    )
    pre, weight_h, weight_v = pre.to(device), weight_h.to(device), weight_v.to(device)
    directions = [0, 1, 2, 3]
    scan, scan_backward = fused_wavefront.wavefront_scan, fused_wavefront.wavefront_scan_backward
    forward = {p: scan(pre, weight_h, weight_v, directions, cell, p) for p in paths}
    for path in paths:
        for a, b in zip(forward[path], forward['fused']):
            assert torch.allclose(a, b, atol=1e-12), path
    grad_out = torch.randn_like(forward['fused'][0])
    grads = {
        (f, b): scan_backward(grad_out, weight_h, weight_v, *forward[f][1:], directions, cell, b)
        for f in paths
        for b in paths
    }
    for key, result in grads.items():
        for a, b in zip(result, grads['fused', 'fused']):
            assert torch.allclose(a, b, atol=1e-12), key


#: The 28x28 cases Triton's interpreter runs: a tail in every block, float32.
ONE_CASE_PER_NECK = [('hsrn_relu', torch.float32, 20), ('hlstm', torch.float32, 20)]


# D = 32 fills whole vectors and blocks; D = 20 leaves a tail of every width (4, 8 and
# 16 lanes, and a part-filled Triton block).
@pytest.mark.parametrize('hidden', [32, 20])
@pytest.mark.parametrize('dtype', [torch.float64, torch.float32], ids=str)
@pytest.mark.parametrize('unit', list(UNITS))
@pytest.mark.parametrize('path', ['compiled', 'triton'])
def test_kernels_match_plain_on_a_28x28_map(path, unit, dtype, hidden, monkeypatch, device):
    interpreted = path == 'triton' and device.type == 'cpu'
    if interpreted and (unit, dtype, hidden) not in ONE_CASE_PER_NECK:
        pytest.skip("Triton's interpreter takes seconds per 28x28 map: one case per neck")
    if unit == 'hlstm_sum' and dtype == torch.float32:
        pytest.skip(
            "the 'sum' cell grows exponentially over a 28x28 map: in float32 its gradients "
            'differ by 1e-2 between any two summation orders (fused and plain alike)'
        )
    cls, kwargs = UNITS[unit]
    torch.manual_seed(0)
    neck = cls(in_channels=8, hidden_channels=hidden, out_channels=8, **kwargs).to(device, dtype)
    x = torch.randn(2, 8, 28, 28, dtype=dtype, device=device)
    tolerance = 1e-10 if dtype == torch.float64 else 2e-5
    results = {}
    for name in (path, 'plain'):
        select_path(name, monkeypatch, device)
        assert neck.levels[0].sweep_path(x.device, x.dtype) == name
        results[name] = _outputs_and_grads(neck, x)
    for fast, plain in zip(results[path], results['plain']):
        assert torch.isfinite(fast).all()
        assert (fast - plain).abs().max() <= tolerance * plain.abs().max()


def _outputs_and_grads(neck, x):
    x = x.clone().requires_grad_()
    (vec,) = neck((x,))
    upstream = torch.linspace(-1, 1, vec.numel(), device=x.device).view_as(vec)
    grads = torch.autograd.grad(vec, (x, *neck.parameters()), upstream)
    return (vec, *grads)


def test_the_triton_kernels_refuse_cpu_tensors_outside_the_interpreter(monkeypatch):
    select_path('triton', monkeypatch, CPU)
    from chrnn_plugin.models.necks import triton_kernels

    monkeypatch.setattr(triton_kernels, 'INTERPRETED', False)
    with pytest.raises(RuntimeError, match=r'CPU tensors only under TRITON_INTERPRET=1'):
        HSRNNeck(in_channels=4, hidden_channels=3)(torch.zeros(2, 4, 3, 3))


# Not fused: its backward zero-fills accumulators of its own, of the buffers' shape.
@pytest.mark.parametrize('path', ['compiled', 'triton'])
def test_backward_zero_fills_no_gradient_of_the_buffers(path, monkeypatch):
    # The op's gates and state buffers are for its backward only: autograd must not
    # materialise a zero gradient of each (95 MB per step for HLSTM at 28x28, batch 32).
    select_path(path, monkeypatch, CPU)
    neck = HLSTMNeck(in_channels=4, hidden_channels=3)
    (vec,) = neck((torch.rand(2, 4, 5, 6, requires_grad=True),))
    buffers = [[4, 5 * 6 + 2 * (5 + 6 - 1), 2, 3], [4, 5 * 6, 2, 15]]  # padded states, gates
    # The autograd engine fills in C++, below dispatch modes: the profiler sees it.
    with torch.profiler.profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        vec.sum().backward()
    filled = [e.input_shapes[0] for e in prof.events() if e.name in ('aten::fill_', 'aten::zero_')]
    assert not [shape for shape in filled if shape in buffers], filled
