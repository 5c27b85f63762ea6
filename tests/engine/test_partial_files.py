"""AtomicCheckpointHook never leaves ``*.partial`` files behind."""

import errno
import os
import pickle
from pathlib import Path

import pytest
import torch
from mmengine.logging import MessageHub, MMLogger

from chrnn_plugin.engine import AtomicCheckpointHook


class _DiskFullRunner:
    """What CheckpointHook uses of a Runner; ``disk_full`` makes the write fail midway."""

    def __init__(self, work_dir: Path) -> None:
        self.work_dir = str(work_dir)
        self.logger = MMLogger.get_instance(f'partial-{id(self)}')
        self.message_hub = MessageHub(f'partial-{id(self)}')
        self.disk_full = False

    def save_checkpoint(self, out_dir, filename, *args, meta=None, **kwargs) -> None:
        data = pickle.dumps({'meta': meta, 'state_dict': {'w': torch.ones(1000)}})
        with open(os.path.join(out_dir, filename), 'wb') as f:
            if self.disk_full:
                f.write(data[: len(data) // 3])
                raise OSError(errno.ENOSPC, 'No space left on device')
            f.write(data)


def test_failed_save_removes_its_partial_file(tmp_path):
    runner = _DiskFullRunner(tmp_path)
    hook = AtomicCheckpointHook(interval=1)
    hook.before_train(runner)
    hook._save_checkpoint_with_step(runner, 1, meta={'epoch': 1})
    runner.disk_full = True
    with pytest.raises(OSError, match='No space left'):
        hook._save_checkpoint_with_step(runner, 2, meta={'epoch': 2})
    assert sorted(p.name for p in tmp_path.iterdir()) == ['epoch_1.pth', 'last_checkpoint']


def test_next_start_removes_partial_files_of_a_killed_run(tmp_path):
    for name in ('epoch_4.pth.partial', 'last_checkpoint.partial', 'best_acc_epoch_3.pth.partial'):
        (tmp_path / name).write_bytes(b'half a checkpoint')
    (tmp_path / 'epoch_3.pth').write_bytes(b'complete')
    runner = _DiskFullRunner(tmp_path)
    AtomicCheckpointHook(interval=1).before_train(runner)
    assert sorted(p.name for p in tmp_path.iterdir()) == ['epoch_3.pth']


def test_links_a_killed_run_left_are_removed_and_saves_stay_in_the_work_dir(tmp_path):
    work, outside = tmp_path / 'work', tmp_path / 'outside'
    work.mkdir()
    outside.mkdir()
    (work / 'epoch_1.pth.partial').symlink_to(outside / 'target')  # dangling
    (work / 'last_checkpoint.partial').symlink_to(outside / 'last')  # dangling
    runner = _DiskFullRunner(work)
    hook = AtomicCheckpointHook(interval=1)
    hook.before_train(runner)
    assert list(work.iterdir()) == []
    hook._save_checkpoint_with_step(runner, 1, meta={'epoch': 1})
    assert list(outside.iterdir()) == []
    for name in ('epoch_1.pth', 'last_checkpoint'):
        assert (work / name).is_file() and not (work / name).is_symlink()
    assert (work / 'last_checkpoint').read_text() == str(work / 'epoch_1.pth')
