"""Load MMEngine checkpoints on torch >= 2.6 without turning off pickle safety.

Since torch 2.6, ``torch.load`` defaults to ``weights_only=True``: it unpickles
only tensors, containers and globals on an allow-list. MMEngine checkpoints also
hold the message hub (``HistoryBuffer`` objects with numpy arrays and scalars),
so MMEngine 0.10.7's resume and test fail on them. We allow-list exactly the
globals those checkpoints contain, and nothing else. A checkpoint carrying any
other global is refused before any of its code runs, with an error that names
the global.

Trusted legacy checkpoints (pickled with other globals) can be loaded with the
one explicit opt-in: the environment variable ``CHRNN_TRUST_CHECKPOINTS=1``
(``tools/train.py`` and ``tools/test.py`` set it for ``--trust-checkpoint``).
It only affects local checkpoint files read through MMEngine's
``CheckpointLoader``; ``torch.load`` keeps its default everywhere else.
"""

import inspect
import os
import os.path as osp
import pickle
from typing import Any

import numpy as np
import torch
from mmengine.logging import HistoryBuffer, print_log
from mmengine.runner.checkpoint import CheckpointLoader

TRUST_ENV_VAR = 'CHRNN_TRUST_CHECKPOINTS'

# HistoryBuffer pickles its registered statistics methods (``HistoryBuffer.min``
# and so on) as ``getattr(HistoryBuffer, 'min')``. Allow-listing the builtin
# ``getattr`` would let a pickle reach anything, so ``builtins.getattr`` is
# mapped to this function, which resolves only HistoryBuffer's own methods.
_HISTORY_BUFFER_METHODS = frozenset(
    name
    for name, value in vars(HistoryBuffer).items()
    if inspect.isfunction(value) and not name.startswith('_')
)


def _history_buffer_getattr(obj: Any, name: str) -> Any:
    """``getattr`` restricted to the public methods of ``HistoryBuffer``."""
    if obj is HistoryBuffer and name in _HISTORY_BUFFER_METHODS:
        return getattr(obj, name)
    raise pickle.UnpicklingError(
        f'checkpoint calls getattr({obj!r}, {name!r}); only getattr(HistoryBuffer, <method>) '
        'is allowed in MMEngine checkpoints'
    )


def _numpy_globals() -> list:
    """Numpy arrays, scalars and their numeric dtypes, as MMEngine's message hub stores."""
    core = np._core if hasattr(np, '_core') else np.core  # numpy 2 renamed np.core
    entries: list = [np.ndarray, np.dtype, core.multiarray._reconstruct, core.multiarray.scalar]
    # Checkpoints written under numpy 1.x name the module numpy.core.
    entries += [
        (core.multiarray._reconstruct, 'numpy.core.multiarray._reconstruct'),
        (core.multiarray.scalar, 'numpy.core.multiarray.scalar'),
    ]
    dtypes = getattr(np, 'dtypes', None)  # numpy >= 1.25 pickles dtypes by their class
    if dtypes is not None:
        kinds = ('Bool', 'Int', 'UInt', 'Float', 'Complex', 'Long', 'ULong', 'Short', 'UShort')
        for name in dir(dtypes):
            if name.endswith('DType') and name.startswith(kinds):
                entries.append(getattr(dtypes, name))
    return entries


def mmengine_checkpoint_globals() -> list:
    """Return the allow-list entries for the globals MMEngine checkpoints contain.

    Entries are objects, or ``(object, 'module.name')`` pairs as accepted by
    ``torch.serialization.add_safe_globals``.
    """
    return [
        HistoryBuffer,
        (_history_buffer_getattr, 'builtins.getattr'),
        *_numpy_globals(),
    ]


def allow_mmengine_checkpoint_globals() -> None:
    """Add the MMEngine checkpoint globals to torch's ``weights_only`` allow-list.

    Idempotent. Called when ``chrnn_plugin`` is imported.
    """
    torch.serialization.add_safe_globals(mmengine_checkpoint_globals())


def trusted_checkpoints_enabled() -> bool:
    """Whether the user opted in to load trusted legacy checkpoints unsafely."""
    return os.environ.get(TRUST_ENV_VAR, '').strip().lower() in ('1', 'true', 'yes', 'on')


class UnsafeCheckpointError(pickle.UnpicklingError):
    """A checkpoint holds globals that MMEngine checkpoints never contain."""


def _unsafe_globals(filename: str) -> list[str]:
    try:
        return sorted(torch.serialization.get_unsafe_globals_in_checkpoint(filename))
    except Exception:  # legacy (non-zip) format: fall back to torch's own message
        return []


# MMEngine logs 'Loads checkpoint by {name[10:]} backend', hence the name.
def load_from_local_safe(filename: str, map_location: Any = None) -> Any:
    """Load a local checkpoint with ``weights_only=True`` and our allow-list.

    Raises:
        FileNotFoundError: the file does not exist.
        UnsafeCheckpointError: the file needs a global outside the allow-list
            (and the opt-in is not set); nothing from the file was executed.
    """
    filename = osp.expanduser(filename)
    if not osp.isfile(filename):
        raise FileNotFoundError(f'{filename} can not be found.')
    try:
        return torch.load(filename, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as error:
        offending = _unsafe_globals(filename)
        named = ', '.join(offending) if offending else f'(torch says: {error})'
        if trusted_checkpoints_enabled():
            print_log(
                f'{TRUST_ENV_VAR} is set: loading {filename} with weights_only=False '
                f'although it holds globals outside the MMEngine allow-list: {named}',
                logger='current',
                level=30,  # logging.WARNING
            )
            return torch.load(filename, map_location=map_location, weights_only=False)
        raise UnsafeCheckpointError(
            f'Refusing to load checkpoint {filename}: it contains globals that MMEngine '
            f'checkpoints never hold: {named}. Unpickling them could run arbitrary code, '
            f'so nothing from the file was executed. If you trust this file (e.g. a '
            f'legacy checkpoint from a known source), set {TRUST_ENV_VAR}=1 or pass '
            f'--trust-checkpoint to tools/train.py or tools/test.py.'
        ) from None


def register_safe_checkpoint_loader() -> None:
    """Make MMEngine's ``CheckpointLoader`` read local files with :func:`load_from_local_safe`.

    This replaces MMEngine's local-path loader (which calls ``torch.load``
    without ``weights_only``) so that resume, ``load_from`` and testing get the
    allow-list, the clear refusal and the opt-in.
    """
    CheckpointLoader.register_scheme(prefixes='', loader=load_from_local_safe, force=True)
