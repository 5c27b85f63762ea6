"""Checkpoints from HTTP(S) URLs: bounded in time, and only complete files are cached.

A real HTTP server on 127.0.0.1 plays the hostile or broken servers: one that
stalls, one that sends less than its ``Content-Length``, one that sends no
length and cuts the file short, two URLs that end in the same file name. Every
stall in a handler is bounded, so a loader without a timeout fails instead of
hanging the test run.
"""

import hashlib
import http.server
import io
import os
import signal
import threading
import time
import uuid
from collections.abc import Callable, Iterator

import pytest
import torch
from mmengine.runner import checkpoint as mmengine_checkpoint
from mmengine.runner.checkpoint import CheckpointLoader

import chrnn_plugin  # noqa: F401  (registers the scheme loaders)
from chrnn_plugin.engine import (
    DOWNLOAD_TIMEOUT_ENV_VAR,
    TRUST_ENV_VAR,
    CheckpointDownloadError,
    CheckpointDownloadTimeoutError,
    IncompleteCheckpointError,
)
from chrnn_plugin.engine.checkpoint_schemes import cached_checkpoint_path, download_timeout

# The longest any handler stalls: long enough to outlast the lowered timeout,
# short enough that a loader with no timeout fails the test instead of hanging.
STALL_S = 5.0
TEST_TIMEOUT = '0.5'

Route = Callable[[http.server.BaseHTTPRequestHandler], None]


def checkpoint_bytes(value: float) -> bytes:
    """A small real checkpoint whose weights are all ``value``."""
    buffer = io.BytesIO()
    torch.save({'state_dict': {'w': torch.full((2,), value)}}, buffer)
    return buffer.getvalue()


class _Handler(http.server.BaseHTTPRequestHandler):
    """Answers GET with the route the test set for the path (HTTP/1.0: one request each)."""

    def do_GET(self) -> None:
        self.server.requests.append(self.path)
        route = self.server.routes.get(self.path)
        if route is None:
            self.send_error(404)
        else:
            route(self)

    def log_message(self, *args) -> None:
        pass


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True  # a stalled handler must not hold up the teardown

    def __init__(self) -> None:
        super().__init__(('127.0.0.1', 0), _Handler)
        self.routes: dict[str, Route] = {}
        self.requests: list[str] = []
        self.release = threading.Event()  # ends every stall at teardown
        self.base_url = f'http://127.0.0.1:{self.server_address[1]}'

    def stall(self) -> None:
        self.release.wait(STALL_S)

    def serve(self, path: str, route: Route) -> str:
        self.routes[path] = route
        return self.base_url + path


def send(
    body: bytes, count: int | None = None, announce: bool = True, then: Callable | None = None
) -> Route:
    """A route: headers (``Content-Length: len(body)`` if ``announce``), ``body[:count]``,
    then ``then()`` before the connection closes."""

    def route(handler: http.server.BaseHTTPRequestHandler) -> None:
        handler.send_response(200)
        handler.send_header('Content-Type', 'application/octet-stream')
        if announce:
            handler.send_header('Content-Length', str(len(body)))
        handler.end_headers()
        handler.wfile.write(body[:count])
        handler.wfile.flush()
        if then is not None:
            then()

    return route


@pytest.fixture
def cache_dir(tmp_path, monkeypatch):
    """The hub cache of this test (``<hub dir>/checkpoints``), with default settings."""
    hub_dir = tmp_path / 'torch_home' / 'hub'
    monkeypatch.setenv('TORCH_HOME', str(hub_dir.parent))
    monkeypatch.setattr(torch.hub, 'get_dir', lambda: str(hub_dir))
    monkeypatch.delenv(DOWNLOAD_TIMEOUT_ENV_VAR, raising=False)
    monkeypatch.delenv(TRUST_ENV_VAR, raising=False)
    return hub_dir / 'checkpoints'


@pytest.fixture
def server() -> Iterator[_Server]:
    httpd = _Server()
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield httpd
    finally:
        httpd.release.set()
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=30)


def cached(cache_dir) -> list[str]:
    return sorted(p.name for p in cache_dir.iterdir()) if cache_dir.exists() else []


def weights(url: str) -> torch.Tensor:
    return CheckpointLoader.load_checkpoint(url)['state_dict']['w']


