"""What loading a checkpoint may change (nothing) and build (data): shared checks.

:class:`ProcessState` snapshots the process state hostile checkpoints have been
seen to change: class dicts (``torch.Tensor``, ``nn.Parameter``,
``HistoryBuffer``, every class torch's ``weights_only`` allow-list names, the
classes of ``chrnn_plugin.engine``), the ``__defaults__``/``__kwdefaults__``/
``__code__`` of functions, MMEngine's shared statistics methods, ``linecache``,
the state of numpy's built-in dtypes, ``torch.distributed`` and a few torch
switches. :meth:`ProcessState.restore` puts back what it can, so one load that
changed the process does not spoil the tests after it.

:func:`plain_data_problems` walks a loaded checkpoint and lists every object
that is not of a kind the loader may build. :func:`check_outcome` combines both
for one load: refused with one of :data:`CHECKPOINT_ERRORS` naming the file, or
loaded as plain data; the process unchanged either way.
"""

import inspect
import linecache
import sys
from collections import Counter, OrderedDict
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from mmengine.logging import HistoryBuffer, MessageHub

from chrnn_plugin import engine

# The loader's refusals. A loader without CHECKPOINT_ERRORS (today's) raises these three.
CHECKPOINT_ERRORS: tuple = getattr(
    engine,
    'CHECKPOINT_ERRORS',
    (engine.UnsafeCheckpointError, engine.IncompleteCheckpointError, engine.NotACheckpointError),
)


def error_class(name: str) -> type:
    """The error class ``chrnn_plugin.engine.<name>``.

    On a loader that does not export it, a class nothing raises: a test that
    expects it then fails on the exception actually raised, which shows how the
    loader failed.
    """
    return getattr(engine, name, None) or type(name, (Exception,), {'__module__': __name__})


# numpy dtypes that are one object for the whole process.
BUILTIN_DTYPES = ('?', 'i1', 'u1', 'i2', 'u2', 'i4', 'u4', 'i8', 'u8', 'f2', 'f4', 'f8')
BUILTIN_DTYPES += ('c8', 'c16', 'O', 'M8[s]', 'm8[s]')


def _dtype_state(code: str) -> tuple:
    dtype = np.dtype(code)
    return (
        dtype.descr,
        dtype.fields,
        dtype.names,
        dtype.flags,
        dtype.byteorder,
        dtype.itemsize,
        dtype.alignment,
        dtype.hasobject,
        dtype.str,
    )


def _allow_listed() -> list:
    """What torch's ``weights_only`` unpickler resolves globals to right now."""
    from torch import _weights_only_unpickler as unpickler

    entries = list(getattr(unpickler, '_get_allowed_globals', dict)().values())
    entries += list(getattr(unpickler, '_get_user_allowed_globals', dict)().values())
    return entries


def _watched_objects() -> tuple[list, list]:
    """The classes and functions whose state a checkpoint must not change."""
    objects = [torch.Tensor, torch.nn.Parameter, torch._C.TensorBase, HistoryBuffer, MessageHub]
    objects += _allow_listed()
    for name, module in list(sys.modules.items()):
        if name == 'chrnn_plugin.engine' or name.startswith('chrnn_plugin.engine.'):
            objects += [v for v in vars(module).values() if getattr(v, '__module__', '') == name]
    classes, functions, seen = [], [], set()
    for obj in objects:
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        if inspect.isclass(obj):
            classes.append(obj)
            functions += [v for v in vars(obj).values() if inspect.isfunction(v)]
        elif inspect.isfunction(obj):
            functions.append(obj)
    return classes, functions


def _function_state(function) -> tuple:
    kwdefaults = function.__kwdefaults__
    return (function.__defaults__, dict(kwdefaults or {}), function.__code__)


def _linecache_files() -> frozenset:
    # Tracebacks and warnings read Python sources into linecache as they are
    # formatted; a checkpoint that reads any other file shows up here.
    return frozenset(k for k in linecache.cache if not k.endswith('.py') and not k.startswith('<'))


