"""The neck benchmark runs end to end, reports every figure it promises, and tells the truth.

Most tests here are unit tests of the tool's parts with a fake clock and
synthetic figures (no wall-clock thresholds); one runs the tool at tiny sizes.
"""

import argparse
import copy
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
TOOL = REPO_ROOT / 'tools' / 'analysis_tools' / 'benchmark_neck.py'
TINY_ARGS = ['--batch-size', '2', '--image-size', '64', '--hidden-channels', '16', '--repeats', '1']
DEMO_TINY_ARGS = [
    '--preset',
    'demo',
    '--batch-size',
    '1',
    '--hidden-channels',
    '4',
    '--repeats',
    '1',
]
#: What Kineto prints around a CPU profile unless KINETO_LOG_LEVEL silences it.
PROFILER_NOISE = ('profiler_start', 'profiler_stop', 'gpuGetDeviceCount', 'USDT:', 'STAGE:')
CPU = torch.device('cpu')


def run_tool(*args) -> subprocess.CompletedProcess:
    # Wide enough that no column name is wrapped.
    env = {**os.environ, 'PYTHONPATH': str(REPO_ROOT), 'COLUMNS': '250'}
    env.pop('KINETO_LOG_LEVEL', None)
    env.pop('CHRNN_WAVEFRONT', None)
    command = [sys.executable, str(TOOL), *map(str, args)]
    return subprocess.run(command, capture_output=True, text=True, env=env, check=False)


def strict_json(text: str) -> dict:
    """JSON with NaN and infinities refused, as a figure file should have none."""

    def refuse(name):
        raise ValueError(f'{name} in the figures')

    return json.loads(text, parse_constant=refuse)


