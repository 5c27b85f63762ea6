"""Bytes of hostile, malformed and good checkpoint files, for the restricted loader's tests.

Each builder returns the bytes of one file that attacks one mechanism of the
checkpoint loader (``chrnn_plugin.engine.load_checkpoint_safely``):

* **chains** (:func:`setstate_chain_checkpoint`): torch's allow-listed
  ``_rebuild_from_type_v2(func, new_type, args, state)`` calls ``func(*args)``,
  then ``ret.as_subclass(new_type)`` when ``type(ret) is not new_type``, then
  ``ret.__setstate__(state)`` or ``setattr(ret, key, value)``. ``func`` and
  ``ret.as_subclass`` can be anything the file put on the stack: with
  ``getattr(HistoryBuffer, 'current')`` (``self._log_history[-1]``) and holder
  objects whose ``_log_history`` the file chose, ``ret`` becomes any
  process-wide object, such as the ``torch.Tensor`` class.
* **numpy** (:func:`structured_dtype_checkpoint`): the same call runs
  ``dtype.__setstate__`` on a structured dtype after an array was built from
  raw bytes with it, so the array's bytes become object pointers.
* **globals other libraries allow-list** (``traceback.FrameSummary``, builtin
  exceptions, ``DeviceMesh``), an **escaped GLOBAL name**, and **malformed
  files** (bad memo, empty stack, huge or short storages, compressed or
  bit-flipped zip entries, cut-short files).

:class:`PickleAssembler` writes ``data.pkl`` opcode by opcode from a small tree
of nodes (:class:`Global`, :class:`Call`, :class:`New`, :class:`Build`,
:class:`Storage`, :class:`Raw`, and plain Python values), and
:func:`zip_checkpoint` / :func:`legacy_checkpoint` package it in the two layouts
``torch.save`` writes; :func:`patch_zip_field` then edits zip headers.
:data:`HISTORY_BUFFER_VARIANTS` and :data:`NUMPY_VARIANTS` are buffer and array states
the loader must refuse. :func:`good_checkpoint` is what an MMEngine runner saves,
:func:`every_allowed_type` one value of each kind the loader may build.
"""

import io
import pickle
import struct
import zipfile
from collections import Counter, OrderedDict
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import torch
from mmengine.logging import HistoryBuffer
from torch import nn

# -- a pickle assembler ---------------------------------------------------------------


class Global(NamedTuple):
    """``GLOBAL module name``: the names are written as they are, escapes included."""

    module: str
    name: str


@dataclass(eq=False)
class Call:
    """``func(*args)``: REDUCE."""

    func: Any
    args: tuple = ()


@dataclass(eq=False)
class New:
    """``cls.__new__(cls, *args)``: NEWOBJ."""

    cls: Any
    args: tuple = ()


@dataclass(eq=False)
class Build:
    """``obj`` with ``state`` applied: BUILD (``__setstate__``, or the ``__dict__`` update)."""

    obj: Any
    state: Any


@dataclass(eq=False)
class Storage:
    """A storage's persistent id (BINPERSID) as ``torch.save`` writes it.

    The zip layout writes ``('storage', type, key, location, numel)``; the legacy
    layout adds ``view_metadata`` (``None``).
    """

    key: str
    numel: int
    storage_type: str = 'FloatStorage'
    location: str = 'cpu'
    legacy: bool = False


@dataclass(frozen=True)
class Raw:
    """Opcode bytes written as they are (for malformed pickles)."""

    data: bytes


ORDERED_DICT = Global('collections', 'OrderedDict')
HISTORY_BUFFER = Global('mmengine.logging.history_buffer', 'HistoryBuffer')
GETATTR = Global('builtins', 'getattr')
REBUILD_TENSOR_V2 = Global('torch._utils', '_rebuild_tensor_v2')
REBUILD_FROM_TYPE_V2 = Global('torch._tensor', '_rebuild_from_type_v2')
NUMPY_DTYPE = Global('numpy', 'dtype')
NUMPY_NDARRAY = Global('numpy', 'ndarray')
NUMPY_RECONSTRUCT = Global('numpy._core.multiarray', '_reconstruct')
CODECS_ENCODE = Global('_codecs', 'encode')


