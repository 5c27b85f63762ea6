"""Mutation fuzzing of the checkpoint loader: refused naming the file, or plain data; never more.

Starting from good MMEngine-like checkpoints (:func:`hostile_checkpoints.
good_checkpoint_bytes`, zip and legacy layouts), hypothesis mutates

* the pickle: instructions deleted, duplicated, swapped or inserted (any
  opcode, with well-formed or lying arguments), opcodes and arguments replaced,
  GLOBAL names swapped for dangerous and allowed ones, memo indices and strings
  changed, bytes flipped; the zip is then rewritten with correct CRC-32s, so
  the pickle machine itself is what gets exercised;
* the layout: zip records removed, duplicated, renamed, emptied or compressed,
  header fields (method, CRC, sizes) patched, bytes flipped, files truncated or
  padded; legacy pickles and storage bytes likewise.

For every input the load must raise one of ``CHECKPOINT_ERRORS`` naming the
file, or return plain data (:func:`loader_checks.plain_data_problems`); it must
not raise anything else, hang (each load runs under a
:data:`LOAD_TIME_LIMIT_S` timer), or change the process
(:class:`loader_checks.ProcessState`). ``CheckpointDeviceError`` (a storage's
device is not available here) also counts as a refusal when it names the file.

The runs are derandomized and shrinking is off, so the budget is fixed: about
:data:`EXAMPLES` loads per test, well under a minute for the module on two
shared cores. A failure prints the mutations (``note``) that built its input.
"""

import contextlib
import functools
import io
import os
import pickletools
import signal
import struct
import warnings
import zipfile

import pytest
from hypothesis import HealthCheck, Phase, given, note, settings
from hypothesis import strategies as st

from chrnn_plugin import engine
from chrnn_plugin.engine import load_checkpoint_safely
from tests.engine import hostile_checkpoints as hostile
from tests.engine.loader_checks import (
    CHECKPOINT_ERRORS,
    LoadTimedOut,
    ProcessState,
    check_outcome,
)

NAME = 'fuzz://mutated.pth'
LOAD_TIME_LIMIT_S = 5.0
# The CI budget; set CHRNN_FUZZ_EXAMPLES for a longer hunt (the same examples, then more).
EXAMPLES = int(os.environ.get('CHRNN_FUZZ_EXAMPLES', '150'))
# A storage the file cannot place here is refused too, when the message names the file.
REFUSALS = CHECKPOINT_ERRORS + tuple(
    error for error in (getattr(engine, 'CheckpointDeviceError', None),) if error
)

