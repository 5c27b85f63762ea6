"""What a checkpoint may build, each thing rebuilt by value from checked arguments.

:class:`CheckpointBuilders` gives :class:`.restricted_unpickler.DataUnpickler`
meaning for the globals, calls and ``BUILD`` states that ``torch.save`` writes
for MMEngine checkpoints, and for nothing else:

==========================================  ===============================================
the file says                               what is built
==========================================  ===============================================
``collections.OrderedDict()``               an empty ``OrderedDict``; a later ``BUILD`` may
                                            set plain attributes (a state dict's ``_metadata``)
``torch._utils._rebuild_tensor_v2/v3``      a ``Tensor`` viewing a storage of this file, after
                                            checking offset, sizes and strides against it
``torch._utils._rebuild_parameter``         an ``nn.Parameter`` of such a tensor
``..._rebuild_parameter_with_state``,       the same, plus plain attributes; the type must be
``torch._tensor._rebuild_from_type_v2``     ``Tensor`` itself, the function a rebuild above
``collections.Counter({...: int})``         a ``Counter`` (MultiStepLR's milestones)
``torch.Size``, ``torch.device``,           those values
torch dtypes, ``_codecs.encode``,
``set``, ``frozenset``, ``complex``
``numpy.dtype`` + ``BUILD``                 a new numeric or bool dtype (no fields, no
                                            objects); only its byte order comes from the file
``numpy...._reconstruct`` + ``BUILD``       a new ndarray of such a dtype, from exactly
                                            ``size * itemsize`` raw bytes
``numpy....scalar``                         a numpy scalar of such a dtype
``numpy...._frombuffer`` (protocol 5)       a new ndarray of such a dtype from raw bytes
``HistoryBuffer`` (``NEWOBJ`` + ``BUILD``)  a ``HistoryBuffer`` from its three data fields;
                                            ``getattr(HistoryBuffer, <method>)`` entries of
                                            its state are checked and dropped
==========================================  ===============================================

Every other global is refused, whatever torch's or anyone's allow-list says.
``BUILD`` is accepted only on an object these builders created for it, once;
no ``__setstate__`` of the file's choosing is ever called. Attributes set from
a file must be plain names that the object's class does not define, so no
property, method or descriptor can be reached. :func:`check_data` walks the
result last and refuses anything that is not data (a stray global, a buffer
never given its state).
"""

import math
import re
from collections import Counter, OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from mmengine.logging import HistoryBuffer

from .restricted_unpickler import Damaged, GlobalRef, KeyGuard, Refused, short_repr

__all__ = ['CheckpointBuilders', 'StorageSource', 'StorageType', 'check_data']

HISTORY_BUFFER = f'{HistoryBuffer.__module__}.{HistoryBuffer.__qualname__}'
_HISTORY_DATA = ('_log_history', '_count_history', 'max_length')
_HISTORY_METHODS = frozenset(('min', 'max', 'current', 'mean'))
# numpy pickles a dtype as dtype(<kind><itemsize>, align, copy): e.g. 'f8', 'b1'.
_NUMPY_DTYPE_CODE = re.compile(r'[biufc][0-9]{1,2}')
_NUMERIC_KINDS = 'biufc'
_BYTE_ORDERS = ('<', '>', '|', '=')


@dataclass(frozen=True)
class StorageType:
    """A storage class named in a persistent id (``torch.FloatStorage``): its dtype."""

    dtype: torch.dtype


@dataclass(frozen=True)
class HistoryMethod:
    """``getattr(HistoryBuffer, name)`` in a buffer's pickled statistics; never called."""

    name: str


class StorageSource:
    """Gives the storages a pickle's persistent ids refer to (one per checkpoint format)."""

    def storage(self, pid: tuple) -> torch.storage.TypedStorage:
        raise NotImplementedError


_QUANTIZED = frozenset((torch.qint8, torch.qint32, torch.quint8, torch.quint4x2, torch.quint2x4))


