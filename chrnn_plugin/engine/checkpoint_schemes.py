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
``torchvision://``, ``modelzoo://``    the torchvision URL of that name, as above
``open-mmlab://``, ``openmmlab://``    the OpenMMLab URL (or file under ``~/.cache/mmengine``)
``mmcls://``                           the MMClassification URL; backbone weights kept
``pavi://``                            PAVI model cloud download
``s3://``, ``petrel://``               the bytes from MMEngine's file backend
=====================================  =============================================

A prefix registered by another library is replaced by a loader that refuses
(naming the prefix) unless the opt-in is set, since we cannot vouch for it.
"""

import logging
import os
import os.path as osp
import sys
from collections.abc import Callable
from tempfile import TemporaryDirectory
from typing import Any
from urllib.parse import urlparse

import torch
from mmengine.dist import barrier, get_dist_info
from mmengine.fileio import get_file_backend
from mmengine.logging import print_log
from mmengine.runner import checkpoint as mmengine_checkpoint
from mmengine.runner.checkpoint import CheckpointLoader

from .safe_loading import (
    UnsafeCheckpointError,
    load_checkpoint_safely,
    load_from_local_safe,
    trusted_checkpoints_enabled,
)


def _download(url: str, model_dir: str | None, progress: bool) -> str:
    """Download ``url`` into the hub cache once (as ``torch.hub`` does); return the path."""
    model_dir = model_dir or osp.join(torch.hub.get_dir(), 'checkpoints')
    os.makedirs(model_dir, exist_ok=True)
    filename = osp.basename(urlparse(url).path)
    if not filename:
        raise ValueError(f'checkpoint URL {url!r} does not end in a file name')
    cached_file = osp.join(model_dir, filename)
    if not osp.exists(cached_file):
        sys.stderr.write(f'Downloading: "{url}" to {cached_file}\n')
        # Writes a temporary file in model_dir and renames it when complete.
        torch.hub.download_url_to_file(url, cached_file, None, progress=progress)
    return cached_file


def load_from_http_safe(
    filename: str, map_location: Any = None, model_dir: str | None = None, progress: bool = False
) -> Any:
    """``http://`` and ``https://``: download to the cache, then load it safely.

    With several processes, local rank 0 downloads first, as in MMEngine.
    """
    rank, world_size = get_dist_info()
    if rank == 0:
        path = _download(filename, model_dir, progress)
    if world_size > 1:
        barrier()
        if rank > 0:
            path = _download(filename, model_dir, progress)
    return load_checkpoint_safely(path, map_location, name=f'{filename} (cached at {path})')


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
            f'Refusing to load checkpoint {filename}: its prefix {prefix!r} is handled by '
            f'{where}, which chrnn_plugin cannot check for unsafe pickles. If you trust the '
            f'file, set CHRNN_TRUST_CHECKPOINTS=1 or pass --trust-checkpoint.'
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
