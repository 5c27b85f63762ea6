"""Runtime support for the stock MMEngine runner.

Importing this package (which ``import chrnn_plugin`` does) allow-lists the
globals of MMEngine checkpoints for ``torch.load(weights_only=True)``, makes
every scheme of MMEngine's checkpoint loader (local files, URLs, model-zoo
names, object stores) load through the safe loader (see :mod:`.safe_loading`
and :mod:`.checkpoint_schemes`), and registers ``AtomicCheckpointHook`` in
MMPretrain's ``HOOKS``.
"""

from .atomic_checkpoint import AtomicCheckpointHook, atomic_write_text, remove_partial_files
from .checkpoint_schemes import register_safe_checkpoint_loader
from .cli import fix_persistent_workers, use_atomic_checkpoint_hook
from .launcher import init_cpu_process_group, setup_distributed, teardown_distributed
from .safe_loading import (
    TRUST_ENV_VAR,
    IncompleteCheckpointError,
    NotACheckpointError,
    UnsafeCheckpointError,
    allow_mmengine_checkpoint_globals,
    load_checkpoint_safely,
    load_from_local_safe,
    mmengine_checkpoint_globals,
    trusted_checkpoints_enabled,
)

allow_mmengine_checkpoint_globals()
register_safe_checkpoint_loader()

__all__ = [
    'TRUST_ENV_VAR',
    'AtomicCheckpointHook',
    'IncompleteCheckpointError',
    'NotACheckpointError',
    'UnsafeCheckpointError',
    'allow_mmengine_checkpoint_globals',
    'atomic_write_text',
    'fix_persistent_workers',
    'init_cpu_process_group',
    'load_checkpoint_safely',
    'load_from_local_safe',
    'mmengine_checkpoint_globals',
    'register_safe_checkpoint_loader',
    'remove_partial_files',
    'setup_distributed',
    'teardown_distributed',
    'trusted_checkpoints_enabled',
    'use_atomic_checkpoint_hook',
]