class PickleAssembler:
    """Write a node tree as pickle protocol 2 opcodes, the subset ``torch.save`` uses.

    Every node, list, dict and non-empty tuple is memoized (BINPUT) when first
    written and fetched (BINGET) when met again, so reusing a node object in the
    tree makes the unpickled objects shared, as they are in the file's program.
    """

    def __init__(self) -> None:
        self.out = bytearray(pickle.PROTO + b'\x02')
        self.memo: dict[int, int] = {}
        self.keep: list = []  # the memoized objects stay alive, so their ids stay unique

    def program(self, root: Any) -> bytes:
        """The whole pickle of ``root``, PROTO to STOP."""
        self.write(root)
        self.out += pickle.STOP
        return bytes(self.out)

    def write(self, node: Any) -> None:
        """Write the opcodes that push ``node`` on the stack."""
        if id(node) in self.memo:
            self._get(self.memo[id(node)])
            return
        if node is None or isinstance(node, (bool, int, float, str, bytes)):
            self._scalar(node)
            return
        if isinstance(node, Raw):
            self.out += node.data
            return
        if isinstance(node, tuple) and not isinstance(node, Global) and not node:
            self.out += pickle.EMPTY_TUPLE
            return
        self._compound(node)
        self._put(node)

    def _compound(self, node: Any) -> None:
        if isinstance(node, Global):
            self.out += pickle.GLOBAL + f'{node.module}\n{node.name}\n'.encode()
        elif isinstance(node, tuple):
            self._tuple(node)
        elif isinstance(node, list):
            self.out += pickle.EMPTY_LIST
            self._put(node)
            self._items(node, pickle.APPENDS)
        elif isinstance(node, OrderedDict):
            self.write(Call(ORDERED_DICT))
            self._put(node)
            self._items([part for item in node.items() for part in item], pickle.SETITEMS)
        elif isinstance(node, dict):
            self.out += pickle.EMPTY_DICT
            self._put(node)
            self._items([part for item in node.items() for part in item], pickle.SETITEMS)
        elif isinstance(node, (Call, New)):
            self.write(node.func if isinstance(node, Call) else node.cls)
            self.write(tuple(node.args))
            self.out += pickle.REDUCE if isinstance(node, Call) else pickle.NEWOBJ
        elif isinstance(node, Build):
            self.write(node.obj)
            self.write(node.state)
            self.out += pickle.BUILD
        elif isinstance(node, Storage):
            pid = ('storage', Global('torch', node.storage_type), node.key, node.location)
            self.write((*pid, node.numel, None) if node.legacy else (*pid, node.numel))
            self.out += pickle.BINPERSID
        else:
            raise TypeError(f'cannot assemble {type(node).__name__}: {node!r:.80}')

    def _tuple(self, node: tuple) -> None:
        if len(node) > 3:
            self.out += pickle.MARK
        for item in node:
            self.write(item)
        self.out += {1: pickle.TUPLE1, 2: pickle.TUPLE2, 3: pickle.TUPLE3}.get(
            len(node), pickle.TUPLE
        )

    def _items(self, items: list, opcode: bytes) -> None:
        if items:
            self.out += pickle.MARK
            for item in items:
                self.write(item)
            self.out += opcode

    def _scalar(self, value: Any) -> None:
        if value is None:
            self.out += pickle.NONE
        elif isinstance(value, bool):
            self.out += pickle.NEWTRUE if value else pickle.NEWFALSE
        elif isinstance(value, int):
            self.out += _int_opcode(value)
        elif isinstance(value, float):
            self.out += pickle.BINFLOAT + struct.pack('>d', value)
        elif isinstance(value, str):
            data = value.encode('utf-8', 'surrogatepass')
            self.out += pickle.BINUNICODE + struct.pack('<I', len(data)) + data
        else:  # bytes, the way protocol 2 writes them
            self.write(Call(CODECS_ENCODE, (value.decode('latin-1'), 'latin1')))

    def _put(self, node: Any) -> None:
        index = len(self.memo)
        self.memo[id(node)] = index
        self.keep.append(node)
        if index < 256:
            self.out += pickle.BINPUT + bytes([index])
        else:
            self.out += pickle.LONG_BINPUT + struct.pack('<I', index)

    def _get(self, index: int) -> None:
        if index < 256:
            self.out += pickle.BINGET + bytes([index])
        else:
            self.out += pickle.LONG_BINGET + struct.pack('<I', index)


def _int_opcode(value: int) -> bytes:
    if 0 <= value < 0x100:
        return pickle.BININT1 + bytes([value])
    if 0 <= value < 0x10000:
        return pickle.BININT2 + struct.pack('<H', value)
    if -(2**31) <= value < 2**31:
        return pickle.BININT + struct.pack('<i', value)
    data = pickle.encode_long(value)
    return pickle.LONG1 + bytes([len(data)]) + data


def assemble(root: Any) -> bytes:
    """The pickle (``data.pkl``) whose unpickling builds ``root``."""
    return PickleAssembler().program(root)


# -- the two torch.save layouts --------------------------------------------------------

