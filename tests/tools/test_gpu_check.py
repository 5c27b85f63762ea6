"""The prepared GPU check marks a step PASS only when its figures pass.

The fast tests run the real script with ``PYTHON`` pointing at a stand-in
that plays pytest and ``benchmark_neck.py`` (their output, exit status and
figure file as each scenario says) and hands the script's own inline Python
to the real interpreter. The slow test runs the real CPU dry run.
"""

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
SCRIPT = REPO_ROOT / 'tools' / 'analysis_tools' / 'gpu_check.sh'

FAKE_PYTHON = f"""#!{sys.executable}
import json, os, sys

args = sys.argv[1:]
if args[:1] == ['-']:  # the script's own inline Python (verdicts, summary): the real thing
    os.execv({sys.executable!r}, [{sys.executable!r}, *args])
spec = json.loads(os.environ['FAKE_SPEC'])
if args[:1] == ['-c'] and 'sys.exit(not torch.cuda.is_available())' in args[1]:
    sys.exit(0)  # the --device cuda guard
if args == ['-c', 'import torch; print(torch.cuda.device_count())']:
    print(spec.get('gpus', 0))  # the script reads the number of GPUs from stdout
    sys.exit(0)
print('fake python', *args)
if args[:1] == ['-c']:  # the environment step
    sys.exit(spec['environment'])
if args[:2] == ['-m', 'pytest']:
    line, status = spec['pytest']['tools' if 'tests/tools/test_tools_cli.py' in args else 'tests']
    print(line)
    sys.exit(status)
if args and args[0].endswith('benchmark_neck.py'):
    option = lambda name, default: args[args.index(name) + 1] if name in args else default
    device, preset = option('--device', 'cpu'), option('--preset', 'c4c5')
    amp = option('--amp', 'none')
    run = spec['benchmark'][f'{{preset}} {{amp}}']
    if run['write']:
        paths = ['fused', 'plain']
        figures = dict(
            preset=preset, paths=paths, batch_size=2, amp=amp, device=device, checks=run['checks'],
            RegionSelfAttentionNeck=dict(fwd_bwd_s=0.2, fwd_bwd_peak_bytes=2**21, fwd_bwd_flops=1e9,
                                         gemm_speed_share=0.25),
        )
        if preset == 'c4c5':
            figures['resnet50'] = dict(fwd_bwd_s=1.0, fwd_bwd_flops=1e10)
        for neck in ('HSRNNeck', 'HLSTMNeck'):
            for path in paths:
                entry = dict(fwd_bwd_s=0.1, fwd_bwd_flops=1e9, gemm_speed_share=0.5,
                             fwd_bwd_peak_bytes=2**20 if path == 'fused' else 2**21)
                if '--skip-reference' not in args:
                    entry['reference_fwd_bwd_s'] = 1.0
                if device == 'cuda':
                    entry['fwd_bwd_kernels'] = 120 if path == 'fused' else 3400
                figures[f'{{neck}} {{path}}'] = entry
        with open(args[args.index('--out') + 1], 'w') as f:
            json.dump(figures, f)
    sys.exit(run['status'])
sys.exit(f'fake python: unexpected arguments {{args}}')
"""
#: The benchmark steps of each dry run: (step name, preset and amp of its run).
CPU_BENCHMARKS = {'benchmark_demo': 'demo none', 'benchmark_demo_bf16': 'demo bf16'}
CUDA_BENCHMARKS = {
    f'benchmark_{preset}{"" if amp == "none" else "_" + amp}': f'{preset} {amp}'
    for preset in ('c4c5', 'demo')
    for amp in ('none', 'bf16', 'fp16')
}


def check(passed, target='op growth 14->28 <= 2.3'):
    return dict(neck='HSRNNeck fused', target=target, measured=2.0, passed=passed)


def good_spec() -> dict:
    """Every step runs and meets its figures."""
    bench = dict(status=0, write=True, checks=[check(True), check(None, 'time share')])
    return dict(
        environment=0,
        pytest=dict(tests=['12 passed, 1 skipped in 3.10s', 0], tools=['1 passed in 9.00s', 0]),
        benchmark={
            run: dict(bench) for run in (*CPU_BENCHMARKS.values(), *CUDA_BENCHMARKS.values())
        },
    )


