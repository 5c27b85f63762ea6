"""The neck benchmark runs end to end and reports every figure it promises."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_benchmark_reports_all_figures(tmp_path, device):
    out = tmp_path / 'bench.json'
    command = [
        sys.executable,
        str(REPO_ROOT / 'tools' / 'analysis_tools' / 'benchmark_neck.py'),
        '--batch-size', '2', '--image-size', '64', '--hidden-channels', '16',
        '--repeats', '1', '--out', str(out), '--device', str(device),
    ]  # fmt: skip
    env = {**os.environ, 'PYTHONPATH': str(REPO_ROOT)}
    result = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    assert 'time share / FLOP share' in result.stdout
    figures = json.loads(out.read_text())
    assert figures['levels'] == [[1024, 4, 4], [2048, 2, 2]]
    for neck in ('HSRNNeck', 'HLSTMNeck'):
        entry = figures[neck]
        for key in ('fwd_s', 'fwd_bwd_s', 'reference_fwd_bwd_s', 'fwd_bwd_peak_bytes'):
            assert entry[key] > 0, key
        # The FLOP counter must see the recurrence, not only the projections.
        assert entry['fwd_bwd_flops'] > 0
        assert entry['ops_28x28'] <= 2.3 * entry['ops_14x14']
    assert {c['target'] for c in figures['checks']} >= {'op growth 14->28 <= 2.3'}
