"""In-process tests of chrnn_plugin.engine: safe loading, atomic checkpoints, launch fix-ups."""

import argparse
import os
import pickle
import socket
import subprocess
import sys
from collections import Counter
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
import torch
import torch.distributed as torch_dist
from mmengine.config import Config
from mmengine.logging import HistoryBuffer, MessageHub, MMLogger
from mmengine.runner.checkpoint import _load_checkpoint

import chrnn_plugin  # noqa: F401  (registers the data-only loader)
from chrnn_plugin.engine import (
    TRUST_ENV_VAR,
    AtomicCheckpointHook,
    UnsafeCheckpointError,
    fix_persistent_workers,
    load_checkpoint_safely,
    setup_distributed,
    use_atomic_checkpoint_hook,
)


class _Reduces:
    """Pickles as ``func(*args)``: builds checkpoints with arbitrary globals."""

    def __init__(self, func, *args) -> None:
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


def _message_hub_state() -> dict:
    hub = MessageHub(f'test-{id(object())}')
    for value in (0.5, np.float64(0.25), np.float32(0.125), 3):
        hub.update_scalar('train/loss', value)
    hub.update_info('best_score', np.float64(0.75))
    hub.update_info('keep_ckpt_ids', [1, 2])
    hub.update_info('iter_count', np.int64(7))
    return hub.state_dict()


def test_mmengine_checkpoint_loads_as_data(tmp_path):
    path = tmp_path / 'ckpt.pth'
    state = {
        'meta': {'epoch': 1, 'seed': 0, 'dataset_meta': {'classes': ('a', 'b')}},
        'state_dict': {'w': torch.ones(2)},
        'message_hub': _message_hub_state(),
        'param_schedulers': [{'milestones': Counter([1])}],
    }
    torch.save(state, path)
    loaded = load_checkpoint_safely(path)
    buffer = loaded['message_hub']['log_scalars']['train/loss']
    assert type(buffer) is HistoryBuffer
    assert buffer.statistics('mean') == pytest.approx(np.mean([0.5, 0.25, 0.125, 3]))
    assert loaded['message_hub']['runtime_info']['iter_count'] == 7
    assert loaded['param_schedulers'][0]['milestones'] == Counter([1])
    # and through MMEngine's loader (resume, load_from and test use it)
    assert _load_checkpoint(str(path))['meta']['epoch'] == 1


def test_import_leaves_torch_allow_list_alone():
    # The loader resolves no global to an object, so it needs no allow-list entry; adding
    # ours would widen every torch.load(weights_only=True) in the process.
    # (torch.distributed, imported on the way, adds its own; none of them is ours.)
    code = (
        'import torch, mmengine.logging\n'
        'import chrnn_plugin\n'
        'names = [repr(g) for g in torch.serialization.get_safe_globals()]\n'
        'ours = [n for n in names if "chrnn" in n or "HistoryBuffer" in n or "getattr" in n]\n'
        'assert not ours, ours\n'
    )
    subprocess.run([sys.executable, '-c', code], check=True)


def test_getattr_is_limited_to_history_buffer_methods(tmp_path):
    path = tmp_path / 'getattr.pth'
    torch.save({'x': _Reduces(getattr, HistoryBuffer, '__init__')}, path)
    with pytest.raises(UnsafeCheckpointError, match='getattr'):
        _load_checkpoint(str(path))


def test_checkpoint_with_other_global_is_refused_and_never_runs(tmp_path):
    marker = tmp_path / 'pwned'
    path = tmp_path / 'evil.pth'
    torch.save({'state_dict': {}, 'meta': _Reduces(os.system, f'touch {marker}')}, path)
    with pytest.raises(UnsafeCheckpointError, match=rf'{os.system.__module__}\.system') as info:
        _load_checkpoint(str(path))
    assert TRUST_ENV_VAR in str(info.value)
    assert not marker.exists()


def test_trusted_legacy_checkpoint_loads_only_with_opt_in(tmp_path, monkeypatch):
    path = tmp_path / 'legacy.pth'
    torch.save({'state_dict': {}, 'meta': {'args': argparse.Namespace(lr=0.1)}}, path)
    monkeypatch.delenv(TRUST_ENV_VAR, raising=False)
    with pytest.raises(UnsafeCheckpointError, match='argparse.Namespace'):
        _load_checkpoint(str(path))
    monkeypatch.setenv(TRUST_ENV_VAR, '1')
    assert _load_checkpoint(str(path))['meta']['args'].lr == 0.1


@pytest.mark.parametrize(
    'value, named',
    [('--trust-checkpoint', '--trust-checkpoint was given'), ('1', f'{TRUST_ENV_VAR}=1 is set')],
)
def test_trust_warning_names_what_enabled_it(tmp_path, monkeypatch, value, named):
    path = tmp_path / 'legacy.pth'
    torch.save({'meta': {'args': argparse.Namespace(lr=0.1)}}, path)
    monkeypatch.setenv(TRUST_ENV_VAR, value)
    with mock.patch('chrnn_plugin.engine.safe_loading.print_log') as log:
        load_checkpoint_safely(path)
    (message,), _ = log.call_args
    assert message.startswith(named) and 'argparse.Namespace' in message


