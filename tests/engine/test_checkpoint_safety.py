"""Loading a checkpoint changes nothing outside the returned object, from every source.

Hostile files are built here: a ``HistoryBuffer`` whose pickled statistics
methods map ``'mean'`` to another allow-listed callable (MMEngine's
``__setstate__`` would install it for the whole process), and pickles that call
``os.system`` to create a marker file. HTTP sources are served for real from
127.0.0.1; PAVI and S3 need services we do not have, so their byte fetch is
replaced and the policy applied to the bytes is checked.
"""

import functools
import http.server
import io
import json
import os
import pickle
import sys
import threading
import types
from contextlib import contextmanager
from unittest import mock

import numpy as np
import pytest
import torch
from mmengine.logging import HistoryBuffer, MessageHub
from mmengine.model import BaseModule
from mmengine.runner import checkpoint as mmengine_checkpoint
from mmengine.runner.checkpoint import CheckpointLoader, _load_checkpoint

import chrnn_plugin  # noqa: F401  (allow-list and scheme loaders)
from chrnn_plugin.engine import TRUST_ENV_VAR, UnsafeCheckpointError


class _Reduces:
    """Pickles as ``func(*args)``: builds checkpoints with arbitrary globals."""

    def __init__(self, func, *args) -> None:
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


def _statistics() -> dict:
    return dict(HistoryBuffer._statistics_methods)


@contextmanager
def _poisoned_statistics(**replacements):
    """Pickle buffers as if the writer's shared statistics dict had ``replacements``."""
    saved = _statistics()
    HistoryBuffer._statistics_methods.update(replacements)
    try:
        yield
    finally:
        HistoryBuffer._statistics_methods.clear()
        HistoryBuffer._statistics_methods.update(saved)


def _hub_state() -> dict:
    hub = MessageHub(f'safety-{id(object())}')
    for value in (1.0, 3.0, 5.0):
        hub.update_scalar('train/loss', value)
    return hub.state_dict()


def poisoned_checkpoint(path, tail=None, legacy=False, **replacements) -> None:
    """A checkpoint with only allow-listed globals whose buffer remaps statistics.

    ``tail`` is pickled after the buffer (e.g. an ``os.system`` call).
    """
    replacements = replacements or {'mean': HistoryBuffer.max}
    state = {'message_hub': _hub_state(), 'state_dict': {'w': torch.ones(2)}}
    if tail is not None:
        state['meta'] = tail
    with _poisoned_statistics(**replacements):
        torch.save(state, path, _use_new_zipfile_serialization=not legacy)


def _shell_touch(marker) -> _Reduces:
    return _Reduces(os.system, f'touch {marker}')


@pytest.fixture
def clean_statistics():
    """The process's statistics methods, restored after the test whatever happens."""
    HistoryBuffer()  # registers the defaults
    saved = _statistics()
    yield saved
    HistoryBuffer._statistics_methods.clear()
    HistoryBuffer._statistics_methods.update(saved)


@contextmanager
def _unpickling_spy():
    """Count calls of ``torch.load``: a refusal before unpickling makes none."""
    with mock.patch('torch.load', wraps=torch.load) as spy:
        yield spy


# -- item 1: nothing leaks into the process --------------------------------------------


@pytest.mark.parametrize('legacy', [False, True], ids=['zip', 'legacy'])
@pytest.mark.parametrize('poison', ['max', 'dtype'])
def test_poisoned_history_buffer_changes_nothing(tmp_path, clean_statistics, legacy, poison):
    path = tmp_path / 'poisoned.pth'
    poisoned_checkpoint(
        path, legacy=legacy, mean=HistoryBuffer.max if poison == 'max' else np.dtype
    )
    loaded = _load_checkpoint(str(path))
    assert _statistics() == clean_statistics
    buffer = loaded['message_hub']['log_scalars']['train/loss']
    assert type(buffer) is HistoryBuffer  # a plain buffer, not a substitute
    assert buffer.statistics('mean') == pytest.approx(3.0)
    assert buffer.statistics('mean', 2) == pytest.approx(4.0)
    assert not hasattr(buffer, 'statistics_methods')
    # it pickles under its own name, so checkpoints stay loadable without chrnn_plugin
    assert b'HistoryBuffer' in pickle.dumps(buffer) and b'chrnn' not in pickle.dumps(buffer)


