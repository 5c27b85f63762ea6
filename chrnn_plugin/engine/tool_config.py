"""Config fix-ups that ``tools/train.py`` and ``tools/test.py`` apply before building the Runner."""

from mmengine.config import Config
from mmengine.logging import print_log

DATALOADER_FIELDS = ('train_dataloader', 'val_dataloader', 'test_dataloader')
_STOCK_CHECKPOINT_HOOKS = ('CheckpointHook', 'mmengine.CheckpointHook')


def fix_persistent_workers(cfg: Config) -> list[str]:
    """Turn off ``persistent_workers`` for dataloaders with ``num_workers=0``.

    PyTorch's DataLoader raises for that combination, and MMPretrain's tools
    set ``persistent_workers=True`` by default, so any config with
    ``num_workers=0`` (common for debugging and CPU runs) would crash.

    Returns:
        The names of the dataloaders that were changed.
    """
    changed = []
    for field in DATALOADER_FIELDS:
        loader = cfg.get(field)
        if loader is None:
            continue
        if loader.get('num_workers', 0) == 0 and loader.get('persistent_workers', False):
            loader['persistent_workers'] = False
            changed.append(field)
    if changed:
        print_log(
            f'{", ".join(changed)}: num_workers=0, so persistent_workers is set to False '
            '(PyTorch refuses persistent workers without worker processes)',
            logger='current',
        )
    return changed


def _is_stock_checkpoint_hook(hook_cfg) -> bool:
    from mmengine.hooks import CheckpointHook

    hook_type = hook_cfg.get('type') if hasattr(hook_cfg, 'get') else None
    return hook_type in _STOCK_CHECKPOINT_HOOKS or hook_type is CheckpointHook


def use_atomic_checkpoint_hook(cfg: Config) -> bool:
    """Replace the stock ``CheckpointHook`` by ``AtomicCheckpointHook`` (same arguments).

    Returns:
        Whether a hook was replaced.
    """
    replaced = False
    hook_cfgs = []
    if cfg.get('default_hooks') and cfg.default_hooks.get('checkpoint'):
        hook_cfgs.append(cfg.default_hooks.checkpoint)
    hook_cfgs += list(cfg.get('custom_hooks') or [])
    for hook_cfg in hook_cfgs:
        if _is_stock_checkpoint_hook(hook_cfg):
            hook_cfg['type'] = 'mmpretrain.AtomicCheckpointHook'
            replaced = True
    if replaced:
        print_log(
            'Using AtomicCheckpointHook instead of CheckpointHook, so that an interrupted '
            'save never leaves a truncated checkpoint behind last_checkpoint',
            logger='current',
        )
    return replaced
