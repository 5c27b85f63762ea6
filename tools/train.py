"""Train a classifier with MMEngine's Runner (MMPretrain's flags).

Examples::

    python tools/train.py CONFIG [--work-dir DIR] [--resume [auto|PATH]] [--amp]
    bash tools/dist_train.sh CONFIG 8 [ARGS]      # torchrun, one process per GPU

``load_from`` (and ``--resume``) load non-strictly, as in MMEngine: fine-tuning
from a backbone-only checkpoint is normal. The keys and shapes that did not
match are logged as a warning.
"""

import argparse
import os

# Huge pages for torch's large CPU buffers (docs: Benchmark, "Huge pages"); torch reads it
# at its first allocation, so before it is imported. THP_MEM_ALLOC_ENABLE=0 opts out.
os.environ.setdefault('THP_MEM_ALLOC_ENABLE', '1')

from chrnn_plugin.engine import quiet

quiet.silence_known_warnings()

from mmengine.config import Config  # noqa: E402

import chrnn_plugin  # noqa: E402,F401  (registers our modules and the data-only checkpoint loader)
from chrnn_plugin.engine import cli  # noqa: E402
from chrnn_plugin.engine.host_memory import keep_freed_memory  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse the command line (MMPretrain's train.py flags plus --trust-checkpoint)."""
    parser = cli.checkpoint_tool_parser('Train a model', launcher=True)
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
    cli.add_amp_argument(parser, 'training')
    parser.add_argument(
        '--no-validate', action='store_true', help='do not evaluate checkpoints during training'
    )
    parser.add_argument(
        '--auto-scale-lr',
        action='store_true',
        help='scale the learning rate by the actual batch size over auto_scale_lr.base_batch_size',
    )
    parser.add_argument(
        '--no-persistent-workers',
        action='store_true',
        help='disable persistent_workers in dataloaders',
    )
    cli.add_cfg_options_argument(parser)
    cli.add_runtime_arguments(parser)
    args = parser.parse_args(argv)
    return args


def merge_args(cfg: Config, args: argparse.Namespace) -> Config:
    """Merge the command line into ``cfg``, then apply our runtime fix-ups."""
    if args.no_validate:
        cfg.val_cfg = None
        cfg.val_dataloader = None
        cfg.val_evaluator = None

    cli.apply_amp_argument(cfg, args, training=True)

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

    cli.apply_runner_arguments(cfg, args, loaders=cli.DATALOADER_FIELDS, persistent_workers=True)
    cli.use_atomic_checkpoint_hook(cfg)
    return cfg


def main(argv: list[str] | None = None) -> None:
    """Train the model of the config given on the command line."""
    args = parse_args(argv)
    cli.apply_runtime_arguments(args)
    cfg = merge_args(cli.load_config(args.config), args)
    # Non-strict, so that a backbone-only checkpoint in load_from fine-tunes.
    cli.run_with_runner(cfg, lambda runner: runner.train(), strict_checkpoint=False)


if __name__ == '__main__':
    # Freed CPU buffers are reused, not page-faulted in again (docs: Benchmark).
    keep_freed_memory()
    main()
