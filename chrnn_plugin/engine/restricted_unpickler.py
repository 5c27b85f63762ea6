"""A pickle interpreter that builds data and nothing else.

Python's unpickler (and torch's ``weights_only`` one on top of it) resolves a
global to the real object, calls it on ``REDUCE``, and on ``BUILD`` calls
``__setstate__`` or ``setattr`` on whatever object is on the stack. An
allow-list of names then has to vouch for every object a name can reach, and
one generic call (torch's ``_rebuild_from_type_v2`` calls ``func(*args)`` and
then ``__setstate__`` on the result) is enough to change a class of the
process.

:class:`DataUnpickler` executes the opcodes itself instead:

* a global becomes whatever :meth:`Builders.resolve_global` returns for its
  name: a constant (a torch dtype) or an opaque :class:`GlobalRef`, never the
  module attribute;
* ``REDUCE``, ``NEWOBJ``, ``BUILD`` and persistent ids go to the
  :class:`Builders`, which check every argument and create fresh objects only
  (see :mod:`.checkpoint_builders`);
* ``APPEND``/``SETITEM``/``ADDITEMS`` apply to exact ``list``/``dict``/``set``
  objects only (Python's unpickler would call an ``extend`` or ``__setitem__``
  method of any object);
* every length is checked against the bytes left before it is read, and the
  memo is a dict, so memory stays proportional to the input.

Every object on the stack was therefore created by this interpreter, and a
refusal at any point leaves nothing behind but discarded objects.
"""

import pickle
import pickletools
import reprlib
import struct
from _compat_pickle import IMPORT_MAPPING, NAME_MAPPING
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, BinaryIO, Protocol

from .checkpoint_errors import (
    CheckpointDeviceError,
    CorruptCheckpointError,
    IncompleteCheckpointError,
    UnsafeCheckpointError,
)

__all__ = [
    'Builders',
    'DataUnpickler',
    'Damaged',
    'GlobalRef',
    'KeyGuard',
    'Refused',
    'Truncated',
    'short_repr',
]

HIGHEST_PROTOCOL = 5
# Longest "module\n" or "name\n" line of a GLOBAL opcode we read.
MAX_NAME_LENGTH = 512
# Deepest tuple nesting allowed in a dict key or set item: hashing a nested tuple
# recurses in C without a depth check, so a million levels crash the process.
MAX_KEY_DEPTH = 32

# Every opcode byte pickle knows, by name: for refusing the ones checkpoints never hold.
_OPCODE_NAMES = {op.code.encode('latin-1')[0]: op.name for op in pickletools.opcodes}

_REPR = reprlib.Repr()
_REPR.maxstring = _REPR.maxother = 60


def short_repr(value: object) -> str:
    """A bounded repr for messages (a file's values can be huge or deeply nested)."""
    return _REPR.repr(value)


class Refused(Exception):
    """Raised by builders: the file asks for something other than data."""


class Damaged(Exception):
    """Raised by builders: the file's contents are inconsistent."""


class Truncated(Exception):
    """Raised by builders: the file declares more bytes than it has left."""


@dataclass(frozen=True)
class GlobalRef:
    """A global the file named, standing in for it; only builders give it meaning."""

    name: str


class KeyGuard:
    """Checks values before they are hashed (dict keys, set items): nesting stays shallow.

    Heights of the tuples and frozensets seen are remembered (with the objects,
    so their ids stay theirs), so each is walked once however often it is reused.
    """

    def __init__(self) -> None:
        self._heights: dict[int, tuple[object, int]] = {}

    def check(self, values: object) -> None:
        for value in values:  # type: ignore[attr-defined]
            if type(value) in (tuple, frozenset) and id(value) not in self._heights:
                self._measure(value)

    def _measure(self, root: tuple | frozenset) -> None:
        heights = self._heights
        todo: list[tuple[object, bool]] = [(root, False)]
        while todo:
            item, children_done = todo.pop()
            if id(item) in heights:
                continue
            children = [c for c in item if type(c) in (tuple, frozenset)]  # type: ignore
            if not children_done:
                todo.append((item, True))
                todo.extend((c, False) for c in children if id(c) not in heights)
                continue
            height = 1 + max((heights[id(c)][1] for c in children), default=0)
            if height > MAX_KEY_DEPTH:
                raise Damaged(f'a dict key or set item nested deeper than {MAX_KEY_DEPTH} levels')
            heights[id(item)] = (item, height)


