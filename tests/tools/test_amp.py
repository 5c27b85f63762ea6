"""``--amp``: MMEngine's float16 AMP on CUDA, bfloat16 autocast on the CPU, in both tools."""

import argparse
import sys

import pytest
import torch
from mmengine.config import Config
from mmengine.optim import build_optim_wrapper

from chrnn_plugin.engine import amp, cli
from chrnn_plugin.engine.amp import BFloat16OptimWrapper, amp_plan

from .conftest import TOOLS
from .test_quiet_tools import known_warnings_in

PY = sys.executable
CPU_TRAIN_LINE = (
    '--amp: bfloat16 autocast on cpu (CPU autocast computes in bfloat16 only), no loss scale'
)
CPU_TEST_LINE = '--amp: bfloat16 autocast on cpu (CPU autocast computes in bfloat16 only)'


def runner_cfg(**optim_wrapper) -> Config:
    return Config(
        dict(
            optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.1), **optim_wrapper),
            test_cfg=dict(),
        )
    )


@pytest.fixture
def logged(monkeypatch) -> list[str]:
    """What apply_amp logs (MMEngine's logger writes to the stdout it saw when built)."""
    lines = []
    monkeypatch.setattr(amp, 'print_log', lambda msg, **kwargs: lines.append(msg))
    return lines


@pytest.fixture
def cuda_available(monkeypatch):
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: True)


# --- The decision -------------------------------------------------------------------------


def test_cuda_training_is_mmengines_amp(cuda_available, logged):
    cfg = runner_cfg()
    cli.apply_amp_argument(cfg, argparse.Namespace(amp=True), training=True)
    assert cfg.optim_wrapper.type == 'AmpOptimWrapper'
    assert cfg.optim_wrapper.loss_scale == 'dynamic'
    assert 'dtype' not in cfg.optim_wrapper
    assert logged == [
        "--amp: float16 autocast on cuda, dynamic loss scale (MMEngine's AmpOptimWrapper)"
    ]


def test_cuda_training_keeps_the_configs_loss_scale(cuda_available, logged):
    cfg = runner_cfg(loss_scale=512.0)
    cli.apply_amp_argument(cfg, argparse.Namespace(amp=True), training=True)
    assert cfg.optim_wrapper.loss_scale == 512.0


def test_cuda_testing_is_float16(cuda_available, logged):
    cfg = runner_cfg()
    cli.apply_amp_argument(cfg, argparse.Namespace(amp=True), training=False)
    assert cfg.test_cfg.fp16 is True
    assert 'type' not in cfg.optim_wrapper
    assert logged == ['--amp: float16 autocast on cuda']


def test_without_amp_nothing_changes(cuda_available, logged):
    cfg = runner_cfg()
    cli.apply_amp_argument(cfg, argparse.Namespace(amp=False), training=True)
    assert cfg.to_dict() == runner_cfg().to_dict()
    assert logged == []


def test_cpu_training_is_bfloat16_without_loss_scale(logged):
    cfg = runner_cfg(loss_scale='dynamic', dtype='bfloat16')
    plan = amp.apply_amp(cfg, training=True, device='cpu')
    assert (plan.dtype, plan.loss_scale) == ('bfloat16', False)
    assert cfg.optim_wrapper.type == 'mmpretrain.BFloat16OptimWrapper'
    # AmpOptimWrapper's own arguments, which OptimWrapper does not take.
    assert 'loss_scale' not in cfg.optim_wrapper and 'dtype' not in cfg.optim_wrapper
    assert logged[0].startswith(CPU_TRAIN_LINE)


def test_cpu_testing_is_the_test_loops_fp16(logged):
    cfg = runner_cfg()
    amp.apply_amp(cfg, training=False, device='cpu')
    # MMEngine's autocast picks bfloat16 on the CPU.
    assert cfg.test_cfg.fp16 is True
    assert logged == [CPU_TEST_LINE]


