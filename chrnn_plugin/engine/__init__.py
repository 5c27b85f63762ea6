"""Runtime support for the stock MMEngine runner.

Importing this package (which ``import chrnn_plugin`` does) allow-lists the
globals of MMEngine checkpoints for ``torch.load(weights_only=True)``, makes
MMEngine's checkpoint loader use it (see :mod:`.safe_loading`), and registers
``AtomicCheckpointHook`` in MMPretrain's ``HOOKS``.
"""

from .atomic_checkpoint import AtomicCheckpointHook, atomic_write_text
from .launcher import init_cpu_process_group, setup_distributed, teardown_distributed
from .safe_loading import (
    TRUST_ENV_VAR,
    UnsafeCheckpointError,
    allow_mmengine_checkpoint_globals,
    load_from_local_safe,
    mmengine_checkpoint_globals,
    register_safe_checkpoint_loader,
    trusted_checkpoints_enabled,
)
from .tool_config import fix_persistent_workers, use_atomic_checkpoint_hook

allow_mmengine_checkpoint_globals()
register_safe_checkpoint_loader()

__all__ = [
    'TRUST_ENV_VAR',
    'AtomicCheckpointHook',
    'UnsafeCheckpointError',
    'allow_mmengine_checkpoint_globals',
    'atomic_write_text',
    'fix_persistent_workers',
    'init_cpu_process_group',
    'load_from_local_safe',
    'mmengine_checkpoint_globals',
    'register_safe_checkpoint_loader',
    'setup_distributed',
    'teardown_distributed',
    'trusted_checkpoints_enabled',
    'use_atomic_checkpoint_hook',
]
