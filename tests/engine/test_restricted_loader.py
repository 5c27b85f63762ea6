"""The restricted checkpoint loader builds data only, refuses everything else, changes nothing.

Each hostile file (built by :mod:`tests.engine.hostile_checkpoints`) attacks one
mechanism that got past the pickletools pre-scan and ``torch.load(weights_only=
True)``: ``_rebuild_from_type_v2`` chains that call ``setattr``/``__setstate__``
on process-wide objects, a numpy dtype turned into objects under an array
(segfault), globals that other libraries allow-list, an escaped GLOBAL name,
and malformed files. Every test loads through
``chrnn_plugin.engine.load_checkpoint_safely`` and checks, with
:class:`~tests.engine.loader_checks.ProcessState`, that the process is the
same afterwards. Loads that crash the interpreter on a vulnerable loader, start
process groups or must be measured for memory run in a child interpreter.
"""

import os
import pickle
import socket
import struct
import subprocess
import sys
import textwrap
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
import torch
from mmengine.logging import HistoryBuffer

from chrnn_plugin.engine import load_checkpoint_safely
from tests.engine import hostile_checkpoints as hostile
from tests.engine.loader_checks import (
    CHECKPOINT_ERRORS,
    HISTORY_BUFFER_ATTRIBUTES,
    ProcessState,
    check_outcome,
    error_class,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
UnsafeCheckpointError = error_class('UnsafeCheckpointError')
IncompleteCheckpointError = error_class('IncompleteCheckpointError')
NotACheckpointError = error_class('NotACheckpointError')
CorruptCheckpointError = error_class('CorruptCheckpointError')
# What a file that asks for more than data is refused with (a loader may see a
# broken chain as corrupt before it sees it as unsafe; never as incomplete).
UNSAFE_OR_CORRUPT = (UnsafeCheckpointError, CorruptCheckpointError)


@pytest.fixture
def state():
    """The process state before the test; whatever a load changed is undone afterwards."""
    HistoryBuffer()  # registers MMEngine's default statistics, as any import of a runner does
    # Writing checkpoints fills caches (copyreg's __slotnames__ on torch.Tensor): once
    # here, so the snapshot sees what building the test's files will leave.
    hostile.every_allowed_type_bytes(legacy=True)
    snapshot = ProcessState.capture()
    yield snapshot
    if snapshot.changes():
        snapshot.restore()


@pytest.fixture
def write(tmp_path):
    """Write checkpoint bytes to ``tmp_path/<name>`` and return the path."""

    def _write(data: bytes, name: str = 'hostile.pth') -> Path:
        path = tmp_path / name
        path.write_bytes(data)
        return path

    return _write


def refused(path: Path, state: ProcessState, kinds) -> Exception:
    """Load ``path``: it must be refused with ``kinds``, naming the path, changing nothing."""
    outcome, value = check_outcome(lambda: load_checkpoint_safely(path), str(path), state)
    assert outcome == 'refused', f'{path.name} was loaded: {value!r:.300}'
    assert isinstance(value, kinds), f'refused with {type(value).__name__}: {value}'
    return value


def loaded(source, name: str, state: ProcessState):
    """Load ``source``: it must give plain data, changing nothing."""
    load = lambda: load_checkpoint_safely(source, name=name)  # noqa: E731
    outcome, value = check_outcome(load, name, state)
    assert outcome == 'loaded', f'{name} was refused: {value}'
    return value


def run_child(code: str, *args, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh interpreter with this checkout importable.

    For loads that would take the test process down with them (a segfault) or
    change it in ways a snapshot cannot undo (a process group).
    """
    child_env = dict(os.environ)
    child_env.pop('CHRNN_TRUST_CHECKPOINTS', None)
    child_env['PYTHONPATH'] = os.pathsep.join(
        p for p in (str(REPO_ROOT), child_env.get('PYTHONPATH', '')) if p
    )
    child_env['OMP_NUM_THREADS'] = '1'
    child_env.update(env or {})
    return subprocess.run(
        [sys.executable, '-c', textwrap.dedent(code), *map(str, args)],
        capture_output=True,
        text=True,
        env=child_env,
        timeout=300,
    )


# The child's load: prints 'refused <class> <message>' or 'loaded', then survives a GC.
CHILD_LOAD = """
    import gc, sys
    from chrnn_plugin.engine import load_checkpoint_safely
    from tests.engine.loader_checks import CHECKPOINT_ERRORS
    try:
        checkpoint = load_checkpoint_safely(sys.argv[1])
    except CHECKPOINT_ERRORS as error:
        print('refused', type(error).__name__, error, flush=True)
    else:
        print('loaded', flush=True)
        del checkpoint  # freeing an array whose dtype turned into objects crashes here
    gc.collect()
"""


def assert_child_refused(result: subprocess.CompletedProcess, path: Path, kind: type) -> None:
    """The child exited normally and printed a refusal of ``kind`` naming ``path``."""
    output = f'--- stdout\n{result.stdout[-3000:]}\n--- stderr\n{result.stderr[-3000:]}'
    assert result.returncode == 0, f'the child exited with {result.returncode}\n{output}'
    refusal = f'refused {kind.__name__}'
    assert refusal in result.stdout, f'the child did not print {refusal!r}\n{output}'
    assert str(path) in result.stdout, f'the child did not name {path}\n{output}'


# -- what the loader may build ----------------------------------------------------------


def assert_same(value, expected, where: str = 'checkpoint') -> None:
    """``value`` equals ``expected``, type for type, down to tensors, arrays and buffers."""
    assert type(value) is type(expected), f'{where}: {type(value)} is not {type(expected)}'
    if isinstance(expected, torch.Tensor):
        assert value.dtype == expected.dtype and value.stride() == expected.stride(), where
        assert value.requires_grad == expected.requires_grad, where
        assert torch.equal(value, expected), where
    elif isinstance(expected, (np.ndarray, np.generic)):
        assert value.dtype == expected.dtype and np.array_equal(value, expected), where
    elif isinstance(expected, HistoryBuffer):
        assert set(vars(value)) == HISTORY_BUFFER_ATTRIBUTES, f'{where}: {sorted(vars(value))}'
        for key in HISTORY_BUFFER_ATTRIBUTES:
            assert_same(getattr(value, key), getattr(expected, key), f'{where}.{key}')
    elif isinstance(expected, dict):
        assert list(value) == list(expected), f'{where}: keys {list(value)}'
        for key in expected:
            assert_same(value[key], expected[key], f'{where}[{key!r}]')
        attributes = (getattr(value, '__dict__', {}), getattr(expected, '__dict__', {}))
        if any(attributes):  # an OrderedDict's _metadata
            assert_same(*attributes, f'{where}.__dict__')
    elif isinstance(expected, (list, tuple)):
        assert len(value) == len(expected), where
        for index, (item, expected_item) in enumerate(zip(value, expected)):
            assert_same(item, expected_item, f'{where}[{index}]')
    else:
        assert value == expected, f'{where}: {value!r} != {expected!r}'


@pytest.mark.parametrize('legacy', [False, True], ids=['zip', 'legacy'])
@pytest.mark.parametrize('source', ['path', 'bytes', 'file'])
def test_good_checkpoint_loads_with_equal_values(write, state, legacy, source):
    path = write(hostile.good_checkpoint_bytes(legacy=legacy), 'epoch_3.pth')
    with open(path, 'rb') as f:
        given = {'path': path, 'bytes': path.read_bytes(), 'file': f}[source]
        checkpoint = loaded(given, str(path), state)
    expected = hostile.good_checkpoint()
    assert_same(checkpoint, expected)
    assert checkpoint['state_dict']._metadata == expected['state_dict']._metadata
    buffers = checkpoint['message_hub']['log_scalars']
    assert all(type(buffer) is HistoryBuffer for buffer in buffers.values())
    # the process's statistics methods serve the rebuilt buffers
    assert buffers['train/loss'].statistics('mean') == pytest.approx(5.25 / 3)
    assert buffers['train/loss'].statistics('current') == 1.25
    assert b'HistoryBuffer' in pickle.dumps(buffers['train/loss'])


@pytest.mark.parametrize('legacy', [False, True], ids=['zip', 'legacy'])
def test_every_allowed_type_loads(state, legacy):
    checkpoint = loaded(hostile.every_allowed_type_bytes(legacy=legacy), 'types.pth', state)
    assert_same(checkpoint, hostile.every_allowed_type())


def test_errors_are_exported_with_their_bases():
    from chrnn_plugin import engine

    assert issubclass(engine.UnsafeCheckpointError, pickle.UnpicklingError)
    assert issubclass(engine.IncompleteCheckpointError, EOFError)
    assert issubclass(engine.NotACheckpointError, ValueError)
    assert issubclass(CorruptCheckpointError, ValueError)
    assert issubclass(engine.CheckpointDeviceError, RuntimeError)
    assert set(engine.CHECKPOINT_ERRORS) == {
        engine.UnsafeCheckpointError,
        engine.IncompleteCheckpointError,
        engine.NotACheckpointError,
        engine.CorruptCheckpointError,
        engine.CheckpointDeviceError,
    }


# -- mechanism 2: _rebuild_from_type_v2 chains ------------------------------------------


@pytest.mark.parametrize('holder', ['OrderedDict', 'exception'])
@pytest.mark.parametrize('variant', sorted(hostile.CHAIN_TARGETS))
def test_setstate_chain_is_refused(write, state, variant, holder):
    path = write(hostile.setstate_chain_checkpoint(variant, holder=holder))
    refused(path, state, UNSAFE_OR_CORRUPT)


def test_refusal_after_a_chain_leaves_nothing_behind(write, state):
    # Today's loader refuses getattr(HistoryBuffer, '__init__'), after the chain ran.
    path = write(hostile.setstate_chain_checkpoint('function_defaults', refused_after=True))
    refused(path, state, UNSAFE_OR_CORRUPT)
    assert HistoryBuffer([1.0, 3.0], [1, 1]).mean() == 2.0


def test_backward_noop_file_leaves_backward_working(write, state):
    path = write(hostile.setstate_chain_checkpoint('tensor_backward_noop'))
    refused(path, state, UNSAFE_OR_CORRUPT)
    weight = torch.ones(2, requires_grad=True)
    (weight * 3).sum().backward()
    assert torch.equal(weight.grad, torch.full((2,), 3.0))


# -- mechanism 3: a structured dtype gets an object field -------------------------------


def test_structured_dtype_object_field_is_refused_without_a_crash(write, state):
    path = write(hostile.structured_dtype_checkpoint())
    # In a child first: on a vulnerable loader the load segfaults.
    assert_child_refused(run_child(CHILD_LOAD, path), path, UnsafeCheckpointError)
    refused(path, state, UNSAFE_OR_CORRUPT)
    assert np.dtype([('a', '<i8')]).fields['a'][0] == np.dtype('<i8')


# -- mechanism 4: globals other libraries allow-list -----------------------------------


def test_frame_summary_does_not_read_files(write, state, tmp_path):
    secret = tmp_path / 'secret.txt'
    secret.write_text('the secret line\n')
    path = write(hostile.frame_summary_checkpoint(str(secret)))
    error = refused(path, state, UnsafeCheckpointError)  # linecache unchanged, too
    assert 'the secret line' not in str(error)


def test_builtin_exception_is_refused(write, state):
    path = write(hostile.builtin_exception_checkpoint())
    refused(path, state, UnsafeCheckpointError)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


def test_device_mesh_is_refused_without_a_process_group(write):
    path = write(hostile.device_mesh_checkpoint())
    launcher = {'MASTER_ADDR': '127.0.0.1', 'MASTER_PORT': str(_free_port())}
    launcher.update(RANK='0', WORLD_SIZE='1', LOCAL_RANK='0', LOCAL_WORLD_SIZE='1')
    code = CHILD_LOAD + '    import torch.distributed as dist\n'
    code += "    print('process group', dist.is_initialized())\n"
    result = run_child(code, path, env=launcher)
    assert_child_refused(result, path, UnsafeCheckpointError)
    assert 'process group False' in result.stdout


# -- mechanism 5: a GLOBAL name with backslash escapes ----------------------------------


def test_escaped_global_name_is_refused(write, state):
    path = write(hostile.escaped_global_checkpoint())
    refused(path, state, UNSAFE_OR_CORRUPT)


def test_escaped_global_name_after_a_file_read_changes_nothing(write, state, tmp_path):
    # Today's pre-scan decodes the escape and approves the file; torch reads the
    # raw name and refuses, after building the FrameSummary (which read the file).
    secret = tmp_path / 'secret.txt'
    secret.write_text('the secret line\n')
    frame = hostile.Call(hostile.Global('traceback', 'FrameSummary'), (str(secret), 1, 'f'))
    path = write(hostile.escaped_global_checkpoint(before=frame))
    refused(path, state, UNSAFE_OR_CORRUPT)


def test_unknown_module_is_not_imported(write, state, capsys):
    if 'this' in sys.modules:
        pytest.skip('the module this is already imported')
    path = write(hostile.unknown_module_checkpoint('this'))
    refused(path, state, UnsafeCheckpointError)
    assert 'this' not in sys.modules
    assert 'Beautiful is better than ugly' not in capsys.readouterr().out


# -- mechanism 6: malformed files --------------------------------------------------------


@pytest.mark.parametrize('legacy', [False, True], ids=['zip', 'legacy'])
@pytest.mark.parametrize('variant', sorted(hostile.MALFORMED_PICKLES))
def test_malformed_pickle_is_corrupt(write, state, variant, legacy):
    path = write(hostile.malformed_pickle_checkpoint(variant, legacy=legacy))
    refused(path, state, CorruptCheckpointError)


def test_legacy_storage_larger_than_the_file_is_refused(write, state):
    data = hostile.legacy_huge_storage_checkpoint()
    assert len(data) < 1024  # and it declares 256 GiB
    # Corrupt, or incomplete: a legacy file cut short in its storages looks the same.
    refused(write(data), state, (CorruptCheckpointError, IncompleteCheckpointError))


def test_zip_storage_larger_than_its_record_is_corrupt(write, state):
    refused(write(hostile.short_storage_checkpoint()), state, CorruptCheckpointError)


@pytest.mark.parametrize('variant', sorted(hostile.OUTSIDE_STORAGE))
def test_tensor_outside_its_storage_is_corrupt(write, state, variant):
    path = write(hostile.tensor_outside_storage_checkpoint(variant))
    refused(path, state, CorruptCheckpointError)


def test_compressed_record_is_corrupt(write, state):
    refused(write(hostile.compressed_checkpoint(100)), state, CorruptCheckpointError)


# Loads each file and prints how much the child's peak memory grew meanwhile.
CHILD_PEAK_MEMORY = """
    import resource, sys
    from chrnn_plugin.engine import load_checkpoint_safely
    from tests.engine.loader_checks import CHECKPOINT_ERRORS
    for path in sys.argv[1:]:
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        try:
            load_checkpoint_safely(path)
            outcome = 'loaded'
        except CHECKPOINT_ERRORS as error:
            outcome = f'refused {type(error).__name__}'
        grew = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) // 1024
        print(path, outcome, f'grew {grew} MiB', flush=True)
"""


def test_zip_bombs_are_refused_without_inflating(write):
    # The first load of a good file warms the loader up (imports, caches).
    warm_up = write(hostile.zip_checkpoint({'w': 1}), 'warm_up.pth')
    bomb = write(hostile.compressed_checkpoint(128 * 2**20), 'bomb.pth')
    assert bomb.stat().st_size < 256 * 2**10
    declared = write(hostile.declared_size_checkpoint(), 'declared.pth')
    result = run_child(CHILD_PEAK_MEMORY, warm_up, bomb, declared)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = dict(line.split(' ', 1) for line in result.stdout.splitlines())
    # The declared size is a lie the reader need not notice; it must not allocate it.
    for path in (bomb, declared):
        outcome = lines[str(path)]
        assert int(outcome.split('grew ')[1].split()[0]) < 32, f'{path.name}: {outcome}'
    bomb_outcome = lines[str(bomb)]
    assert bomb_outcome.startswith('refused CorruptCheckpointError'), f'the bomb: {bomb_outcome}'


def test_zip_entry_of_a_newer_zip_version_is_refused(write, state):
    # zipfile raises NotImplementedError for it; the loader must say which file.
    path = write(hostile.newer_zip_version_checkpoint())
    refused(path, state, (CorruptCheckpointError, NotACheckpointError))


@pytest.mark.parametrize('record', ['data.pkl', 'data/0'])
def test_flipped_bit_fails_the_crc_check(write, state, record):
    path = write(hostile.bit_flipped_checkpoint(record))
    refused(path, state, CorruptCheckpointError)


@pytest.mark.parametrize('kind', ['zip', 'legacy', 'empty'])
def test_cut_short_checkpoint_is_incomplete(write, state, kind):
    data = b'' if kind == 'empty' else hostile.truncated_checkpoint(legacy=kind == 'legacy')
    refused(write(data, 'epoch_3.pth'), state, IncompleteCheckpointError)


@pytest.mark.parametrize('data', [b'not a checkpoint at all', b'PK\x03\x04' + b'\0' * 40])
def test_other_files_are_refused_naming_the_source(state, data):
    name = 'https://example.com/model.pth'
    load = lambda: load_checkpoint_safely(data, name=name)  # noqa: E731
    outcome, error = check_outcome(load, name, state)
    assert outcome == 'refused' and isinstance(error, CHECKPOINT_ERRORS)


def test_the_hostile_files_are_refused_from_bytes_under_their_name(state):
    # The name argument (e.g. a URL) is what the messages give for bytes.
    name = 'https://example.com/evil.pth'
    for data in (
        hostile.setstate_chain_checkpoint('mean_statistic'),
        hostile.malformed_pickle_checkpoint('bad_memo'),
        hostile.bit_flipped_checkpoint(),
    ):
        load = lambda data=data: load_checkpoint_safely(data, name=name)  # noqa: E731
        assert check_outcome(load, name, state)[0] == 'refused'


def test_ordered_dict_attributes_must_be_data(write, state):
    # BUILD on an OrderedDict sets instance attributes: a state dict's _metadata
    # is data, a function is not.
    holder = hostile.Build(
        hostile.Call(hostile.ORDERED_DICT),
        {'_metadata': {'': {'version': 1}}, 'hook': hostile.Global('builtins', 'set')},
    )
    refused(write(hostile.zip_checkpoint({'state_dict': holder})), state, UNSAFE_OR_CORRUPT)
    plain = hostile.Build(hostile.Call(hostile.ORDERED_DICT), {'_metadata': {'': {'v': 1}}})
    checkpoint = loaded(hostile.zip_checkpoint({'state_dict': plain}), 'plain.pth', state)
    assert checkpoint['state_dict']._metadata == {'': {'v': 1}}
    assert type(checkpoint['state_dict']) is OrderedDict


def test_tensor_backward_hooks_are_refused(write, state):
    # _rebuild_tensor_v2's backward_hooks argument becomes the tensor's hooks.
    hooks = OrderedDict({0: hostile.Global('builtins', 'set')})
    weight = hostile.Call(
        hostile.REBUILD_TENSOR_V2, (hostile.Storage('0', 2), 0, (2,), (1,), True, hooks)
    )
    data = hostile.zip_checkpoint({'w': weight}, {'0': hostile.float_bytes(1.0, 2.0)})
    refused(write(data), state, UNSAFE_OR_CORRUPT)


@pytest.mark.parametrize('rebuild', ['_rebuild_from_type_v2', '_rebuild_parameter_with_state'])
@pytest.mark.parametrize('attribute', ['backward', '__class__', '__dict__', 'data', 'grad'])
def test_tensor_state_sets_plain_attributes_only(write, state, rebuild, attribute):
    # torch.save writes a tensor's attributes as a state that rebuild sets on the new
    # tensor: it must not shadow a method or reach torch's own attributes.
    value = hostile.Global('builtins', 'set') if attribute == 'backward' else 1
    args = hostile.tensor_node(hostile.Storage('0', 2), (2,)).args
    if rebuild == '_rebuild_from_type_v2':
        tensor_type = hostile.Global('torch', 'Tensor')
        node = hostile.Call(
            hostile.REBUILD_FROM_TYPE_V2,
            (hostile.REBUILD_TENSOR_V2, tensor_type, args, {attribute: value}),
        )
    else:
        data = hostile.Call(hostile.REBUILD_TENSOR_V2, args)
        parameter = hostile.Global('torch._utils', rebuild)
        node = hostile.Call(
            parameter, (data, True, hostile.Call(hostile.ORDERED_DICT), {attribute: value})
        )
    data = hostile.zip_checkpoint({'w': node}, {'0': hostile.float_bytes(1.0, 2.0)})
    refused(write(data), state, UNSAFE_OR_CORRUPT)


@pytest.mark.parametrize('variant', sorted(hostile.HISTORY_BUFFER_VARIANTS))
def test_history_buffer_state_is_checked(write, state, variant):
    path = write(hostile.data_checkpoint(hostile.HISTORY_BUFFER_VARIANTS[variant]()))
    refused(path, state, UNSAFE_OR_CORRUPT)


def test_history_buffer_statistics_methods_are_dropped(state):
    # The writer's 'mean' was max: the rebuilt buffer uses the process's own mean.
    max_method = hostile.Call(hostile.GETATTR, (hostile.HISTORY_BUFFER, 'max'))
    node = hostile.history_buffer_node(statistics_methods={'mean': max_method})
    buffer = loaded(hostile.data_checkpoint(node), 'buffer.pth', state)['x']
    assert type(buffer) is HistoryBuffer and buffer.statistics('mean') == 2.0


@pytest.mark.parametrize('variant', sorted(hostile.NUMPY_VARIANTS))
def test_numpy_state_is_checked(write, state, variant):
    path = write(hostile.data_checkpoint(hostile.NUMPY_VARIANTS[variant]()))
    refused(path, state, UNSAFE_OR_CORRUPT)


def test_big_endian_array_is_data_and_builtin_dtypes_stay(state):
    # numpy pickles a dtype as REDUCE then BUILD; the BUILD must make a new dtype.
    big_endian = hostile.numpy_dtype_node('f8', '>')
    node = hostile.numpy_array_node(big_endian, (1,), struct.pack('>d', 2.5))
    array = loaded(hostile.data_checkpoint(node), 'array.pth', state)['x']
    assert array.dtype.newbyteorder('=') == np.float64 and array[0] == 2.5  # either order
    assert np.dtype('f8').byteorder == '='