ZIP_PREFIX = 'archive'
# torch.serialization's legacy layout: magic number, protocol version, system info.
LEGACY_MAGIC_NUMBER = 0x1950A86A20F9469CFC6C
LEGACY_PROTOCOL_VERSION = 1001
LEGACY_SYS_INFO = {
    'protocol_version': LEGACY_PROTOCOL_VERSION,
    'little_endian': True,
    'type_sizes': {'short': 2, 'int': 4, 'long': 8},
}


def zip_records(data_pkl: bytes, storages: dict | None = None) -> list[tuple[str, bytes]]:
    """The records of torch's zip layout, in the order ``torch.save`` writes them."""
    records = [('data.pkl', data_pkl), ('byteorder', b'little')]
    records += [(f'data/{key}', data) for key, data in (storages or {}).items()]
    records.append(('version', b'3\n'))
    return records


def write_zip(
    records: list[tuple[str, Any]],
    prefix: str | None = ZIP_PREFIX,
    compression: dict[str, int] | None = None,
) -> bytes:
    """Package ``(name, data)`` records as torch's zip archive (stored, CRC-32 correct).

    ``data`` is bytes, or an iterable of byte chunks (written one by one, so a
    large record never sits in memory). The entries are named
    ``prefix/name``, or ``name`` if ``prefix`` is ``None``. ``compression``
    maps record names to another ``zipfile`` method.
    """
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, 'w') as archive:
        for name, data in records:
            info = zipfile.ZipInfo(name if prefix is None else f'{prefix}/{name}')
            info.compress_type = (compression or {}).get(name, zipfile.ZIP_STORED)
            with archive.open(info, 'w') as entry:
                for chunk in [data] if isinstance(data, (bytes, bytearray)) else data:
                    entry.write(chunk)
    return buffer.getvalue()


def zip_checkpoint(root: Any, storages: dict | None = None, **options) -> bytes:
    """A zip-layout checkpoint whose ``data.pkl`` builds ``root`` (see :func:`write_zip`)."""
    return write_zip(zip_records(assemble(root), storages), **options)


def legacy_checkpoint(root: Any, storages: dict | None = None) -> bytes:
    """A legacy-layout checkpoint (``_use_new_zipfile_serialization=False``).

    ``storages`` maps keys to ``(numel, raw bytes)``; the bytes follow the
    pickles, each after its element count, as ``torch.save`` writes them.
    """
    storages = storages or {}
    parts = [
        pickle.dumps(value, protocol=2)
        for value in (LEGACY_MAGIC_NUMBER, LEGACY_PROTOCOL_VERSION, LEGACY_SYS_INFO)
    ]
    parts += [assemble(root), pickle.dumps(sorted(storages), protocol=2)]
    for key in sorted(storages):
        numel, data = storages[key]
        parts.append(struct.pack('<q', numel) + data)
    return b''.join(parts)


def tensor_node(storage: Storage, size: tuple, stride: tuple | None = None, offset: int = 0):
    """``_rebuild_tensor_v2`` of ``storage``, as ``torch.save`` writes a plain tensor."""
    stride = stride if stride is not None else _contiguous_stride(size)
    return Call(REBUILD_TENSOR_V2, (storage, offset, size, stride, False, Call(ORDERED_DICT)))


def _contiguous_stride(size: tuple) -> tuple:
    stride, step = [], 1
    for extent in reversed(size):
        stride.append(step)
        step *= extent
    return tuple(reversed(stride))


def float_bytes(*values: float) -> bytes:
    """The raw bytes of a little-endian float32 storage."""
    return struct.pack(f'<{len(values)}f', *values)


def _small_tensor_checkpoint(meta: Any) -> bytes:
    """``{'state_dict': {'w': tensor([1., 2.])}, 'meta': meta}`` in the zip layout."""
    weight = tensor_node(Storage('0', 2), (2,))
    return zip_checkpoint({'state_dict': {'w': weight}, 'meta': meta}, {'0': float_bytes(1.0, 2.0)})


# -- data nodes, as numpy and MMEngine pickle them ------------------------------------


def numpy_dtype_node(code: str, byteorder: str = '<') -> Build:
    """``np.dtype(code)`` as numpy pickles it: REDUCE, then BUILD with its state."""
    return Build(
        Call(NUMPY_DTYPE, (code, False, True)), (3, byteorder, None, None, None, -1, -1, 0)
    )


def numpy_array_node(dtype: Any, shape: tuple, data: Any, fortran: bool = False) -> Build:
    """An ndarray as numpy pickles it: ``_reconstruct``, then BUILD with shape, dtype, data."""
    empty = Call(NUMPY_RECONSTRUCT, (NUMPY_NDARRAY, (0,), b'b'))
    return Build(empty, (1, shape, dtype, fortran, data))


