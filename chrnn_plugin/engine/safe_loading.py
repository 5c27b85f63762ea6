"""Load a checkpoint as data: tensors, arrays, MMEngine's log buffers and plain containers.

:func:`load_checkpoint_safely` is the loader behind every scheme of MMEngine's
``CheckpointLoader`` (see :mod:`.checkpoint_schemes`), so ``load_from``,
``--resume``, ``tools/test.py``, ``init_cfg=dict(type='Pretrained', ...)`` and
the inferencers all use it. It does not call ``torch.load``: the file is read
by :func:`.checkpoint_archive.read_checkpoint`, whose pickle interpreter builds
only the data types of :mod:`.checkpoint_builders` from checked arguments. No
global of the file is ever resolved to a real object, so no allow-list, ours
or torch's or another library's, can widen what a file may do, and a refused
file leaves nothing behind. Config source stored in the file is removed
(:mod:`.checkpoint_config`), since MMEngine would execute it.

Trusted legacy checkpoints (pickled with other types) can be loaded with the
one explicit opt-in, ``--trust-checkpoint`` or ``CHRNN_TRUST_CHECKPOINTS=1``
(:mod:`.trust`): then, and only for files the data loader refuses as unsafe,
``torch.load(weights_only=False)`` runs, which executes whatever the file holds.
"""

import io
import logging
import os
import os.path as osp
from typing import Any, BinaryIO

import torch
from mmengine.logging import print_log

from .checkpoint_archive import read_checkpoint
from .checkpoint_config import strip_config_strings
from .checkpoint_errors import (
    CHECKPOINT_ERRORS,
    CheckpointDeviceError,
    CorruptCheckpointError,
    IncompleteCheckpointError,
    NotACheckpointError,
    UnsafeCheckpointError,
)
from .trust import TRUST_ENV_VAR, TRUST_FLAG, trust_source, trusted_checkpoints_enabled

__all__ = [
    'CHECKPOINT_ERRORS',
    'TRUST_ENV_VAR',
    'TRUST_FLAG',
    'CheckpointDeviceError',
    'CorruptCheckpointError',
    'IncompleteCheckpointError',
    'NotACheckpointError',
    'UnsafeCheckpointError',
    'load_checkpoint_safely',
    'load_from_local_safe',
    'trusted_checkpoints_enabled',
]


def _load_trusted(stream: BinaryIO, name: str, map_location: Any, reason: str) -> Any:
    print_log(
        f'{trust_source()}: loading {name} with torch.load(weights_only=False), which runs '
        f'any code the file holds, although {reason}',
        logger='current',
        level=logging.WARNING,
    )
    stream.seek(0)
    return torch.load(stream, map_location=map_location, weights_only=False)


def _load_stream(stream: BinaryIO, name: str, map_location: Any) -> Any:
    try:
        return read_checkpoint(stream, name, map_location)
    except UnsafeCheckpointError as error:
        if trusted_checkpoints_enabled():
            return _load_trusted(stream, name, map_location, error.reason)
        raise


def _load_source(source: str | os.PathLike | bytes | BinaryIO, map_location: Any, name: Any):
    if isinstance(source, (bytes, bytearray, memoryview)):
        return _load_stream(io.BytesIO(source), name or '<bytes>', map_location)
    if isinstance(source, (str, os.PathLike)):
        path = osp.expanduser(os.fspath(source))
        if not osp.isfile(path):
            raise FileNotFoundError(f'{path} can not be found.')
        with open(path, 'rb') as f:
            return _load_stream(f, name or path, map_location)
    if not source.seekable():
        return _load_stream(io.BytesIO(source.read()), name or '<stream>', map_location)
    return _load_stream(source, name or getattr(source, 'name', '<stream>'), map_location)


def load_checkpoint_safely(
    source: str | os.PathLike | bytes | BinaryIO, map_location: Any = None, name: str | None = None
) -> Any:
    """Load a checkpoint as data only, without its config source.

    Args:
        source (str | os.PathLike | bytes | BinaryIO): A local path, the bytes of
            a checkpoint, or a binary file object.
        map_location: As for ``torch.load``.
        name (str, optional): How errors name the checkpoint (e.g. its URL).
            Defaults to the path, or ``'<bytes>'``.

    Returns:
        The checkpoint, with ``meta['config']``, ``meta['cfg']`` and
        ``message_hub['runtime_info']['cfg']`` removed.

    Raises:
        FileNotFoundError: The path does not exist.
        UnsafeCheckpointError: The file holds something other than data (and
            the opt-in is not set). Nothing from it was kept.
        CorruptCheckpointError: Its bytes are damaged (CRC, pickle, sizes).
        IncompleteCheckpointError: The file is empty or ends early.
        NotACheckpointError: The file is not in a ``torch.save`` format.
        CheckpointDeviceError: A storage cannot be placed on its device.
    """
    checkpoint = _load_source(source, map_location, name)
    strip_config_strings(checkpoint)
    return checkpoint


# MMEngine logs 'Loads checkpoint by {name[10:]} backend', hence the name.
def load_from_local_safe(filename: str, map_location: Any = None) -> Any:
    """MMEngine's local-file scheme with :func:`load_checkpoint_safely`."""
    return load_checkpoint_safely(filename, map_location)