FUZZ_SETTINGS = settings(
    derandomize=True,
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    phases=(Phase.explicit, Phase.generate),  # no shrinking: a fixed budget even on failure
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@functools.cache
def seeds() -> dict[str, bytes]:
    """The good checkpoints the mutations start from: MMEngine's, and every allowed type."""
    return {
        'zip': hostile.good_checkpoint_bytes(),
        'legacy': hostile.good_checkpoint_bytes(legacy=True),
        'zip types': hostile.every_allowed_type_bytes(),
        'legacy types': hostile.every_allowed_type_bytes(legacy=True),
    }


@functools.cache
def warm_up() -> None:
    """Load the seeds once, so what a first load sets up (imports, caches) is in place."""
    for data in seeds().values():
        with contextlib.suppress(*REFUSALS):  # test_fuzzer_seeds_load_as_data checks them
            load_checkpoint_safely(data, name=NAME)


def _on_alarm(signum, frame):
    raise LoadTimedOut(f'loading {NAME} took more than {LOAD_TIME_LIMIT_S} s')


def check_input(data: bytes) -> None:
    """Load ``data``: a refusal naming it, or plain data; no hang, no change to the process."""
    warm_up()
    state = ProcessState.capture()
    previous = signal.signal(signal.SIGALRM, _on_alarm)
    signal.setitimer(signal.ITIMER_REAL, LOAD_TIME_LIMIT_S)
    try:
        outcome, value = check_outcome(
            lambda: load_checkpoint_safely(data, name=NAME), NAME, state, REFUSALS
        )
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    note(f'{outcome}: {type(value).__name__} {str(value)[:300]}')


# -- pickle mutations -------------------------------------------------------------------

# Names a file may ask for: the dangerous, the allow-listed elsewhere, and the data ones.
GLOBAL_NAMES = [
    ('os', 'system'),
    ('posix', 'system'),
    ('builtins', 'eval'),
    ('builtins', 'getattr'),
    ('builtins', 'setattr'),
    ('builtins', '__import__'),
    ('builtins', 'ValueError'),
    ('builtins', 'BaseException'),
    ('builtins', 'set'),
    ('builtins', 'frozenset'),
    ('builtins', 'bytearray'),
    ('builtins', 'complex'),
    ('builtins', 'dict'),
    ('builtins', 'object'),
    ('__builtin__', 'set'),
    ('copyreg', '_reconstructor'),
    ('copyreg', '__newobj__'),
    ('_codecs', 'encode'),
    ('collections', 'OrderedDict'),
    ('collections', 'Counter'),
    ('collections', 'defaultdict'),
    ('traceback', 'FrameSummary'),
    ('traceback', 'StackSummary'),
    ('functools', 'partial'),
    ('torch', 'Tensor'),
    ('torch', 'Size'),
    ('torch', 'device'),
    ('torch', 'float32'),
    ('torch', 'FloatStorage'),
    ('torch', 'LongStorage'),
    ('torch', 'UntypedStorage'),
    ('torch._tensor', 'Tensor'),
    ('torch._tensor', '_rebuild_from_type_v2'),
    ('torch._utils', '_rebuild_tensor'),
    ('torch._utils', '_rebuild_tensor_v2'),
    ('torch._utils', '_rebuild_tensor_v3'),
    ('torch._utils', '_rebuild_parameter'),
    ('torch._utils', '_rebuild_parameter_with_state'),
    ('torch._utils', '_rebuild_wrapper_subclass'),
    ('torch._utils', '_rebuild_meta_tensor_no_storage'),
    ('torch._utils', '_rebuild_device_tensor_from_numpy'),
    ('torch._utils', '_rebuild_sparse_tensor'),
    ('torch._utils', '_rebuild_qtensor'),
    ('torch._utils', '_rebuild_tensor\\x5fv2'),
    ('torch.nn.parameter', 'Parameter'),
    ('torch.serialization', '_get_layout'),
    ('torch.distributed.device_mesh', 'DeviceMesh'),
    ('numpy', 'dtype'),
    ('numpy', 'ndarray'),
    ('numpy', 'float64'),
    ('numpy._core.multiarray', '_reconstruct'),
    ('numpy._core.multiarray', 'scalar'),
    ('numpy.core.multiarray', '_reconstruct'),
    ('numpy.core.multiarray', 'scalar'),
    ('numpy.dtypes', 'Float64DType'),
    ('numpy.dtypes', 'VoidDType'),
    ('numpy.dtypes', 'ObjectDType'),
    ('mmengine.logging.history_buffer', 'HistoryBuffer'),
    ('mmengine.logging.message_hub', 'MessageHub'),
    ('chrnn_plugin.engine.checkpoint_globals', 'RestoredHistoryBuffer'),
]
STRINGS = [
    'storage',
    'cpu',
    'cuda',
    'meta',
    '0',
    '1',
    '99',
    '../0',
    '',
    'é',
    '__setstate__',
    '__class__',
    '__dict__',
    'as_subclass',
    '_log_history',
    '_count_history',
    'max_length',
    'statistics_methods',
    'current',
    'mean',
    '__init__',
    'state_dict',
    '_metadata',
    'backward',
    'O',
    '<f8',
    '|V8',
    'b',
]
INTEGERS = [0, 1, 2, 3, 7, 255, 256, 1000, 2**16, 2**31 - 1, 2**31, 2**32 - 1, 2**40, 2**63]
INTEGERS += [-1, -2, -(2**31)]
OPCODES = list(pickletools.opcodes)
MEMO_OPCODES = {'BINGET', 'LONG_BINGET', 'BINPUT', 'LONG_BINPUT'}
STRING_OPCODES = {'BINUNICODE', 'SHORT_BINSTRING', 'SHORT_BINUNICODE'}
# How a length-prefixed argument writes its length (pickletools' ``n`` codes).
LENGTH_FORMATS = {
    pickletools.TAKEN_FROM_ARGUMENT1: '<B',
    pickletools.TAKEN_FROM_ARGUMENT4: '<i',
    pickletools.TAKEN_FROM_ARGUMENT4U: '<I',
    pickletools.TAKEN_FROM_ARGUMENT8U: '<Q',
}
FIXED_FORMATS = {'uint1': '<B', 'uint2': '<H', 'int4': '<i', 'uint4': '<I', 'uint8': '<Q'}


def instructions(program: bytes) -> list[bytes]:
    """``program`` (one pickle, up to its STOP) split into its instructions' bytes."""
    starts = [position for _, _, position in pickletools.genops(program)]
    return [program[a:b] for a, b in zip(starts, [*starts[1:], len(program)])]


def _pack_count(draw, fmt: str) -> bytes:
    """An interesting integer, wrapped into the range of ``fmt`` (lower case: signed)."""
    bits = 8 * struct.calcsize(fmt)
    value = draw(st.sampled_from(INTEGERS)) % 2**bits
    if fmt[-1].islower() and value >= 2 ** (bits - 1):
        value -= 2**bits
    return struct.pack(fmt, value)


def draw_argument(draw, opcode) -> bytes:
    """An argument for ``opcode``: well formed from the pools, or with a lying length."""
    arg = opcode.arg
    if arg is None:
        return b''
    if arg.n in LENGTH_FORMATS:
        payload = draw(st.sampled_from(STRINGS)).encode()
        fmt = LENGTH_FORMATS[arg.n]
        if draw(st.booleans()):
            return struct.pack(fmt, len(payload)) + payload
        return _pack_count(draw, fmt) + payload
    if arg.n == pickletools.UP_TO_NEWLINE:
        if arg.name == 'stringnl_noescape_pair':
            module, name = draw(st.sampled_from(GLOBAL_NAMES))
            return f'{module}\n{name}\n'.encode()
        return draw(st.sampled_from([*map(str, INTEGERS), *STRINGS, "'x'"])).encode() + b'\n'
    if arg.name in FIXED_FORMATS:
        return _pack_count(draw, FIXED_FORMATS[arg.name])
    return draw(st.binary(min_size=arg.n, max_size=arg.n))


def draw_instruction(draw, opcode=None) -> bytes:
    """One instruction: ``opcode`` (default: any) and an argument for it."""
    opcode = opcode or draw(st.sampled_from(OPCODES))
    return opcode.code.encode('latin-1') + draw_argument(draw, opcode)


def _opcode_of(instruction: bytes):
    return pickletools.code2op.get(chr(instruction[0]))


def _indices(program: list[bytes], names: set[str] | None = None) -> list[int]:
    return [
        i
        for i, instruction in enumerate(program)
        if names is None or getattr(_opcode_of(instruction), 'name', None) in names
    ]


def mutate_program(draw, program: list[bytes]) -> list[bytes]:
    """One mutation of the instruction list (a copy)."""
    program = list(program)
    kind = draw(
        st.sampled_from(
            ['delete', 'duplicate', 'swap', 'insert', 'opcode', 'argument']
            + ['global', 'memo', 'string', 'flip']
        )
    )
    targets = {'global': {'GLOBAL'}, 'memo': MEMO_OPCODES, 'string': STRING_OPCODES}
    candidates = _indices(program, targets.get(kind))
    if not candidates:
        return program
    index = draw(st.sampled_from(candidates))
    note(f'pickle: {kind} at instruction {index} ({program[index][:40]!r})')
    if kind == 'delete':
        del program[index]
    elif kind == 'duplicate':
        program.insert(index, program[index])
    elif kind == 'swap':
        other = draw(st.integers(0, len(program) - 1))
        program[index], program[other] = program[other], program[index]
    elif kind == 'insert':
        program.insert(index, draw_instruction(draw))
    elif kind == 'opcode':
        program[index] = draw(st.sampled_from(OPCODES)).code.encode('latin-1') + program[index][1:]
    elif kind == 'flip':
        instruction = bytearray(program[index])
        instruction[draw(st.integers(0, len(instruction) - 1))] ^= draw(st.integers(1, 255))
        program[index] = bytes(instruction)
    else:  # a new argument of the same kind: any, a GLOBAL name, a memo index, a string
        opcode = _opcode_of(program[index])
        if opcode is not None:
            program[index] = draw_instruction(draw, opcode)
    return program


class Mutated(bytes):
    """A mutated pickle, shown by its size in hypothesis' reports (the notes say how)."""

    def __repr__(self) -> str:
        return f'<mutated pickle of {len(self)} bytes>'


@st.composite
def mutated_pickle(draw, program: bytes) -> bytes:
    """``program`` after one to four mutations."""
    parts = instructions(program)
    for _ in range(draw(st.integers(1, 4))):
        parts = mutate_program(draw, parts)
    return Mutated(b''.join(parts))


def zip_records(data: bytes) -> list[tuple[str, bytes]]:
    """The (full name, bytes) records of a zip checkpoint, in order."""
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        return [(info.filename, archive.read(info)) for info in archive.infolist()]


def write_records(records: list[tuple[str, bytes]], compression: dict | None = None) -> bytes:
    """The records as a zip archive, CRC-32s correct; duplicates are written as given."""
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', UserWarning)  # zipfile: 'Duplicate name'
        return hostile.write_zip(records, prefix=None, compression=compression)


def legacy_parts(data: bytes) -> tuple[list[bytes], bytes]:
    """The five pickles of a legacy checkpoint, and the storage bytes after them."""
    stream, pickles = io.BytesIO(data), []
    for _ in range(5):
        start = stream.tell()
        for _ in pickletools.genops(stream):
            pass
        pickles.append(data[start : stream.tell()])
    return pickles, data[stream.tell() :]


@given(st.data())
@FUZZ_SETTINGS
def test_mutated_zip_pickle(data):
    records = zip_records(seeds()[data.draw(st.sampled_from(['zip', 'zip types']))])
    index = next(i for i, (name, _) in enumerate(records) if name.endswith('/data.pkl'))
    records[index] = (records[index][0], data.draw(mutated_pickle(records[index][1])))
    check_input(write_records(records))


@given(st.data())
@FUZZ_SETTINGS
def test_mutated_legacy_pickles(data):
    pickles, storages = legacy_parts(
        seeds()[data.draw(st.sampled_from(['legacy', 'legacy types']))]
    )
    # Mostly the checkpoint's own pickle (the fourth); sometimes the header ones.
    which = data.draw(st.sampled_from([3, 3, 3, 0, 1, 2, 4]), label='pickle')
    pickles[which] = data.draw(mutated_pickle(pickles[which]))
    check_input(b''.join(pickles) + storages)


# -- layout mutations -------------------------------------------------------------------

RECORD_NAMES = ['data.pkl', 'data/0', 'data/99', 'byteorder', 'version', 'constants.pkl']
RECORD_NAMES += ['.format_version', '../data.pkl', 'data/0/../0', '']
RECORD_CONTENTS = [b'', b'big', b'little', b'2\n', b'3\n', b'99\n', b'\0' * 64, b'PK\x03\x04']
COMPRESSIONS = [zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA]


def mutate_records(draw, records: list, compression: dict) -> list:
    """One change to the zip's records: removed, duplicated, renamed, refilled, compressed."""
    records = list(records)
    kind = draw(
        st.sampled_from(
            ['remove', 'duplicate', 'rename', 'prefix', 'content', 'resize', 'compress']
        )
    )
    index = draw(st.integers(0, len(records) - 1))
    name, content = records[index]
    note(f'records: {kind} {name}')
    if kind == 'remove':
        del records[index]
    elif kind == 'duplicate':
        records.insert(draw(st.integers(0, len(records))), (name, content))
    elif kind == 'rename':
        records[index] = (f'{name.split("/")[0]}/{draw(st.sampled_from(RECORD_NAMES))}', content)
    elif kind == 'prefix':
        prefix = draw(st.sampled_from(['', 'other', 'archive/nested', 'Archive']))
        records = [(prefix + n[n.index('/') :], c) for n, c in records]
    elif kind == 'content':
        records[index] = (name, draw(st.sampled_from(RECORD_CONTENTS)))
    elif kind == 'resize':
        size = draw(st.integers(0, len(content) + 8))
        records[index] = (name, (content + b'\0' * 8)[:size])
    else:
        compression[name] = draw(st.sampled_from(COMPRESSIONS))
    return records


INTERESTING_FIELD_VALUES = [0, 1, 8, 9, 12, 14, 99, 0x800, 2**16 - 1, 2**31, 2**32 - 1]


def mutate_bytes(draw, archive: bytes) -> bytes:
    """One change to the archive's bytes: a header field, a flipped byte, a cut, padding."""
    kinds = ['field', 'field', 'flip', 'truncate'] if archive else []
    kind = draw(st.sampled_from([*kinds, 'append', 'prepend']))
    note(f'bytes: {kind}')
    if kind == 'field':
        try:
            names = list(hostile.central_directory_offsets(archive))
            if not names:
                return archive
            name = draw(st.sampled_from(names))
            field = draw(st.sampled_from(sorted(hostile.ZIP_FIELDS)))
            headers = draw(st.sampled_from([('local',), ('central',), ('local', 'central')]))
            info = zipfile.ZipFile(io.BytesIO(archive)).getinfo(name)
            value = draw(st.sampled_from([*INTERESTING_FIELD_VALUES, info.file_size + 1]))
        except Exception:  # noqa: BLE001 (zipfile fails in many ways on a damaged archive)
            return archive  # an earlier change left no directory to patch
        note(f'bytes: {name} {field} = {value} in {headers}')
        return hostile.patch_zip_field(archive, name, field, value, headers)
    if kind == 'flip':
        data = bytearray(archive)
        data[draw(st.integers(0, len(data) - 1))] ^= draw(st.integers(1, 255))
        return bytes(data)
    if kind == 'truncate':
        return archive[: draw(st.integers(0, len(archive) - 1))]
    padding = draw(st.sampled_from([b'\0', b'PK\x05\x06' + b'\0' * 18, b'junk' * 100]))
    return archive + padding if kind == 'append' else padding + archive


@given(st.data())
@FUZZ_SETTINGS
def test_mutated_zip_layout(data):
    records, compression = zip_records(seeds()['zip']), {}
    record_changes = data.draw(st.integers(0, 2), label='record changes')
    for _ in range(record_changes):
        records = mutate_records(data.draw, records, compression)
    archive = write_records(records, compression)
    for _ in range(data.draw(st.integers(int(record_changes == 0), 2), label='byte changes')):
        archive = mutate_bytes(data.draw, archive)
    check_input(archive)


@given(st.data())
@FUZZ_SETTINGS
def test_mutated_legacy_layout(data):
    pickles, storages = legacy_parts(seeds()['legacy'])
    kind = data.draw(st.sampled_from(['numel', 'flip', 'truncate', 'extend', 'pickle order']))
    note(f'legacy: {kind}')
    if kind == 'numel':  # the element count written before the first storage's bytes
        value = data.draw(st.sampled_from(INTEGERS)) % 2**64
        storages = struct.pack('<Q', value) + storages[8:]
    elif kind == 'flip':
        at = data.draw(st.integers(0, len(storages) - 1))
        storages = storages[:at] + bytes([storages[at] ^ 0xFF]) + storages[at + 1 :]
    elif kind == 'truncate':
        storages = storages[: data.draw(st.integers(0, len(storages) - 1))]
    elif kind == 'extend':
        storages += b'\0' * data.draw(st.integers(1, 64))
    else:
        first, second = data.draw(st.permutations(range(5)))[:2]
        pickles[first], pickles[second] = pickles[second], pickles[first]
    check_input(b''.join(pickles) + storages)


def test_fuzzer_seeds_load_as_data():
    """The fuzzer's starting points load (else every mutation is trivially refused)."""
    warm_up()
    for layout, data in seeds().items():
        load = lambda data=data: load_checkpoint_safely(data, name=NAME)  # noqa: E731
        outcome, value = check_outcome(load, NAME, ProcessState.capture())
        assert outcome == 'loaded', f'{layout}: {value}'


@pytest.mark.parametrize('layout', ['zip', 'legacy', 'zip types', 'legacy types'])
def test_fuzzer_split_and_join_are_lossless(layout):
    """The helpers rebuild the seeds byte for byte, so a mutation is all that changes."""
    data = seeds()[layout]
    if layout.startswith('zip'):
        records = zip_records(data)
        assert zip_records(write_records(records)) == records
        pkl = dict(records)['archive/data.pkl']
        assert b''.join(instructions(pkl)) == pkl
    else:
        pickles, storages = legacy_parts(data)
        assert b''.join(pickles) + storages == data