def history_buffer_state(**changes) -> dict:
    """A valid ``HistoryBuffer`` state (values 1 and 3), with ``changes`` (``None`` removes)."""
    state = {
        '_log_history': numpy_array_node(numpy_dtype_node('f8'), (2,), struct.pack('<2d', 1, 3)),
        '_count_history': numpy_array_node(numpy_dtype_node('i8'), (2,), struct.pack('<2q', 1, 1)),
        'max_length': 10,
    }
    state.update(changes)
    return {key: value for key, value in state.items() if value is not None}


def history_buffer_node(**changes) -> Build:
    """A ``HistoryBuffer`` as MMEngine pickles it: NEWOBJ, then BUILD with its state."""
    return Build(New(HISTORY_BUFFER), history_buffer_state(**changes))


# -- mechanism 2: _rebuild_from_type_v2 chains -------------------------------------------

# setstate_chain_checkpoint's targets: (what the file reaches, the state it applies).
CHAIN_TARGETS = {
    # setattr(torch.Tensor, 'chrnn_pwned', ...): an attribute on the class
    'tensor_class_attribute': lambda: (Global('torch', 'Tensor'), {'chrnn_pwned': 'by a file'}),
    # setattr(torch.Tensor, 'backward', set): loss.backward() returns set() and does nothing
    'tensor_backward_noop': lambda: (
        Global('torch', 'Tensor'),
        {'backward': Global('builtins', 'set')},
    ),
    # setattr(HistoryBuffer.mean, '__defaults__', (1,)): mean() averages the last value only
    'function_defaults': lambda: (
        Call(GETATTR, (HISTORY_BUFFER, 'mean')),
        {'__defaults__': (1,)},
    ),
    # MMEngine's HistoryBuffer.__setstate__ on a buffer: 'mean' becomes max, process-wide
    'mean_statistic': lambda: (
        history_buffer_node(),
        {'statistics_methods': {'mean': Call(GETATTR, (HISTORY_BUFFER, 'max'))}},
    ),
    # setattr(<the class HistoryBuffer's pickled name resolves to>, '__setstate__', set):
    # the loader's own guard stops checking buffers
    'guard_setstate': lambda: (HISTORY_BUFFER, {'__setstate__': Global('builtins', 'set')}),
}


def _holder(holder: str) -> Call:
    """An object the file may set attributes on: an ``OrderedDict`` or an exception."""
    if holder == 'OrderedDict':
        return Call(ORDERED_DICT)
    return Call(Global('builtins', 'ValueError'))


def setstate_chain(target: Any, state: Any, holder: str = 'OrderedDict') -> Call:
    """``_rebuild_from_type_v2`` calling ``__setstate__`` or ``setattr`` on ``target``.

    ``func`` is ``HistoryBuffer.current``: ``current(pivot)`` is
    ``pivot._log_history[-1]``, the pivot itself. Its type is not ``new_type``
    (the holder object), so ``_rebuild_from_type_v2`` calls
    ``pivot.as_subclass(holder)``, which is ``current`` again (an instance
    attribute): ``holder._log_history[-1]``, the target. The target's class has
    no ``__setstate__`` of its own (classes, functions) and gets
    ``setattr(target, key, value)`` for each item of ``state``, or has one
    (``HistoryBuffer``, numpy dtypes) and gets ``target.__setstate__(state)``.
    """
    current = Call(GETATTR, (HISTORY_BUFFER, 'current'))
    pivot = _holder(holder)
    pivot_built = Build(pivot, {'as_subclass': current, '_log_history': [pivot]})
    reaches_target = Build(_holder(holder), {'_log_history': [target]})
    return Call(REBUILD_FROM_TYPE_V2, (current, reaches_target, (pivot_built,), state))


def setstate_chain_checkpoint(
    variant: str, holder: str = 'OrderedDict', refused_after: bool = False
) -> bytes:
    """A small checkpoint whose ``meta`` runs the chain of ``CHAIN_TARGETS[variant]``.

    Args:
        variant (str): A key of :data:`CHAIN_TARGETS`.
        holder (str): ``'OrderedDict'`` (allowed by torch by default) or
            ``'exception'`` (allow-listed once ``torch.distributed`` is imported).
        refused_after (bool): Follow the chain with ``getattr(HistoryBuffer,
            '__init__')``, which today's loader refuses after building the chain.
    """
    target, state = CHAIN_TARGETS[variant]()
    meta = {'chain': setstate_chain(target, state, holder)}
    if refused_after:
        meta['refused'] = Call(GETATTR, (HISTORY_BUFFER, '__init__'))
    return _small_tensor_checkpoint(meta)


