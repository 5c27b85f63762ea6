"""Plumbing every tool in ``tools/`` shares: flags, config, model, dataset, checkpoint, runner.

A tool reads its config with :func:`load_config` (``--cfg-options`` and the
config's ``custom_imports`` applied), builds what it needs with
:func:`build_model` or :func:`build_dataset` (in the config's default scope)
and loads weights with :func:`load_weights`, which goes through MMEngine's
``CheckpointLoader``: every checkpoint source (paths, URLs, model-zoo names)
is read by the safe loader, with ``--trust-checkpoint`` as the one opt-out.
Weights are loaded by :mod:`.strict_loading`, which names every key and shape
that does not match the model and, where the tool loads strictly, refuses it.

``tools/train.py`` and ``tools/test.py`` also share the runner part: the steps
of MMPretrain's ``merge_args`` both take (:func:`apply_runner_arguments`:
launcher, work dir, dataloader defaults, ``--cfg-options``, then the
``persistent_workers`` decision, made in :func:`fix_persistent_workers` only),
what ``--amp`` means on the device (:func:`apply_amp_argument`: MMEngine's
float16 AMP on CUDA, bfloat16 autocast on the CPU) and the run itself
(:func:`run_with_runner`), in which the runner loads checkpoints through
:func:`check_runner_checkpoints`: strictly for ``tools/test.py``
(``--no-strict`` opts out), with the differences logged for
``tools/train.py``, and logs none of the known MMEngine deprecation warnings
(:mod:`.quiet`).
"""

import argparse
import logging
import os
import os.path as osp
import sys
from collections.abc import Callable, Sequence
from typing import Any

import torch
from mmengine.config import Config, DictAction
from mmengine.logging import print_log
from mmengine.registry import RUNNERS, init_default_scope
from mmengine.runner import Runner
from mmengine.runner.checkpoint import _load_checkpoint
from mmengine.utils import import_modules_from_strings
from mmpretrain.registry import DATASETS, MODELS
from torch import nn

from . import quiet
from .amp import AMP_FLAG, AmpUnavailableError, apply_amp
from .checkpoint_config import strip_config_strings
from .launcher import setup_distributed, teardown_distributed
from .safe_loading import CHECKPOINT_ERRORS, TRUST_ENV_VAR, TRUST_FLAG
from .strict_loading import (
    DEFAULT_REVISE_KEYS,
    CheckpointMismatchError,
    load_checkpoint_checked,
    load_checkpoint_into,
)

DATALOADER_FIELDS = ('train_dataloader', 'val_dataloader', 'test_dataloader')
_STOCK_CHECKPOINT_HOOKS = ('CheckpointHook', 'mmengine.CheckpointHook')

CHECKPOINT_EPILOG = f"""\
Checkpoints are loaded as data only: tensors, numeric numpy arrays, MMEngine's log
buffers and plain containers; a checkpoint holding anything else is refused, and
config source stored in it is never executed. For a trusted legacy checkpoint,
pass --trust-checkpoint or set {TRUST_ENV_VAR}=1.
"""
_LAUNCHER_EPILOG = 'Without CUDA, --launcher pytorch/slurm/mpi runs on CPU with the gloo backend.\n'
NO_STRICT_FLAG = '--no-strict'


# --- Command line -------------------------------------------------------------------------


def checkpoint_tool_parser(description: str, *, launcher: bool = False) -> argparse.ArgumentParser:
    """A parser whose help ends with how checkpoints are loaded (and, for runners, launched)."""
    return argparse.ArgumentParser(
        description=description,
        epilog=CHECKPOINT_EPILOG + (_LAUNCHER_EPILOG if launcher else ''),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


def add_cfg_options_argument(parser: argparse.ArgumentParser) -> None:
    """``--cfg-options key=value ...``, merged into the config."""
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override config settings, xxx=yyy pairs merged into the config; lists as '
        'key="[a,b]" or key=a,b, nested as key="[(a,b),(c,d)]" (quotes needed, no spaces)',
    )


