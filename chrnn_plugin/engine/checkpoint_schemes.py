"""Every source MMEngine's ``CheckpointLoader`` reads, through the same safe loader.

MMEngine picks a loader by the checkpoint's prefix (``load_from``, ``--resume``,
``tools/test.py`` and ``init_cfg=dict(type='Pretrained', checkpoint=...)`` all
go through it). Its own loaders call ``torch.load`` without ``weights_only``, or
``torch.hub.load_state_dict_from_url``, which unpickles anything. We register a
loader for each of its prefixes that fetches the bytes the way MMEngine does and
hands them to :func:`.safe_loading.load_checkpoint_safely`:

=====================================  =============================================
prefix                                 fetched as
=====================================  =============================================
(none): a local path                   the file
``http://``, ``https://``              downloaded once into ``<torch hub dir>/checkpoints``
                                       (see :func:`cached_checkpoint_path`)
``torchvision://``, ``modelzoo://``    the torchvision URL of that name, as above
``open-mmlab://``, ``openmmlab://``    the OpenMMLab URL (or file under ``~/.cache/mmengine``)
``mmcls://``                           the MMClassification URL; backbone weights kept
``pavi://``                            PAVI model cloud download
``s3://``, ``petrel://``               the bytes from MMEngine's file backend
=====================================  =============================================

A prefix registered by another library is replaced by a loader that refuses
(naming the prefix) unless the opt-in is set, since we cannot vouch for it.

Downloads time out when the server sends nothing for ``$CHRNN_DOWNLOAD_TIMEOUT``
seconds (default 60), and only a complete file is ever put in the cache: the
bytes go to a ``*.partial`` file that is checked against ``Content-Length``,
flushed to disk and renamed into place, or removed on any failure. A cached
file that still turns out incomplete (a server that sent no length) is
removed when loading it fails, so the next load downloads it again.
"""

import glob
import hashlib
import http.client
import logging
import math
import os
import os.path as osp
import stat
import sys
import time
import uuid
from collections.abc import Callable
from tempfile import TemporaryDirectory
from typing import Any
from urllib.error import HTTPError, URLError
from urllib.parse import urlparse
from urllib.request import Request, urlopen

import torch
from mmengine.dist import barrier, get_dist_info
from mmengine.fileio import get_file_backend
from mmengine.logging import print_log
from mmengine.runner import checkpoint as mmengine_checkpoint
from mmengine.runner.checkpoint import CheckpointLoader

from .atomic_checkpoint import create_new_file, discard_file_or_link, remove_if_present
from .checkpoint_errors import (
    CorruptCheckpointError,
    IncompleteCheckpointError,
    NotACheckpointError,
)
from .safe_loading import (
    UnsafeCheckpointError,
    load_checkpoint_safely,
    load_from_local_safe,
    trusted_checkpoints_enabled,
)

DOWNLOAD_TIMEOUT_ENV_VAR = 'CHRNN_DOWNLOAD_TIMEOUT'
DEFAULT_DOWNLOAD_TIMEOUT = 60.0
_READ_CHUNK = 1 << 20
_PARTIAL_SUFFIX = '.partial'


class CheckpointDownloadError(OSError):
    """Downloading a checkpoint failed; nothing was left in the cache."""


class CheckpointDownloadTimeoutError(CheckpointDownloadError, TimeoutError):
    """The server of a checkpoint sent nothing for longer than the download timeout."""


def download_timeout() -> float:
    """The connect and read timeout of checkpoint downloads, in seconds.

    Returns:
        float: ``$CHRNN_DOWNLOAD_TIMEOUT`` if set (and not empty), else
        :data:`DEFAULT_DOWNLOAD_TIMEOUT`.

    Raises:
        ValueError: The variable is not a positive, finite number of seconds.
    """
    value = os.environ.get(DOWNLOAD_TIMEOUT_ENV_VAR, '').strip()
    if not value:
        return DEFAULT_DOWNLOAD_TIMEOUT
    try:
        timeout = float(value)
    except ValueError:
        timeout = math.nan
    if not (math.isfinite(timeout) and timeout > 0):
        raise ValueError(
            f'{DOWNLOAD_TIMEOUT_ENV_VAR}={value!r} is not a positive number of seconds: it is '
            f'how long a checkpoint download waits for the server to connect or send data '
            f'(unset, the default is {DEFAULT_DOWNLOAD_TIMEOUT:g} s).'
        )
    return timeout


