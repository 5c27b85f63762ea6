"""Config text inside a checkpoint is data: the loader removes it so nothing can execute it.

MMEngine stores the training config as Python source in a checkpoint, and
executes such a string when it meets one:

* ``Runner.resume`` runs ``Config.fromstring(checkpoint['meta']['config'])`` (on
  ``--resume PATH``, ``--resume auto`` and ``last_checkpoint`` alike);
* ``mmengine.infer.BaseInferencer`` without a config runs
  ``checkpoint['message_hub']['runtime_info']['cfg']`` or ``checkpoint['meta']['cfg']``.

Executing the config of a file is executing the file. Every checkpoint that
:func:`.safe_loading.load_checkpoint_safely` returns has these strings removed,
so those paths either skip the step (resume: the GPU-count check, which only
reads ``gpu_ids``) or fail with MMEngine's own "config not found" error (an
inferencer then needs the config the user gives). Nothing else reads them: the
runner writes its own config into every new checkpoint.
"""

from typing import Any

__all__ = ['CONFIG_STRING_LOCATIONS', 'strip_config_strings']

# (path to a dict, key): where MMEngine writes or reads config source.
CONFIG_STRING_LOCATIONS = (
    (('meta',), 'config'),
    (('meta',), 'cfg'),
    (('message_hub', 'runtime_info'), 'cfg'),
)


def strip_config_strings(checkpoint: Any) -> list[str]:
    """Remove the config source MMEngine would execute from ``checkpoint``, in place.

    Args:
        checkpoint: What a checkpoint file held; anything but a dict is left alone.

    Returns:
        list[str]: The removed entries, e.g. ``["meta['cfg']"]``.
    """
    removed = []
    for path, key in CONFIG_STRING_LOCATIONS:
        node = checkpoint
        for step in path:
            node = node.get(step) if isinstance(node, dict) else None
        if isinstance(node, dict) and key in node:
            del node[key]
            removed.append(''.join(f'[{step!r}]' for step in (*path, key)))
    return removed