def _torch_switches() -> tuple:
    return (
        torch.get_default_dtype(),
        torch.is_grad_enabled(),
        torch.are_deterministic_algorithms_enabled(),
        torch.distributed.is_available() and torch.distributed.is_initialized(),
    )


def _safe_global_names() -> frozenset:
    """The names torch's ``weights_only`` allow-list answers to (a loader must not add any)."""
    from torch import _weights_only_unpickler as unpickler

    return frozenset(getattr(unpickler, '_get_user_allowed_globals', dict)())


_MISSING = object()


@dataclass
class ProcessState:
    """A snapshot of the process state that loading a checkpoint must leave alone."""

    classes: dict = field(default_factory=dict)
    functions: dict = field(default_factory=dict)
    values: dict = field(default_factory=dict)

    @staticmethod
    def _values() -> dict:
        return {
            'statistics': dict(HistoryBuffer._statistics_methods),
            'linecache files': _linecache_files(),
            'numpy dtypes': {code: _dtype_state(code) for code in BUILTIN_DTYPES},
            'torch switches': _torch_switches(),
            'message hubs': frozenset(MessageHub._instance_dict),
            'safe globals': _safe_global_names(),
        }

    @classmethod
    def capture(cls) -> 'ProcessState':
        """Snapshot the process now."""
        classes, functions = _watched_objects()
        return cls(
            classes={c: dict(vars(c)) for c in classes},
            functions={f: _function_state(f) for f in functions},
            values=cls._values(),
        )

    def changes(self) -> list[str]:
        """What differs between this snapshot and the process now."""
        found = []
        for cls, attributes in self.classes.items():
            now = vars(cls)
            if len(now) == len(attributes) and all(
                now.get(k, _MISSING) is v for k, v in attributes.items()
            ):
                continue
            changed = sorted(
                k
                for k in attributes.keys() | now.keys()
                if attributes.get(k, _MISSING) is not now.get(k, _MISSING)
            )
            found.append(f'{cls.__module__}.{cls.__qualname__} attributes {changed}')
        for function, state in self.functions.items():
            if _function_state(function) != state:
                found.append(f'{function.__module__}.{function.__qualname__} defaults or code')
        for name, now in self._values().items():
            if now != self.values[name]:
                found.append(f'{name}: {self.values[name]!r:.200} -> {now!r:.200}')
        return found

    def restore(self) -> None:
        """Put back what a load changed, as far as Python allows (not numpy's dtypes)."""
        for cls, attributes in self.classes.items():
            for key in set(vars(cls)) - set(attributes):
                _quietly(delattr, cls, key)
            for key, value in attributes.items():
                if vars(cls).get(key) is not value:
                    _quietly(setattr, cls, key, value)
        for function, (defaults, kwdefaults, code) in self.functions.items():
            function.__defaults__, function.__code__ = defaults, code
            function.__kwdefaults__ = kwdefaults or None
        HistoryBuffer._statistics_methods.clear()
        HistoryBuffer._statistics_methods.update(self.values['statistics'])
        for key in _linecache_files() - self.values['linecache files']:
            linecache.cache.pop(key, None)
        for name in set(MessageHub._instance_dict) - self.values['message hubs']:
            MessageHub._instance_dict.pop(name, None)
        if torch.distributed.is_initialized() and not self.values['torch switches'][3]:
            torch.distributed.destroy_process_group()


def _quietly(operation, *args) -> None:
    try:
        operation(*args)
    except (AttributeError, TypeError):  # e.g. read-only slots of built-in types
        pass


# -- what the loader may build ----------------------------------------------------------

_ATOMS = (str, bytes, int, float, bool, type(None))
_CONTAINERS = (dict, list, tuple, set, frozenset, OrderedDict, Counter, torch.Size)
# numpy kinds the loader may build: bool, signed, unsigned, float, complex
_NUMPY_KINDS = 'biufc'
HISTORY_BUFFER_ATTRIBUTES = frozenset(('_log_history', '_count_history', 'max_length'))