# -- mechanism 3: a structured dtype gets an object field -------------------------------

# numpy's flags of a dtype holding objects (NPY_OBJECT_DTYPE_FLAGS): the array is
# then DECREF'd field by field when it is freed.
NUMPY_OBJECT_DTYPE_FLAGS = np.dtype([('a', 'O')]).flags


def structured_dtype_checkpoint() -> bytes:
    """An array built from raw bytes, whose dtype the chain then turns into objects.

    Freeing (or reading) the array dereferences ``0x4141414141414141``: the
    process segfaults unless the loader refuses the file.
    """
    dtype = Call(NUMPY_DTYPE, ([('a', '<i8')],))
    array = numpy_array_node(dtype, (1,), b'A' * 8)
    object_dtype = Call(NUMPY_DTYPE, ('O', False, True))
    state = (3, '|', None, ('a',), {'a': (object_dtype, 0)}, 8, 1, NUMPY_OBJECT_DTYPE_FLAGS)
    return _small_tensor_checkpoint({'array': array, 'chain': setstate_chain(dtype, state)})


# History buffer and numpy states that must be refused: (variant: the value of 'x').
HISTORY_BUFFER_VARIANTS = {
    # MMEngine would merge statistics_methods into the class-wide dict
    'os_system_statistic': lambda: history_buffer_node(
        statistics_methods={'mean': Global('os', 'system')}
    ),
    'getattr_init_statistic': lambda: history_buffer_node(
        statistics_methods={'mean': Call(GETATTR, (HISTORY_BUFFER, '__init__'))}
    ),
    # an instance attribute that shadows the statistics method
    'shadowing_attribute': lambda: history_buffer_node(statistics=1),
    'list_history': lambda: history_buffer_node(_log_history=[1.0, 3.0]),
    'two_dimensional_history': lambda: history_buffer_node(
        _log_history=numpy_array_node(numpy_dtype_node('f8'), (1, 2), bytes(16))
    ),
    'length_mismatch': lambda: history_buffer_node(
        _count_history=numpy_array_node(numpy_dtype_node('i8'), (1,), bytes(8))
    ),
    'zero_max_length': lambda: history_buffer_node(max_length=0),
    'missing_max_length': lambda: history_buffer_node(max_length=None),
    'state_set_twice': lambda: Build(history_buffer_node(), history_buffer_state(max_length=3)),
}
NUMPY_VARIANTS = {
    'short_data': lambda: numpy_array_node(numpy_dtype_node('f8'), (4,), bytes(8)),
    'huge_shape': lambda: numpy_array_node(numpy_dtype_node('f8'), (2**40,), b''),
    'object_dtype': lambda: numpy_array_node(numpy_dtype_node('O', '|'), (1,), [1]),
    'dtype_state_with_fields': lambda: numpy_array_node(
        Build(
            Call(NUMPY_DTYPE, ('f8', False, True)),
            (3, '<', None, ('a',), {'a': (numpy_dtype_node('i8'), 0)}, 8, 1, 0),
        ),
        (1,),
        bytes(8),
    ),
    'dtype_state_with_object_flags': lambda: numpy_array_node(
        Build(
            Call(NUMPY_DTYPE, ('f8', False, True)),
            (3, '<', None, None, None, -1, -1, NUMPY_OBJECT_DTYPE_FLAGS),
        ),
        (1,),
        bytes(8),
    ),
    'array_state_set_twice': lambda: Build(
        numpy_array_node(numpy_dtype_node('f8'), (1,), bytes(8)),
        (1, (1,), numpy_dtype_node('f8'), False, b'A' * 8),
    ),
    'short_scalar': lambda: Call(
        Global('numpy._core.multiarray', 'scalar'), (numpy_dtype_node('f8'), bytes(4))
    ),
}


def data_checkpoint(value: Any) -> bytes:
    """``{'x': value}`` in the zip layout."""
    return zip_checkpoint({'x': value})


# -- mechanism 4: globals other libraries allow-list -------------------------------------


def frame_summary_checkpoint(secret_path: str) -> bytes:
    """``traceback.FrameSummary(secret_path, 1, 'f')``: it reads the file's first line."""
    frame = Call(Global('traceback', 'FrameSummary'), (secret_path, 1, 'f'))
    return _small_tensor_checkpoint({'frame': frame})


def builtin_exception_checkpoint() -> bytes:
    """``ValueError('...')`` in ``meta``: an object, not data."""
    return _small_tensor_checkpoint(
        {'error': Call(Global('builtins', 'ValueError'), ('from a file',))}
    )


