"""The prepared GPU check passes its CPU dry run and writes its summary."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
SCRIPT = REPO_ROOT / 'tools' / 'analysis_tools' / 'gpu_check.sh'


def run_script(*args) -> subprocess.CompletedProcess:
    env = {**os.environ, 'PYTHON': sys.executable, 'OMP_NUM_THREADS': '1'}
    return subprocess.run(
        ['bash', str(SCRIPT), *map(str, args)], capture_output=True, text=True, env=env
    )


@pytest.mark.slow
def test_cpu_dry_run_passes_every_step(tmp_path):
    result = run_script('--device', 'cpu', '--out', tmp_path)
    summary = (tmp_path / 'summary.md').read_text()
    assert result.returncode == 0, summary + result.stdout[-3000:]
    for name in ('environment', 'tests', 'tools_train_test', 'benchmark', 'benchmark_bf16'):
        assert f'| {name} | PASS |' in summary
    assert '| dist_train_2gpu | skipped (0 GPU(s))' in summary
    assert '### benchmark.json: batch 2, amp none, cpu' in summary
    assert '### benchmark_bf16.json: batch 2, amp bf16, cpu' in summary
    assert 'passed' in (tmp_path / 'tests.log').read_text()


@pytest.mark.parametrize(
    'args, message',
    [
        (['--device', 'tpu'], "--device must be cuda or cpu, got 'tpu'"),
        (['--bogus'], "unknown argument '--bogus'"),
    ],
)
def test_bad_arguments_are_named(args, message):
    result = run_script(*args)
    assert result.returncode == 2
    assert message in result.stderr
