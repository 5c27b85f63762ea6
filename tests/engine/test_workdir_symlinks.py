"""Checkpoint writes never follow a symlink planted in the work dir.

Someone who could write to the work dir earlier leaves ``epoch_1.pth.partial``
or ``last_checkpoint.partial`` pointing outside it (dangling or not), or makes a
final name a link; the start-up cleanup and every save must leave the targets
alone and end with regular files in the work dir.
"""

import os
import os.path as osp
from pathlib import Path

import pytest

from chrnn_plugin.engine import AtomicCheckpointHook, atomic_write_text, remove_partial_files

pytestmark = pytest.mark.skipif(not hasattr(os, 'symlink'), reason='needs symlinks')


@pytest.fixture
def dirs(tmp_path) -> tuple[Path, Path]:
    """The work dir and a folder outside it (which exists, so a write through a link succeeds)."""
    work, outside = tmp_path / 'work', tmp_path / 'outside'
    work.mkdir()
    outside.mkdir()
    return work, outside


def plant(link: Path, target: Path, content: bytes | None = None) -> None:
    """Make ``link`` point at ``target``; create the target with ``content`` unless None."""
    if content is not None:
        target.write_bytes(content)
    link.symlink_to(target)


def assert_regular(path: Path, content: bytes) -> None:
    assert not path.is_symlink() and path.is_file()
    assert path.read_bytes() == content


def test_cleanup_removes_partial_links_dangling_or_not(dirs):
    work, outside = dirs
    plant(work / 'epoch_1.pth.partial', outside / 'target')
    plant(work / 'last_checkpoint.partial', outside / 'kept', b'outside')
    plant(work / 'dir_link.partial', outside)
    (work / 'epoch_2.pth.partial').write_bytes(b'half')
    (work / 'deepspeed.pth.partial').mkdir()  # a directory: left, and what is in it
    (work / 'deepspeed.pth.partial' / 'inner.partial').write_bytes(b'x')
    removed = remove_partial_files(str(work))
    assert removed == sorted(
        str(work / name)
        for name in (
            'epoch_1.pth.partial',
            'last_checkpoint.partial',
            'dir_link.partial',
            'epoch_2.pth.partial',
        )
    )
    assert sorted(p.name for p in work.iterdir()) == ['deepspeed.pth.partial']
    assert (work / 'deepspeed.pth.partial' / 'inner.partial').read_bytes() == b'x'
    assert sorted(p.name for p in outside.iterdir()) == ['kept']
    assert (outside / 'kept').read_bytes() == b'outside'


@pytest.mark.parametrize('partial', ['dangling', 'to a file'])
def test_atomic_write_text_never_writes_through_a_link(dirs, partial):
    work, outside = dirs
    plant(
        work / 'last_checkpoint.partial',
        outside / 'target',
        None if partial == 'dangling' else b'outside',
    )
    plant(work / 'last_checkpoint', outside / 'final', b'outside final')
    old_umask = os.umask(0o027)
    try:
        atomic_write_text(str(work / 'last_checkpoint'), 'work/epoch_1.pth')
    finally:
        os.umask(old_umask)
    assert_regular(work / 'last_checkpoint', b'work/epoch_1.pth')
    assert (work / 'last_checkpoint').stat().st_mode & 0o777 == 0o640  # the umask applied
    assert sorted(p.name for p in work.iterdir()) == ['last_checkpoint']
    # os.replace replaced the final link itself, not the file it pointed to
    assert (outside / 'final').read_bytes() == b'outside final'
    if partial == 'dangling':
        assert not osp.lexists(outside / 'target')
    else:
        assert (outside / 'target').read_bytes() == b'outside'


def test_hook_save_never_writes_through_a_link(dirs):
    work, outside = dirs
    plant(work / 'epoch_1.pth.partial', outside / 'target')
    plant(work / 'epoch_1.pth', outside / 'old', b'outside checkpoint')

    def save(out_dir: str, filename: str, *args, **kwargs) -> None:
        # as runner.save_checkpoint does: open the given name and write
        with open(osp.join(out_dir, filename), 'wb') as f:
            f.write(b'new checkpoint')

    AtomicCheckpointHook(interval=1)._atomic_runner_save(save, str(work), 'epoch_1.pth')
    assert_regular(work / 'epoch_1.pth', b'new checkpoint')
    assert sorted(p.name for p in work.iterdir()) == ['epoch_1.pth']
    assert not osp.lexists(outside / 'target')
    assert (outside / 'old').read_bytes() == b'outside checkpoint'