def device_mesh_checkpoint() -> bytes:
    """``DeviceMesh('cpu', [0])``: with launcher variables set it starts a process group."""
    mesh = Call(Global('torch.distributed.device_mesh', 'DeviceMesh'), ('cpu', [0]))
    return _small_tensor_checkpoint({'mesh': mesh})


# -- mechanism 5: a GLOBAL name with backslash escapes -----------------------------------


def escaped_global_checkpoint(before: Any = None) -> bytes:
    r"""A tensor rebuilt by ``GLOBAL torch._utils _rebuild_tensor\x5fv2`` (raw bytes).

    ``pickletools`` decodes the escape and reads ``_rebuild_tensor_v2``; the
    pickle machine reads the raw bytes, a name nothing defines. ``before`` is
    built first (in ``meta``), to show what a late refusal leaves behind.
    """
    escaped = Global('torch._utils', '_rebuild_tensor\\x5fv2')
    weight = Call(escaped, (Storage('0', 2), 0, (2,), (1,), False, Call(ORDERED_DICT)))
    root = {'meta': before, 'state_dict': {'w': weight}}
    return zip_checkpoint(root, {'0': float_bytes(1.0, 2.0)})


# -- mechanism 6: malformed files --------------------------------------------------------

MALFORMED_PICKLES = {
    # BINGET 5 with an empty memo
    'bad_memo': Raw(pickle.BINGET + b'\x05'),
    # STOP with nothing on the stack
    'empty_stack': Raw(b''),
    # TUPLE without a MARK
    'tuple_without_mark': Raw(pickle.NONE + pickle.TUPLE),
    # SETITEM with one item on the stack
    'setitem_underflow': Raw(pickle.EMPTY_DICT + pickle.SETITEM),
}


def malformed_pickle_checkpoint(variant: str, legacy: bool = False) -> bytes:
    """A checkpoint whose object pickle is ``MALFORMED_PICKLES[variant]``."""
    root = MALFORMED_PICKLES[variant]
    return legacy_checkpoint(root) if legacy else zip_checkpoint(root)


def legacy_huge_storage_checkpoint() -> bytes:
    """A legacy file of a few hundred bytes that declares a 256 GiB float storage."""
    storage = Storage('0', 64 * 2**30, legacy=True)
    return legacy_checkpoint({'w': tensor_node(storage, (2,))}, {'0': (2, float_bytes(1, 2))})


def short_storage_checkpoint() -> bytes:
    """A zip entry ``data/0`` of 8 bytes for a storage that declares 1000 floats."""
    return zip_checkpoint(
        {'w': tensor_node(Storage('0', 1000), (1000,))}, {'0': float_bytes(1.0, 2.0)}
    )


# tensor_outside_storage_checkpoint's variants: (size, stride, offset) on a 2-float storage
OUTSIDE_STORAGE = {
    'size': ((1000,), (1,), 0),
    'stride': ((2,), (1000,), 0),
    'offset': ((2,), (1,), 5),
    'negative_stride': ((2,), (-1,), 1),
    'negative_size': ((-2,), (1,), 0),
}


def tensor_outside_storage_checkpoint(variant: str) -> bytes:
    """A tensor whose sizes, strides or offset reach past its 2-float storage."""
    size, stride, offset = OUTSIDE_STORAGE[variant]
    weight = tensor_node(Storage('0', 2), size, stride, offset)
    return zip_checkpoint({'w': weight}, {'0': float_bytes(1.0, 2.0)})


def compressed_checkpoint(uncompressed_size: int = 0) -> bytes:
    """A deflate-compressed ``data.pkl``: a plain string, padded to ``uncompressed_size``.

    With a large size it is a zip bomb: 128 MiB of zeros deflate to ~130 KiB.
    """
    padding = max(0, uncompressed_size - 8)

    def chunks():
        yield pickle.PROTO + b'\x02' + pickle.BINUNICODE + struct.pack('<I', padding)
        for start in range(0, padding, 2**20):
            yield bytes(min(2**20, padding - start))
        yield pickle.STOP

    records = [('data.pkl', chunks()), *zip_records(b'')[1:]]
    return write_zip(records, compression={'data.pkl': zipfile.ZIP_DEFLATED})


# The string the CRC test changes with one bit: 'chrnn-crc-probe' -> 'bhrnn-crc-probe'.
CRC_PROBE = 'chrnn-crc-probe'


