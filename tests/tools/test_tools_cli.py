"""Run each tool as a subprocess, as a user does, on a tiny generated project."""

import os
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

# Every test here runs the tools end to end, minutes in all.
pytestmark = pytest.mark.slow

PY = sys.executable
TOOLS = Path(__file__).resolve().parents[2] / 'tools'


def _state_dict(path) -> dict:
    from chrnn_plugin.engine import load_checkpoint_safely

    return load_checkpoint_safely(path, map_location='cpu')['state_dict']


@pytest.fixture(scope='module')
def trained(tiny_project):
    """Two epochs of training; also the uninterrupted reference for the resume test."""
    work_dir = tiny_project.root / 'work_train'
    result = tiny_project.run([PY, TOOLS / 'train.py', tiny_project.config, '--work-dir', work_dir])
    return work_dir, result


def test_train_two_epochs(trained):
    work_dir, result = trained
    assert (work_dir / 'epoch_1.pth').is_file()
    assert (work_dir / 'epoch_2.pth').is_file()
    assert (work_dir / 'last_checkpoint').read_text().strip() == str(work_dir / 'epoch_2.pth')
    assert not list(work_dir.glob('*.partial'))
    log = result.stdout + result.stderr
    # Breakage 4: num_workers=0 with the tools' default persistent_workers=True.
    assert 'persistent_workers is set to False' in log
    assert 'Using AtomicCheckpointHook' in log
    assert 'Epoch(train) [2]' in log


def test_test_from_checkpoint(tiny_project, trained):
    work_dir, _ = trained
    out = tiny_project.root / 'results.pkl'
    result = tiny_project.run(
        [PY, TOOLS / 'test.py', tiny_project.config, work_dir / 'epoch_2.pth', '--out', out]
        + ['--work-dir', tiny_project.root / 'work_test', '--tta']
    )
    assert 'accuracy/top1' in result.stdout + result.stderr
    with open(out, 'rb') as f:
        predictions = pickle.load(f)
    assert len(predictions) == 8