class _FakeRunner:
    """What CheckpointHook uses of a Runner; save_checkpoint can crash mid-write."""

    def __init__(self, work_dir: Path) -> None:
        self.work_dir = str(work_dir)
        self.logger = MMLogger.get_instance(f'fake-{id(self)}')
        self.message_hub = MessageHub(f'fake-{id(self)}')
        self.crash = False

    def save_checkpoint(self, out_dir, filename, *args, meta=None, **kwargs) -> None:
        data = pickle.dumps({'meta': meta, 'state_dict': {'w': torch.full((1000,), 1.0)}})
        with open(os.path.join(out_dir, filename), 'wb') as f:
            if self.crash:
                f.write(data[: len(data) // 2])
                raise RuntimeError('simulated crash while writing')
            f.write(data)


def _read(path: Path) -> dict:
    with open(path, 'rb') as f:
        return pickle.load(f)


@pytest.mark.parametrize('max_keep_ckpts', [-1, 1])
def test_crash_mid_write_leaves_last_checkpoint_complete(tmp_path, max_keep_ckpts):
    runner = _FakeRunner(tmp_path)
    hook = AtomicCheckpointHook(interval=1, max_keep_ckpts=max_keep_ckpts)
    hook.before_train(runner)
    hook._save_checkpoint_with_step(runner, 1, meta={'epoch': 1})
    last = tmp_path / 'last_checkpoint'
    assert last.read_text() == str(tmp_path / 'epoch_1.pth')

    # An epoch_2.pth from an earlier run must survive a failed save too.
    (tmp_path / 'epoch_2.pth').write_bytes(b'earlier run')
    runner.crash = True
    with pytest.raises(RuntimeError, match='simulated crash'):
        hook._save_checkpoint_with_step(runner, 2, meta={'epoch': 2})

    assert last.read_text() == str(tmp_path / 'epoch_1.pth')
    assert _read(tmp_path / 'epoch_1.pth')['meta'] == {'epoch': 1}  # complete, not deleted
    assert (tmp_path / 'epoch_2.pth').read_bytes() == b'earlier run'

    runner.crash = False
    hook._save_checkpoint_with_step(runner, 3, meta={'epoch': 3})
    assert last.read_text() == str(tmp_path / 'epoch_3.pth')
    assert _read(tmp_path / 'epoch_3.pth')['meta'] == {'epoch': 3}
    assert (tmp_path / 'epoch_1.pth').exists() == (max_keep_ckpts != 1)


def test_tools_swap_in_atomic_hook_and_fix_persistent_workers():
    cfg = Config(
        dict(
            default_hooks=dict(checkpoint=dict(type='CheckpointHook', interval=2)),
            train_dataloader=dict(num_workers=0, persistent_workers=True),
            val_dataloader=dict(num_workers=2, persistent_workers=True),
        )
    )
    assert use_atomic_checkpoint_hook(cfg)
    assert cfg.default_hooks.checkpoint == dict(type='mmpretrain.AtomicCheckpointHook', interval=2)
    assert fix_persistent_workers(cfg) == ['train_dataloader']
    assert cfg.train_dataloader.persistent_workers is False
    assert cfg.val_dataloader.persistent_workers is True


def test_setup_distributed_uses_gloo_and_no_device_ids_on_cpu(monkeypatch):
    # The CPU-only path, on a machine with a GPU as well.
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: False)
    cfg = Config(dict(launcher='none'))
    setup_distributed(cfg)
    assert 'model_wrapper_cfg' not in cfg and not torch_dist.is_initialized()

    env = dict(RANK='0', WORLD_SIZE='1', LOCAL_RANK='0', MASTER_ADDR='127.0.0.1')
    for key, value in {**env, 'MASTER_PORT': str(_free_port())}.items():
        monkeypatch.setenv(key, value)
    cfg = Config(dict(launcher='pytorch', env_cfg=dict(dist_cfg=dict(backend='nccl'))))
    try:
        setup_distributed(cfg)
        assert torch_dist.get_backend() == 'gloo'
        assert cfg.env_cfg.dist_cfg.backend == 'gloo'
        assert cfg.model_wrapper_cfg.type == 'MMDistributedDataParallel'
        assert cfg.model_wrapper_cfg.device_ids is None
        # and DDP accepts a CPU module that way
        from mmengine.model import MMDistributedDataParallel

        wrapped = MMDistributedDataParallel(torch.nn.Linear(2, 2), device_ids=None)
        assert wrapped.module.weight.device.type == 'cpu'
    finally:
        torch_dist.destroy_process_group()


def test_setup_distributed_leaves_cuda_to_mmengine(device):
    if device.type != 'cuda':
        pytest.skip('the CUDA path; run with --device cuda')
    cfg = Config(dict(launcher='pytorch', env_cfg=dict(dist_cfg=dict(backend='nccl'))))
    setup_distributed(cfg)
    assert cfg.env_cfg.dist_cfg.backend == 'nccl'
    assert 'model_wrapper_cfg' not in cfg and not torch_dist.is_initialized()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


def test_tool_help_documents_the_opt_in(capsys):
    import importlib.util

    tools = Path(__file__).resolve().parents[2] / 'tools'
    for name in ('train', 'test'):
        spec = importlib.util.spec_from_file_location(f'chrnn_tool_{name}', tools / f'{name}.py')
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        with pytest.raises(SystemExit):
            module.parse_args(['--help'])
        text = capsys.readouterr().out
        assert '--trust-checkpoint' in text and TRUST_ENV_VAR in text
