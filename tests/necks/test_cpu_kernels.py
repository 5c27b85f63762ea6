"""The compiled CPU kernels: their input checks and their build (parity: test_wavefront_paths)."""

import os
import subprocess
import sys
import textwrap

import pytest
import torch

from chrnn_plugin.models.necks import cpu_kernels
from chrnn_plugin.models.necks.fused_wavefront import PATH_ENV_VAR


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