def run_script(*args, python=None, spec=None) -> subprocess.CompletedProcess:
    env = {**os.environ, 'PYTHON': str(python or sys.executable), 'OMP_NUM_THREADS': '1'}
    if spec is not None:
        env['FAKE_SPEC'] = json.dumps(spec)
    return subprocess.run(
        ['bash', str(SCRIPT), *map(str, args)], capture_output=True, text=True, env=env
    )


@pytest.fixture
def fake_python(tmp_path) -> Path:
    path = tmp_path / 'fake_python'
    path.write_text(FAKE_PYTHON)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def dry_run(
    tmp_path, fake_python, spec, device='cpu'
) -> tuple[subprocess.CompletedProcess, dict[str, str]]:
    """The script with the stand-in (by default the CPU dry run); its summary rows by step."""
    out = tmp_path / 'out'
    result = run_script('--device', device, '--out', out, python=fake_python, spec=spec)
    summary = (out / 'summary.md').read_text()
    rows = {}
    for line in summary.splitlines():
        cells = [cell.strip() for cell in line.strip('|').split('|')]
        if len(cells) == 4 and cells[0] not in ('step', '---'):
            rows[cells[0]] = cells[1]
    return result, rows


def test_every_step_passes_when_its_figures_pass(tmp_path, fake_python):
    result, rows = dry_run(tmp_path, fake_python, good_spec())
    assert result.returncode == 0, rows
    assert rows == {
        'environment': 'PASS',
        'tests': 'PASS (12 passed, 1 skipped)',
        'tools_train_test': 'PASS (1 passed)',
        'benchmark_demo': 'PASS (targets: 1 met, 1 not checked)',
        'benchmark_demo_bf16': 'PASS (targets: 1 met, 1 not checked)',
        'dist_train_2gpu': 'skipped (0 GPU(s))',
    }
    out = tmp_path / 'out'
    summary = (out / 'summary.md').read_text()
    assert 'nan' not in summary
    assert '### benchmark_demo.json: preset demo, batch 2, amp none, cpu' in summary
    # One row per neck and path; no reference loop and no ResNet-50 in the dry run, and
    # no kernel count on a CPU.
    for neck in ('HSRNNeck', 'HLSTMNeck'):
        for path, peak in (('fused', '1.0'), ('plain', '2.0')):
            row = f'| {neck} | {path} | 100.0 | {peak} | not run | no ResNet-50 | 0.500 |'
            assert f'{row} not measured on CPU |' in summary, row
    assert '| RegionSelfAttentionNeck | - | 200.0 | 2.0 | - | no ResNet-50 | 0.250 | - |' in summary
    # The dry run: demo preset only, tiny and short, timing targets not checked.
    for step in CPU_BENCHMARKS:
        log = (out / f'{step}.log').read_text()
        for arg in ('--preset demo', '--batch-size 2', '--repeats 1', '--skip-time-targets'):
            assert arg in log, (step, arg)
    assert not (out / 'benchmark_c4c5.log').exists()


def test_cuda_run_times_every_path_at_both_presets_and_dtypes(tmp_path, fake_python):
    spec = good_spec()
    spec['gpus'] = 1
    result, rows = dry_run(tmp_path, fake_python, spec, device='cuda')
    assert result.returncode == 0, rows
    for step in CUDA_BENCHMARKS:
        assert rows[step] == 'PASS (targets: 1 met, 1 not checked)', step
    assert rows['dist_train_2gpu'] == 'skipped (1 GPU(s))'
    out = tmp_path / 'out'
    for step, run in CUDA_BENCHMARKS.items():
        log = (out / f'{step}.log').read_text()
        preset, amp = run.split()
        assert f'--device cuda --preset {preset}' in log and f'--amp {amp}' in log, log
        assert '--skip-time-targets' not in log
        # The reference loop only in the c4c5 fp32 run.
        assert ('--skip-reference' in log) == (step != 'benchmark_c4c5'), step
    summary = (out / 'summary.md').read_text()
    assert '### benchmark_c4c5_fp16.json: preset c4c5, batch 2, amp fp16, cuda' in summary
    section = summary.split('### benchmark_c4c5.json')[1].split('###')[0]
    # Kernel counts per path, the speed-up and the time share where measured.
    assert '| HSRNNeck | fused | 100.0 | 1.0 | 10.0x | 1.00 | 0.500 | 120 |' in section
    assert '| HLSTMNeck | plain | 100.0 | 2.0 | 10.0x | 1.00 | 0.500 | 3400 |' in section
    section = summary.split('### benchmark_demo_bf16.json')[1].split('###')[0]
    assert '| HSRNNeck | plain | 100.0 | 2.0 | not run | no ResNet-50 | 0.500 | 3400 |' in section