def cached_checkpoint_path(url: str, model_dir: str | None = None) -> str:
    """Where the checkpoint at ``url`` is cached.

    The name is ``<first 16 hex digits of sha256(url)>-<file name of the URL>``:
    the hash of the whole URL keeps URLs that end in the same file name apart,
    the file name keeps the entry readable.

    Args:
        url (str): An ``http://`` or ``https://`` URL ending in a file name.
        model_dir (str, optional): The cache folder. Defaults to
            ``<torch hub dir>/checkpoints``, as for ``torch.hub``.

    Returns:
        str: The path of the cache entry (which may not exist yet).

    Raises:
        ValueError: The URL is not HTTP(S) or does not end in a file name.
    """
    parsed = urlparse(url)
    # urlopen would also read file://, ftp:// or data: URLs a model table names.
    if parsed.scheme not in ('http', 'https'):
        raise ValueError(f'checkpoint URL {url!r} is not an http:// or https:// URL')
    filename = osp.basename(parsed.path)
    if not filename:
        raise ValueError(f'checkpoint URL {url!r} does not end in a file name')
    model_dir = model_dir or osp.join(torch.hub.get_dir(), 'checkpoints')
    digest = hashlib.sha256(url.encode()).hexdigest()[:16]
    return osp.join(model_dir, f'{digest}-{filename}')


def _remove_stale_partials(cached_file: str, timeout: float) -> None:
    """Remove the unfinished downloads of ``cached_file`` that killed processes left.

    Another process may be downloading the same entry right now (ranks > 0 on a
    node whose cache is not shared). A live download writes its partial file at
    least once per read timeout, or removes it when it fails, so a partial
    untouched for twice the timeout (at least the default) is stale; twice, for
    clock skew on network file systems.
    """
    stale_before = time.time() - 2 * max(timeout, DEFAULT_DOWNLOAD_TIMEOUT)
    for path in glob.glob(glob.escape(cached_file) + '.*' + _PARTIAL_SUFFIX):
        try:
            info = os.lstat(path)
        except FileNotFoundError:  # finished or removed by its owner meanwhile
            continue
        if not stat.S_ISDIR(info.st_mode) and info.st_mtime < stale_before:
            remove_if_present(path)


def _download_error(url: str, error: BaseException, timeout: float) -> CheckpointDownloadError:
    """The error to raise for a failed download of ``url``, naming what to do."""
    reason = error.reason if isinstance(error, URLError) else error
    if isinstance(reason, TimeoutError):
        return CheckpointDownloadTimeoutError(
            f'Downloading checkpoint {url} timed out: the server sent nothing for '
            f'{timeout:g} s. If it is just slow, set {DOWNLOAD_TIMEOUT_ENV_VAR} to a larger '
            f'number of seconds (default {DEFAULT_DOWNLOAD_TIMEOUT:g}). Nothing was cached.'
        )
    if isinstance(error, HTTPError):
        reason = f'HTTP {error.code} {error.reason}'
    return CheckpointDownloadError(f'Downloading checkpoint {url} failed: {reason}')


def _fetch(url: str, cached_file: str, timeout: float, progress: bool) -> None:
    """Download ``url`` to ``cached_file`` through a partial file; leave nothing on failure."""
    tmp_path = f'{cached_file}.{uuid.uuid4().hex}{_PARTIAL_SUFFIX}'
    # The same User-Agent as torch.hub, which model zoo servers already accept.
    request = Request(url, headers={'User-Agent': 'torch.hub'})
    try:
        # The timeout bounds the connect and every read (each chunk below).
        with urlopen(request, timeout=timeout) as response:
            expected = response.length  # Content-Length; None when absent or chunked
            received = 0
            with (
                os.fdopen(create_new_file(tmp_path), 'wb') as f,
                torch.hub.tqdm(
                    total=expected,
                    disable=not progress,
                    unit='B',
                    unit_scale=True,
                    unit_divisor=1024,
                ) as bar,
            ):
                # read1 returns what one read of the socket gives, so a stall is
                # noticed after one timeout, not after a whole chunk trickled in.
                while chunk := response.read1(_READ_CHUNK):
                    # Flushed at once: the partial's mtime shows other processes that
                    # this download is alive (see _remove_stale_partials).
                    f.write(chunk)
                    f.flush()
                    received += len(chunk)
                    bar.update(len(chunk))
                if expected is not None and received < expected:
                    raise CheckpointDownloadError(
                        f'Downloading checkpoint {url} failed: the server announced '
                        f'{expected} bytes (Content-Length) but sent only {received}. '
                        f'Nothing was cached; the next load downloads it again.'
                    )
                os.fsync(f.fileno())
        os.replace(tmp_path, cached_file)
    except BaseException as error:
        # KeyboardInterrupt included: no partial file outlives its download.
        discard_file_or_link(tmp_path)
        if isinstance(error, (OSError, http.client.HTTPException)) and not isinstance(
            error, CheckpointDownloadError
        ):
            raise _download_error(url, error, timeout) from error
        raise


