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
left in its checkpoint folder. No write follows a symlink: a link planted at a
``*.partial`` name is removed before the write, and ``os.replace`` onto a final
name that is a link replaces the link, not its target. It takes exactly the
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

# O_EXCL with O_CREAT already fails on an existing name, a symlink included;
# O_NOFOLLOW says so outright. Windows has no O_NOFOLLOW but needs O_BINARY, so
# that its C runtime does not translate newlines.
_NEW_FILE_FLAGS = (
    os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, 'O_NOFOLLOW', 0) | getattr(os, 'O_BINARY', 0)
)


def _fsync_file(path: str) -> None:
    with open(path, 'rb') as f:
        os.fsync(f.fileno())


def remove_if_present(path: str) -> None:
    """Remove the file or symlink ``path``; do nothing if there is none.

    Args:
        path (str): The entry to remove (a symlink itself, never its target).
    """
    try:
        os.remove(path)
    except FileNotFoundError:
        pass


def _is_file_or_link(path: str) -> bool:
    # islink is True for dangling links too, which isfile (following the link) is not.
    return osp.islink(path) or osp.isfile(path)


def discard_file_or_link(path: str) -> None:
    """Remove ``path`` if it is a file or a symlink (dangling or not); leave a directory.

    Called before writing ``path``: a symlink planted there would otherwise make
    the write go through it, to a file anywhere.

    Args:
        path (str): The name about to be written.
    """
    if _is_file_or_link(path):
        remove_if_present(path)


def create_new_file(path: str) -> int:
    """Create ``path``, which must not exist, for writing; never through a symlink.

    Args:
        path (str): The new file.

    Returns:
        int: An OS-level file descriptor open for writing (wrap it with ``os.fdopen``).

    Raises:
        FileExistsError: Something (a file, a directory, a symlink) is at ``path``.
    """
    # Mode 0o666, as open() uses, so the umask decides the permissions.
    return os.open(path, _NEW_FILE_FLAGS, 0o666)


def atomic_write_text(path: str, text: str) -> None:
    """Write ``text`` to ``path`` so readers see the old or the new content, never a mix.

    Neither the temporary ``path + '.partial'`` nor ``path`` is written through a
    symlink: a link at either name is replaced by a regular file.

    Args:
        path (str): The file to (re)write.
        text (str): Its new content.
    """
    tmp_path = path + _PARTIAL_SUFFIX
    try:
        discard_file_or_link(tmp_path)
        with os.fdopen(create_new_file(tmp_path), 'w') as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp_path, path)
    except BaseException:
        discard_file_or_link(tmp_path)
        raise


def remove_partial_files(directory: str) -> list[str]:
    """Remove the ``*.partial`` entries (unfinished writes of a killed run) in ``directory``.

    Files and symlinks (dangling ones too) are removed; a directory with such a
    name, and anything inside it, is left alone.

    Args:
        directory (str): The checkpoint folder or work dir.

    Returns:
        list[str]: The removed paths, sorted.
    """
    removed = sorted(
        path
        for path in glob.glob(osp.join(glob.escape(directory), '*' + _PARTIAL_SUFFIX))
        if _is_file_or_link(path)
    )
    for path in removed:
        remove_if_present(path)
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
            # runner.save_checkpoint opens the name it is given as it likes (and
            # would follow a planted link), so make sure nothing is there.
            if is_main_process():
                discard_file_or_link(tmp_path)
            save(out_dir, filename + _PARTIAL_SUFFIX, *args, **kwargs)
            # runner.save_checkpoint writes on the main process only.
            if is_main_process():
                _fsync_file(tmp_path)
                os.replace(tmp_path, osp.join(out_dir, filename))
        except BaseException:
            if is_main_process():
                discard_file_or_link(tmp_path)
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
            if _is_file_or_link(path):  # a link: remove the link, not what it points to
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
