"""Load checkpoints with ``weights_only=True``, refusing unsafe files before unpickling starts.

Since torch 2.6, ``torch.load`` defaults to ``weights_only=True``: it unpickles
only tensors, containers and globals on an allow-list. MMEngine checkpoints also
hold the message hub, so MMEngine 0.10.7's resume and test fail on them. We
allow-list exactly the globals those checkpoints contain (see
:mod:`.checkpoint_globals`), restored so that loading changes nothing outside
the returned object.

:func:`load_checkpoint_safely` first scans the file (:mod:`.checkpoint_scan`):
a file that names any other global, or uses pickle features the ``weights_only``
unpickler does not execute, is refused with :class:`UnsafeCheckpointError`
before any object is built. An empty or cut-short file gives
:class:`IncompleteCheckpointError` naming it.

Trusted legacy checkpoints (pickled with other globals) can be loaded with the
one explicit opt-in: the environment variable ``CHRNN_TRUST_CHECKPOINTS=1``
(every tool that loads a checkpoint sets it for ``--trust-checkpoint``).
It applies to every source MMEngine's ``CheckpointLoader`` reads (local files,
URLs, model-zoo names, object stores; see :mod:`.checkpoint_schemes`);
``torch.load`` keeps its default everywhere else.
"""

import io
import os
import os.path as osp
import pickle
from typing import Any, BinaryIO

import torch
from mmengine.logging import print_log

from .checkpoint_globals import (
    allow_mmengine_checkpoint_globals,
    allowed_global_names,
    mmengine_checkpoint_globals,
)
from .checkpoint_scan import IncompleteCheckpointError, NotACheckpointError, scan_checkpoint

TRUST_ENV_VAR = 'CHRNN_TRUST_CHECKPOINTS'

__all__ = [
    'TRUST_ENV_VAR',
    'IncompleteCheckpointError',
    'NotACheckpointError',
    'UnsafeCheckpointError',
    'allow_mmengine_checkpoint_globals',
    'load_checkpoint_safely',
    'load_from_local_safe',
    'mmengine_checkpoint_globals',
    'trusted_checkpoints_enabled',
]


def trusted_checkpoints_enabled() -> bool:
    """Whether the user opted in to load trusted legacy checkpoints unsafely."""
    return os.environ.get(TRUST_ENV_VAR, '').strip().lower() in ('1', 'true', 'yes', 'on')


class UnsafeCheckpointError(pickle.UnpicklingError):
    """A checkpoint needs globals or pickle features outside the allow-list."""


def _refusal(name: str, reasons: str, scanned: bool = True) -> UnsafeCheckpointError:
    outcome = (
        'Unpickling it could run arbitrary code, so nothing from the file was unpickled'
        if scanned
        else 'Loading stopped there; the allow-listed objects built until then were discarded'
    )
    return UnsafeCheckpointError(
        f'Refusing to load checkpoint {name}: {reasons}. {outcome}. If you trust this file '
        f'(e.g. a legacy checkpoint from a known source), set {TRUST_ENV_VAR}=1 or pass '
        f'--trust-checkpoint to the tool that loads it (train.py, test.py, pytorch2onnx.py, '
        f'visualize_context.py).'
    )


def _load_trusted(stream: BinaryIO, name: str, map_location: Any, reasons: str) -> Any:
    print_log(
        f'{TRUST_ENV_VAR} is set: loading {name} with weights_only=False although {reasons}',
        logger='current',
        level=30,  # logging.WARNING
    )
    stream.seek(0)
    return torch.load(stream, map_location=map_location, weights_only=False)


def _load_stream(stream: BinaryIO, name: str, map_location: Any) -> Any:
    allow_mmengine_checkpoint_globals()
    scan = scan_checkpoint(stream, name)
    reasons = []
    offending = sorted(scan.globals - allowed_global_names())
    if offending:
        reasons.append(
            'it contains globals that MMEngine checkpoints never hold: ' + ', '.join(offending)
        )
    if scan.unsupported:
        reasons.append('it uses ' + ', '.join(scan.unsupported))
    if reasons:
        if trusted_checkpoints_enabled():
            return _load_trusted(stream, name, map_location, '; '.join(reasons))
        raise _refusal(name, '; '.join(reasons))
    try:
        return torch.load(stream, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as error:
        # The globals are allowed but used in a way MMEngine checkpoints never do
        # (e.g. getattr on something other than HistoryBuffer); what was built
        # until then had no effect outside the discarded objects.
        reason = (
            f'the allow-listed globals are used in a way MMEngine checkpoints never do ({error})'
        )
        if trusted_checkpoints_enabled():
            return _load_trusted(stream, name, map_location, reason)
        raise _refusal(name, reason, scanned=False) from None
    except EOFError:
        raise IncompleteCheckpointError(name, 'its data ends early') from None
    except RuntimeError as error:
        if 'unexpected EOF' in str(error):
            raise IncompleteCheckpointError(name, str(error).splitlines()[0]) from None
        raise


def load_checkpoint_safely(
    source: str | os.PathLike | bytes | BinaryIO, map_location: Any = None, name: str | None = None
) -> Any:
    """Load a checkpoint with ``weights_only=True`` and the MMEngine allow-list.

    Args:
        source (str | os.PathLike | bytes | BinaryIO): A local path, the bytes of
            a checkpoint, or a binary file object.
        map_location: As for ``torch.load``.
        name (str, optional): How errors name the checkpoint (e.g. its URL).
            Defaults to the path, or ``'<bytes>'``.

    Returns:
        The unpickled checkpoint.

    Raises:
        FileNotFoundError: The path does not exist.
        IncompleteCheckpointError: The file is empty or ends early.
        NotACheckpointError: The file is not in a ``torch.save`` format.
        UnsafeCheckpointError: The file needs a global or pickle feature outside
            the allow-list (and the opt-in is not set). Nothing was unpickled.
    """
    if isinstance(source, (bytes, bytearray, memoryview)):
        return _load_stream(io.BytesIO(source), name or '<bytes>', map_location)
    if isinstance(source, (str, os.PathLike)):
        path = osp.expanduser(os.fspath(source))
        if not osp.isfile(path):
            raise FileNotFoundError(f'{path} can not be found.')
        # One open file for the scan and the load: both read the same bytes.
        with open(path, 'rb') as f:
            return _load_stream(f, name or path, map_location)
    if not source.seekable():
        return _load_stream(io.BytesIO(source.read()), name or '<stream>', map_location)
    return _load_stream(source, name or getattr(source, 'name', '<stream>'), map_location)


# MMEngine logs 'Loads checkpoint by {name[10:]} backend', hence the name.
def load_from_local_safe(filename: str, map_location: Any = None) -> Any:
    """MMEngine's local-file scheme with :func:`load_checkpoint_safely`."""
    return load_checkpoint_safely(filename, map_location)