@pytest.mark.parametrize('where', ['before headers', 'mid body'])
def test_stalled_server_times_out_and_caches_nothing(cache_dir, server, monkeypatch, where):
    body = checkpoint_bytes(1.0)
    if where == 'before headers':
        url = server.serve('/model.pth', lambda handler: server.stall())
    else:
        url = server.serve('/model.pth', send(body, len(body) // 2, then=server.stall))
    monkeypatch.setenv(DOWNLOAD_TIMEOUT_ENV_VAR, TEST_TIMEOUT)
    start = time.monotonic()
    with pytest.raises(CheckpointDownloadTimeoutError) as error:
        CheckpointLoader.load_checkpoint(url)
    assert time.monotonic() - start < STALL_S - 1
    message = str(error.value)
    assert url in message and '0.5 s' in message and DOWNLOAD_TIMEOUT_ENV_VAR in message
    assert isinstance(error.value, TimeoutError) and isinstance(error.value, OSError)
    assert cached(cache_dir) == []


def test_download_cut_short_caches_nothing_and_is_fetched_again(cache_dir, server):
    body = checkpoint_bytes(1.0)
    half = len(body) // 2
    url = server.serve('/model.pth', send(body, half))
    with pytest.raises(CheckpointDownloadError, match=rf'{url}.* {len(body)} bytes .* only {half}'):
        CheckpointLoader.load_checkpoint(url)
    assert cached(cache_dir) == []
    server.serve('/model.pth', send(body))
    assert torch.equal(weights(url), torch.ones(2))
    assert cached(cache_dir) == [os.path.basename(cached_checkpoint_path(url))]


def test_urls_with_the_same_file_name_get_their_own_weights(cache_dir, server):
    url_a = server.serve('/a/model.pth', send(checkpoint_bytes(1.0)))
    url_b = server.serve('/b/model.pth', send(checkpoint_bytes(2.0)))
    assert torch.equal(weights(url_a), torch.full((2,), 1.0))
    assert torch.equal(weights(url_b), torch.full((2,), 2.0))
    assert torch.equal(weights(url_a), torch.full((2,), 1.0))
    assert server.requests == ['/a/model.pth', '/b/model.pth']  # the third came from the cache
    # the cache key: the hash of the whole URL, then the readable file name
    assert cached(cache_dir) == sorted(
        f'{hashlib.sha256(url.encode()).hexdigest()[:16]}-model.pth' for url in (url_a, url_b)
    )


def test_interrupted_download_removes_its_partial(cache_dir, server):
    body = checkpoint_bytes(1.0)
    seen = []

    def interrupt_once_the_partial_is_written() -> None:
        deadline = time.monotonic() + STALL_S
        while not seen and time.monotonic() < deadline:
            seen.extend(p.name for p in cache_dir.glob('*.partial') if p.stat().st_size)
            time.sleep(0.01)
        os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C, delivered to the loading thread
        server.stall()

    url = server.serve(
        '/model.pth', send(body, len(body) // 2, then=interrupt_once_the_partial_is_written)
    )
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.raises(KeyboardInterrupt):
            CheckpointLoader.load_checkpoint(url)
    finally:
        signal.signal(signal.SIGINT, previous)
    assert seen, 'the download never wrote a partial file'
    assert cached(cache_dir) == []


def test_incomplete_cached_file_is_removed_and_fetched_again(cache_dir, server):
    # No Content-Length: the download cannot tell it was cut short; the load can.
    body = checkpoint_bytes(1.0)
    url = server.serve('/model.pth', send(body, len(body) // 2, announce=False))
    with pytest.raises(IncompleteCheckpointError, match=rf'{url}.*incomplete.*removed'):
        CheckpointLoader.load_checkpoint(url)
    assert cached(cache_dir) == []
    server.serve('/model.pth', send(body))
    assert torch.equal(weights(url), torch.ones(2))
    assert server.requests == ['/model.pth', '/model.pth']


def test_stale_partials_of_the_entry_are_removed_before_downloading(cache_dir, server):
    url = server.serve('/model.pth', send(checkpoint_bytes(1.0)))
    entry = cached_checkpoint_path(url)
    cache_dir.mkdir(parents=True)
    stale = f'{entry}.{uuid.uuid4().hex}.partial'
    live = f'{entry}.{uuid.uuid4().hex}.partial'  # another process downloading right now
    other = cached_checkpoint_path(f'{server.base_url}/other.pth') + '.0123.partial'
    for path in (stale, live, other):
        with open(path, 'wb') as f:
            f.write(b'half a file')
    day_ago = time.time() - 86400
    for path in (stale, other):
        os.utime(path, (day_ago, day_ago))
    assert torch.equal(weights(url), torch.ones(2))
    assert cached(cache_dir) == sorted(os.path.basename(p) for p in (entry, live, other))


def test_http_error_names_the_url_and_status(cache_dir, server):
    url = f'{server.base_url}/missing.pth'
    with pytest.raises(CheckpointDownloadError, match=rf'{url} failed: HTTP 404'):
        CheckpointLoader.load_checkpoint(url)
    assert cached(cache_dir) == []


def test_model_table_url_must_be_http(cache_dir, tmp_path, monkeypatch):
    local = tmp_path / 'local.pth'
    local.write_bytes(checkpoint_bytes(1.0))
    monkeypatch.setattr(
        mmengine_checkpoint, 'get_torchvision_models', lambda: {'net': local.as_uri()}
    )
    with pytest.raises(ValueError, match='not an http:// or https:// URL'):
        CheckpointLoader.load_checkpoint('torchvision://net')
    assert cached(cache_dir) == []


def test_download_timeout_setting(monkeypatch):
    monkeypatch.delenv(DOWNLOAD_TIMEOUT_ENV_VAR, raising=False)
    assert download_timeout() == 60
    monkeypatch.setenv(DOWNLOAD_TIMEOUT_ENV_VAR, '')
    assert download_timeout() == 60
    monkeypatch.setenv(DOWNLOAD_TIMEOUT_ENV_VAR, ' 2.5 ')
    assert download_timeout() == 2.5


@pytest.mark.parametrize('value', ['soon', '0', '-1', 'inf', 'nan'])
def test_invalid_download_timeout_is_refused_before_connecting(
    cache_dir, server, monkeypatch, value
):
    url = server.serve('/model.pth', send(checkpoint_bytes(1.0)))
    monkeypatch.setenv(DOWNLOAD_TIMEOUT_ENV_VAR, value)
    with pytest.raises(
        ValueError, match=rf'{DOWNLOAD_TIMEOUT_ENV_VAR}=.*positive number of seconds'
    ):
        CheckpointLoader.load_checkpoint(url)
    assert server.requests == []
