"""Hostile checkpoints through the real tools: refused with exit status 1, the file named.

Two files from :mod:`tests.engine.hostile_checkpoints`, as a user would meet
them: one whose numpy dtype turns into objects under an array (a vulnerable
loader segfaults, exit status 139 from a shell), given to ``tools/test.py``; and
one that makes ``Tensor.backward`` a no-op (a vulnerable loader lets training
"succeed" without changing a parameter), given to ``tools/train.py`` as
``load_from``.
"""

import sys

import pytest

from tests.engine import hostile_checkpoints as hostile

pytestmark = pytest.mark.slow

PY = sys.executable


@pytest.fixture(scope='module')
def hostile_files(tmp_path_factory) -> dict:
    """The two hostile checkpoints, and a directory for the tools' work dirs."""
    root = tmp_path_factory.mktemp('hostile')
    files = {'root': root}
    for name, data in (
        ('segfault', hostile.structured_dtype_checkpoint()),
        ('backward_noop', hostile.setstate_chain_checkpoint('tensor_backward_noop')),
    ):
        files[name] = root / f'{name}.pth'
        files[name].write_bytes(data)
    return files


def _report(result) -> str:
    return (
        f'exit status {result.returncode}\n--- stdout\n{result.stdout[-3000:]}\n'
        f'--- stderr\n{result.stderr[-5000:]}'
    )


def test_test_py_refuses_the_segfault_file(tiny_project, hostile_files):
    checkpoint = hostile_files['segfault']
    result = tiny_project.run(
        [PY, tiny_project.tools / 'test.py', tiny_project.config, checkpoint]
        + ['--work-dir', hostile_files['root'] / 'w_test'],
        check=False,
    )
    assert result.returncode == 1, _report(result)
    assert str(checkpoint) in result.stderr, _report(result)


def test_train_py_refuses_load_from_the_backward_noop_file(tiny_project, hostile_files):
    checkpoint = hostile_files['backward_noop']
    work_dir = hostile_files['root'] / 'w_train'
    result = tiny_project.run(
        [PY, tiny_project.tools / 'train.py', tiny_project.config, '--work-dir', work_dir]
        + ['--cfg-options', f'load_from={checkpoint}', 'train_cfg.max_epochs=1'],
        check=False,
    )
    assert result.returncode == 1, _report(result)
    assert str(checkpoint) in result.stderr, _report(result)
    assert not list(work_dir.rglob('epoch_*.pth')), 'it trained from the file'
