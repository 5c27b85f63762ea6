"""The compiled CPU kernels: parity at the sizes users run, their buffers, and their build."""

import os
import subprocess
import sys
import textwrap

import pytest
import torch

from chrnn_plugin.models.necks import cpu_kernels, fused_wavefront
from chrnn_plugin.models.necks.fused_wavefront import PATH_ENV_VAR

from .helpers import UNITS


def _outputs_and_grads(neck, x):
    x = x.clone().requires_grad_()
    (vec,) = neck((x,))
    upstream = torch.linspace(-1, 1, vec.numel()).view_as(vec)
    grads = torch.autograd.grad(vec, (x, *neck.parameters()), upstream)
    return (vec, *grads)


# D = 32 fills whole vectors; D = 20 leaves a tail of every width (4, 8 and 16 lanes).
@pytest.mark.parametrize('hidden', [32, 20])
@pytest.mark.parametrize('dtype', [torch.float64, torch.float32], ids=str)
@pytest.mark.parametrize('unit', list(UNITS))
def test_compiled_matches_plain_on_a_28x28_map(unit, dtype, hidden, monkeypatch):
    if unit == 'hlstm_sum' and dtype == torch.float32:
        pytest.skip(
            "the 'sum' cell grows exponentially over a 28x28 map: in float32 its gradients "
            'differ by 1e-2 between any two summation orders (fused and plain alike)'
        )
    cls, kwargs = UNITS[unit]
    torch.manual_seed(0)
    neck = cls(in_channels=8, hidden_channels=hidden, out_channels=8, **kwargs).to(dtype)
    x = torch.randn(2, 8, 28, 28, dtype=dtype)
    tolerance = 1e-10 if dtype == torch.float64 else 2e-5
    results = {}
    for path in ('compiled', 'plain'):
        monkeypatch.setenv(PATH_ENV_VAR, path)
        assert neck.levels[0].sweep_path(x.device, x.dtype) == path
        results[path] = _outputs_and_grads(neck, x)
    for compiled, plain in zip(results['compiled'], results['plain']):
        assert torch.isfinite(compiled).all()
        assert (compiled - plain).abs().max() <= tolerance * plain.abs().max()


@pytest.mark.parametrize('cell', fused_wavefront.CELLS)
def test_either_half_pairs_with_the_other(cell):
    # The compiled forward's buffers feed the PyTorch-operator backward, and the other way
    # round: both implementations keep the same layout.
    k, d, batch = 4, 3, 2
    gates = 5 if cell in ('convex', 'sum') else 1
    generator = torch.Generator().manual_seed(1)
    pre = torch.randn(4, 6, batch, k * gates * d, generator=generator, dtype=torch.float64)
    weight_h, weight_v = (
        torch.randn(k, d, gates * d, generator=generator, dtype=torch.float64) * 0.4
        for _ in range(2)
    )
    directions = [0, 1, 2, 3]
    scan, scan_backward = fused_wavefront.wavefront_scan, fused_wavefront.wavefront_scan_backward
    forward = {c: scan(pre, weight_h, weight_v, directions, cell, c) for c in (True, False)}
    for a, b in zip(forward[True], forward[False]):
        assert torch.allclose(a, b, atol=1e-12)
    grad_out = torch.randn_like(forward[True][0])
    grads = {
        (f, b): scan_backward(grad_out, weight_h, weight_v, *forward[f][1:], directions, cell, b)
        for f in (True, False)
        for b in (True, False)
    }
    for key, result in grads.items():
        for a, b in zip(result, grads[False, False]):
            assert torch.allclose(a, b, atol=1e-12), key


def test_the_kernels_check_their_inputs():
    cpu_kernels.load()
    pre = torch.zeros(2, 2, 1, 4)
    order = torch.arange(4).view(1, 4)
    with pytest.raises(RuntimeError, match="must have the weights' dtype"):
        torch.ops.chrnn_cpu.scan_forward(
            pre, *[torch.zeros(1, 4, 4, dtype=torch.float64)] * 2, order, 1
        )
    with pytest.raises(RuntimeError, match='unknown cell code 7'):
        torch.ops.chrnn_cpu.scan_forward(pre, torch.zeros(1, 4, 4), torch.zeros(1, 4, 4), order, 7)


def test_a_missing_compiler_is_named_and_leaves_nothing(tmp_path, monkeypatch):
    monkeypatch.setenv('CXX', 'no-such-compiler-here')
    target = tmp_path / 'kernels' / cpu_kernels.LIBRARY_NAME
    with pytest.raises(cpu_kernels.KernelBuildError, match="'no-such-compiler-here' is not on"):
        cpu_kernels.build(target)
    assert not target.exists()


def test_a_failed_compile_is_reported_and_leaves_nothing(tmp_path, monkeypatch):
    monkeypatch.setenv('CXX', 'false')  # a "compiler" that fails
    target = tmp_path / 'kernels' / cpu_kernels.LIBRARY_NAME
    with pytest.raises(cpu_kernels.KernelBuildError, match=r'failed \(false, exit 1\)'):
        cpu_kernels.build(target)
    assert sorted(p.name for p in target.parent.iterdir()) == ['build.lock']


def test_concurrent_processes_build_once_into_a_fresh_cache(tmp_path):
    # What dist_train.sh does on a new machine: every rank asks for the kernels at once.
    script = textwrap.dedent("""
        import torch
        from chrnn_plugin.models import HSRNNeck
        neck = HSRNNeck(in_channels=4, hidden_channels=8)
        assert neck.levels[0].sweep_path(torch.device('cpu'), torch.float32) == 'compiled'
        neck((torch.rand(2, 4, 5, 5),))[0].sum().backward()
    """)
    env = {**os.environ, cpu_kernels.CACHE_ENV_VAR: str(tmp_path)}
    env.pop(PATH_ENV_VAR, None)
    ranks = [
        subprocess.Popen([sys.executable, '-c', script], env=env, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    errors = [rank.communicate(timeout=600)[1] for rank in ranks]
    assert [rank.returncode for rank in ranks] == [0, 0], errors
    assert sum(e.count('compiling the CPU sweep kernels') for e in errors) == 1
    (built,) = [p for p in tmp_path.rglob('*') if p.is_file() and p.name != 'build.lock']
    assert built.name == cpu_kernels.LIBRARY_NAME


def test_an_unwritable_cache_is_a_build_error_not_a_crash(tmp_path, monkeypatch):
    blocked = tmp_path / 'file'
    blocked.write_text('not a directory')
    monkeypatch.setenv(cpu_kernels.CACHE_ENV_VAR, str(blocked / 'cache'))
    cpu_kernels.load.cache_clear()
    try:
        with pytest.raises(cpu_kernels.KernelBuildError, match=r'cannot build into .*CHRNN_KERN'):
            cpu_kernels.load()
    finally:
        cpu_kernels.load.cache_clear()