def _download(url: str, model_dir: str | None, progress: bool) -> str:
    """Download ``url`` into the cache unless it is there; return the cached path.

    Args:
        url (str): An ``http://`` or ``https://`` URL ending in a file name.
        model_dir (str, optional): The cache folder (see :func:`cached_checkpoint_path`).
        progress (bool): Show a progress bar on stderr.

    Returns:
        str: The path of the complete cached file.

    Raises:
        CheckpointDownloadError: The download failed, was cut short or timed out
            (:class:`CheckpointDownloadTimeoutError`).
        ValueError: The URL is not usable, or ``$CHRNN_DOWNLOAD_TIMEOUT`` is invalid.
    """
    cached_file = cached_checkpoint_path(url, model_dir)
    timeout = download_timeout()
    if not osp.isfile(cached_file):
        os.makedirs(osp.dirname(cached_file), exist_ok=True)
        _remove_stale_partials(cached_file, timeout)
        sys.stderr.write(f'Downloading: "{url}" to {cached_file}\n')
        _fetch(url, cached_file, timeout, progress)
    return cached_file


def load_from_http_safe(
    filename: str, map_location: Any = None, model_dir: str | None = None, progress: bool = False
) -> Any:
    """``http://`` and ``https://``: download to the cache, then load it safely.

    With several processes, local rank 0 downloads first, as in MMEngine. A
    cached file that is incomplete, corrupt or not a checkpoint is removed
    before the error propagates, so the next load downloads it again.

    Args:
        filename (str): The URL.
        map_location: As for ``torch.load``.
        model_dir (str, optional): The cache folder (see :func:`cached_checkpoint_path`).
        progress (bool): Show a progress bar while downloading.

    Returns:
        The unpickled checkpoint.
    """
    rank, world_size = get_dist_info()
    if rank == 0:
        path = _download(filename, model_dir, progress)
    if world_size > 1:
        barrier()
        if rank > 0:
            path = _download(filename, model_dir, progress)
    try:
        return load_checkpoint_safely(path, map_location, name=f'{filename} (cached at {path})')
    except (IncompleteCheckpointError, CorruptCheckpointError, NotACheckpointError) as error:
        # Without a Content-Length a cut-short (or damaged) download cannot be
        # told from a whole one until it is read; keep no bad copy in the cache.
        remove_if_present(path)
        error.args = (f'{error} The cached copy was removed; the next load downloads it again.',)
        raise


def _model_url(table: dict, prefix: str, name: str) -> str:
    if name not in table:
        raise KeyError(f'{prefix}{name}: no such model name (known: {len(table)} names)')
    return table[name]


def load_from_torchvision_safe(filename: str, map_location: Any = None) -> Any:
    """``torchvision://NAME`` (and the deprecated ``modelzoo://NAME``)."""
    prefix = 'modelzoo://' if filename.startswith('modelzoo://') else 'torchvision://'
    if prefix == 'modelzoo://':
        print_log(
            'The URL scheme of "modelzoo://" is deprecated, please use "torchvision://" instead',
            logger='current',
            level=logging.WARNING,
        )
    urls = mmengine_checkpoint.get_torchvision_models()
    return load_from_http_safe(_model_url(urls, prefix, filename[len(prefix) :]), map_location)