def add_trust_checkpoint_argument(parser: argparse.ArgumentParser) -> None:
    """``--trust-checkpoint``: the opt-in to load a trusted legacy checkpoint unsafely."""
    parser.add_argument(
        '--trust-checkpoint',
        action='store_true',
        help=f'load a trusted legacy checkpoint that holds other types than data with '
        f'torch.load(weights_only=False), which runs its code (same as {TRUST_ENV_VAR}=1)',
    )


def add_strict_argument(parser: argparse.ArgumentParser) -> None:
    """``--no-strict`` (``args.strict`` False): load a checkpoint that does not match the model."""
    parser.add_argument(
        NO_STRICT_FLAG,
        dest='strict',
        action='store_false',
        help='load a checkpoint whose state_dict does not match the model (missing or '
        'unexpected keys, other shapes): only the matching weights are loaded, the others '
        'keep their initial values, and the differences are logged. Without it such a '
        'checkpoint is refused (exit status 1) before anything runs',
    )


def add_amp_argument(parser: argparse.ArgumentParser, what: str) -> None:
    """``--amp``: mixed precision, float16 on CUDA and bfloat16 on the CPU (see :mod:`.amp`).

    Args:
        parser: The tool's parser.
        what: What runs in mixed precision (``'training'``, ``'test'``).
    """
    parser.add_argument(
        AMP_FLAG,
        action='store_true',
        help=f'automatic mixed precision {what}: float16 autocast on CUDA (MMEngine), '
        'bfloat16 autocast on the CPU; the precision used is logged',
    )


def add_runtime_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags every runner tool takes: launcher, checkpoint trust, pin memory, local rank."""
    parser.add_argument(
        '--no-pin-memory', action='store_true', help='disable pin_memory in dataloaders'
    )
    parser.add_argument(
        '--launcher',
        choices=['none', 'pytorch', 'slurm', 'mpi'],
        default='none',
        help='job launcher',
    )
    add_trust_checkpoint_argument(parser)
    # torch.distributed.launch passes --local-rank (torch >= 2.0) or --local_rank.
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)


def apply_trust_checkpoint(args: argparse.Namespace) -> None:
    """Export ``--trust-checkpoint`` to the environment the safe loader reads.

    Called by the tools' ``main``, not by their ``parse_args``: parsing stays
    free of side effects, so parsing ``--trust-checkpoint`` (as the docs tests
    do) never switches the opt-in on for the rest of the process. The value is
    the flag itself, so that the loader's warning can name what the user gave.
    """
    if args.trust_checkpoint:
        os.environ[TRUST_ENV_VAR] = TRUST_FLAG


def apply_runtime_arguments(args: argparse.Namespace) -> None:
    """Export what the runtime flags mean to the environment the runner reads."""
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
    apply_trust_checkpoint(args)


# --- Config, model, dataset, checkpoint ---------------------------------------------------


def load_config(path: str, cfg_options: dict | None = None) -> Config:
    """Read the config at ``path``, merge ``cfg_options`` and import its ``custom_imports``.

    ``Config.fromfile`` imports the file's own ``custom_imports``; importing
    them again after the merge covers modules that ``--cfg-options`` adds.
    """
    cfg = Config.fromfile(path)
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    if cfg.get('custom_imports'):
        import_modules_from_strings(**cfg.custom_imports)
    return cfg


def _enter_default_scope(cfg: Config) -> None:
    init_default_scope(cfg.get('default_scope', 'mmpretrain'))


def build_model(cfg: Config) -> nn.Module:
    """The config's ``model``, built in its default scope (MMPretrain's if it names none)."""
    if cfg.get('model') is None:
        raise ValueError(f'{cfg.filename}: expected a `model` entry in the config, got none')
    # A top-level data_preprocessor (the dataset bases put it there) belongs to the model,
    # as MMEngine's Runner and MMPretrain's get_model treat it: without it the model would
    # get no normalisation and no BGR-to-RGB conversion.
    cfg.model.setdefault('data_preprocessor', cfg.get('data_preprocessor'))
    _enter_default_scope(cfg)
    return MODELS.build(cfg.model)


def build_dataset(cfg: Config, dataset_cfg: dict) -> Any:
    """``dataset_cfg`` (usually ``cfg.<split>_dataloader.dataset``) built in ``cfg``'s scope."""
    _enter_default_scope(cfg)
    return DATASETS.build(dataset_cfg)


