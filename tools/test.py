"""Test (and evaluate) a checkpoint with MMEngine's Runner (MMPretrain's flags).

Examples::

    python tools/test.py CONFIG CHECKPOINT [--out results.pkl] [--tta] [--show-dir DIR]
    bash tools/dist_test.sh CONFIG CHECKPOINT 8 [ARGS]

The checkpoint is loaded strictly: one whose state_dict does not match the
model (keys or shapes) is refused with exit status 1 before anything is
evaluated; ``--no-strict`` loads the weights that match and logs the rest.
"""

import argparse
import os
from copy import deepcopy

# Huge pages for torch's large CPU buffers (docs: Benchmark, "Huge pages"); torch reads it
# at its first allocation, so before it is imported. THP_MEM_ALLOC_ENABLE=0 opts out.
os.environ.setdefault('THP_MEM_ALLOC_ENABLE', '1')

from chrnn_plugin.engine import quiet

quiet.silence_known_warnings()

import mmengine  # noqa: E402
from mmengine.config import Config, ConfigDict  # noqa: E402
from mmengine.evaluator import DumpResults  # noqa: E402
from mmengine.runner import Runner  # noqa: E402

import chrnn_plugin  # noqa: E402,F401  (registers our modules and the data-only checkpoint loader)
from chrnn_plugin.engine import cli  # noqa: E402
from chrnn_plugin.engine.host_memory import keep_freed_memory  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse the command line (MMPretrain's test.py flags plus --trust-checkpoint)."""
    parser = cli.checkpoint_tool_parser('Test (and evaluate) a model', launcher=True)
    parser.add_argument('config', help='test config file path')
    parser.add_argument('checkpoint', help='checkpoint file')
    cli.add_strict_argument(parser)
    parser.add_argument('--work-dir', help='the directory to save the evaluation metrics in')
    parser.add_argument('--out', help='the file to dump the results to (e.g. results.pkl)')
    parser.add_argument(
        '--out-item',
        choices=['metrics', 'pred'],
        help='what --out holds: the metrics or the predictions (default: predictions)',
    )
    cli.add_cfg_options_argument(parser)
    cli.add_amp_argument(parser, 'test')
    parser.add_argument('--show-dir', help='directory to save the visualised predictions in')
    parser.add_argument('--show', action='store_true', help='show the predictions in a window')
    parser.add_argument('--interval', type=int, default=1, help='visualise every N-th sample')
    parser.add_argument(
        '--wait-time', type=float, default=2, help='seconds to show each window (with --show)'
    )
    parser.add_argument(
        '--tta',
        action='store_true',
        help="test-time augmentation: the config's tta_pipeline and tta_model if it has "
        'them, otherwise flip TTA averaging the classification scores',
    )
    cli.add_runtime_arguments(parser)
    args = parser.parse_args(argv)
    if args.out is None and args.out_item is not None:
        parser.error('--out-item needs --out')
    return args


def _add_flip_tta(cfg: Config) -> None:
    if 'tta_model' not in cfg:
        cfg.tta_model = dict(type='mmpretrain.AverageClsScoreTTA')
    if 'tta_pipeline' not in cfg:
        test_pipeline = cfg.test_dataloader.dataset.pipeline
        cfg.tta_pipeline = deepcopy(test_pipeline)
        # Each image once as is and once flipped, packed by the pipeline's last step.
        cfg.tta_pipeline[-1] = dict(
            type='TestTimeAug',
            transforms=[
                [dict(type='RandomFlip', prob=1.0), dict(type='RandomFlip', prob=0.0)],
                [test_pipeline[-1]],
            ],
        )
    cfg.model = ConfigDict(**cfg.tta_model, module=cfg.model)
    cfg.test_dataloader.dataset.pipeline = cfg.tta_pipeline


def merge_args(cfg: Config, args: argparse.Namespace) -> Config:
    """Merge the command line into ``cfg``, then apply our runtime fix-ups."""
    cfg.load_from = args.checkpoint
    cli.apply_amp_argument(cfg, args, training=False)

    if args.show or args.show_dir is not None:
        hooks = cfg.setdefault('default_hooks', {})
        vis = hooks.get('visualization') or dict(type='VisualizationHook')
        vis.update(
            enable=True,
            show=args.show,
            wait_time=args.wait_time,
            out_dir=args.show_dir,
            interval=args.interval,
        )
        hooks['visualization'] = vis

    if args.tta:
        _add_flip_tta(cfg)

    # As in MMPretrain, only the test dataloader gets defaults, and no persistent workers.
    cli.apply_runner_arguments(cfg, args, loaders=['test_dataloader'], persistent_workers=False)
    return cfg


def main(argv: list[str] | None = None) -> None:
    """Test the checkpoint given on the command line."""
    args = parse_args(argv)
    cli.apply_runtime_arguments(args)
    cfg = merge_args(cli.load_config(args.config), args)

    def test(runner: Runner) -> dict:
        if args.out and args.out_item in ('pred', None):
            runner.test_evaluator.metrics.append(DumpResults(out_file_path=args.out))
        return runner.test()

    metrics = cli.run_with_runner(cfg, test, strict_checkpoint=args.strict)
    if args.out and args.out_item == 'metrics':
        mmengine.dump(metrics, args.out)


if __name__ == '__main__':
    # Freed CPU buffers are reused, not page-faulted in again (docs: Benchmark).
    keep_freed_memory()
    main()