def load_from_openmmlab_safe(filename: str, map_location: Any = None) -> Any:
    """``open-mmlab://NAME`` and ``openmmlab://NAME``: a URL or a file in MMEngine's home."""
    prefix = 'open-mmlab://' if filename.startswith('open-mmlab://') else 'openmmlab://'
    name = filename[len(prefix) :]
    deprecated = mmengine_checkpoint.get_deprecated_model_names()
    if name in deprecated:
        print_log(
            f'{prefix}{name} is deprecated in favor of {prefix}{deprecated[name]}',
            logger='current',
            level=logging.WARNING,
        )
        name = deprecated[name]
    url = _model_url(mmengine_checkpoint.get_external_models(), prefix, name)
    if url.startswith(('http://', 'https://')):
        return load_from_http_safe(url, map_location)
    return load_checkpoint_safely(
        osp.join(mmengine_checkpoint._get_mmengine_home(), url), map_location
    )


def load_from_mmcls_safe(filename: str, map_location: Any = None) -> Any:
    """``mmcls://NAME``: an MMClassification checkpoint, backbone weights only."""
    url = _model_url(mmengine_checkpoint.get_mmcls_models(), 'mmcls://', filename[8:])
    checkpoint = load_from_http_safe(url, map_location)
    return mmengine_checkpoint._process_mmcls_checkpoint(checkpoint)


def load_from_pavi_safe(filename: str, map_location: Any = None) -> Any:
    """``pavi://PATH``: downloaded from the PAVI model cloud to a temporary folder."""
    try:
        from pavi import modelcloud
    except ImportError:
        raise ImportError('Please install pavi to load checkpoint from modelcloud.') from None
    model = modelcloud.get(filename[len('pavi://') :])
    with TemporaryDirectory() as tmp_dir:
        downloaded = osp.join(tmp_dir, model.name)
        model.download(downloaded)
        return load_checkpoint_safely(downloaded, map_location, name=filename)


def load_from_ceph_safe(filename: str, map_location: Any = None, backend: str = 'petrel') -> Any:
    """``s3://`` and ``petrel://`` (optionally ``NAME:s3://``): bytes from the file backend."""
    file_backend = get_file_backend(filename, backend_args={'backend': backend})
    return load_checkpoint_safely(file_backend.get(filename), map_location, name=filename)


# MMEngine's prefixes (mmengine/runner/checkpoint.py) and our loader for each.
SAFE_SCHEME_LOADERS: dict[str, Callable] = {
    '': load_from_local_safe,
    'http://': load_from_http_safe,
    'https://': load_from_http_safe,
    'torchvision://': load_from_torchvision_safe,
    'modelzoo://': load_from_torchvision_safe,
    'open-mmlab://': load_from_openmmlab_safe,
    'openmmlab://': load_from_openmmlab_safe,
    'mmcls://': load_from_mmcls_safe,
    'pavi://': load_from_pavi_safe,
    r'(\S+\:)?s3://': load_from_ceph_safe,
    r'(\S+\:)?petrel://': load_from_ceph_safe,
}


def _refusing_loader(prefix: str, loader: Callable) -> Callable:
    """Stand in for a loader we do not know: refuse unless the opt-in is set."""
    where = f'{getattr(loader, "__module__", "?")}.{getattr(loader, "__qualname__", loader)}'

    def load_from_unchecked_scheme(filename: str, map_location: Any = None) -> Any:
        if trusted_checkpoints_enabled():
            return loader(filename, map_location)
        raise UnsafeCheckpointError(
            filename,
            f'its prefix {prefix!r} is handled by {where}, which does not go through '
            'the data-only loader',
        )

    load_from_unchecked_scheme.wrapped_loader = loader
    return load_from_unchecked_scheme


def register_safe_checkpoint_loader() -> None:
    """Route every prefix of MMEngine's ``CheckpointLoader`` through the safe loader.

    Idempotent. Called when ``chrnn_plugin`` is imported.
    """
    for prefix, loader in SAFE_SCHEME_LOADERS.items():
        CheckpointLoader.register_scheme(prefixes=prefix, loader=loader, force=True)
    ours = set(SAFE_SCHEME_LOADERS.values())
    for prefix, loader in list(CheckpointLoader._schemes.items()):
        if loader not in ours and not hasattr(loader, 'wrapped_loader'):
            CheckpointLoader.register_scheme(
                prefixes=prefix, loader=_refusing_loader(prefix, loader), force=True
            )