def load_weights(model: nn.Module, checkpoint: str) -> dict:
    """Load ``checkpoint``'s state dict into ``model`` (strict, on the CPU); return the checkpoint.

    Goes through MMEngine's ``CheckpointLoader``, so local files, URLs and
    model-zoo names are all read by the safe loader.

    Raises:
        CheckpointMismatchError: The state dict does not match the model.
    """
    return load_checkpoint_checked(model, checkpoint, map_location='cpu', strict=True)


# --- Runner config: work dir, dataloaders, checkpoint hook ---------------------------------


def set_work_dir(cfg: Config, args: argparse.Namespace) -> None:
    """Command line, then config, then ``./work_dirs/<config name>``."""
    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir') is None:
        cfg.work_dir = osp.join('./work_dirs', osp.splitext(osp.basename(args.config))[0])


def dataloader_with_defaults(
    loader_cfg: dict, no_pin_memory: bool, no_persistent_workers: bool = False
) -> dict:
    """MMPretrain's dataloader defaults under ``loader_cfg``, then the command-line switches.

    Pin memory only with CUDA. ``persistent_workers`` is not defaulted here:
    :func:`fix_persistent_workers` decides it once the config is final.
    """
    loader = dict(pin_memory=torch.cuda.is_available(), collate_fn=dict(type='default_collate'))
    loader.update(loader_cfg)
    if no_pin_memory:
        loader['pin_memory'] = False
    if no_persistent_workers:
        loader['persistent_workers'] = False
    return loader


def fix_persistent_workers(cfg: Config, default: bool = False) -> list[str]:
    """Decide ``persistent_workers`` for each dataloader: wanted and with worker processes.

    A dataloader that does not set it gets ``default`` (``tools/train.py``
    passes True, as MMPretrain's does). It is never left on with
    ``num_workers=0``, which PyTorch's DataLoader refuses, so configs for
    debugging and CPU runs work with the tools' default.

    Returns:
        The names of the dataloaders where it was wanted but turned off.
    """
    changed = []
    for field in DATALOADER_FIELDS:
        loader = cfg.get(field)
        if loader is None:
            continue
        wanted = loader.get('persistent_workers', default)
        if 'persistent_workers' not in loader and not wanted:
            continue
        has_workers = loader.get('num_workers', 0) > 0
        loader['persistent_workers'] = bool(wanted) and has_workers
        if wanted and not has_workers:
            changed.append(field)
    if changed:
        print_log(
            f'{", ".join(changed)}: num_workers=0, so persistent_workers is set to False '
            '(PyTorch refuses persistent workers without worker processes)',
            logger='current',
        )
    return changed


def _is_stock_checkpoint_hook(hook_cfg: Any) -> bool:
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


def apply_runner_arguments(
    cfg: Config,
    args: argparse.Namespace,
    *,
    loaders: Sequence[str],
    persistent_workers: bool,
) -> Config:
    """The steps of MMPretrain's ``merge_args`` that ``train.py`` and ``test.py`` share.

    Launcher and work dir; dataloader defaults for ``loaders`` with
    ``--no-pin-memory`` (and ``--no-persistent-workers`` where the tool has
    it); then ``--cfg-options``, last so that they win; then the
    ``persistent_workers`` decision, with ``persistent_workers`` as the
    default for dataloaders that do not set it.
    """
    cfg.launcher = args.launcher
    set_work_dir(cfg, args)
    # Only tools/train.py offers --no-persistent-workers, as in MMPretrain.
    no_persistent_workers = getattr(args, 'no_persistent_workers', False)
    for field in loaders:
        if cfg.get(field) is not None:
            cfg[field] = dataloader_with_defaults(
                cfg[field], args.no_pin_memory, no_persistent_workers
            )
    if args.cfg_options is not None:
        cfg.merge_from_dict(args.cfg_options)
    fix_persistent_workers(cfg, default=persistent_workers)
    return cfg


