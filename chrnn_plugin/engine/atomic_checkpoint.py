"""A ``CheckpointHook`` whose files are never left half-written.

MMEngine's ``CheckpointHook`` writes ``epoch_N.pth`` and then ``last_checkpoint``
in place, and deletes the oldest kept checkpoint *before* writing the new one.
A crash (SIGKILL, node failure, full disk) in the middle can leave a truncated
checkpoint, overwrite a good one, or leave ``last_checkpoint`` pointing at a
file that is incomplete or already deleted, and ``--resume auto`` then fails.

``AtomicCheckpointHook`` writes every file to a temporary name in the same
directory, flushes it to disk and renames it over the target with
``os.replace`` (atomic on POSIX and Windows), and removes old checkpoints only
after the new one and ``last_checkpoint`` are in place. A save that fails (full
disk, any error) removes its temporary ``*.partial`` file before the error
propagates, and a new run removes the ``*.partial`` files that a killed run
left in its checkpoint folder. It takes exactly the
arguments of ``CheckpointHook``; ``tools/train.py`` uses it instead of the stock
hook automatically. Non-local back ends (e.g. object stores) fall back to the
stock behaviour.
"""

import glob
import os
import os.path as osp
from collections import deque
from collections.abc import Callable

from mmengine.dist import is_main_process
from mmengine.fileio import LocalBackend
from mmengine.hooks import CheckpointHook
from mmpretrain.registry import HOOKS

_PARTIAL_SUFFIX = '.partial'


def _fsync_file(path: str) -> None:
    with open(path, 'rb') as f:
        os.fsync(f.fileno())


def _remove_if_present(path: str) -> None:
    try:
        os.remove(path)
    except FileNotFoundError:
        pass


def atomic_write_text(path: str, text: str) -> None:
    """Write ``text`` to ``path`` so readers see the old or the new content, never a mix."""
    tmp_path = path + _PARTIAL_SUFFIX
    try:
        with open(tmp_path, 'w') as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp_path, path)
    except BaseException:
        _remove_if_present(tmp_path)
        raise


def remove_partial_files(directory: str) -> list[str]:
    """Remove the ``*.partial`` files (unfinished writes of a killed run) in ``directory``.

    Returns:
        list[str]: The removed paths, sorted.
    """
    removed = sorted(
        path
        for path in glob.glob(osp.join(glob.escape(directory), '*' + _PARTIAL_SUFFIX))
        if osp.isfile(path)
    )
    for path in removed:
        _remove_if_present(path)
    return removed


@HOOKS.register_module()
class AtomicCheckpointHook(CheckpointHook):
    """``CheckpointHook`` that writes checkpoints and ``last_checkpoint`` atomically.

    Use it like ``CheckpointHook``::

        default_hooks = dict(checkpoint=dict(type='AtomicCheckpointHook', interval=1))
    """

    def _is_local(self) -> bool:
        return isinstance(getattr(self, 'file_backend', None), LocalBackend)

    def before_train(self, runner) -> None:
        super().before_train(runner)
        if not (self._is_local() and is_main_process()):
            return
        folders = {self.out_dir, runner.work_dir}
        removed = [path for folder in sorted(folders) for path in remove_partial_files(folder)]
        if removed:
            runner.logger.warning(
                f'Removed {len(removed)} unfinished checkpoint file(s) left by an earlier run: '
                + ', '.join(removed)
            )

    def _atomic_runner_save(self, save: Callable, out_dir: str, filename: str, *args, **kwargs):
        """Call ``runner.save_checkpoint`` on a temporary name, then rename it into place."""
        tmp_path = osp.join(out_dir, filename + _PARTIAL_SUFFIX)
        try:
            save(out_dir, filename + _PARTIAL_SUFFIX, *args, **kwargs)
            # runner.save_checkpoint writes on the main process only.
            if is_main_process():
                _fsync_file(tmp_path)
                os.replace(tmp_path, osp.join(out_dir, filename))
        except BaseException:
            if is_main_process():
                _remove_if_present(tmp_path)
            raise

    def _save_checkpoint_with_step(self, runner, step: int, meta: dict) -> None:
        if not self._is_local():
            super()._save_checkpoint_with_step(runner, step, meta)
            return

        # Update the bookkeeping first, as the stock hook does, so the saved
        # message hub lists this checkpoint; delete the dropped one only later,
        # and undo the bookkeeping if the save fails.
        kept_before = list(self.keep_ckpt_ids) if self.max_keep_ckpts > 0 else None
        hub_before = {
            key: runner.message_hub.runtime_info[key]
            for key in ('keep_ckpt_ids', 'last_ckpt')
            if key in runner.message_hub.runtime_info
        }
        dropped_step = None
        if self.max_keep_ckpts > 0:
            if not (self.keep_ckpt_ids and self.keep_ckpt_ids[-1] == step):
                if len(self.keep_ckpt_ids) == self.max_keep_ckpts:
                    dropped_step = self.keep_ckpt_ids.popleft()
                self.keep_ckpt_ids.append(step)
                runner.message_hub.update_info('keep_ckpt_ids', list(self.keep_ckpt_ids))

        last_ckpt_before = getattr(self, 'last_ckpt', None)
        ckpt_filename = self.filename_tmpl.format(step)
        self.last_ckpt = self.file_backend.join_path(self.out_dir, ckpt_filename)
        runner.message_hub.update_info('last_ckpt', self.last_ckpt)

        try:
            self._atomic_runner_save(
                runner.save_checkpoint,
                self.out_dir,
                ckpt_filename,
                self.file_client_args,
                save_optimizer=self.save_optimizer,
                save_param_scheduler=self.save_param_scheduler,
                meta=meta,
                by_epoch=self.by_epoch,
                backend_args=self.backend_args,
                **self.args,
            )
        except BaseException:
            if kept_before is not None:
                self.keep_ckpt_ids = deque(kept_before, self.max_keep_ckpts)
            self.last_ckpt = last_ckpt_before
            for key, value in hub_before.items():
                runner.message_hub.update_info(key, value)
            raise

        if not is_main_process():
            return
        atomic_write_text(osp.join(runner.work_dir, 'last_checkpoint'), self.last_ckpt)

        if dropped_step is not None and dropped_step != step:
            path = osp.join(self.out_dir, self.filename_tmpl.format(dropped_step))
            if osp.isfile(path):
                os.remove(path)
            elif osp.isdir(path):  # DeepSpeed saves checkpoints as directories
                self.file_backend.rmtree(path)

    def _save_best_checkpoint(self, runner, metrics) -> None:
        if not self._is_local():
            super()._save_best_checkpoint(runner, metrics)
            return
        # The stock method is long and calls runner.save_checkpoint once per
        # new best; route that call through the atomic save for its duration.
        own = vars(runner).get('save_checkpoint')
        save = runner.save_checkpoint
        runner.save_checkpoint = lambda out_dir, filename, *args, **kwargs: (
            self._atomic_runner_save(save, out_dir, filename, *args, **kwargs)
        )
        try:
            super()._save_best_checkpoint(runner, metrics)
        finally:
            if own is None:
                del runner.save_checkpoint
            else:
                runner.save_checkpoint = own
