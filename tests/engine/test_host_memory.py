"""keep_freed_memory: freed CPU buffers are reused instead of page-faulted in again."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from chrnn_plugin.engine import host_memory
from chrnn_plugin.engine.host_memory import KEEP_ENV_VAR

REPO_ROOT = Path(__file__).resolve().parents[2]
# A fresh 12.8 MB matrix product, as the necks' projections make, ten times over: the page
# faults it costs, with PyTorch's huge pages on as the tools have them.
PROBE = """
import resource, sys
from chrnn_plugin.engine.host_memory import keep_freed_memory
print('kept', keep_freed_memory())
import torch
a, w = torch.randn(25088, 64), torch.randn(128, 64)
for _ in range(3):
    a @ w.t()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(10):
    a @ w.t()
print('faults', (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 10)
"""


def _probe(keep: str) -> tuple[str, float]:
    env = {**os.environ, 'THP_MEM_ALLOC_ENABLE': '1', KEEP_ENV_VAR: keep, 'OMP_NUM_THREADS': '1'}
    result = subprocess.run(
        [sys.executable, '-c', PROBE], env=env, capture_output=True, text=True, cwd=REPO_ROOT
    )
    assert result.returncode == 0, result.stderr[-2000:]
    kept, faults = result.stdout.split('\n')[:2]
    return kept, float(faults.split()[1])


@pytest.mark.skipif(not sys.platform.startswith('linux'), reason='glibc malloc, on Linux')
def test_fresh_buffers_cost_no_page_faults_and_the_switch_turns_it_off():
    kept, faults = _probe('1')
    assert kept == 'kept True'
    assert faults < 10  # each product's 12.8 MB output reuses freed memory
    kept, faults = _probe('0')
    assert kept == 'kept False'
    assert faults > 100  # glibc's default: new memory for every product


def test_it_does_nothing_off_glibc_or_when_switched_off(monkeypatch):
    class Musl:  # a C library without glibc's gnu_get_libc_version
        def mallopt(self, *args):
            raise AssertionError('mallopt called on a C library that is not glibc')

    loaded = []
    monkeypatch.setattr(host_memory.ctypes, 'CDLL', lambda *args: loaded.append(args) or Musl())
    monkeypatch.setattr(host_memory.sys, 'platform', 'linux')
    assert host_memory.keep_freed_memory() is False
    assert len(loaded) == 1
    monkeypatch.setattr(host_memory.sys, 'platform', 'darwin')
    assert host_memory.keep_freed_memory() is False
    monkeypatch.setattr(host_memory.sys, 'platform', 'linux')
    monkeypatch.setenv(KEEP_ENV_VAR, '0')
    assert host_memory.keep_freed_memory() is False
    assert len(loaded) == 1  # neither loaded the C library