@pytest.mark.parametrize('legacy', [False, True], ids=['zip', 'legacy'])
def test_poison_then_os_system_is_refused_before_unpickling(tmp_path, clean_statistics, legacy):
    marker = tmp_path / 'pwned'
    path = tmp_path / 'evil.pth'
    poisoned_checkpoint(path, tail=_shell_touch(marker), legacy=legacy)
    with _unpickling_spy() as spy, pytest.raises(UnsafeCheckpointError, match=r'\.system'):
        _load_checkpoint(str(path))
    assert spy.call_count == 0  # refused on the scan: no object was built
    assert _statistics() == clean_statistics
    assert not marker.exists()


def test_protocol_4_checkpoints_load_as_data(tmp_path, clean_statistics):
    # Protocol 4 names globals with STACK_GLOBAL and qualified names
    # (HistoryBuffer.max); the loader reads them as it reads protocol 2.
    path = tmp_path / 'protocol4.pth'
    with _poisoned_statistics(mean=HistoryBuffer.max):
        torch.save({'hub': _hub_state()}, path, pickle_protocol=4)
    loaded = _load_checkpoint(str(path))
    assert loaded['hub']['log_scalars']['train/loss'].statistics('mean') == pytest.approx(3.0)
    assert _statistics() == clean_statistics


def test_history_buffer_state_with_extra_keys_is_refused(tmp_path, clean_statistics):
    buffer = HistoryBuffer([1.0], [1])
    buffer.__dict__['statistics'] = np.dtype  # would shadow the method on the instance
    path = tmp_path / 'shadow.pth'
    torch.save({'buffer': buffer}, path)
    with pytest.raises(UnsafeCheckpointError, match="unknown: \\['statistics'\\]"):
        _load_checkpoint(str(path))
    assert _statistics() == clean_statistics


def test_builtin_numpy_dtype_cannot_be_changed_by_a_checkpoint(tmp_path):
    # Audit of the numpy entries: np.dtype('f8') is one object for the whole process;
    # a pickle that rebuilds it and BUILDs a big-endian state must leave it alone.
    class _BigEndianF8:
        def __reduce__(self):
            return np.dtype, ('f8', False, False), (3, '>', None, None, None, -1, -1, 0)

    path = tmp_path / 'dtype.pth'
    torch.save({'dtype': _BigEndianF8()}, path)
    _load_checkpoint(str(path))
    assert np.dtype('f8').byteorder == '=' and np.zeros(1).dtype.str == '<f8'


# -- item 4: incomplete files -----------------------------------------------------------


