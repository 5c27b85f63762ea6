"""The neck benchmark runs end to end and reports every figure it promises."""

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from chrnn_plugin.models import RegionSelfAttentionNeck, ReNetNeck
from chrnn_plugin.testing.op_counter import OP_GROWTH_LIMIT

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
        assert entry['ops_28x28'] <= OP_GROWTH_LIMIT * entry['ops_14x14']
    assert {c['target'] for c in figures['checks']} >= {f'op growth 14->28 <= {OP_GROWTH_LIMIT}'}


def test_benchmark_puts_the_peer_necks_beside_the_hrnn_necks(tmp_path):
    out = tmp_path / 'bench.json'
    command = [
        sys.executable,
        str(REPO_ROOT / 'tools' / 'analysis_tools' / 'benchmark_neck.py'),
        '--batch-size', '2', '--image-size', '64', '--hidden-channels', '16',
        '--repeats', '1', '--skip-reference', '--out', str(out),
    ]  # fmt: skip
    env = {**os.environ, 'PYTHONPATH': str(REPO_ROOT)}
    result = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    assert 'Context necks side by side' in result.stdout
    figures = json.loads(out.read_text())
    for neck in ('HSRNNeck', 'HLSTMNeck', 'RegionSelfAttentionNeck', 'ReNetNeck'):
        entry = figures[neck]
        for key in ('params', 'fwd_s', 'fwd_bwd_s', 'fwd_bwd_peak_bytes'):
            assert entry[key] > 0, (neck, key)


def _benchmark_module():
    path = REPO_ROOT / 'tools' / 'analysis_tools' / 'benchmark_neck.py'
    spec = importlib.util.spec_from_file_location('benchmark_neck', path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_flop_count_sees_attention_products_and_lstm_recurrences():
    bench_module = _benchmark_module()
    bench = bench_module.Bench(torch.device('cpu'), repeats=1, amp='none')
    n, d, side = 1, 16, 12
    tokens = side * side
    x = torch.randn(n, 8, side, side, requires_grad=True)

    attention = RegionSelfAttentionNeck(8, hidden_channels=d)
    step = bench_module.forward_backward(attention, x)
    with bench_module.countable_kernels():
        counted = bench.flops(step)
    # Q K^T and A V: two (L x d) @ (d x L)-sized products, 2 FLOPs per multiply-add;
    # backward needs two products per forward product.
    products = 3 * 2 * (2 * n * tokens * tokens * d)
    assert counted - bench.flops(step) == products

    renet = ReNetNeck(8, hidden_channels=d)
    step = bench_module.forward_backward(renet, x)
    with bench_module.countable_kernels():
        counted = bench.flops(step)
    lstm_weights = sum(
        p.numel() for name, p in renet.named_parameters() if 'lstm' in name and 'weight' in name
    )
    # Every LSTM weight is used once per region and direction (its parameter
    # count already holds both directions): 2 FLOPs forward, 4 backward.
    assert counted >= 0.9 * 6 * n * tokens * lstm_weights