def _storage_types() -> dict[str, StorageType]:
    """``torch.<Name>Storage`` for every non-quantized dtype, and ``UntypedStorage`` (bytes)."""
    untyped = StorageType(torch.uint8)
    types = {'torch.storage.UntypedStorage': untyped, 'torch.UntypedStorage': untyped}
    for dtype, name in torch.storage._dtype_to_storage_type_map().items():
        if dtype not in _QUANTIZED:
            types[f'torch.{name}'] = StorageType(dtype)
    return types


def _torch_dtypes() -> dict[str, torch.dtype]:
    return {
        f'torch.{name}': value
        for name, value in vars(torch).items()
        if isinstance(value, torch.dtype) and value not in _QUANTIZED
    }


def _is_int(value: Any, minimum: int = 0) -> bool:
    return type(value) is int and value >= minimum


def _int_tuple(value: Any, what: str) -> tuple[int, ...]:
    if type(value) not in (tuple, torch.Size) or not all(_is_int(v) for v in value):
        raise Damaged(f'{what} must be a tuple of non-negative ints, got {short_repr(value)}')
    return tuple(value)


def _set_plain_attributes(obj: Any, state: Any, what: str) -> None:
    """Set the attributes ``state`` names on ``obj`` (which we created) as data only."""
    parts = state if type(state) is tuple else (state,)
    if len(parts) > 2:
        raise Damaged(f'{what} state must be a dict or a pair of dicts')
    for part in parts:
        if part is None:
            continue
        if type(part) is not dict:
            raise Refused(f'{what} state is a {type(part).__name__}, not a dict of attributes')
        for key, value in part.items():
            if not (isinstance(key, str) and key.isidentifier()) or key.startswith('__'):
                raise Refused(f'{what} state sets the attribute {short_repr(key)}')
            if hasattr(type(obj), key):
                # A property, method or descriptor of the class: not plain data.
                raise Refused(
                    f'{what} state sets {short_repr(key)}, which {type(obj).__name__} defines'
                )
            vars(obj)[key] = value