def apply_amp_argument(cfg: Config, args: argparse.Namespace, *, training: bool) -> None:
    """Apply ``--amp`` for the device the runner will use, or exit with why it cannot.

    Both runner tools decide here, so that ``--amp`` means the same in each:
    MMEngine's float16 AMP on CUDA, bfloat16 autocast on the CPU (see
    :func:`.amp.apply_amp`). A refusal ends the process (exit status 1)
    before the runner is built, so before anything is printed or run.

    Args:
        cfg: The runner config (changed in place).
        args: The parsed command line; nothing happens without ``args.amp``.
        training: For ``tools/train.py`` (the optim wrapper) rather than
            ``tools/test.py`` (the test loop).
    """
    if not args.amp:
        return
    try:
        apply_amp(cfg, training=training)
    except AmpUnavailableError as error:
        sys.exit(f'error: {error}')


# --- Runner -------------------------------------------------------------------------------


def build_runner(cfg: Config) -> Runner:
    """The stock runner, or the one the config names in ``runner_type``."""
    return Runner.from_cfg(cfg) if 'runner_type' not in cfg else RUNNERS.build(cfg)


def check_runner_checkpoints(runner: Runner, *, strict: bool) -> None:
    """Make ``runner`` load checkpoints through :mod:`.strict_loading`.

    Replaces the runner's ``load_checkpoint``, which ``Runner.load_or_resume``
    calls for ``load_from`` and ``Runner.resume`` for the checkpoint it resumes
    from: it reads, calls the ``after_load_checkpoint`` hooks and loads the
    model as MMEngine's does, but names every difference between the state
    dict and the model, and with ``strict`` refuses the checkpoint (on every
    rank, before anything runs). MMEngine's own method loads with
    ``strict=False``, so a checkpoint of another model evaluated at chance
    accuracy with exit status 0.

    Args:
        runner: The runner, before ``train()``, ``val()`` or ``test()``.
        strict: Refuse a checkpoint that does not match the model; otherwise
            load the weights that match and log the differences (a caller
            passing ``strict=`` explicitly still decides for itself).
    """
    if not isinstance(runner, Runner):
        # FlexibleRunner and the like load through their strategy (sharded
        # models, DeepSpeed): their own loading stands, unchecked.
        print_log(
            f'{type(runner).__name__} loads checkpoints its own way: the state_dict is not '
            'checked against the model',
            logger='current',
            level=logging.WARNING,
        )
        return

    def load_checkpoint(
        filename: str,
        map_location: str | Callable = 'cpu',
        strict: bool = strict,
        revise_keys: Sequence[tuple[str, str]] = DEFAULT_REVISE_KEYS,
    ) -> dict:
        checkpoint = _load_checkpoint(filename, map_location=map_location)
        # Runner.resume executes meta['config'] of what this returns. The safe
        # loader already removed it; removing it here too keeps that true when
        # another library registers its own loader for a scheme over ours.
        strip_config_strings(checkpoint)
        runner.call_hook('after_load_checkpoint', checkpoint=checkpoint)
        load_checkpoint_into(
            runner.model,
            checkpoint,
            filename,
            strict=strict,
            revise_keys=revise_keys,
            opt_out=NO_STRICT_FLAG,
        )
        # As Runner.load_checkpoint: load_or_resume does not load a second time.
        runner._has_loaded = True
        runner.logger.info(f'Load checkpoint from {filename}')
        return checkpoint

    runner.load_checkpoint = load_checkpoint


def run_with_runner(
    cfg: Config, action: Callable[[Runner], Any], *, strict_checkpoint: bool = False
) -> Any:
    """Set up distributed, build the runner, return ``action(runner)``, tear down.

    A refused checkpoint (unsafe, or not matching the model when loaded
    strictly) ends the process with its message (exit status 1) instead of a
    traceback.

    Args:
        cfg: The runner config.
        action: What to do with the runner, e.g. ``lambda runner: runner.train()``.
        strict_checkpoint: Whether the runner loads checkpoints strictly (see
            :func:`check_runner_checkpoints`).

    Returns:
        What ``action`` returned.
    """
    setup_distributed(cfg)
    runner = build_runner(cfg)
    # The tools' own runner only: MMEngine's deprecation warnings about its own calls.
    quiet.quiet_logger(runner.logger)
    check_runner_checkpoints(runner, strict=strict_checkpoint)
    try:
        result = action(runner)
    except (*CHECKPOINT_ERRORS, CheckpointMismatchError) as error:
        sys.exit(f'error: {error}')
    teardown_distributed()
    return result