def bit_flipped_checkpoint(record: str = 'data.pkl') -> bytes:
    """The good checkpoint with one bit flipped inside ``record``; its CRC-32 is left stale.

    In ``data.pkl`` the bit turns :data:`CRC_PROBE` into another valid string;
    in ``data/0`` it changes a weight.
    """
    data = bytearray(good_checkpoint_bytes())
    offset = record_data_offset(bytes(data), f'{ZIP_PREFIX}/{record}')
    size = zipfile.ZipFile(io.BytesIO(bytes(data))).getinfo(f'{ZIP_PREFIX}/{record}').file_size
    content = bytes(data[offset : offset + size])
    at = offset + (content.index(CRC_PROBE.encode()) if record == 'data.pkl' else 1)
    data[at] ^= 0x01
    return bytes(data)


def record_data_offset(archive: bytes, name: str) -> int:
    """Where the bytes of the stored record ``name`` start inside ``archive``."""
    info = zipfile.ZipFile(io.BytesIO(archive)).getinfo(name)
    header = info.header_offset
    name_length, extra_length = struct.unpack('<HH', archive[header + 26 : header + 30])
    return header + 30 + name_length + extra_length


# Where a field sits in a zip local file header and in a central directory entry.
ZIP_FIELDS = {
    'version needed': ((4, '<H'), (6, '<H')),
    'flags': ((6, '<H'), (8, '<H')),
    'method': ((8, '<H'), (10, '<H')),
    'crc': ((14, '<I'), (16, '<I')),
    'compressed_size': ((18, '<I'), (20, '<I')),
    'size': ((22, '<I'), (24, '<I')),
}


def central_directory_offsets(archive: bytes) -> dict[str, int]:
    """Where each record's central directory entry starts, by record name."""
    end = archive.rindex(b'PK\x05\x06')
    count, _, start = struct.unpack('<HII', archive[end + 10 : end + 20])
    offsets, at = {}, start
    for _ in range(count):
        name_length, extra_length, comment_length = struct.unpack(
            '<HHH', archive[at + 28 : at + 34]
        )
        offsets[archive[at + 46 : at + 46 + name_length].decode()] = at
        at += 46 + name_length + extra_length + comment_length
    return offsets


def patch_zip_field(
    archive: bytes, name: str, field: str, value: int, headers: tuple = ('local', 'central')
) -> bytes:
    """``archive`` with ``field`` (a key of :data:`ZIP_FIELDS`) of record ``name`` set to ``value``.

    ``headers`` says which copies to change: the local file header, the
    central directory entry, or both (what a consistent writer would produce).
    ``value`` is wrapped to the field's width.
    """
    data = bytearray(archive)
    (local_at, local_format), (central_at, central_format) = ZIP_FIELDS[field]
    value %= 2 ** (8 * struct.calcsize(local_format))
    if 'local' in headers:
        header = zipfile.ZipFile(io.BytesIO(archive)).getinfo(name).header_offset
        struct.pack_into(local_format, data, header + local_at, value)
    if 'central' in headers:
        struct.pack_into(
            central_format, data, central_directory_offsets(archive)[name] + central_at, value
        )
    return bytes(data)


def declared_size_checkpoint() -> bytes:
    """A small stored ``data.pkl`` whose headers declare 4 GiB: a loader must not trust it."""
    archive = zip_checkpoint({'w': 1})
    return patch_zip_field(archive, f'{ZIP_PREFIX}/data.pkl', 'size', 2**32 - 2)


def newer_zip_version_checkpoint() -> bytes:
    """The good checkpoint, its ``data.pkl`` "needing" zip version 6.5 (``zipfile`` has 6.3)."""
    archive = good_checkpoint_bytes()
    return patch_zip_field(archive, f'{ZIP_PREFIX}/data.pkl', 'version needed', 65, ('central',))