def test_a_benchmark_whose_figures_miss_a_target_fails_even_if_it_exits_0(tmp_path, fake_python):
    spec = good_spec()
    spec['benchmark']['demo bf16']['checks'] = [check(True), check(False, 'time share')]
    result, rows = dry_run(tmp_path, fake_python, spec)
    assert rows['benchmark_demo_bf16'] == 'FAIL (targets: 1 met, 1 failed)'
    assert rows['benchmark_demo'].startswith('PASS')
    assert result.returncode == 1


def test_a_benchmark_without_figures_from_this_run_fails(tmp_path, fake_python):
    spec = good_spec()
    spec['benchmark']['demo none']['write'] = False
    stale = tmp_path / 'out' / 'benchmark_demo.json'
    stale.parent.mkdir()
    stale.write_text(json.dumps(dict(checks=[check(True)])))  # left by an earlier run
    result, rows = dry_run(tmp_path, fake_python, spec)
    assert rows['benchmark_demo'] == 'FAIL (no figures in benchmark_demo.json: FileNotFoundError)'
    assert result.returncode == 1


def test_a_benchmark_that_exits_non_zero_fails(tmp_path, fake_python):
    spec = good_spec()
    spec['benchmark']['demo none'].update(status=1, checks=[check(False)])
    result, rows = dry_run(tmp_path, fake_python, spec)
    assert rows['benchmark_demo'] == 'FAIL (exit 1; targets: 0 met, 1 failed)'
    assert result.returncode == 1


PYTEST_CASES = [
    # The selected train/test test was skipped, so it did not run.
    ('tools', '1 skipped, 3 deselected in 0.50s', 0, 'no test passed: 1 skipped, 3 deselected'),
    ('tools', '1 passed, 1 skipped in 0.50s', 0, '1 passed, 1 skipped: a skipped test did not run'),
    ('tests', '4 deselected in 0.10s', 0, 'no test passed: 4 deselected'),
    ('tests', '1 failed, 11 passed in 3.00s', 1, 'exit 1: 1 failed, 11 passed'),
]


@pytest.mark.parametrize('step, line, status, why', PYTEST_CASES)
def test_a_pytest_step_passes_only_if_its_tests_ran_and_passed(
    tmp_path, fake_python, step, line, status, why
):
    spec = good_spec()
    spec['pytest'][step] = [line, status]
    result, rows = dry_run(tmp_path, fake_python, spec)
    assert rows['tools_train_test' if step == 'tools' else 'tests'] == f'FAIL ({why})'
    assert result.returncode == 1


def test_a_failed_environment_step_fails_the_script(tmp_path, fake_python):
    spec = good_spec()
    spec['environment'] = 3
    result, rows = dry_run(tmp_path, fake_python, spec)
    assert rows['environment'] == 'FAIL (exit 3)'
    assert result.returncode == 1


@pytest.mark.slow
def test_cpu_dry_run_passes_every_step(tmp_path):
    result = run_script('--device', 'cpu', '--out', tmp_path)
    summary = (tmp_path / 'summary.md').read_text()
    assert result.returncode == 0, summary + result.stdout[-3000:]
    for name in ('environment', 'tests', 'tools_train_test', *CPU_BENCHMARKS):
        assert f'| {name} | PASS' in summary
    assert '| dist_train_2gpu | skipped (0 GPU(s))' in summary
    assert '### benchmark_demo.json: preset demo, batch 2, amp none, cpu' in summary
    assert '### benchmark_demo_bf16.json: preset demo, batch 2, amp bf16, cpu' in summary
    assert '| HSRNNeck | fused |' in summary and '| HLSTMNeck | plain |' in summary
    assert 'not measured on CPU' in summary
    assert 'nan' not in summary
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


def test_help_prints_the_whole_header():
    result = run_script('--help')
    assert result.returncode == 0
    assert result.stdout.startswith('# One prepared check of the GPU paths')
    assert 'Exits non-zero if any step' in result.stdout
    assert 'set -uo' not in result.stdout