def test_resume_after_kill_matches_uninterrupted_run(tiny_project, trained):
    reference_dir, _ = trained
    work_dir = tiny_project.root / 'work_killed'
    marker = tiny_project.root / 'paused'
    command = [PY, TOOLS / 'train.py', tiny_project.config, '--work-dir', work_dir]
    process = subprocess.Popen(
        [str(c) for c in command],
        cwd=tiny_project.root,
        env=tiny_project.env({tiny_project.pause_env_var: str(marker)}),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        # Paused inside epoch 2, after one optimizer step that no checkpoint holds.
        while not marker.exists():
            assert process.poll() is None, 'training exited before reaching epoch 2'
            time.sleep(0.2)
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    assert (work_dir / 'epoch_1.pth').is_file()
    assert not (work_dir / 'epoch_2.pth').exists()
    assert (work_dir / 'last_checkpoint').read_text().strip() == str(work_dir / 'epoch_1.pth')

    result = tiny_project.run(
        [PY, TOOLS / 'train.py', tiny_project.config, '--work-dir', work_dir, '--resume', 'auto']
    )
    assert 'resumed epoch: 1' in result.stdout + result.stderr

    resumed = _state_dict(work_dir / 'epoch_2.pth')
    reference = _state_dict(reference_dir / 'epoch_2.pth')
    assert resumed.keys() == reference.keys()
    for name, value in reference.items():
        torch.testing.assert_close(resumed[name], value, rtol=0, atol=0, msg=name)


def test_dist_train_and_test_on_cpu(tiny_project):
    work_dir = tiny_project.root / 'work_dist'
    # Two ranks on the CPU whatever the test device (gpu_check.sh covers two GPUs).
    env = {'PORT': str(tiny_project.free_port()), 'CUDA_VISIBLE_DEVICES': ''}
    result = tiny_project.run(
        ['bash', TOOLS / 'dist_train.sh', tiny_project.config, 2, '--work-dir', work_dir], env=env
    )
    log = result.stdout + result.stderr
    assert 'Distributed training: True' in log
    assert 'gloo' in log
    assert (work_dir / 'epoch_2.pth').is_file()

    env = {'PORT': str(tiny_project.free_port()), 'CUDA_VISIBLE_DEVICES': ''}
    result = tiny_project.run(
        ['bash', TOOLS / 'dist_test.sh', tiny_project.config, work_dir / 'epoch_2.pth', 2]
        + ['--work-dir', tiny_project.root / 'work_dist_test'],
        env=env,
    )
    assert 'accuracy/top1' in result.stdout + result.stderr


def test_dist_train_on_two_gpus(tiny_project, device):
    if device.type != 'cuda' or torch.cuda.device_count() < 2:
        pytest.skip('needs --device cuda and two GPUs')
    work_dir = tiny_project.root / 'work_dist_gpu'
    env = {'PORT': str(tiny_project.free_port()), 'CUDA_VISIBLE_DEVICES': '0,1'}
    result = tiny_project.run(
        ['bash', TOOLS / 'dist_train.sh', tiny_project.config, 2, '--work-dir', work_dir], env=env
    )
    log = result.stdout + result.stderr
    assert 'Distributed training: True' in log
    assert 'nccl' in log
    assert (work_dir / 'epoch_2.pth').is_file()


class _RunsShellCommand:
    """Unpickling this calls os.system: a stand-in for a malicious checkpoint."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self):
        return os.system, (self.command,)


def test_malicious_checkpoint_is_refused(tiny_project):
    marker = tiny_project.root / 'pwned'
    evil = tiny_project.root / 'evil.pth'
    torch.save({'state_dict': {}, 'meta': {'payload': _RunsShellCommand(f'touch {marker}')}}, evil)
    result = tiny_project.run(
        [PY, TOOLS / 'test.py', tiny_project.config, evil, '--work-dir', tiny_project.root / 'w'],
        check=False,
    )
    assert result.returncode != 0
    assert 'Refusing to load checkpoint' in result.stderr
    assert f'{os.system.__module__}.system' in result.stderr  # names the offending global
    assert 'CHRNN_TRUST_CHECKPOINTS' in result.stderr
    assert not marker.exists()


def test_get_flops_counts_neck_and_head(tiny_project):
    result = tiny_project.run(
        [PY, TOOLS / 'analysis_tools' / 'get_flops.py', tiny_project.config, '--shape', 32]
    )
    rows = {line.split()[0]: line.split() for line in result.stdout.splitlines() if line.strip()}
    assert rows['neck'][1] == 'HSRNNeck'
    assert rows['head'][1] == 'LinearClsHead'
    for part in ('backbone', 'neck', 'head'):
        assert rows[part][-1] != '0', f'{part} FLOPs not counted'
        assert rows[part][-2] != '0', f'{part} params not counted'
    assert 'baddbmm' in result.stdout  # the recurrence's matrix products are counted
    assert any(line.startswith('Uncounted ops') for line in result.stdout.splitlines())


def test_print_config_applies_cfg_options(tiny_project):
    result = tiny_project.run(
        [PY, TOOLS / 'misc' / 'print_config.py', tiny_project.config]
        + ['--cfg-options', 'train_cfg.max_epochs=7']
    )
    assert 'max_epochs=7' in result.stdout


def test_slurm_scripts_pass_launcher_and_arguments(tiny_project, tmp_path):
    # A fake srun records its arguments: the real one needs a Slurm cluster.
    fake_bin = tmp_path / 'bin'
    fake_bin.mkdir()
    record = tmp_path / 'srun_args'
    (fake_bin / 'srun').write_text(f'#!/usr/bin/env bash\necho "$@" > {record}\n')
    (fake_bin / 'srun').chmod(0o755)
    env = tiny_project.env({'PATH': f'{fake_bin}{os.pathsep}{os.environ["PATH"]}'})
    env.update(GPUS='4', GPUS_PER_NODE='2')

    subprocess.run(
        ['bash', str(TOOLS / 'slurm_train.sh'), 'part', 'job', 'cfg.py', 'wdir', '--amp'],
        env=env,
        check=True,
        capture_output=True,
    )
    args = record.read_text().split()
    assert args[:2] == ['-p', 'part'] and '--ntasks=4' in args and '--ntasks-per-node=2' in args
    assert args[-4:] == ['cfg.py', '--work-dir=wdir', '--launcher=slurm', '--amp']
    assert args[-5].endswith('tools/train.py')

    subprocess.run(
        ['bash', str(TOOLS / 'slurm_test.sh'), 'part', 'job', 'cfg.py', 'ck.pth', '--tta'],
        env=env,
        check=True,
        capture_output=True,
    )
    args = record.read_text().split()
    assert args[-4:] == ['cfg.py', 'ck.pth', '--launcher=slurm', '--tta']
    assert args[-5].endswith('tools/test.py')