def plain_data_problems(obj: Any, limit: int = 5) -> list[str]:
    """Each object in ``obj`` that is not plain checkpoint data, as ``'path: why'``.

    Plain data: ``dict``, ``list``, ``tuple``, ``set``, ``frozenset``, ``str``,
    ``bytes``, ``int``, ``float``, ``bool``, ``None``; ``OrderedDict`` with
    plain instance attributes (``_metadata``) and ``Counter`` (MMEngine's
    ``MultiStepLR`` state); tensors and ``nn.Parameter`` of the exact types,
    strided and without hooks; ``torch.Size``, dtypes and devices; numpy arrays
    and scalars of numeric or bool dtypes; ``HistoryBuffer`` with its three
    data attributes only.
    """
    problems, seen, todo = [], set(), [('checkpoint', obj)]
    while todo and len(problems) < limit:
        path, value = todo.pop()
        if id(value) in seen:
            continue
        seen.add(id(value))
        why, children = _classify(value)
        if why:
            problems.append(f'{path}: {why}')
        todo += [(f'{path}{step}', child) for step, child in children]
    return problems


def _classify(value: Any) -> tuple[str, list]:
    """Why ``value`` is not plain data ('' if it is), and its parts to check next."""
    kind = type(value)
    if kind in _ATOMS or kind in (torch.dtype, torch.device):
        return '', []
    if kind in _CONTAINERS:
        return _classify_container(value)
    if kind in (torch.Tensor, torch.nn.Parameter):
        hooks = getattr(value, '_backward_hooks', None)
        if value.layout != torch.strided or value.is_quantized or hooks:
            return f'a tensor with layout {value.layout} or hooks {hooks!r:.80}', []
        return '', [(f'.{k}', v) for k, v in vars(value).items()]
    if kind is np.ndarray or isinstance(value, np.generic):
        dtype = value.dtype
        if dtype.kind not in _NUMPY_KINDS or dtype.fields is not None or dtype.hasobject:
            return f'numpy {kind.__name__} of dtype {dtype!r}', []
        return '', []
    if kind is HistoryBuffer:
        if set(vars(value)) != HISTORY_BUFFER_ATTRIBUTES:
            return f'HistoryBuffer with attributes {sorted(vars(value))}', []
        return '', [(f'.{k}', v) for k, v in vars(value).items()]
    return f'{kind.__module__}.{kind.__qualname__} object {value!r:.80}', []


def _classify_container(value: Any) -> tuple[str, list]:
    if isinstance(value, dict):
        children = [(f'[{k!r:.40}]', v) for k, v in value.items()]
        children += [(f'<key {k!r:.40}>', k) for k in value]
    else:
        children = [(f'[{i}]', v) for i, v in enumerate(value)]
    attributes = getattr(value, '__dict__', {})
    if attributes and type(value) is not OrderedDict:
        return f'{type(value).__name__} with attributes {sorted(attributes)}', []
    return '', children + [(f'.{k}', v) for k, v in attributes.items()]


class LoadTimedOut(Exception):
    """A load ran past its time limit (a hang)."""


def check_outcome(
    load, name: str, state: ProcessState, refusals: tuple = CHECKPOINT_ERRORS
) -> tuple[str, Any]:
    """Run ``load()``: refused naming ``name``, or plain data; ``state`` unchanged.

    Args:
        load: Loads one checkpoint.
        name (str): What every refusal must name.
        state (ProcessState): The process before the load.
        refusals (tuple): The exception classes that count as refusals.

    Returns:
        tuple: ``('refused', error)`` or ``('loaded', checkpoint)``.

    Raises:
        AssertionError: A refusal that does not name the file, a result that is
            not plain data, or a change to the process (which is then undone).
    """
    problems: list[str] = []
    try:
        try:
            outcome = ('loaded', load())
        except refusals as error:
            outcome = ('refused', error)
        else:
            problems = plain_data_problems(outcome[1])
    finally:
        changes = state.changes()
        if changes:
            state.restore()
    # The worst first: a changed process, then a refusal that names no file, then objects.
    assert not changes, f'loading {name} changed the process: {changes}'
    if outcome[0] == 'refused':
        error = outcome[1]
        assert name in str(error), f'{type(error).__name__} does not name {name}: {error}'
    assert not problems, f'{name} loaded objects that are not data: {problems}'
    return outcome
