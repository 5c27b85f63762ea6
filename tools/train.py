"""Train a classifier with MMEngine's Runner (MMPretrain's flags).

Examples::

    python tools/train.py CONFIG [--work-dir DIR] [--resume [auto|PATH]] [--amp]
    bash tools/dist_train.sh CONFIG 8 [ARGS]      # torchrun, one process per GPU
"""

import argparse
import os
import os.path as osp
import sys

import torch
from mmengine.config import Config, DictAction
from mmengine.registry import RUNNERS
from mmengine.runner import Runner

import chrnn_plugin  # noqa: F401  (allow-lists checkpoint globals, registers our modules)
from chrnn_plugin.engine import (
    TRUST_ENV_VAR,
    UnsafeCheckpointError,
    fix_persistent_workers,
    setup_distributed,
    use_atomic_checkpoint_hook,
)

EPILOG = f"""\
Checkpoints are loaded with torch.load(weights_only=True) and an allow-list of the
types MMEngine checkpoints contain; a checkpoint holding anything else is refused.
For a trusted legacy checkpoint, pass --trust-checkpoint or set {TRUST_ENV_VAR}=1.
Without CUDA, --launcher pytorch/slurm/mpi runs on CPU with the gloo backend.
"""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse the command line (MMPretrain's train.py flags plus --trust-checkpoint)."""
    parser = argparse.ArgumentParser(
        description='Train a model',
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument('config', help='train config file path')
    parser.add_argument('--work-dir', help='the dir to save logs and models')
    parser.add_argument(
        '--resume',
        nargs='?',
        type=str,
        const='auto',
        help='resume from the checkpoint PATH, or with no value (or "auto") from the '
        'latest checkpoint in the work directory',
    )
    parser.add_argument('--amp', action='store_true', help='automatic mixed precision training')
    parser.add_argument(
        '--no-validate', action='store_true', help='do not evaluate checkpoints during training'
    )
    parser.add_argument(
        '--auto-scale-lr',
        action='store_true',
        help='scale the learning rate by the actual batch size over auto_scale_lr.base_batch_size',
    )
    parser.add_argument(
        '--no-pin-memory', action='store_true', help='disable pin_memory in dataloaders'
    )
    parser.add_argument(
        '--no-persistent-workers',
        action='store_true',
        help='disable persistent_workers in dataloaders',
    )
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override config settings, xxx=yyy pairs merged into the config; lists as '
        'key="[a,b]" or key=a,b, nested as key="[(a,b),(c,d)]" (quotes needed, no spaces)',
    )
    parser.add_argument(
        '--launcher',
        choices=['none', 'pytorch', 'slurm', 'mpi'],
        default='none',
        help='job launcher',
    )
    parser.add_argument(
        '--trust-checkpoint',
        action='store_true',
        help=f'load a trusted legacy checkpoint that holds types outside the MMEngine '
        f'allow-list with weights_only=False (same as {TRUST_ENV_VAR}=1)',
    )
    # torch.distributed.launch passes --local-rank (torch >= 2.0) or --local_rank.
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args(argv)
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
    return args


def merge_args(cfg: Config, args: argparse.Namespace) -> Config:
    """Merge the command line into ``cfg``, then apply our runtime fix-ups."""
    if args.no_validate:
        cfg.val_cfg = None
        cfg.val_dataloader = None
        cfg.val_evaluator = None

    cfg.launcher = args.launcher

    # work_dir priority: command line > config > ./work_dirs/<config name>
    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir') is None:
        cfg.work_dir = osp.join('./work_dirs', osp.splitext(osp.basename(args.config))[0])

    if args.amp:
        cfg.optim_wrapper.type = 'AmpOptimWrapper'
        cfg.optim_wrapper.setdefault('loss_scale', 'dynamic')

    if args.resume == 'auto':
        cfg.resume = True
        cfg.load_from = None
    elif args.resume is not None:
        cfg.resume = True
        cfg.load_from = args.resume

    if args.auto_scale_lr:
        if cfg.get('auto_scale_lr') is None:
            raise ValueError(
                '--auto-scale-lr needs `auto_scale_lr = dict(base_batch_size=...)` in the '
                'config: the total batch size the learning rate was tuned for'
            )
        cfg.auto_scale_lr.enable = True

    # MMPretrain's dataloader defaults; pin_memory only helps with CUDA.
    for field in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        if cfg.get(field) is None:
            continue
        loader = dict(
            pin_memory=torch.cuda.is_available(),
            persistent_workers=True,
            collate_fn=dict(type='default_collate'),
        )
        loader.update(cfg[field])
        if args.no_pin_memory:
            loader['pin_memory'] = False
        if args.no_persistent_workers:
            loader['persistent_workers'] = False
        cfg[field] = loader

    if args.cfg_options is not None:
        cfg.merge_from_dict(args.cfg_options)

    fix_persistent_workers(cfg)
    use_atomic_checkpoint_hook(cfg)
    return cfg


def main(argv: list[str] | None = None) -> None:
    """Train the model of the config given on the command line."""
    args = parse_args(argv)
    if args.trust_checkpoint:
        os.environ[TRUST_ENV_VAR] = '1'

    cfg = merge_args(Config.fromfile(args.config), args)
    setup_distributed(cfg)

    runner = Runner.from_cfg(cfg) if 'runner_type' not in cfg else RUNNERS.build(cfg)
    try:
        runner.train()
    except UnsafeCheckpointError as error:
        sys.exit(f'error: {error}')


if __name__ == '__main__':
    main()
