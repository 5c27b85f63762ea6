"""Hostile, poisoned and incomplete checkpoints through the tools, as a user runs them."""

import functools
import http.server
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from mmengine.logging import HistoryBuffer
from mmengine.runner.checkpoint import _load_checkpoint

import chrnn_plugin  # noqa: F401  (the safe loader behind _load_checkpoint)

pytestmark = pytest.mark.slow

PY = sys.executable
TOOLS = Path(__file__).resolve().parents[2] / 'tools'


class _RunsShellCommand:
    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self):
        return os.system, (self.command,)


def _save_poisoned(checkpoint: dict, path, tail=None, **replacements) -> None:
    """Save ``checkpoint`` as a writer whose shared statistics dict was remapped would."""
    saved = dict(HistoryBuffer._statistics_methods)
    HistoryBuffer._statistics_methods.update(replacements)
    try:
        torch.save({**checkpoint, 'tail': tail} if tail is not None else checkpoint, path)
    finally:
        HistoryBuffer._statistics_methods.clear()
        HistoryBuffer._statistics_methods.update(saved)


@pytest.fixture(scope='module')
def files(one_epoch_checkpoint, tmp_path_factory):
    """One epoch of training, and poisoned, hostile and empty checkpoints made from it."""
    root = tmp_path_factory.mktemp('checkpoints')
    checkpoint = _load_checkpoint(str(one_epoch_checkpoint), map_location='cpu')
    assert checkpoint['message_hub']['log_scalars'], 'the checkpoint holds logged scalars'
    marker = root / 'pwned'
    paths = {'marker': marker, 'root': root}
    # The good file, beside the others, for the HTTP server that serves this folder.
    paths['good'] = root / 'good.pth'
    shutil.copyfile(one_epoch_checkpoint, paths['good'])
    paths['poisoned'] = root / 'poisoned.pth'
    _save_poisoned(checkpoint, paths['poisoned'], mean=np.dtype)
    paths['evil'] = root / 'evil.pth'
    _save_poisoned(checkpoint, paths['evil'], _RunsShellCommand(f'touch {marker}'), mean=np.dtype)
    paths['empty'] = root / 'epoch_9.pth'
    paths['empty'].write_bytes(b'')
    return paths


def _test(tiny_project, checkpoint, work_dir, check=True):
    return tiny_project.run(
        [PY, TOOLS / 'test.py', tiny_project.config, checkpoint, '--work-dir', work_dir],
        check=check,
    )


def _resume(tiny_project, checkpoint, work_dir, check=True):
    return tiny_project.run(
        [PY, TOOLS / 'train.py', tiny_project.config, '--work-dir', work_dir]
        + ['--resume', checkpoint],
        check=check,
    )


def _train_load_from(tiny_project, checkpoint, work_dir, check=True):
    return tiny_project.run(
        [PY, TOOLS / 'train.py', tiny_project.config, '--work-dir', work_dir]
        + ['--cfg-options', f'load_from={checkpoint}', 'train_cfg.max_epochs=1'],
        check=check,
    )


def test_poisoned_history_buffer_through_test_py(tiny_project, files):
    result = _test(tiny_project, files['poisoned'], files['root'] / 'w_test')
    assert 'accuracy/top1' in result.stdout + result.stderr


def test_poisoned_history_buffer_through_resume_keeps_new_checkpoints_clean(tiny_project, files):
    work_dir = files['root'] / 'w_resume'
    result = _resume(tiny_project, files['poisoned'], work_dir)
    assert 'resumed epoch: 1' in result.stdout + result.stderr
    # A fresh interpreter unpickles the new checkpoint the unsafe way, as MMEngine
    # alone would: the statistics methods it carries are the stock ones.
    probe = (
        'import sys, torch\n'
        'from mmengine.logging import HistoryBuffer\n'
        'torch.load(sys.argv[1], weights_only=False)\n'
        'methods = HistoryBuffer._statistics_methods\n'
        'print(sorted(k for k in methods if methods[k] is not getattr(HistoryBuffer, k, None)))\n'
    )
    out = subprocess.run(
        [PY, '-c', probe, str(work_dir / 'epoch_2.pth')],
        capture_output=True,
        text=True,
        check=True,
        env=tiny_project.env(),
    ).stdout
    assert out.strip() == '[]'


def test_poisoned_history_buffer_through_load_from(tiny_project, files):
    work_dir = files['root'] / 'w_load_from'
    result = _train_load_from(tiny_project, files['poisoned'], work_dir)
    assert 'Epoch(train) [1]' in result.stdout + result.stderr


@pytest.mark.parametrize(
    'tool', [_test, _resume, _train_load_from], ids=['test', 'resume', 'load_from']
)
def test_poison_then_os_system_is_refused(tiny_project, files, tool):
    result = tool(
        tiny_project, files['evil'], files['root'] / f'w_evil_{tool.__name__}', check=False
    )
    assert result.returncode != 0
    assert 'Refusing to load checkpoint' in result.stderr
    assert f'{os.system.__module__}.system' in result.stderr
    assert not files['marker'].exists()


@pytest.mark.parametrize('tool', [_test, _resume], ids=['test', 'resume'])
def test_empty_checkpoint_names_path_and_says_incomplete(tiny_project, files, tool):
    result = tool(
        tiny_project, files['empty'], files['root'] / f'w_empty_{tool.__name__}', check=False
    )
    assert result.returncode != 0
    assert f'Checkpoint {files["empty"]} is incomplete' in result.stderr


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


def test_checkpoint_url_goes_through_the_policy(tiny_project, files, tmp_path):
    """test.py and --resume with http:// checkpoints from a real server on 127.0.0.1."""
    server = http.server.ThreadingHTTPServer(
        ('127.0.0.1', 0), functools.partial(_QuietHandler, directory=str(files['root']))
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f'http://127.0.0.1:{server.server_address[1]}'
    env = {'TORCH_HOME': str(tmp_path / 'torch_home')}
    try:
        good = tiny_project.run(
            [PY, TOOLS / 'test.py', tiny_project.config, f'{url}/good.pth']
            + ['--work-dir', tmp_path / 'w_good'],
            env=env,
        )
        assert 'accuracy/top1' in good.stdout + good.stderr
        for args in (
            ['test.py', tiny_project.config, f'{url}/evil.pth'],
            ['train.py', tiny_project.config, '--resume', f'{url}/evil.pth'],
        ):
            result = tiny_project.run(
                [PY, TOOLS / args[0], *args[1:], '--work-dir', tmp_path / 'w_evil'],
                env=env,
                check=False,
            )
            assert result.returncode != 0
            assert f'Refusing to load checkpoint {url}/evil.pth' in result.stderr
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=30)
    assert not files['marker'].exists()
