"""Which wavefront path runs, and the registered op under the compiler and autocast."""

import pytest
import torch

from chrnn_plugin.models import HLSTMNeck, HSRNNeck
from chrnn_plugin.models.necks import fused_wavefront
from chrnn_plugin.models.necks.fused_wavefront import PATH_ENV_VAR

from .helpers import two_level_float32

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
        monkeypatch.setenv(PATH_ENV_VAR, path)
        assert _level().sweep_path(CPU, torch.float32) == path


def test_compiled_where_it_does_not_apply_is_an_error(monkeypatch):
    monkeypatch.setenv(PATH_ENV_VAR, 'compiled')
    with pytest.raises(ValueError, match=r'compiled.*torch.bfloat16 input.*Use fused or plain'):
        _level(HSRNNeck).sweep_path(CPU, torch.bfloat16)
    with pytest.raises(ValueError, match=r'on cuda\. Use fused or plain'):
        _level(HSRNNeck).sweep_path(CUDA, torch.float32)


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
    monkeypatch.setenv(PATH_ENV_VAR, 'triton')
    with pytest.raises(
        ValueError,
        match=r"CHRNN_WAVEFRONT must be one of \('compiled', 'fused', 'plain'\), got 'triton'",
    ):
        HSRNNeck(in_channels=4, hidden_channels=3)(torch.zeros(2, 4, 3, 3))


@pytest.mark.parametrize('path', ['compiled', 'fused'])
def test_a_hooked_cell_runs_on_the_plain_path(path, monkeypatch):
    monkeypatch.setenv(PATH_ENV_VAR, path)
    neck = HSRNNeck(in_channels=4, hidden_channels=3)
    calls = []
    neck.levels[0].cell.register_forward_hook(lambda *args: calls.append(1))
    neck(torch.rand(2, 4, 3, 3))
    assert len(calls) == 2 * 3 - 1  # one call per anti-diagonal


@pytest.mark.parametrize('path', ['compiled', 'fused'])
def test_tracing_takes_the_plain_path(path, monkeypatch):
    monkeypatch.setenv(PATH_ENV_VAR, path)
    neck = HSRNNeck(in_channels=4, hidden_channels=3).eval()
    x = torch.rand(2, 4, 3, 3)
    traced = torch.jit.trace(neck, (x,), check_trace=False)
    assert 'chrnn::wavefront_scan' not in str(traced.inlined_graph)
    assert torch.allclose(traced(x)[0], neck(x)[0], atol=1e-6)


@pytest.mark.parametrize('path', ['compiled', 'fused'])
def test_export_takes_the_plain_path(path, monkeypatch):
    monkeypatch.setenv(PATH_ENV_VAR, path)
    neck = HLSTMNeck(in_channels=4, hidden_channels=3).eval()
    x = torch.rand(2, 4, 3, 3)
    program = torch.export.export(neck, (x,))
    assert 'wavefront_scan' not in str(program.graph)
    assert torch.allclose(program.module()(x)[0], neck(x)[0], atol=1e-6)


@pytest.mark.parametrize('path', ['compiled', 'fused'])
@pytest.mark.parametrize('unit', ['hsrn_relu', 'hlstm'])
def test_compiled_op_is_one_node_with_eager_parity(unit, path, monkeypatch, device):
    if path == 'compiled' and device.type != 'cpu':
        pytest.skip('the compiled kernels are CPU kernels')
    monkeypatch.setenv(PATH_ENV_VAR, path)
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
    for path in ('fused', 'plain'):
        monkeypatch.setenv(PATH_ENV_VAR, path)
        with torch.autocast(device.type, dtype=torch.bfloat16):
            outputs[path, 'bf16'] = neck(inputs)[0].float()
        outputs[path, 'fp32'] = neck(inputs)[0]
    if device.type == 'cpu':
        monkeypatch.setenv(PATH_ENV_VAR, 'compiled')
        outputs['compiled', 'fp32'] = neck(inputs)[0]
    scale = outputs['plain', 'fp32'].abs().max()
    # Every op path measured here (compiled only on the CPU) against plain.
    for path in [p for p in ('fused', 'compiled') if (p, 'fp32') in outputs]:
        assert (outputs[path, 'fp32'] - outputs['plain', 'fp32']).abs().max() <= 1e-5 * scale
    assert (outputs['fused', 'bf16'] - outputs['plain', 'fp32']).abs().max() <= 0.05 * scale
    monkeypatch.setenv(PATH_ENV_VAR, 'fused')
    half = neck.to(torch.bfloat16)(tuple(x.to(torch.bfloat16) for x in inputs))[0]
    assert half.dtype == torch.bfloat16
    assert (half.float() - outputs['plain', 'fp32']).abs().max() <= 0.05 * scale