class CheckpointBuilders:
    """Builds the objects of one checkpoint; see the module docstring for what.

    Args:
        storages (StorageSource): Resolves the file's persistent ids to storages.
    """

    def __init__(self, storages: StorageSource):
        self._storages = storages
        self.keys = KeyGuard()
        # id -> (object, finisher): objects that accept one BUILD, as the file's pickles do.
        self._buildable: dict[int, tuple[Any, Callable[[Any, Any], None]]] = {}
        # ids of objects that must get their BUILD before anything may use them.
        self._unfinished: set[int] = set()
        # id -> storage, kept alive so that no other object can take over its id.
        self._loaded_storages: dict[int, Any] = {}
        self._calls: dict[str, Callable[[tuple], Any]] = {
            'collections.OrderedDict': self._ordered_dict,
            'collections.Counter': self._counter,
            'torch._utils._rebuild_tensor_v2': self._rebuild_tensor_v2,
            'torch._utils._rebuild_tensor_v3': self._rebuild_tensor_v3,
            'torch._utils._rebuild_parameter': self._rebuild_parameter,
            'torch._utils._rebuild_parameter_with_state': self._rebuild_parameter_with_state,
            'torch._tensor._rebuild_from_type_v2': self._rebuild_from_type_v2,
            'torch.Size': self._size,
            'torch.device': self._device,
            'builtins.set': self._set,
            'builtins.frozenset': self._frozenset,
            'builtins.complex': self._complex,
            'builtins.getattr': self._history_method,
            '_codecs.encode': self._encode,
            'numpy.dtype': self._numpy_dtype,
        }
        for module in ('numpy.core', 'numpy._core'):
            self._calls[f'{module}.multiarray._reconstruct'] = self._numpy_reconstruct
            self._calls[f'{module}.multiarray.scalar'] = self._numpy_scalar
            self._calls[f'{module}.numeric._frombuffer'] = self._numpy_frombuffer
        self._constants: dict[str, Any] = {**_storage_types(), **_torch_dtypes()}
        # Protocol >= 4 names a buffer's statistics methods by qualified name.
        for method in _HISTORY_METHODS:
            self._constants[f'{HISTORY_BUFFER}.{method}'] = HistoryMethod(method)
        # Names that are only arguments of the calls above, never values of their own.
        self._references = {
            'numpy.ndarray',
            'torch.Tensor',
            HISTORY_BUFFER,
            *self._calls,
        }

    # --- what the unpickler asks -------------------------------------------------------

    def resolve_global(self, name: str) -> Any:
        if name in self._constants:
            return self._constants[name]
        if name in self._references:
            return GlobalRef(name)
        raise Refused(f'it names the global {short_repr(name)}, which is not data')

    def call(self, func: Any, args: tuple) -> Any:
        if type(func) is not GlobalRef or func.name not in self._calls:
            raise Refused(f'it calls {_describe(func)}, which builds no checkpoint data')
        self._check_finished(args)
        return self._calls[func.name](args)

    def new(self, cls: Any, args: tuple) -> Any:
        if type(cls) is not GlobalRef or cls.name != HISTORY_BUFFER:
            raise Refused(f'it creates an instance of {_describe(cls)} (NEWOBJ)')
        if args != ():
            raise Refused('it creates a HistoryBuffer with constructor arguments')
        buffer = object.__new__(HistoryBuffer)
        self._expect_build(buffer, self._finish_history_buffer, required=True)
        return buffer

    def build(self, obj: Any, state: Any) -> None:
        entry = self._buildable.pop(id(obj), None)
        if entry is None or entry[0] is not obj:
            raise Refused(
                f'it sets the state of {_describe(obj)}, which was not created to receive one'
            )
        self._check_finished(state)
        entry[1](obj, state)
        self._unfinished.discard(id(obj))

    def persistent_load(self, pid: Any) -> Any:
        if type(pid) is not tuple or not pid or pid[0] not in ('storage', b'storage'):
            raise Damaged(f'a persistent id that names no storage: {short_repr(pid)}')
        if len(pid) < 2 or type(pid[1]) is not StorageType:
            raise Refused(f'a storage of type {_describe(pid[1] if len(pid) > 1 else None)}')
        storage = self._storages.storage(pid)
        self._loaded_storages[id(storage)] = storage
        return storage

    # --- bookkeeping -------------------------------------------------------------------

    def _expect_build(self, obj: Any, finisher: Callable, required: bool) -> None:
        self._buildable[id(obj)] = (obj, finisher)
        if required:
            self._unfinished.add(id(obj))

    def _check_finished(self, values: Any) -> None:
        items = values if type(values) in (tuple, list) else (values,)
        for item in items:
            if id(item) in self._unfinished:
                raise Damaged(f'it uses a {type(item).__name__} before giving it its state')

    # --- containers and scalars --------------------------------------------------------

    def _ordered_dict(self, args: tuple) -> OrderedDict:
        if args != ():
            raise Refused('it calls OrderedDict with arguments (torch.save never does)')
        result = OrderedDict()
        self._expect_build(result, self._finish_plain_attributes, required=False)
        return result

    def _counter(self, args: tuple) -> Counter:
        # MMEngine's MultiStepLR keeps its milestones in a Counter: Counter({epoch: count}).
        if len(args) > 1 or (args and type(args[0]) is not dict):
            raise Damaged(f'Counter() of {short_repr(args)}')
        counts = args[0] if args else {}
        self.keys.check(counts)
        if not all(type(v) is int for v in counts.values()):
            raise Damaged('a Counter whose counts are not ints')
        return Counter(counts)

    def _finish_plain_attributes(self, obj: Any, state: Any) -> None:
        _set_plain_attributes(obj, state, type(obj).__name__)

    def _set(self, args: tuple) -> set:
        return set(self._hashable_items(args, 'set'))

    def _frozenset(self, args: tuple) -> frozenset:
        return frozenset(self._hashable_items(args, 'frozenset'))

    def _hashable_items(self, args: tuple, what: str) -> Any:
        if len(args) != 1 or type(args[0]) not in (list, tuple):
            raise Damaged(f'{what}() needs one list of items')
        self.keys.check(args[0])
        return args[0]

    @staticmethod
    def _complex(args: tuple) -> complex:
        if not 1 <= len(args) <= 2 or not all(type(a) in (int, float) for a in args):
            raise Damaged(f'complex() of {short_repr(args)}')
        return complex(*args)

    @staticmethod
    def _encode(args: tuple) -> bytes:
        # Protocol 2 has no bytes opcode: bytes are pickled as encode(text, 'latin1').
        if len(args) != 2 or type(args[0]) is not str or args[1] not in ('latin1', 'latin-1'):
            raise Refused('it calls _codecs.encode other than to make bytes (text, "latin1")')
        return args[0].encode('latin-1')

    @staticmethod
    def _size(args: tuple) -> torch.Size:
        if len(args) != 1:
            raise Damaged('torch.Size() needs one tuple')
        return torch.Size(_int_tuple(args[0], 'torch.Size'))

    @staticmethod
    def _device(args: tuple) -> torch.device:
        if not (1 <= len(args) <= 2 and type(args[0]) is str):
            raise Damaged(f'torch.device() of {short_repr(args)}')
        if len(args) == 2 and not _is_int(args[1]):
            raise Damaged(f'torch.device() of {short_repr(args)}')
        return torch.device(*args)

    @staticmethod
    def _history_method(args: tuple) -> HistoryMethod:
        if len(args) == 2 and args[0] == GlobalRef(HISTORY_BUFFER) and args[1] in _HISTORY_METHODS:
            return HistoryMethod(args[1])
        raise Refused(
            f'it calls getattr{_describe_args(args)}; only getattr(HistoryBuffer, <statistics '
            'method>) appears in checkpoints'
        )

    # --- tensors -----------------------------------------------------------------------

    def _tensor(self, storage: Any, offset: Any, size: Any, stride: Any, dtype: torch.dtype):
        if self._loaded_storages.get(id(storage)) is not storage:
            raise Refused(f'it builds a tensor on {_describe(storage)}, not a storage of the file')
        size = _int_tuple(size, 'tensor size')
        stride = _int_tuple(stride, 'tensor stride')
        if len(size) != len(stride):
            raise Damaged(f'tensor size {size} and stride {stride} differ in length')
        if not _is_int(offset):
            raise Damaged(
                f'tensor storage offset must be a non-negative int, got {short_repr(offset)}'
            )
        itemsize = torch._utils._element_size(dtype)
        capacity = storage._untyped_storage.nbytes() // itemsize
        numel = math.prod(size)
        if numel:
            end = offset + sum((n - 1) * s for n, s in zip(size, stride)) + 1
            if end > capacity or numel > capacity:
                raise Damaged(
                    f'a tensor of size {size}, stride {stride} at offset {offset} needs '
                    f'{max(end, numel)} elements, but its storage holds {capacity}'
                )
        elif offset > capacity:
            raise Damaged(f'tensor offset {offset} is past its storage of {capacity} elements')
        tensor = torch.empty((0,), dtype=dtype, device=storage._untyped_storage.device)
        return tensor.set_(storage._untyped_storage, offset, size, stride)

    @staticmethod
    def _check_tensor_extras(requires_grad: Any, hooks: Any, metadata: Any) -> None:
        if type(requires_grad) is not bool:
            raise Damaged(f'requires_grad must be a bool, got {short_repr(requires_grad)}')
        if type(hooks) is not OrderedDict or hooks:
            raise Refused('a tensor with backward hooks (torch.save never writes them)')
        if metadata:
            raise Refused(
                f'a tensor with metadata {short_repr(metadata)} (conjugate/negative views)'
            )

    def _rebuild_tensor_v2(self, args: tuple) -> torch.Tensor:
        if len(args) not in (6, 7):
            raise Damaged(f'_rebuild_tensor_v2 takes 6 or 7 arguments, got {len(args)}')
        storage, offset, size, stride, requires_grad, hooks, *metadata = args
        self._check_tensor_extras(requires_grad, hooks, metadata[0] if metadata else None)
        dtype = getattr(storage, 'dtype', None)
        if not isinstance(dtype, torch.dtype):
            raise Refused(f'it builds a tensor on {_describe(storage)}')
        tensor = self._tensor(storage, offset, size, stride, dtype)
        tensor.requires_grad = requires_grad
        return tensor

    def _rebuild_tensor_v3(self, args: tuple) -> torch.Tensor:
        if len(args) not in (7, 8):
            raise Damaged(f'_rebuild_tensor_v3 takes 7 or 8 arguments, got {len(args)}')
        storage, offset, size, stride, requires_grad, hooks, dtype, *metadata = args
        self._check_tensor_extras(requires_grad, hooks, metadata[0] if metadata else None)
        if dtype not in self._constants.values() or not isinstance(dtype, torch.dtype):
            raise Refused(f'a tensor of dtype {_describe(dtype)}')
        tensor = self._tensor(storage, offset, size, stride, dtype)
        tensor.requires_grad = requires_grad
        return tensor

    @staticmethod
    def _plain_tensor(data: Any, what: str) -> torch.Tensor:
        if type(data) is not torch.Tensor:
            raise Refused(f'{what} of {_describe(data)}, not a tensor')
        return data

    def _rebuild_parameter(self, args: tuple) -> torch.nn.Parameter:
        if len(args) != 3:
            raise Damaged(f'_rebuild_parameter takes 3 arguments, got {len(args)}')
        data, requires_grad, hooks = args
        self._check_tensor_extras(requires_grad, hooks, None)
        return torch.nn.Parameter(self._plain_tensor(data, 'a Parameter'), requires_grad)

    def _rebuild_parameter_with_state(self, args: tuple) -> torch.nn.Parameter:
        if len(args) != 4:
            raise Damaged(f'_rebuild_parameter_with_state takes 4 arguments, got {len(args)}')
        param = self._rebuild_parameter(args[:3])
        _set_plain_attributes(param, args[3], 'Parameter')
        return param

    def _rebuild_from_type_v2(self, args: tuple) -> torch.Tensor:
        if len(args) != 4:
            raise Damaged(f'_rebuild_from_type_v2 takes 4 arguments, got {len(args)}')
        func, new_type, func_args, state = args
        rebuilds = {
            'torch._utils._rebuild_tensor_v2': self._rebuild_tensor_v2,
            'torch._utils._rebuild_tensor_v3': self._rebuild_tensor_v3,
        }
        if type(func) is not GlobalRef or func.name not in rebuilds:
            raise Refused(f'_rebuild_from_type_v2 calls {_describe(func)}, not a tensor rebuild')
        if new_type != GlobalRef('torch.Tensor'):
            raise Refused(f'a tensor of type {_describe(new_type)} (only torch.Tensor is data)')
        if type(func_args) is not tuple:
            raise Damaged('_rebuild_from_type_v2 with arguments that are not a tuple')
        tensor = rebuilds[func.name](func_args)
        _set_plain_attributes(tensor, state, 'Tensor')
        return tensor

    # --- numpy -------------------------------------------------------------------------

    def _numpy_dtype(self, args: tuple) -> np.dtype:
        if (
            len(args) != 3
            or type(args[0]) is not str
            or not _NUMPY_DTYPE_CODE.fullmatch(args[0])
            or type(args[1]) is not bool
            or type(args[2]) is not bool
        ):
            raise Refused(f'numpy.dtype{_describe_args(args)}, not a numeric or bool dtype')
        # copy=True: a new dtype object, never the one the whole process shares.
        dtype = np.dtype(args[0], False, True)
        if dtype.kind not in _NUMERIC_KINDS or dtype.fields is not None or dtype.hasobject:
            raise Refused(f'numpy.dtype({args[0]!r}), not a numeric or bool dtype')
        self._expect_build(dtype, self._finish_dtype, required=True)
        return dtype

    @staticmethod
    def _finish_dtype(dtype: np.dtype, state: Any) -> None:
        plain = (None, None, None, -1, -1, 0)
        if type(state) is not tuple or len(state) != 8 or state[0] != 3 or state[2:] != plain:
            raise Refused(
                f'a numpy dtype state {short_repr(state)}: only plain numeric dtypes load'
            )
        if state[1] not in _BYTE_ORDERS:
            raise Damaged(f'numpy byte order {short_repr(state[1])}')
        # Only the byte order comes from the file; the rest is the plain form.
        dtype.__setstate__((3, state[1], *plain))

    def _numeric_dtype(self, dtype: Any, what: str) -> np.dtype:
        if not isinstance(dtype, np.dtype):
            raise Refused(f'{what} of dtype {_describe(dtype)}')
        if dtype.kind not in _NUMERIC_KINDS or dtype.fields is not None or dtype.hasobject:
            raise Refused(f'{what} of dtype {dtype}')
        return dtype

    def _numpy_reconstruct(self, args: tuple) -> np.ndarray:
        if args != (GlobalRef('numpy.ndarray'), (0,), b'b'):
            raise Refused(f'numpy _reconstruct{_describe_args(args)}: only plain ndarrays load')
        array = np.empty((0,), dtype=np.int8)
        self._expect_build(array, self._finish_array, required=True)
        return array

    def _finish_array(self, array: np.ndarray, state: Any) -> None:
        if type(state) is not tuple or len(state) != 5 or state[0] != 1:
            raise Damaged(f'an ndarray state {short_repr(state)}')
        _, shape, dtype, fortran, raw = state
        shape = _int_tuple(shape, 'ndarray shape')
        dtype = self._numeric_dtype(dtype, 'an array')
        if type(fortran) is not bool or type(raw) is not bytes:
            raise Damaged('an ndarray state whose order flag or data has the wrong type')
        if len(raw) != math.prod(shape) * dtype.itemsize:
            raise Damaged(
                f'an ndarray of shape {shape} and dtype {dtype} needs '
                f'{math.prod(shape) * dtype.itemsize} bytes, got {len(raw)}'
            )
        array.__setstate__((1, shape, dtype, fortran, raw))

    def _numpy_frombuffer(self, args: tuple) -> np.ndarray:
        # How protocol 5 pickles an array: _frombuffer(raw, dtype, shape, order).
        if len(args) != 4 or type(args[0]) not in (bytes, bytearray) or args[3] not in 'CF':
            raise Damaged(f'numpy _frombuffer{_describe_args(args)}')
        raw, dtype, shape, order = args
        dtype = self._numeric_dtype(dtype, 'an array')
        shape = _int_tuple(shape, 'ndarray shape')
        if len(raw) != math.prod(shape) * dtype.itemsize:
            raise Damaged(f'an ndarray of shape {shape} and dtype {dtype} from {len(raw)} bytes')
        return np.frombuffer(bytes(raw), dtype=dtype).reshape(shape, order=order).copy()

    def _numpy_scalar(self, args: tuple) -> np.generic:
        if len(args) != 2 or type(args[1]) is not bytes:
            raise Damaged(f'numpy scalar{_describe_args(args)}')
        dtype = self._numeric_dtype(args[0], 'a numpy scalar')
        if len(args[1]) != dtype.itemsize:
            raise Damaged(f'a numpy {dtype} scalar of {len(args[1])} bytes')
        return np.frombuffer(args[1], dtype=dtype)[0]

    # --- MMEngine ----------------------------------------------------------------------

    def _finish_history_buffer(self, buffer: HistoryBuffer, state: Any) -> None:
        if type(state) is not dict:
            raise Damaged(f'HistoryBuffer state must be a dict, got {type(state).__name__}')
        allowed = {*_HISTORY_DATA, 'statistics_methods'}
        unknown = sorted(str(key) for key in set(state) - allowed)
        missing = [key for key in _HISTORY_DATA if key not in state]
        if unknown or missing:
            raise Refused(f'HistoryBuffer state with keys unknown: {unknown}, missing: {missing}')
        methods = state.get('statistics_methods', {})
        if type(methods) is not dict or not all(isinstance(k, str) for k in methods):
            raise Damaged('HistoryBuffer statistics methods must be a dict of names')
        logs, counts, max_length = (state[key] for key in _HISTORY_DATA)
        self._check_finished((logs, counts))
        for key, array in (('_log_history', logs), ('_count_history', counts)):
            if not (type(array) is np.ndarray and array.ndim == 1 and array.dtype.kind in 'biuf'):
                raise Damaged(f'HistoryBuffer {key} must be a 1-D numeric array')
        if len(logs) != len(counts):
            raise Damaged(f'HistoryBuffer holds {len(logs)} values but {len(counts)} counts')
        if not _is_int(max_length, 1):
            raise Damaged(
                f'HistoryBuffer max_length must be a positive int, got {short_repr(max_length)}'
            )
        # The statistics methods are the process's own (HistoryBuffer's class dict),
        # never the file's: its entries are dropped unused, whatever they name.
        vars(buffer).update(_log_history=logs, _count_history=counts, max_length=max_length)