def test_the_cpu_is_not_asked_for_float16(logged):
    with pytest.raises(amp.AmpUnavailableError, match='computes in bfloat16 only'):
        amp.apply_amp(runner_cfg(dtype='float16'), training=True, device='cpu')


def test_a_custom_optim_wrapper_is_refused(cuda_available):
    cfg = runner_cfg(type='MyOptimWrapper')
    with pytest.raises(SystemExit, match="error: --amp .* uses 'MyOptimWrapper'"):
        cli.apply_amp_argument(cfg, argparse.Namespace(amp=True), training=True)


def test_mps_is_refused_before_anything_runs():
    with pytest.raises(amp.AmpUnavailableError, match='not supported on mps'):
        amp_plan('mps')


@pytest.mark.parametrize('device', ['cuda', 'npu', 'mlu', 'musa'])
def test_accelerators_keep_mmengines_float16(device):
    assert amp_plan(device) == amp.AmpPlan(device=device, dtype='float16', loss_scale=True)


# --- The CPU optim wrapper ----------------------------------------------------------------


def test_bfloat16_wrapper_autocasts_and_steps_in_float32():
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 2)
    wrapper = build_optim_wrapper(
        model,
        dict(
            type='mmpretrain.BFloat16OptimWrapper',
            optimizer=dict(type='SGD', lr=0.1),
            # The CPU whatever the test device (by default: MMEngine's device).
            device_type='cpu',
        ),
    )
    assert isinstance(wrapper, BFloat16OptimWrapper)
    before = model.weight.detach().clone()
    with wrapper.optim_context(model):
        assert torch.is_autocast_enabled('cpu')
        assert torch.get_autocast_dtype('cpu') == torch.bfloat16
        out = model(torch.randn(3, 4))
    assert not torch.is_autocast_enabled('cpu')
    assert out.dtype == torch.bfloat16
    wrapper.update_params(out.float().square().mean())
    assert model.weight.dtype == torch.float32
    assert not torch.equal(model.weight, before)
    assert 'loss_scaler' not in wrapper.state_dict()


# --- Both tools on the CPU, as a user runs them -------------------------------------------

CPU_ONLY = {'CUDA_VISIBLE_DEVICES': ''}


@pytest.fixture(scope='module')
def amp_trained(tiny_project):
    """One epoch of ``tools/train.py --amp`` on the CPU, whatever the test device."""
    work_dir = tiny_project.root / 'work_amp'
    result = tiny_project.run(
        [PY, TOOLS / 'train.py', tiny_project.config, '--work-dir', work_dir, '--amp']
        + ['--cfg-options', 'train_cfg.max_epochs=1'],
        env=CPU_ONLY,
    )
    return work_dir, result


@pytest.mark.slow
def test_train_amp_on_cpu_trains_in_bfloat16(amp_trained):
    work_dir, result = amp_trained
    log = result.stdout + result.stderr
    assert CPU_TRAIN_LINE in log
    # Said before the runner prints the config, so before anything runs.
    assert log.index(CPU_TRAIN_LINE) < log.index('Config:')
    assert "type='mmpretrain.BFloat16OptimWrapper'" in log
    assert 'AmpOptimizerWrapper is only available' not in log
    assert 'Epoch(train) [1][2/2]' in log
    assert (work_dir / 'epoch_1.pth').is_file()
    assert known_warnings_in(log) == []


@pytest.mark.slow
def test_test_amp_on_cpu_says_bfloat16(tiny_project, amp_trained):
    work_dir, _ = amp_trained
    result = tiny_project.run(
        [PY, TOOLS / 'test.py', tiny_project.config, work_dir / 'epoch_1.pth', '--amp']
        + ['--work-dir', tiny_project.root / 'work_amp_test'],
        env=CPU_ONLY,
    )
    log = result.stdout + result.stderr
    assert CPU_TEST_LINE in log
    assert log.index(CPU_TEST_LINE) < log.index('Config:')
    assert 'fp16=True' in log
    assert 'accuracy/top1' in log
    assert known_warnings_in(log) == []
