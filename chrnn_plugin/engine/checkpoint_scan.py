"""List what a ``torch.save`` file would make the unpickler do, without unpickling it.

``torch.load(weights_only=True)`` checks each global when it reaches it, so the
objects before a refused global have already been built (and their
``__setstate__`` has run) when it refuses. :func:`scan_checkpoint` reads the
pickle streams with :mod:`pickletools`, which decodes opcodes and never builds
an object, and reports every global the file names and every opcode that
torch's ``weights_only`` unpickler does not execute. The loader refuses on that
report, before unpickling starts.

Both formats ``torch.save`` writes are scanned: the zip archive (torch >= 1.6,
the pickle is ``data.pkl``) and the legacy format (a magic number and four more
pickles, then raw storage bytes; ``_use_new_zipfile_serialization=False``). The
pre-0.4 tar format cannot be scanned and is reported as such.
"""

import io
import pickletools
import tarfile
from _compat_pickle import IMPORT_MAPPING, NAME_MAPPING
from dataclasses import dataclass, field
from typing import BinaryIO

import torch

# The opcodes torch's weights_only unpickler executes; it stops with an error at
# any other, after building what came before, so we refuse those up front.
WEIGHTS_ONLY_OPCODES = frozenset(
    (
        'PROTO STOP GLOBAL NEWOBJ REDUCE BUILD MARK APPEND APPENDS SETITEM SETITEMS '
        'TUPLE TUPLE1 TUPLE2 TUPLE3 EMPTY_TUPLE EMPTY_LIST EMPTY_DICT EMPTY_SET NONE '
        'NEWTRUE NEWFALSE BININT BININT1 BININT2 LONG1 BINFLOAT BINUNICODE SHORT_BINSTRING '
        'BINPERSID BINGET LONG_BINGET BINPUT LONG_BINPUT'
    ).split()
)

# torch.serialization writes this number as the first pickle of the legacy format.
LEGACY_MAGIC_NUMBER = 0x1950A86A20F9469CFC6C
# magic number, protocol version, system info, the object, the storage keys
LEGACY_PICKLE_COUNT = 5
ZIP_MAGIC = b'PK\x03\x04'


class IncompleteCheckpointError(EOFError):
    """A checkpoint file ends early or is empty (an interrupted write or download)."""

    def __init__(self, name: str, detail: str):
        self.name = name
        super().__init__(
            f'Checkpoint {name} is incomplete: {detail}. It was probably cut short by an '
            f'interrupted write or download; use another checkpoint or fetch this one again.'
        )


class NotACheckpointError(ValueError):
    """A file that ``torch.save`` did not write (or not in a format we can check)."""

    def __init__(self, name: str, detail: str):
        self.name = name
        super().__init__(f'{name} is not a checkpoint written by torch.save: {detail}')


@dataclass
class CheckpointScan:
    """What unpickling a checkpoint would involve.

    Attributes:
        name (str): The file, URL or other source the bytes came from.
        format (str): ``'zip'``, ``'legacy'`` or ``'tar'``.
        globals (set[str]): Every ``module.name`` the pickles look up.
        unsupported (list[str]): Why ``weights_only`` loading could not even
            start or finish: opcodes it does not execute, an unscannable format.
    """

    name: str
    format: str
    globals: set[str] = field(default_factory=set)
    unsupported: list[str] = field(default_factory=list)


def _global_name(arg: str) -> str:
    module, name = arg.split(' ', 1)
    # The unpickler maps Python 2 names (e.g. __builtin__.set) the same way.
    if (module, name) in NAME_MAPPING:
        module, name = NAME_MAPPING[(module, name)]
    elif module in IMPORT_MAPPING:
        module = IMPORT_MAPPING[module]
    return f'{module}.{name}'


def _scan_pickle(stream: BinaryIO, scan: CheckpointScan, size: int, what: str) -> list:
    """Decode one pickle (up to its STOP) into ``scan``; return its opcodes and arguments."""
    ops = []
    try:
        for opcode, arg, _ in pickletools.genops(stream):
            ops.append((opcode.name, arg))
            if opcode.name == 'GLOBAL':
                scan.globals.add(_global_name(arg))
            elif opcode.name not in WEIGHTS_ONLY_OPCODES:
                problem = f'pickle opcode {opcode.name}'
                if problem not in scan.unsupported:
                    scan.unsupported.append(problem)
    except ValueError as error:
        if stream.tell() >= size:
            raise IncompleteCheckpointError(
                scan.name, f'{what} ends before its end mark (file size {size} bytes)'
            ) from None
        raise NotACheckpointError(scan.name, f'{what} is not a valid pickle ({error})') from None
    if not ops or ops[-1][0] != 'STOP':
        raise IncompleteCheckpointError(scan.name, f'{what} is empty')
    return ops


def _scan_zip(stream: BinaryIO, scan: CheckpointScan, size: int) -> None:
    try:
        # The reader torch.load itself uses, so we scan the record it will unpickle.
        reader = torch.serialization._open_zipfile_reader(stream)
    except RuntimeError as error:
        raise IncompleteCheckpointError(
            scan.name, f'the zip archive cannot be read ({str(error).splitlines()[0]})'
        ) from None
    with reader as zip_file:
        records = zip_file.get_all_records()
        if 'constants.pkl' in records:
            raise NotACheckpointError(scan.name, 'it is a TorchScript archive (torch.jit.save)')
        if 'data.pkl' not in records:
            raise NotACheckpointError(scan.name, 'the zip archive has no data.pkl')
        data = zip_file.get_record('data.pkl')
    _scan_pickle(io.BytesIO(data), scan, len(data), 'data.pkl')


def _scan_legacy(stream: BinaryIO, scan: CheckpointScan, size: int) -> None:
    for index in range(LEGACY_PICKLE_COUNT):
        ops = _scan_pickle(stream, scan, size, f'pickle {index + 1} of the legacy format')
        if index == 0 and [op for op, _ in ops if op != 'PROTO'] != ['LONG1', 'STOP']:
            raise NotACheckpointError(
                scan.name, 'it starts with neither a zip archive nor the legacy magic number'
            )
        if index == 0 and ops[-2][1] != LEGACY_MAGIC_NUMBER:
            raise NotACheckpointError(scan.name, 'the legacy magic number is wrong')


def scan_checkpoint(stream: BinaryIO, name: str) -> CheckpointScan:
    """Scan the seekable ``stream`` (read from its start) of the checkpoint ``name``.

    Returns:
        CheckpointScan: The globals and unsupported features found.

    Raises:
        IncompleteCheckpointError: The file is empty or ends early.
        NotACheckpointError: The file is not in a ``torch.save`` format.
    """
    stream.seek(0, io.SEEK_END)
    size = stream.tell()
    stream.seek(0)
    if size == 0:
        raise IncompleteCheckpointError(name, 'the file is empty (0 bytes)')
    head = stream.read(len(ZIP_MAGIC))
    stream.seek(0)
    if head == ZIP_MAGIC:
        scan = CheckpointScan(name, 'zip')
        _scan_zip(stream, scan, size)
    elif _is_tar(stream):
        scan = CheckpointScan(name, 'tar')
        scan.unsupported.append('the pre-0.4 tar format, which cannot be checked before loading')
    else:
        scan = CheckpointScan(name, 'legacy')
        _scan_legacy(stream, scan, size)
    stream.seek(0)
    return scan


def _is_tar(stream: BinaryIO) -> bool:
    try:
        with tarfile.open(fileobj=stream, mode='r:'):
            return True
    except tarfile.TarError:
        return False
    finally:
        stream.seek(0)