@pytest.mark.parametrize('kind', ['empty', 'truncated zip', 'truncated legacy'])
def test_incomplete_checkpoint_names_path(tmp_path, kind):
    path = tmp_path / 'epoch_3.pth'
    buffer = io.BytesIO()
    torch.save(
        {'w': torch.ones(1000)}, buffer, _use_new_zipfile_serialization=kind != 'truncated legacy'
    )
    path.write_bytes(b'' if kind == 'empty' else buffer.getvalue()[: len(buffer.getvalue()) // 2])
    with pytest.raises(EOFError, match=rf'{path} is incomplete'):
        _load_checkpoint(str(path))


# -- item 2: every scheme ---------------------------------------------------------------


def test_every_registered_scheme_loads_safely():
    # MMEngine's own prefixes, as it registers them.
    mmengine_prefixes = {
        '',
        'http://',
        'https://',
        'pavi://',
        r'(\S+\:)?s3://',
        r'(\S+\:)?petrel://',
    }
    mmengine_prefixes |= {
        'modelzoo://',
        'torchvision://',
        'open-mmlab://',
        'openmmlab://',
        'mmcls://',
    }
    assert mmengine_prefixes <= set(CheckpointLoader._schemes)
    for prefix, loader in CheckpointLoader._schemes.items():
        assert loader.__module__.startswith('chrnn_plugin.engine.'), (prefix, loader)


def test_unknown_scheme_registered_by_another_library_is_refused(monkeypatch, tmp_path):
    from chrnn_plugin.engine import register_safe_checkpoint_loader

    calls = []
    monkeypatch.setattr(CheckpointLoader, '_schemes', dict(CheckpointLoader._schemes))
    CheckpointLoader.register_scheme('hdfs://', lambda f, m=None: calls.append(f) or {})
    register_safe_checkpoint_loader()
    monkeypatch.delenv(TRUST_ENV_VAR, raising=False)
    with pytest.raises(UnsafeCheckpointError, match="prefix 'hdfs://'"):
        CheckpointLoader.load_checkpoint('hdfs://x/y.pth')
    assert calls == []
    monkeypatch.setenv(TRUST_ENV_VAR, '1')
    assert CheckpointLoader.load_checkpoint('hdfs://x/y.pth') == {}
    assert calls == ['hdfs://x/y.pth']


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def served(tmp_path, monkeypatch):
    """A real HTTP server on 127.0.0.1 serving tmp_path/www; the hub cache in tmp_path."""
    root = tmp_path / 'www'
    root.mkdir()
    monkeypatch.setenv('TORCH_HOME', str(tmp_path / 'torch_home'))
    monkeypatch.delenv(TRUST_ENV_VAR, raising=False)
    server = http.server.ThreadingHTTPServer(
        ('127.0.0.1', 0), functools.partial(_QuietHandler, directory=str(root))
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield root, f'http://127.0.0.1:{server.server_address[1]}'
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=30)


def _serve_files(root, marker) -> None:
    weights = {'fc.weight': torch.full((2, 2), 7.0), 'fc.bias': torch.zeros(2)}
    torch.save({'state_dict': weights}, root / 'good.pth')
    torch.save({'state_dict': {}, 'meta': _shell_touch(marker)}, root / 'evil.pth')
    poisoned_checkpoint(root / 'poisoned.pth')


def test_http_checkpoints_go_through_the_policy(served, tmp_path, clean_statistics, monkeypatch):
    root, url = served
    marker = tmp_path / 'pwned'
    _serve_files(root, marker)
    good = CheckpointLoader.load_checkpoint(f'{url}/good.pth')
    assert torch.equal(good['state_dict']['fc.weight'], torch.full((2, 2), 7.0))
    with pytest.raises(UnsafeCheckpointError, match=rf'{url}/evil.pth .*\.system.*{TRUST_ENV_VAR}'):
        CheckpointLoader.load_checkpoint(f'{url}/evil.pth')
    assert not marker.exists()
    CheckpointLoader.load_checkpoint(f'{url}/poisoned.pth')
    assert _statistics() == clean_statistics
    # the same opt-in as for local files
    monkeypatch.setenv(TRUST_ENV_VAR, '1')
    assert 'meta' in CheckpointLoader.load_checkpoint(f'{url}/evil.pth')
    assert marker.exists()


class _TinyNet(BaseModule):
    def __init__(self, init_cfg=None) -> None:
        super().__init__(init_cfg)
        self.fc = torch.nn.Linear(2, 2)


def test_pretrained_init_cfg_from_url(served, tmp_path):
    root, url = served
    marker = tmp_path / 'pwned'
    _serve_files(root, marker)
    net = _TinyNet(init_cfg=dict(type='Pretrained', checkpoint=f'{url}/good.pth'))
    net.init_weights()
    assert torch.equal(net.fc.weight.detach(), torch.full((2, 2), 7.0))
    evil = _TinyNet(init_cfg=dict(type='Pretrained', checkpoint=f'{url}/evil.pth'))
    with pytest.raises(UnsafeCheckpointError):
        evil.init_weights()
    assert not marker.exists()


def test_runner_load_from_url(served, tmp_path):
    from mmengine.model import BaseModel
    from mmengine.runner import Runner

    class _Model(BaseModel):
        def __init__(self) -> None:
            super().__init__()
            self.fc = torch.nn.Linear(2, 2)

        def forward(self, *args, **kwargs):
            return {}

    root, url = served
    marker = tmp_path / 'pwned'
    _serve_files(root, marker)
    for name in ('good', 'evil'):
        runner = Runner(
            model=_Model(), work_dir=str(tmp_path / f'work_{name}'), load_from=f'{url}/{name}.pth'
        )
        if name == 'good':
            runner.load_or_resume()
            assert torch.equal(runner.model.fc.weight.detach(), torch.full((2, 2), 7.0))
        else:
            with pytest.raises(UnsafeCheckpointError):
                runner.load_or_resume()
    assert not marker.exists()


def test_model_zoo_names_resolve_to_the_safe_http_loader(served, tmp_path, monkeypatch):
    root, url = served
    marker = tmp_path / 'pwned'
    _serve_files(root, marker)
    # open-mmlab:// reads extra names from $MMENGINE_HOME/open_mmlab.json
    home = tmp_path / 'mmengine_home'
    home.mkdir()
    (home / 'open_mmlab.json').write_text(json.dumps({'evil_net': f'{url}/evil.pth'}))
    monkeypatch.setenv('MMENGINE_HOME', str(home))
    # the torchvision and mmcls tables ship with the packages: point a name at the server
    monkeypatch.setattr(
        mmengine_checkpoint, 'get_torchvision_models', lambda: {'evil_net': f'{url}/evil.pth'}
    )
    monkeypatch.setattr(
        mmengine_checkpoint, 'get_mmcls_models', lambda: {'evil_net': f'{url}/evil.pth'}
    )
    for prefix in ('open-mmlab://', 'openmmlab://', 'torchvision://', 'modelzoo://', 'mmcls://'):
        with pytest.raises(UnsafeCheckpointError, match='evil.pth'):
            CheckpointLoader.load_checkpoint(f'{prefix}evil_net')
    assert not marker.exists()


def test_object_store_bytes_go_through_the_policy(tmp_path, monkeypatch, clean_statistics):
    """s3:// and petrel://: the backend's get() is faked; the bytes are hostile."""
    marker = tmp_path / 'pwned'
    evil, poisoned = io.BytesIO(), tmp_path / 'poisoned.pth'
    torch.save({'meta': _shell_touch(marker)}, evil)
    poisoned_checkpoint(poisoned)
    blobs = {'s3://bucket/evil.pth': evil.getvalue(), 'petrel://b/p.pth': poisoned.read_bytes()}
    backend = types.SimpleNamespace(get=blobs.__getitem__)
    monkeypatch.setattr(mmengine_checkpoint, 'get_file_backend', lambda *a, **k: backend)
    ours = sys.modules.get('chrnn_plugin.engine.checkpoint_schemes')
    if ours is not None:
        monkeypatch.setattr(ours, 'get_file_backend', lambda *a, **k: backend)
    monkeypatch.delenv(TRUST_ENV_VAR, raising=False)
    with pytest.raises(UnsafeCheckpointError, match=rf's3://bucket/evil.pth.*{TRUST_ENV_VAR}'):
        CheckpointLoader.load_checkpoint('s3://bucket/evil.pth')
    CheckpointLoader.load_checkpoint('petrel://b/p.pth')
    assert _statistics() == clean_statistics
    assert not marker.exists()


def test_pavi_download_goes_through_the_policy(tmp_path, monkeypatch):
    """pavi://: the PAVI client is faked; it 'downloads' a hostile file."""
    marker = tmp_path / 'pwned'
    evil = tmp_path / 'evil.pth'
    torch.save({'meta': _shell_touch(marker)}, evil)

    class _Model:
        name = 'evil.pth'

        def download(self, path) -> None:
            with open(path, 'wb') as f:
                f.write(evil.read_bytes())

    modelcloud = types.SimpleNamespace(get=lambda path: _Model())
    monkeypatch.setitem(sys.modules, 'pavi', types.SimpleNamespace(modelcloud=modelcloud))
    monkeypatch.delenv(TRUST_ENV_VAR, raising=False)
    with pytest.raises(UnsafeCheckpointError, match=rf'pavi://proj/evil.*{TRUST_ENV_VAR}'):
        CheckpointLoader.load_checkpoint('pavi://proj/evil')
    assert not marker.exists()


def test_plain_history_buffer_allow_listed_elsewhere_is_replaced(tmp_path, clean_statistics):
    """Another library allow-listing HistoryBuffer itself must not reopen the leak."""
    path = tmp_path / 'poisoned.pth'
    poisoned_checkpoint(path)
    torch.serialization.add_safe_globals([HistoryBuffer])
    try:
        loaded = _load_checkpoint(str(path))
    finally:
        entries = torch.serialization.get_safe_globals()
        if HistoryBuffer in entries:
            torch.serialization.clear_safe_globals()
            torch.serialization.add_safe_globals([e for e in entries if e is not HistoryBuffer])
    assert _statistics() == clean_statistics
    assert loaded['message_hub']['log_scalars']['train/loss'].statistics('mean') == 3.0