def truncated_checkpoint(legacy: bool = False) -> bytes:
    """The first half of the good checkpoint."""
    data = good_checkpoint_bytes(legacy=legacy)
    return data[: len(data) // 2]


# -- a good checkpoint, as an MMEngine runner saves it -----------------------------------


class TinyNet(nn.Module):
    """A linear layer and a batch norm: parameters, buffers and an int64 counter."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(3, 2)
        self.bn = nn.BatchNorm1d(2)


def good_checkpoint() -> dict:
    """What ``Runner.save_checkpoint`` writes, for a tiny model after one SGD step.

    ``state_dict`` keeps its ``_metadata``; ``optimizer`` holds momentum
    buffers; ``param_schedulers`` holds a ``MultiStepLR`` state (its
    ``milestones`` is a ``collections.Counter``); ``message_hub`` holds
    ``HistoryBuffer`` objects with numpy arrays, and numpy scalars.
    """
    generator = torch.Generator().manual_seed(0)
    net = TinyNet()
    with torch.no_grad():
        for parameter in net.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator))
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    for parameter in net.parameters():
        parameter.grad = torch.ones_like(parameter)
    optimizer.step()
    scheduler = {
        'milestones': Counter({1: 1}),
        'gamma': 0.5,
        'by_epoch': True,
        'base_values': [0.1],
        'last_step': 3,
        'verbose': False,
        'param_name': 'lr',
        '_global_step': 3,
        '_get_value_called_within_step': False,
        '_last_value': [0.05],
    }
    log_scalars = OrderedDict(
        [
            ('train/loss', HistoryBuffer([2.5, 1.5, 1.25], [1, 1, 1])),
            ('train/lr', HistoryBuffer([np.float64(0.1), np.float64(0.05)], [1, 1])),
            ('val/accuracy', HistoryBuffer([50.0], [4], max_length=100)),
        ]
    )
    runtime_info = OrderedDict(
        [
            ('epoch', 3),
            ('iter', 12),
            ('max_iters', 100),
            ('best_score', np.float32(0.75)),
            ('best_iter', np.int64(9)),
            ('is_best', np.bool_(True)),
            ('last_scores', np.array([0.5, 0.75], dtype=np.float32)),
        ]
    )
    return {
        'meta': {
            'epoch': 3,
            'iter': 12,
            'mmengine_version': '0.10.7',
            'experiment_name': 'tiny_20240101_000000',
            'seed': 0,
            'time': '20240101_000000',
            'dataset_meta': {'classes': ('cat', 'dog')},
            'note': CRC_PROBE,
        },
        'state_dict': net.state_dict(),
        'message_hub': {
            'log_scalars': log_scalars,
            'runtime_info': runtime_info,
            'resumed_keys': OrderedDict((key, True) for key in [*log_scalars, *runtime_info]),
        },
        'optimizer': optimizer.state_dict(),
        'param_schedulers': [scheduler],
    }


def good_checkpoint_bytes(legacy: bool = False) -> bytes:
    """:func:`good_checkpoint` through ``torch.save``, in the zip or the legacy layout."""
    buffer = io.BytesIO()
    torch.save(good_checkpoint(), buffer, _use_new_zipfile_serialization=not legacy)
    return buffer.getvalue()


def every_allowed_type() -> dict:
    """One of each kind of value the loader may build, through ``torch.save``."""
    metadata = OrderedDict(w=torch.arange(4, dtype=torch.int64))
    metadata._metadata = OrderedDict({'': {'version': 1}})
    # torch.save writes tensors with attributes through _rebuild_from_type_v2 and
    # _rebuild_parameter_with_state
    noted = torch.ones(2)
    noted.note = 'plain data'
    tagged = nn.Parameter(torch.zeros(1))
    tagged.tag = 3
    return {
        'containers': [(), (1,), (1, 2, 3, 4), [], {}, {1, 2}, frozenset({'a'})],
        'scalars': [None, True, False, 0, -1, 2**70, -(2**70), 1.5, float('inf'), 'é', b'\0x'],
        'torch': [
            torch.Size([2, 3]),
            torch.float16,
            torch.int8,
            torch.bool,
            torch.device('cpu'),
            nn.Parameter(torch.ones(2)),
            nn.Parameter(torch.zeros(2), requires_grad=False),
            torch.tensor([1.5, 2.5], dtype=torch.float64),
            torch.tensor([True, False]),
            torch.arange(6, dtype=torch.uint8).reshape(2, 3).t(),  # a strided view
            torch.zeros(0, 3),
            metadata,
            noted,
            tagged,
        ],
        'numpy': [
            np.array([[1, 2], [3, 4]], dtype=np.int32),
            np.array([True, False]),
            np.array([1 + 2j], dtype=np.complex64),
            np.array(3.5, dtype=np.float16),
            np.uint8(7),
            np.float64(0.25),
            np.int16(-3),
            np.bool_(False),
        ],
        'history_buffer': HistoryBuffer([1.0, 2.0], [1, 2], max_length=5),
    }


def every_allowed_type_bytes(legacy: bool = False) -> bytes:
    """:func:`every_allowed_type` through ``torch.save``."""
    buffer = io.BytesIO()
    torch.save(every_allowed_type(), buffer, _use_new_zipfile_serialization=not legacy)
    return buffer.getvalue()


def unknown_module_checkpoint(module: str = 'this') -> bytes:
    """``GLOBAL this s``: an importing unpickler would run the module ``this`` (it prints)."""
    return _small_tensor_checkpoint({'imported': Global(module, 's')})