@pytest.fixture(scope='module')
def bench_module():
    spec = importlib.util.spec_from_file_location('benchmark_neck', TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class FakeClock:
    """A clock that moves only when told, or by ``tick`` at every reading."""

    def __init__(self, tick: float = 0.0) -> None:
        self.now = 1000.0
        self.tick = tick

    def __call__(self) -> float:
        self.now += self.tick
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


HRNN = ('HSRNNeck', 'HLSTMNeck')
PEERS = ('RegionSelfAttentionNeck', 'ReNetNeck')
GEMM_RATE = 1e11


def set_share(entry: dict, share: float) -> None:
    """Give ``entry`` the forward+backward time at which its share of GEMM speed is ``share``."""
    entry['fwd_bwd_s'] = entry['fwd_bwd_flops'] / (share * GEMM_RATE)


def synthetic_results(
    time_ratio=1.0,
    growth=2.0,
    reference=HRNN,
    preset='c4c5',
    paths=('fused', 'plain'),
    attention_share=0.5,
    peak_mib=None,
) -> dict:
    """Figures as ``measure`` returns them. Each HRNN column (neck and path) runs at
    ``time_ratio`` time share per FLOP share of ResNet-50 (so its share of GEMM speed is
    1 / time_ratio), op growth ``growth``, the reference loop run for the necks in
    ``reference``; self-attention at ``attention_share`` of GEMM speed; peak memory
    ``peak_mib[path]`` MiB (default: fused 1, plain 2)."""
    peak_mib = peak_mib or {'fused': 1, 'plain': 2}
    c4c5 = preset == 'c4c5'
    results = {
        'preset': preset,
        'paths': list(paths),
        'levels': [[1024, 4, 4], [2048, 2, 2]] if c4c5 else [[64, 14, 14]],
        'image_size': 64 if c4c5 else None,
        'device': 'cpu',
        'batch_size': 2,
        'hidden_channels': 16,
        'out_channels': 16 if c4c5 else 64,
        'amp': 'none',
        'threads': 1,
        'repeats': 1,
        'gemm': {'size': 1024, 'flops': 2e9, 'seconds': 0.02, 'flop_per_s': GEMM_RATE},
        'gap': {'fwd_s': 0.001, 'fwd_bwd_s': 0.002, 'fwd_bwd_peak_bytes': 2**20},
    }  # fmt: skip
    if c4c5:
        results['resnet50'] = {'fwd_bwd_s': 1.0, 'fwd_bwd_flops': 100e9}
    for i, neck in enumerate(HRNN):
        flops = (i + 1) * 10e9
        for path in paths:
            entry = {
                'path': path,
                'fwd_s': 0.01 * (i + 1),
                # FLOP share (i + 1) / 10 of ResNet-50's; time share time_ratio times that.
                'fwd_bwd_s': time_ratio * flops / 100e9,
                'fwd_bwd_peak_bytes': peak_mib[path] * 2**20,
                'fwd_bwd_flops': flops,
                'params': 10**6,
                'ops_14x14': 1000,
                'ops_28x28': int(1000 * growth),
            }
            if neck in reference:
                entry.update(
                    reference_fwd_s=1.0, reference_fwd_bwd_s=3.0, reference_fwd_bwd_peak_bytes=2**20
                )
            results[f'{neck} {path}'] = entry
    for i, neck in enumerate(PEERS):
        results[neck] = {
            'fwd_s': 0.01,
            'fwd_bwd_peak_bytes': 2**20,
            'fwd_bwd_flops': (i + 3) * 10e9,
            'params': 10**6,
        }
        set_share(results[neck], attention_share if neck == 'RegionSelfAttentionNeck' else 0.1)
    return results


def verdicts(checks) -> dict:
    return {(c['neck'], c['target']): c['passed'] for c in checks}


# --help --------------------------------------------------------------------------------------


def test_help_shows_the_default_of_every_option(bench_module, monkeypatch):
    monkeypatch.setenv('COLUMNS', '1000')  # no wrapping inside a help text
    parser = bench_module.build_parser()
    options_section = parser.format_help().split('options:', 1)[1]
    # One block per option: its '  --name ...' line and the help indented below it.
    blocks = {}
    for line in options_section.splitlines():
        if line.startswith('  -'):
            name = line.split()[0].rstrip(',')
            blocks[name] = line
        elif line.strip():
            blocks[name] += ' ' + line.strip()
    options = [a for a in parser._actions if not isinstance(a, argparse._HelpAction)]
    assert len(options) >= 10
    for action in options:
        block = blocks[action.option_strings[0]]
        assert f'(default: {action.default})' in block, block


# Timing ------------------------------------------------------------------------------------------


def test_seconds_is_the_median_of_the_timed_runs_without_the_warm_up(bench_module):
    clock = FakeClock()
    bench = bench_module.Bench(CPU, repeats=3, amp='none', clock=clock)
    costs = iter([100.0, 3.0, 1.0, 2.0])  # warm-up, then the three timed runs
    assert bench.seconds(lambda: clock.advance(next(costs))) == 2.0

    bench.repeats = 1
    costs = iter([100.0, 7.0])
    assert bench.seconds(lambda: clock.advance(next(costs))) == 7.0
    # Without warm-up, the first run is the timed one.
    costs = iter([5.0])
    assert bench.seconds(lambda: clock.advance(next(costs)), 1, warm_up=False) == 5.0
    with pytest.raises(ValueError, match='at least 1'):
        bench.seconds(lambda: None, 0)


def test_each_neck_and_path_is_timed_by_its_own_runs_at_one_repeat(bench_module, monkeypatch):
    # Two necks and three paths of very different (fake) cost, one timed run each: every
    # column must get its own time, measured with $CHRNN_WAVEFRONT set to its path.
    clock = FakeClock()
    cost = {
        ('HSRNNeck', 'compiled'): 0.0625,
        ('HLSTMNeck', 'compiled'): 64.0,
        ('HSRNNeck', 'fused'): 0.25,
        ('HSRNNeck', 'plain'): 1.5,
        ('HLSTMNeck', 'fused'): 4.0,
        ('HLSTMNeck', 'plain'): 16.0,
    }
    real_build = bench_module.build_neck

    def build(neck_type, *args):
        neck = real_build(neck_type, *args)

        def hook(*_):
            clock.advance(cost[neck_type, os.environ[bench_module.PATH_ENV_VAR]])

        neck.register_forward_hook(hook)
        return neck

    monkeypatch.setattr(bench_module, 'build_neck', build)
    monkeypatch.setattr(bench_module, 'count_ops', lambda *args: 1000)
    monkeypatch.delenv(bench_module.PATH_ENV_VAR, raising=False)
    bench = bench_module.Bench(CPU, repeats=1, amp='none', clock=clock)
    monkeypatch.setattr(bench, 'peak_bytes', lambda fn: 1)
    config = dict(levels=((8, 4, 4), (16, 2, 2)), batch_size=1, hidden_channels=4, out_channels=4)
    inputs = bench_module.make_inputs(config, CPU)
    for neck_type in HRNN:
        entries = bench_module.measure_hrnn_neck(bench, neck_type, config, inputs, CPU)
        assert list(entries) == [f'{neck_type} {path}' for path in ('compiled', 'fused', 'plain')]
        for path in ('compiled', 'fused', 'plain'):
            entry = entries[f'{neck_type} {path}']
            assert entry['path'] == path
            assert entry['fwd_s'] == pytest.approx(cost[neck_type, path], rel=1e-9)
            assert entry['fwd_bwd_s'] == pytest.approx(cost[neck_type, path], rel=1e-9)
            assert 'fwd_bwd_kernels' not in entry  # CUDA only
        # The fused op's products are invisible to FlopCounterMode: both paths are
        # credited with the plain path's count, which sees the recurrence.
        flops = {entry['fwd_bwd_flops'] for entry in entries.values()}
        assert len(flops) == 1 and flops.pop() > 0
    # The variable is restored (here: unset) after the measurement.
    assert bench_module.PATH_ENV_VAR not in os.environ

    only_plain = bench_module.measure_hrnn_neck(
        bench, 'HSRNNeck', config, inputs, CPU, paths=['plain']
    )
    assert list(only_plain) == ['HSRNNeck plain']


def test_the_reference_loop_runs_once_per_neck_and_serves_every_path(bench_module, monkeypatch):
    calls = []
    real_reference = bench_module.reference_forward

    def reference(neck, x):
        calls.append(type(neck).__name__)
        return real_reference(neck, x)

    monkeypatch.setattr(bench_module, 'reference_forward', reference)
    monkeypatch.setattr(bench_module, 'count_ops', lambda *args: 1000)
    bench = bench_module.Bench(CPU, repeats=1, amp='none', clock=FakeClock(tick=0.5))
    monkeypatch.setattr(bench, 'peak_bytes', lambda fn: fn() or 7)
    config = dict(levels=((4, 2, 2),), batch_size=1, hidden_channels=2, out_channels=2)
    inputs = bench_module.make_inputs(config, CPU)
    entries = bench_module.measure_hrnn_neck(
        bench, 'HSRNNeck', config, inputs, CPU, skip_reference=False
    )
    # Forward, forward+backward and the peak-memory run: three calls for the neck, not per path.
    assert calls == ['HSRNNeck'] * 3
    fused, plain = entries['HSRNNeck fused'], entries['HSRNNeck plain']
    for key in ('reference_fwd_s', 'reference_fwd_bwd_s', 'reference_fwd_bwd_peak_bytes'):
        assert fused[key] == plain[key] > 0, key


def test_a_path_the_neck_would_not_take_is_refused_not_mislabelled(bench_module, monkeypatch):
    config = bench_module.preset_config('demo', batch_size=1, hidden_channels=4)
    neck = bench_module.build_neck('HSRNNeck', config, CPU)
    f32 = torch.float32
    with bench_module.sweep_path('plain'):
        bench_module.check_path_taken(neck, 'HSRNNeck', 'plain', CPU, f32)
        with pytest.raises(RuntimeError, match='would take'):
            bench_module.check_path_taken(neck, 'HSRNNeck', 'fused', CPU, f32)
    for path in ('fused', 'compiled'):
        with bench_module.sweep_path(path):
            bench_module.check_path_taken(neck, 'HSRNNeck', path, CPU, f32)
            # A hooked cell makes the level fall back to the plain path.
            handle = neck.levels[0].cell.register_forward_hook(lambda *_: None)
            with pytest.raises(RuntimeError, match=r"\['plain'\]"):
                bench_module.check_path_taken(neck, 'HSRNNeck', path, CPU, f32)
            handle.remove()
    # The compiled kernels do not take an autocast (bf16) sweep, nor the Triton kernels a CPU
    # one outside Triton's interpreter: errors, not columns.
    with bench_module.sweep_path('compiled'), pytest.raises(ValueError, match='Use fused or plain'):
        bench_module.check_path_taken(neck, 'HSRNNeck', 'compiled', CPU, torch.bfloat16)
    monkeypatch.delenv('TRITON_INTERPRET', raising=False)
    with bench_module.sweep_path('triton'), pytest.raises(ValueError, match='Use fused or plain'):
        bench_module.check_path_taken(neck, 'HSRNNeck', 'triton', CPU, f32)
    with pytest.raises(ValueError, match='path must be one of'):
        with bench_module.sweep_path('fast'):
            pass


def test_sweep_path_sets_the_variable_and_restores_it(bench_module, monkeypatch):
    var = bench_module.PATH_ENV_VAR
    monkeypatch.setenv(var, 'plain')
    with bench_module.sweep_path('fused'):
        assert os.environ[var] == 'fused'
    assert os.environ[var] == 'plain'
    monkeypatch.delenv(var)
    with bench_module.sweep_path('plain'):
        assert os.environ[var] == 'plain'
    assert var not in os.environ


def test_kernel_launches_are_not_measured_off_cuda(bench_module):
    bench = bench_module.Bench(CPU, repeats=1, amp='none')
    calls = []
    assert bench.kernel_launches(lambda: calls.append(1)) is None
    assert calls == []


# --paths and --preset ------------------------------------------------------------------------


def test_paths_option_defaults_to_the_paths_that_apply_and_refuses_repeats(
    bench_module, capsys, monkeypatch
):
    assert bench_module.parse_args([]).paths == ['compiled', 'fused', 'plain']
    assert bench_module.parse_args(['--amp', 'bf16']).paths == ['fused', 'plain']
    for installed, paths in ((True, ['triton', 'fused', 'plain']), (False, ['fused', 'plain'])):
        monkeypatch.setattr(bench_module, 'triton_installed', lambda installed=installed: installed)
        assert bench_module.parse_args(['--device', 'cuda']).paths == paths
        assert bench_module.parse_args(['--device', 'cuda', '--amp', 'fp16']).paths == paths
    assert bench_module.parse_args(['--paths', 'plain']).paths == ['plain']
    assert bench_module.parse_args(['--paths', 'plain', 'fused']).paths == ['plain', 'fused']
    with pytest.raises(SystemExit):
        bench_module.parse_args(['--paths', 'fused', 'fused'])
    assert '--paths names a path twice: fused fused' in capsys.readouterr().err
    with pytest.raises(SystemExit):
        bench_module.parse_args(['--paths', 'fast'])
    assert "invalid choice: 'fast'" in capsys.readouterr().err


def test_presets_give_the_shapes_they_promise(bench_module):
    c4c5 = bench_module.preset_config('c4c5')
    assert c4c5 == dict(
        levels=((1024, 14, 14), (2048, 7, 7)),
        batch_size=32,
        hidden_channels=256,
        out_channels=256,
        image_size=224,
    )
    assert bench_module.preset_config('c4c5', image_size=64)['levels'] == (
        (1024, 4, 4),
        (2048, 2, 2),
    )
    demo = bench_module.preset_config('demo')
    # configs/demo/hsrn.py: in_channels=64 on the 14x14 map, hidden 32, out 64.
    assert demo == dict(
        levels=((64, 14, 14),), batch_size=32, hidden_channels=32, out_channels=64, image_size=None
    )
    # An explicit batch size or D wins over the preset's; --image-size does not apply to demo.
    demo = bench_module.preset_config('demo', image_size=64, batch_size=3, hidden_channels=8)
    assert demo == dict(
        levels=((64, 14, 14),), batch_size=3, hidden_channels=8, out_channels=64, image_size=None
    )
    assert bench_module.preset_config('c4c5', hidden_channels=8)['out_channels'] == 8
    with pytest.raises(ValueError, match='preset must be one of'):
        bench_module.preset_config('imagenet')
    args = bench_module.parse_args(['--preset', 'demo'])
    assert (args.preset, args.batch_size, args.hidden_channels) == ('demo', None, None)


def test_demo_preset_builds_the_demo_necks_and_inputs(bench_module):
    config = bench_module.preset_config('demo', batch_size=1)
    (x,) = bench_module.make_inputs(config, CPU)
    assert x.shape == (1, 64, 14, 14) and x.requires_grad
    for neck_type in (*HRNN, *PEERS):
        neck = bench_module.build_neck(neck_type, config, CPU)
        assert neck.hidden_channels == 32, neck_type
        assert neck.out_channels == 64, neck_type
    # The demo's HSRN neck: 25 k parameters (configs/demo/renet.py's comment).
    assert bench_module.num_params('HSRNNeck', config) == pytest.approx(25_000, rel=0.02)
    with torch.no_grad():
        (y,) = bench_module.build_neck('HSRNNeck', config, CPU)((x,))
    assert y.shape == (1, 64)


# Share of GEMM speed ---------------------------------------------------------------------------


def test_gemm_baseline_is_a_counted_and_timed_float32_product(bench_module):
    bench = bench_module.Bench(CPU, repeats=1, amp='bf16', clock=FakeClock(tick=0.25))
    gemm = bench_module.measure_gemm(bench, CPU)
    size = bench_module.GEMM_SIZE
    assert size == 1024
    # FlopCounterMode's count, as for the necks: 2 FLOPs per multiply-add.
    assert gemm['flops'] == 2 * size**3 * gemm['calls_per_run']
    assert gemm['seconds'] == 0.25  # one clock tick between start and end of the timed run
    assert gemm['flop_per_s'] == gemm['flops'] / 0.25


def test_share_of_gemm_speed_is_the_necks_flop_rate_over_the_gemm_rate(bench_module):
    results = synthetic_results(time_ratio=2.0)
    bench_module.derive(results)
    columns = [key for key, _ in bench_module.context_columns(results)]
    assert columns == [
        'HSRNNeck fused', 'HSRNNeck plain', 'HLSTMNeck fused', 'HLSTMNeck plain', *PEERS
    ]  # fmt: skip
    for key in columns:
        r = results[key]
        assert r['gemm_speed_share'] == pytest.approx(
            r['fwd_bwd_flops'] / r['fwd_bwd_s'] / GEMM_RATE
        )
    assert results['HSRNNeck plain']['gemm_speed_share'] == pytest.approx(0.5)
    assert results['resnet50']['gemm_speed_share'] == pytest.approx(1.0)  # 100 GFLOP in 1 s


# Targets and exit status ------------------------------------------------------------------------


def run_main(bench_module, monkeypatch, capsys, results, *args):
    monkeypatch.setattr(bench_module, 'measure', lambda *_: copy.deepcopy(results))
    monkeypatch.setenv('COLUMNS', '250')  # no wrapping of the column names
    status = bench_module.main(['--profiler-log', *map(str, args)])
    return status, capsys.readouterr().out


#: Targets of synthetic_results() at c4c5 with both paths and the reference loop: per
#: column op growth, time share, speed-up, GEMM share and attention's (5 x 4), then
#: the peak memory of each neck's fused path (2).
ALL_TARGETS = 22


def test_a_failed_target_fails_the_run(bench_module, monkeypatch, capsys, tmp_path):
    out = tmp_path / 'bench.json'
    status, text = run_main(
        bench_module, monkeypatch, capsys, synthetic_results(time_ratio=3.0), '--out', out
    )
    assert status == 1
    assert 'FAIL  HSRNNeck fused: time share <= 1.5 x FLOP share (measured 3.00)' in text
    assert 'FAIL  HLSTMNeck plain: time share <= 1.5 x FLOP share (measured 3.00)' in text
    # Time share 3 x FLOP share at 1/3 of GEMM speed: time share, GEMM share (< 0.75) and
    # attention's (< 0.5) fail in all four columns.
    assert f'12 of {ALL_TARGETS} targets failed' in text
    checks = strict_json(out.read_text())['checks']
    assert [c['passed'] for c in checks if c['target'].startswith('time share')] == [False] * 4

    status, text = run_main(bench_module, monkeypatch, capsys, synthetic_results(time_ratio=1.0))
    assert status == 0
    assert 'FAIL' not in text
    assert text.count('PASS  ') == ALL_TARGETS


def test_paths_are_columns_and_figure_keys(bench_module, monkeypatch, capsys, tmp_path):
    out = tmp_path / 'bench.json'
    status, text = run_main(bench_module, monkeypatch, capsys, synthetic_results(), '--out', out)
    assert status == 0
    headers = [
        [cell.strip() for cell in line.split('┃') if cell.strip()]
        for line in text.splitlines()
        if '┃' in line and 'measure' in line
    ]
    assert headers == [
        ['measure', 'HSRNNeck fused', 'HSRNNeck plain', 'HLSTMNeck fused', 'HLSTMNeck plain'],
        ['measure', 'GAP', 'HSRN fused', 'HSRN plain', 'HLSTM fused', 'HLSTM plain']
        + ['Attention', 'ReNet'],
    ]
    figures = strict_json(out.read_text())
    assert figures['paths'] == ['fused', 'plain']
    for neck in HRNN:
        assert figures[f'{neck} fused']['path'] == 'fused'
        assert figures[f'{neck} plain']['path'] == 'plain'
        assert neck not in figures
    necks = {c['neck'] for c in figures['checks']}
    assert necks == {f'{n} {p}' for n in HRNN for p in ('fused', 'plain')}

    one = synthetic_results(paths=('plain',))
    status, text = run_main(bench_module, monkeypatch, capsys, one, '--out', out)
    assert status == 0
    assert 'HSRNNeck plain' in text and 'HSRNNeck fused' not in text
    figures = strict_json(out.read_text())
    assert 'HSRNNeck fused' not in figures
    # With one path there is no peak memory to compare.
    assert not any('peak memory' in c['target'] for c in figures['checks'])


def test_gemm_share_targets_are_per_preset_and_per_path(bench_module):
    results = synthetic_results(preset='demo')
    set_share(results['HSRNNeck fused'], 0.5)
    set_share(results['HSRNNeck plain'], 0.3)
    checks = verdicts(bench_module.derive(results))
    assert checks[('HSRNNeck fused', 'share of GEMM speed >= 0.4 (demo)')] is True
    assert checks[('HSRNNeck plain', 'share of GEMM speed >= 0.4 (demo)')] is False

    results = synthetic_results(preset='c4c5')
    set_share(results['HSRNNeck fused'], 0.5)
    set_share(results['HLSTMNeck plain'], 0.8)
    checks = verdicts(bench_module.derive(results))
    assert checks[('HSRNNeck fused', 'share of GEMM speed >= 0.75 (c4c5)')] is False
    assert checks[('HLSTMNeck plain', 'share of GEMM speed >= 0.75 (c4c5)')] is True
    measured = {(c['neck'], c['target']): c['measured'] for c in results['checks']}
    assert measured['HSRNNeck fused', 'share of GEMM speed >= 0.75 (c4c5)'] == pytest.approx(0.5)


def test_hrnn_necks_must_reach_attentions_share_of_gemm_speed(bench_module):
    for preset in ('c4c5', 'demo'):
        results = synthetic_results(preset=preset, attention_share=0.6)
        set_share(results['HSRNNeck fused'], 0.59)
        set_share(results['HLSTMNeck fused'], 0.61)
        checks = bench_module.derive(results)
        target = "share of GEMM speed >= self-attention's (0.600)"
        found = verdicts(checks)
        assert found[('HSRNNeck fused', target)] is False
        assert found[('HLSTMNeck fused', target)] is True
        assert found[('HSRNNeck plain', target)] is True  # 1.0 from synthetic_results
        measured = {(c['neck'], c['target']): c['measured'] for c in checks}
        assert measured[('HSRNNeck fused', target)] == pytest.approx(0.59)
        # A time figure: with --skip-time-targets it is reported, not checked.
        checks = bench_module.derive(results, time_targets=False)
        assert verdicts(checks)[('HSRNNeck fused', target)] is None


def test_fused_peak_memory_must_not_exceed_the_plain_paths(bench_module):
    target = "fwd+bwd peak memory / plain path's <= 1"
    results = synthetic_results(peak_mib={'fused': 3, 'plain': 2})
    found = verdicts(bench_module.derive(results, time_targets=False))
    # A memory figure, not a time: checked even with --skip-time-targets.
    assert found[('HSRNNeck fused', target)] is False
    assert found[('HLSTMNeck fused', target)] is False
    measured = [c['measured'] for c in results['checks'] if c['target'] == target]
    assert measured == [1.5, 1.5]
    results = synthetic_results(peak_mib={'fused': 2, 'plain': 2})
    found = verdicts(bench_module.derive(results))
    assert found[('HSRNNeck fused', target)] is True
    results = synthetic_results(peak_mib={'fused': 1, 'plain': 2})
    results['HLSTMNeck fused']['fwd_bwd_peak_bytes'] += 2**21
    found = verdicts(bench_module.derive(results))
    assert found[('HSRNNeck fused', target)] is True
    assert found[('HLSTMNeck fused', target)] is False


def test_demo_preset_leaves_out_resnet50_and_its_target(bench_module, capsys):
    results = synthetic_results(preset='demo')
    checks = bench_module.derive(results)
    assert not any('time share' in c['target'] for c in checks)
    assert 'time_share_over_flop_share' not in results['HSRNNeck fused']
    console = bench_module.Console(width=250)
    bench_module.report(console, results)
    bench_module.report_context_necks(console, results)
    text = capsys.readouterr().out
    assert 'ResNet-50 not measured (--preset demo)' in text
    assert 'the demo size (64x14x14, no ResNet-50)' in text
    assert '/ ResNet-50' not in text and 'time share / FLOP share' not in text
    assert 'nan' not in text


def test_skipped_time_targets_say_not_checked_and_counts_are_still_checked(
    bench_module, monkeypatch, capsys
):
    slow = synthetic_results(time_ratio=3.0)
    status, text = run_main(bench_module, monkeypatch, capsys, slow, '--skip-time-targets')
    assert status == 0
    assert 'not checked  HSRNNeck fused: time share <= 1.5 x FLOP share (measured 3.00)' in text
    assert (
        'not checked  HLSTMNeck plain: share of GEMM speed >= 0.75 (c4c5) (measured 0.33)' in text
    )
    assert 'FAIL' not in text

    too_many_ops = synthetic_results(growth=4.0)
    status, text = run_main(bench_module, monkeypatch, capsys, too_many_ops, '--skip-time-targets')
    assert status == 1
    assert f'FAIL  HLSTMNeck plain: op growth 14->28 <= {OP_GROWTH_LIMIT} (measured 4.00)' in text


# --skip-reference ------------------------------------------------------------------------------


def test_reference_rows_are_left_out_or_say_not_run_never_nan(bench_module, capsys):
    console = bench_module.Console(width=250)
    results = synthetic_results(reference=())
    bench_module.derive(results)
    bench_module.report(console, results)
    text = capsys.readouterr().out
    assert 'nan' not in text
    assert 'reference' not in text
    assert not any('reference' in c['target'] for c in results['checks'])

    results = synthetic_results(reference=('HLSTMNeck',))
    bench_module.derive(results)
    bench_module.report(console, results)
    text = capsys.readouterr().out
    assert 'nan' not in text
    speedup_row = next(line for line in text.splitlines() if 'speed-up vs reference' in line)
    # HSRN not run on either path; HLSTM 3 s / 0.2 s on both.
    assert speedup_row.count('not run') == 2 and speedup_row.count('15.0x') == 2, speedup_row


# Profiler noise -------------------------------------------------------------------------------


def test_quiet_profiler_keeps_a_level_the_user_set(bench_module, monkeypatch):
    monkeypatch.setenv('KINETO_LOG_LEVEL', '0')
    bench_module.quiet_profiler()
    assert os.environ['KINETO_LOG_LEVEL'] == '0'
    monkeypatch.delenv('KINETO_LOG_LEVEL')
    bench_module.quiet_profiler()
    assert os.environ['KINETO_LOG_LEVEL'] == bench_module.KINETO_SILENT_LEVEL


# End to end --------------------------------------------------------------------------------------


def exit_status_matches_the_figures(result, figures) -> None:
    """Status 1 exactly when a target failed: the tool's exit status tells what its figures say."""
    failed = [c for c in figures['checks'] if c['passed'] is False]
    assert result.returncode == (1 if failed else 0), result.stderr[-2000:]
    for c in failed:
        assert f'FAIL  {c["neck"]}: {c["target"]}' in result.stdout


def test_tiny_demo_run_reports_every_path_and_figure_and_prints_no_noise(tmp_path):
    out = tmp_path / 'bench.json'
    result = run_tool(*DEMO_TINY_ARGS, '--skip-reference', '--skip-time-targets', '--out', out)
    figures = strict_json(out.read_text())
    exit_status_matches_the_figures(result, figures)
    # Nothing on stderr: no profiler lines (the CPU peak memory comes from the profiler).
    assert result.stderr == ''
    assert not any(noise in result.stdout for noise in PROFILER_NOISE)
    assert 'nan' not in result.stdout
    assert 'reference' not in result.stdout
    assert 'Context necks side by side' in result.stdout
    assert 'share of GEMM speed' in result.stdout
    assert 'ResNet-50 not measured (--preset demo)' in result.stdout
    assert (figures['preset'], figures['paths']) == ('demo', ['compiled', 'fused', 'plain'])
    assert (figures['levels'], figures['hidden_channels'], figures['out_channels']) == (
        [[64, 14, 14]],
        4,
        64,
    )
    assert 'resnet50' not in figures
    assert figures['gemm']['flops'] == 2 * 1024**3
    columns = [f'{n} {p}' for n in HRNN for p in ('compiled', 'fused', 'plain')]
    for key in (*columns, *PEERS):
        assert key in result.stdout, key  # a column of its own
        entry = figures[key]
        for figure in ('params', 'fwd_s', 'fwd_bwd_s', 'fwd_bwd_peak_bytes', 'gemm_speed_share'):
            assert entry[figure] > 0, (key, figure)
    found = verdicts(figures['checks'])
    for column in ('HSRNNeck fused', 'HLSTMNeck plain'):
        assert found[(column, f'op growth 14->28 <= {OP_GROWTH_LIMIT}')] in (True, False)
        assert found[(column, 'share of GEMM speed >= 0.4 (demo)')] is None
    peak = [c for c in figures['checks'] if 'peak memory' in c['target']]
    assert [c['neck'] for c in peak] == [f'{n} {p}' for p in ('compiled', 'fused') for n in HRNN]
    for c in peak:  # checked (not a time), and judged on the two paths' figures
        neck = c['neck'].split()[0]
        op = figures[c['neck']]['fwd_bwd_peak_bytes']
        plain = figures[f'{neck} plain']['fwd_bwd_peak_bytes']
        assert c['passed'] is (op <= plain)


@pytest.mark.slow
def test_benchmark_reports_all_figures(tmp_path, device):
    out = tmp_path / 'bench.json'
    result = run_tool(*TINY_ARGS, '--skip-time-targets', '--out', out, '--device', device)
    figures = strict_json(out.read_text())
    exit_status_matches_the_figures(result, figures)
    assert 'time share / FLOP share' in result.stdout
    assert 'nan' not in result.stdout
    assert figures['levels'] == [[1024, 4, 4], [2048, 2, 2]]
    # The compiled kernels are CPU kernels: a GPU run measures the other two paths.
    paths = ('compiled', 'fused', 'plain') if device.type == 'cpu' else ('fused', 'plain')
    assert figures['paths'] == list(paths)
    for neck in HRNN:
        reference = {figures[f'{neck} {p}']['reference_fwd_bwd_s'] for p in paths}
        assert len(reference) == 1  # the loop is run once per neck
        for path in paths:
            entry = figures[f'{neck} {path}']
            for key in ('fwd_s', 'fwd_bwd_s', 'reference_fwd_bwd_s', 'fwd_bwd_peak_bytes'):
                assert entry[key] > 0, key
            # The FLOP counter must see the recurrence, not only the projections.
            assert entry['fwd_bwd_flops'] > 0
            assert entry['speedup_vs_reference'] > 0
            if device.type == 'cuda':
                assert entry['fwd_bwd_kernels'] > 0
            else:
                assert 'fwd_bwd_kernels' not in entry
    speedups = [c for c in figures['checks'] if 'faster than reference' in c['target']]
    assert [c['neck'] for c in speedups] == [f'{n} {p}' for n in HRNN for p in paths]


# FLOP counting ----------------------------------------------------------------------------------


def test_flop_count_sees_attention_products_and_lstm_recurrences(bench_module):
    bench = bench_module.Bench(CPU, repeats=1, amp='none')
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
