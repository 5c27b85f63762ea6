"""The globals MMEngine checkpoints contain, allow-listed so that loading changes nothing else.

``torch.load(weights_only=True)`` unpickles only tensors, containers and the
globals of an allow-list, and calls ``__setstate__`` of allow-listed classes.
MMEngine checkpoints also hold the message hub: ``HistoryBuffer`` objects with
numpy arrays and scalars. We allow-list exactly what they need:

* ``HistoryBuffer``, under its pickled name, restored by
  :class:`RestoredHistoryBuffer`. MMEngine's own ``HistoryBuffer.__setstate__``
  merges the file's ``statistics_methods`` into ``HistoryBuffer._statistics_methods``,
  a dict that every ``HistoryBuffer`` of the process shares, so a file could
  remap ``'mean'`` for the whole process. The substitute keeps only the
  instance data and turns the object into a plain ``HistoryBuffer``.
* ``getattr(HistoryBuffer, <public method>)``, how the buffers pickle their
  statistics methods, through :func:`history_buffer_getattr` (the builtin
  ``getattr`` would reach anything). The methods it returns are dropped by the
  substitute; they are never called.
* numpy arrays (``_reconstruct``, ``ndarray``), scalars (``scalar``), ``dtype``
  and the numeric dtype classes. They build new objects only: numpy ignores
  ``__setstate__`` on its built-in dtypes (``np.dtype('f8')`` is shared by the
  whole process), which ``tests/engine`` checks.
"""

import inspect
import pickle
from typing import Any

import numpy as np
import torch
from mmengine.logging import HistoryBuffer

HISTORY_BUFFER_NAME = f'{HistoryBuffer.__module__}.{HistoryBuffer.__qualname__}'
# What HistoryBuffer.__getstate__ writes: the instance data and the shared methods.
_HISTORY_BUFFER_DATA = ('_log_history', '_count_history', 'max_length')
_HISTORY_BUFFER_STATE = frozenset((*_HISTORY_BUFFER_DATA, 'statistics_methods'))


class RestoredHistoryBuffer(HistoryBuffer):
    """How an unpickled ``HistoryBuffer`` is built: from its instance data only.

    The allow-list maps ``HistoryBuffer``'s pickled name to this class, so the
    unpickler creates one with ``__new__`` and hands it the saved state.
    :meth:`__setstate__` checks the state, keeps ``_log_history``,
    ``_count_history`` and ``max_length``, drops ``statistics_methods`` (the
    process's registered methods stay in force) and changes the object's class
    to ``HistoryBuffer``, so it behaves and pickles as one.
    """

    def __init__(self, *args, **kwargs) -> None:
        raise pickle.UnpicklingError(
            'a checkpoint calls HistoryBuffer(...); MMEngine checkpoints restore it from '
            'its saved state only'
        )

    def __setstate__(self, state: Any) -> None:
        if not isinstance(state, dict):
            raise pickle.UnpicklingError(
                f'HistoryBuffer state must be a dict, got {type(state).__name__}'
            )
        unknown = sorted(map(str, set(state) - _HISTORY_BUFFER_STATE))
        missing = [key for key in _HISTORY_BUFFER_DATA if key not in state]
        if unknown or missing:
            raise pickle.UnpicklingError(
                f'HistoryBuffer state must have the keys {sorted(_HISTORY_BUFFER_STATE)}; '
                f'unknown: {unknown}, missing: {missing}'
            )
        logs, counts, max_length = (state[key] for key in _HISTORY_BUFFER_DATA)
        for key, array in (('_log_history', logs), ('_count_history', counts)):
            if not (
                isinstance(array, np.ndarray) and array.ndim == 1 and array.dtype.kind in 'biuf'
            ):
                raise pickle.UnpicklingError(
                    f'HistoryBuffer {key} must be a 1-D numeric numpy array, got {array!r:.80}'
                )
        if len(logs) != len(counts):
            raise pickle.UnpicklingError(
                f'HistoryBuffer holds {len(logs)} values but {len(counts)} counts'
            )
        if isinstance(max_length, bool) or not isinstance(max_length, int) or max_length < 1:
            raise pickle.UnpicklingError(
                f'HistoryBuffer max_length must be a positive int, got {max_length!r}'
            )
        self._log_history, self._count_history, self.max_length = logs, counts, max_length
        self.__class__ = HistoryBuffer


# HistoryBuffer pickles its statistics methods as getattr(HistoryBuffer, 'min').
_HISTORY_BUFFER_METHODS = frozenset(
    name
    for name, value in vars(HistoryBuffer).items()
    if inspect.isfunction(value) and not name.startswith('_')
)


def history_buffer_getattr(obj: Any, name: str) -> Any:
    """``getattr`` restricted to the public methods of ``HistoryBuffer``."""
    if obj in (HistoryBuffer, RestoredHistoryBuffer) and name in _HISTORY_BUFFER_METHODS:
        return getattr(HistoryBuffer, name)
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
        (RestoredHistoryBuffer, HISTORY_BUFFER_NAME),
        (history_buffer_getattr, 'builtins.getattr'),
        *_numpy_globals(),
    ]


def entry_name(entry: Any) -> str:
    """The pickled name an allow-list entry answers to (as torch computes it)."""
    if isinstance(entry, tuple):
        return entry[1]
    return f'{entry.__module__}.{entry.__qualname__}'


def allow_mmengine_checkpoint_globals() -> None:
    """Add the MMEngine checkpoint globals to torch's ``weights_only`` allow-list.

    Idempotent; called when ``chrnn_plugin`` is imported and before each load.
    An entry that someone else registered under one of our names (for example
    plain ``HistoryBuffer``, whose ``__setstate__`` leaks into class state) is
    replaced by ours, since torch resolves a name to one object only.
    """
    ours = mmengine_checkpoint_globals()
    names = {entry_name(entry): entry for entry in ours}
    current = torch.serialization.get_safe_globals()
    clashing = [entry for entry in current if names.get(entry_name(entry), entry) != entry]
    if clashing:
        kept = [entry for entry in current if entry not in clashing]
        torch.serialization.clear_safe_globals()
        torch.serialization.add_safe_globals(kept)
    # HistoryBuffer() registers the default statistics (min, max, current, mean)
    # in the shared dict; loading a checkpoint no longer does, so do it here.
    HistoryBuffer()
    torch.serialization.add_safe_globals(ours)


def allowed_global_names() -> set[str]:
    """Every ``module.name`` that ``torch.load(weights_only=True)`` resolves right now."""
    from torch import _weights_only_unpickler as unpickler

    return set(unpickler._get_allowed_globals()) | set(unpickler._get_user_allowed_globals())