def _describe(obj: Any) -> str:
    if type(obj) is GlobalRef:
        return obj.name
    return f'a {type(obj).__module__}.{type(obj).__qualname__} object'


_SHOWN_AS_VALUES = (type(None), bool, int, float, str, bytes, tuple, list)


def _describe_args(args: tuple) -> str:
    # Values the file wrote are shown as such, objects by their type only (a
    # storage's repr would print its data, and warns that TypedStorage is deprecated).
    shown = (short_repr(a) if type(a) in _SHOWN_AS_VALUES else _describe(a) for a in args)
    return '(' + ', '.join(shown) + ')'


_LEAF_TYPES = (
    type(None),
    bool,
    int,
    float,
    complex,
    str,
    bytes,
    bytearray,
    torch.dtype,
    torch.device,
    torch.Size,
)


def check_data(obj: Any, builders: CheckpointBuilders) -> None:
    """Refuse anything in ``obj`` that is not data, or that never got the state it needs.

    Walks containers and the attributes set from the file, without recursion
    (a file can nest deeply or refer to itself).
    """
    seen: set[int] = set()
    todo = [obj]
    while todo:
        item = todo.pop()
        if id(item) in seen:
            continue
        seen.add(id(item))
        kind = type(item)
        if id(item) in builders._unfinished:
            raise Refused(f'it leaves a {kind.__name__} without its state')
        if kind in _LEAF_TYPES:
            continue
        if kind in (list, tuple, set, frozenset):
            todo.extend(item)
        elif kind in (dict, OrderedDict, Counter):
            todo.extend(item.keys())
            todo.extend(item.values())
            todo.extend(vars(item).values() if kind is OrderedDict else ())
        elif kind in (torch.Tensor, torch.nn.Parameter):
            todo.extend(vars(item).values())
        elif isinstance(item, np.dtype):
            builders._numeric_dtype(item, 'a value')
        elif kind is np.ndarray or isinstance(item, np.generic):
            builders._numeric_dtype(item.dtype, 'an array')
        elif kind is HistoryBuffer:
            todo.extend(vars(item).values())
        else:
            raise Refused(f'it holds {_describe(item)}, which is not data')
