"""Runtime support for the stock MMEngine runner.

Importing this package (which ``import chrnn_plugin`` does) makes every scheme
of MMEngine's checkpoint loader (local files, URLs, model-zoo names, object
stores) load through the data-only loader (see :mod:`.safe_loading` and
:mod:`.checkpoint_schemes`), and registers ``AtomicCheckpointHook`` in
MMPretrain's ``HOOKS``. It leaves torch's own ``weights_only`` allow-list alone.
"""

from .atomic_checkpoint import AtomicCheckpointHook, atomic_write_text, remove_partial_files
from .checkpoint_schemes import (
    DOWNLOAD_TIMEOUT_ENV_VAR,
    CheckpointDownloadError,
    CheckpointDownloadTimeoutError,
    register_safe_checkpoint_loader,
)
from .cli import fix_persistent_workers, use_atomic_checkpoint_hook
from .launcher import init_cpu_process_group, setup_distributed, teardown_distributed
from .safe_loading import (
    CHECKPOINT_ERRORS,
    TRUST_ENV_VAR,
    TRUST_FLAG,
    CheckpointDeviceError,
    CorruptCheckpointError,
    IncompleteCheckpointError,
    NotACheckpointError,
    UnsafeCheckpointError,
    load_checkpoint_safely,
    load_from_local_safe,
    trusted_checkpoints_enabled,
)
from .strict_loading import CheckpointMismatchError, load_checkpoint_checked

register_safe_checkpoint_loader()

__all__ = [
    'CHECKPOINT_ERRORS',
    'DOWNLOAD_TIMEOUT_ENV_VAR',
    'TRUST_ENV_VAR',
    'TRUST_FLAG',
    'AtomicCheckpointHook',
    'CheckpointDeviceError',
    'CheckpointMismatchError',
    'CheckpointDownloadError',
    'CheckpointDownloadTimeoutError',
    'CorruptCheckpointError',
    'IncompleteCheckpointError',
    'NotACheckpointError',
    'UnsafeCheckpointError',
    'atomic_write_text',
    'fix_persistent_workers',
    'init_cpu_process_group',
    'load_checkpoint_checked',
    'load_checkpoint_safely',
    'load_from_local_safe',
    'register_safe_checkpoint_loader',
    'remove_partial_files',
    'setup_distributed',
    'teardown_distributed',
    'trusted_checkpoints_enabled',
    'use_atomic_checkpoint_hook',
]