class Builders(Protocol):
    """What a :class:`DataUnpickler` asks for the opcodes that create objects."""

    def resolve_global(self, name: str) -> Any: ...

    def call(self, func: Any, args: tuple) -> Any: ...

    def new(self, cls: Any, args: tuple) -> Any: ...

    def build(self, obj: Any, state: Any) -> None: ...

    def persistent_load(self, pid: Any) -> Any: ...

    keys: KeyGuard


class _Mark:
    """Where a MARK opcode left the stack (kept on the meta-stack)."""


class DataUnpickler:
    """Run one pickle (up to its STOP) from ``stream`` with ``builders``.

    Args:
        stream (BinaryIO): Positioned at the start of the pickle.
        size (int): How many bytes of ``stream`` the pickle may use at most.
        name (str): How errors name the checkpoint.
        what (str): How errors name this pickle (e.g. ``'data.pkl'``).
        builders (Builders): Creates the objects the opcodes ask for.
    """

    def __init__(self, stream: BinaryIO, size: int, name: str, what: str, builders: Builders):
        self._stream = stream
        self._left = size
        self._pos = 0
        self._name = name
        self._what = what
        self._builders = builders
        self._stack: list = []
        self._metastack: list[list] = []
        self._memo: dict[int, Any] = {}
        self._opcode = ''
        self._opcode_pos = 0

    # --- reading -----------------------------------------------------------------------

    def _read(self, n: int) -> bytes:
        if n > self._left:
            raise IncompleteCheckpointError(
                self._name,
                f'{self._what} ends {self._left} bytes after offset {self._pos}, but opcode '
                f'{self._opcode} at offset {self._opcode_pos} needs {n}',
            )
        data = self._stream.read(n)
        if len(data) != n:
            raise IncompleteCheckpointError(
                self._name, f'{self._what} ends early, at offset {self._pos + len(data)}'
            )
        self._left -= n
        self._pos += n
        return data

    def _unpack(self, fmt: str) -> int:
        return struct.unpack(fmt, self._read(struct.calcsize(fmt)))[0]

    def _read_line(self) -> str:
        line = self._stream.readline(min(self._left, MAX_NAME_LENGTH + 1))
        self._left -= len(line)
        self._pos += len(line)
        if not line.endswith(b'\n'):
            if self._left == 0:
                raise IncompleteCheckpointError(self._name, f'{self._what} ends inside a name')
            raise self._damaged(f'a global name longer than {MAX_NAME_LENGTH} bytes')
        try:
            return line[:-1].decode('ascii')
        except UnicodeDecodeError:
            raise self._refused(
                f'a global name that is not ASCII: {short_repr(line[:-1])}'
            ) from None

    # --- errors ------------------------------------------------------------------------

    def _where(self) -> str:
        return f'{self._what}, opcode {self._opcode} at offset {self._opcode_pos}'

    def _refused(self, reason: str) -> UnsafeCheckpointError:
        return UnsafeCheckpointError(self._name, f'{reason} ({self._where()})')

    def _damaged(self, reason: str) -> CorruptCheckpointError:
        return CorruptCheckpointError(self._name, f'{reason} ({self._where()})')

    # --- the stack ---------------------------------------------------------------------

    def _pop(self) -> Any:
        if not self._stack:
            raise self._damaged('the pickle pops from an empty stack')
        return self._stack.pop()

    def _top(self) -> Any:
        if not self._stack:
            raise self._damaged('the pickle reads from an empty stack')
        return self._stack[-1]

    def _pop_mark(self) -> list:
        if not self._metastack:
            raise self._damaged('the pickle closes a MARK it never opened')
        items = self._stack
        self._stack = self._metastack.pop()
        return items

    def _memo_get(self, index: int) -> Any:
        if index not in self._memo:
            raise self._damaged(f'the pickle reads memo entry {index}, which it never stored')
        return self._memo[index]

    def _resolve(self, module: Any, name: Any) -> Any:
        if not (isinstance(module, str) and isinstance(name, str)):
            raise self._damaged('a global named by something other than two strings')
        # As Python's unpickler does for protocol 2 files (fix_imports).
        if (module, name) in NAME_MAPPING:
            module, name = NAME_MAPPING[(module, name)]
        elif module in IMPORT_MAPPING:
            module = IMPORT_MAPPING[module]
        return self._builders.resolve_global(f'{module}.{name}')

    # --- the loop ----------------------------------------------------------------------

    def load(self) -> Any:
        """Return the object the pickle builds.

        Raises:
            UnsafeCheckpointError: It asks for a global, call or opcode outside data.
            CorruptCheckpointError: Its opcodes or the objects they describe are inconsistent.
            IncompleteCheckpointError: It ends before its STOP.
        """
        while True:
            self._opcode_pos = self._pos
            code = self._read(1)[0]
            handler = _DISPATCH.get(code)
            if handler is None:
                self._opcode = f'0x{code:02x}'
                raise self._unsupported(code)
            self._opcode = handler.__name__[4:].upper()
            if code == pickle.STOP[0]:
                value = self._pop()
                if self._stack or self._metastack:
                    raise self._damaged('the pickle stops with objects left on its stack')
                return value
            try:
                handler(self)
            except (
                UnsafeCheckpointError,
                CorruptCheckpointError,
                IncompleteCheckpointError,
                CheckpointDeviceError,
            ):
                raise
            except Refused as error:
                raise self._refused(str(error)) from None
            except Damaged as error:
                raise self._damaged(str(error)) from None
            except Truncated as error:
                raise IncompleteCheckpointError(self._name, f'{error} ({self._where()})') from None
            except Exception as error:
                # Builders check types first; what is left is torch or numpy rejecting
                # values (or a value that cannot be a key), never a reason to crash.
                raise self._damaged(f'{type(error).__name__}: {str(error)[:300]}') from None

    def _unsupported(self, code: int) -> Exception:
        known = _OPCODE_NAMES
        if code in known:
            self._opcode = known[code]
            return self._refused(
                f'it uses pickle opcode {known[code]}, which checkpoints never contain'
            )
        return self._damaged(f'byte 0x{code:02x} is not a pickle opcode')

    # Handlers are named _op_<opcode name>; _DISPATCH maps opcode bytes to them.

    def _op_proto(self) -> None:
        protocol = self._read(1)[0]
        if protocol > HIGHEST_PROTOCOL:
            raise Damaged(f'pickle protocol {protocol} does not exist')

    def _op_frame(self) -> None:
        self._read(8)  # a length hint for buffering; the opcodes follow as usual

    def _op_stop(self) -> None:  # handled in load()
        pass

    def _op_mark(self) -> None:
        self._metastack.append(self._stack)
        self._stack = []

    def _op_pop(self) -> None:
        if self._stack:
            self._stack.pop()
        else:
            self._pop_mark()

    def _op_pop_mark(self) -> None:
        self._pop_mark()

    def _op_dup(self) -> None:
        self._stack.append(self._top())

    # Constants and scalars.

    def _op_none(self) -> None:
        self._stack.append(None)

    def _op_newtrue(self) -> None:
        self._stack.append(True)

    def _op_newfalse(self) -> None:
        self._stack.append(False)

    def _op_binint(self) -> None:
        self._stack.append(self._unpack('<i'))

    def _op_binint1(self) -> None:
        self._stack.append(self._read(1)[0])

    def _op_binint2(self) -> None:
        self._stack.append(self._unpack('<H'))

    def _long(self, n: int) -> None:
        self._stack.append(int.from_bytes(self._read(n), 'little', signed=True))

    def _op_long1(self) -> None:
        self._long(self._read(1)[0])

    def _op_long4(self) -> None:
        n = self._unpack('<i')
        if n < 0:
            raise Damaged('LONG4 with a negative length')
        self._long(n)

    def _op_binfloat(self) -> None:
        self._stack.append(self._unpack('>d'))

    def _text(self, n: int) -> None:
        try:
            self._stack.append(self._read(n).decode('utf-8', 'surrogatepass'))
        except UnicodeDecodeError as error:
            raise Damaged(f'a string that is not UTF-8 ({error})') from None

    def _op_short_binunicode(self) -> None:
        self._text(self._read(1)[0])

    def _op_binunicode(self) -> None:
        self._text(self._unpack('<I'))

    def _op_binunicode8(self) -> None:
        self._text(self._unpack('<Q'))

    # Python 2 str, as torch.load reads it (encoding='utf-8').
    def _op_short_binstring(self) -> None:
        self._text(self._read(1)[0])

    def _op_binstring(self) -> None:
        n = self._unpack('<i')
        if n < 0:
            raise Damaged('BINSTRING with a negative length')
        self._text(n)

    def _op_short_binbytes(self) -> None:
        self._stack.append(self._read(self._read(1)[0]))

    def _op_binbytes(self) -> None:
        self._stack.append(self._read(self._unpack('<I')))

    def _op_binbytes8(self) -> None:
        self._stack.append(self._read(self._unpack('<Q')))

    def _op_bytearray8(self) -> None:
        self._stack.append(bytearray(self._read(self._unpack('<Q'))))

    # Containers: only the exact built-in types are filled.

    def _op_empty_tuple(self) -> None:
        self._stack.append(())

    # Each pops the mark first: self._stack is another list afterwards.
    def _op_tuple(self) -> None:
        items = self._pop_mark()
        self._stack.append(tuple(items))

    def _op_tuple1(self) -> None:
        self._stack.append((self._pop(),))

    def _op_tuple2(self) -> None:
        second = self._pop()
        self._stack.append((self._pop(), second))

    def _op_tuple3(self) -> None:
        third = self._pop()
        second = self._pop()
        self._stack.append((self._pop(), second, third))

    def _op_empty_list(self) -> None:
        self._stack.append([])

    def _op_list(self) -> None:
        items = self._pop_mark()
        self._stack.append(items)

    def _target(self, kinds: tuple[type, ...], opcode: str) -> Any:
        target = self._top()
        if type(target) not in kinds:
            raise Refused(f'{opcode} on a {type(target).__name__}, not a built-in container')
        return target

    def _op_append(self) -> None:
        value = self._pop()
        self._target((list,), 'APPEND').append(value)

    def _op_appends(self) -> None:
        items = self._pop_mark()
        self._target((list,), 'APPENDS').extend(items)

    def _op_empty_dict(self) -> None:
        self._stack.append({})

    def _op_dict(self) -> None:
        items = self._pop_mark()
        self._stack.append(self._pairs(items))

    def _pairs(self, items: list) -> dict:
        if len(items) % 2:
            raise Damaged('an odd number of items for a dict')
        self._builders.keys.check(items[::2])
        return dict(zip(items[::2], items[1::2]))

    def _op_setitem(self) -> None:
        value = self._pop()
        key = self._pop()
        self._builders.keys.check((key,))
        self._dict_target('SETITEM')[key] = value

    def _op_setitems(self) -> None:
        items = self._pop_mark()
        self._dict_target('SETITEMS').update(self._pairs(items))

    def _dict_target(self, opcode: str) -> dict:
        return self._target((dict, OrderedDict), opcode)

    def _op_empty_set(self) -> None:
        self._stack.append(set())

    def _op_additems(self) -> None:
        items = self._pop_mark()
        self._builders.keys.check(items)
        self._target((set,), 'ADDITEMS').update(items)

    def _op_frozenset(self) -> None:
        items = self._pop_mark()
        self._builders.keys.check(items)
        self._stack.append(frozenset(items))

    # The memo.

    def _op_binput(self) -> None:
        self._memo[self._read(1)[0]] = self._top()

    def _op_long_binput(self) -> None:
        self._memo[self._unpack('<I')] = self._top()

    def _op_memoize(self) -> None:
        self._memo[len(self._memo)] = self._top()

    def _op_binget(self) -> None:
        self._stack.append(self._memo_get(self._read(1)[0]))

    def _op_long_binget(self) -> None:
        self._stack.append(self._memo_get(self._unpack('<I')))

    # Globals and object creation: all through the builders.

    def _op_global(self) -> None:
        module = self._read_line()
        name = self._read_line()
        self._stack.append(self._resolve(module, name))

    def _op_stack_global(self) -> None:
        name = self._pop()
        module = self._pop()
        self._stack.append(self._resolve(module, name))

    def _op_reduce(self) -> None:
        args = self._pop()
        func = self._pop()
        if type(args) is not tuple:
            raise Damaged(f'REDUCE with {type(args).__name__} arguments, not a tuple')
        self._stack.append(self._builders.call(func, args))

    def _op_newobj(self) -> None:
        args = self._pop()
        cls = self._pop()
        if type(args) is not tuple:
            raise Damaged(f'NEWOBJ with {type(args).__name__} arguments, not a tuple')
        self._stack.append(self._builders.new(cls, args))

    def _op_build(self) -> None:
        state = self._pop()
        self._builders.build(self._top(), state)

    def _op_binpersid(self) -> None:
        self._stack.append(self._builders.persistent_load(self._pop()))


_DISPATCH = {
    getattr(pickle, name[4:].upper())[0]: handler
    for name, handler in vars(DataUnpickler).items()
    if name.startswith('_op_')
}
