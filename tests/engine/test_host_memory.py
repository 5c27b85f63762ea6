"""keep_freed_memory: freed CPU buffers are reused instead of page-faulted in again."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

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
