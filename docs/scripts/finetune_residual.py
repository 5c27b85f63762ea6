"""Fine-tuning from a pretrained backbone: necks with and without ``residual=True``.

    python docs/scripts/finetune_residual.py
    python docs/scripts/finetune_residual.py --image-size 112

1. Pre-train the demo model with global average pooling (``configs/demo/gap.py``)
   on a content task: the shape of the red object A (``task='shape'``, 3
   classes), which GAP can learn.
2. Fine-tune from it on a task that needs content and arrangement: A's shape
   and where A lies relative to B (``task='shape_relation'``, 12 classes),
   with GAP and with each neck, plain and with ``residual=True``. Every run
   starts from the pre-trained backbone, and from the pre-trained head with
   each shape's row repeated for the four relations, loaded with MMEngine's
   ``load_from`` as a user would (keys the model lacks or has new are left
   to their initialisation).

It prints one Markdown row per run: val top-1 at step 0 (before any update)
and after every epoch, and writes them to ``--work-dir``/finetune.json. With
``residual=True`` step 0 equals GAP's exactly; without it the pre-trained
head sees the features of a random neck.
"""

import argparse
import importlib.util
import json
import sys
from pathlib import Path

import torch
from mmengine.hooks import Hook

REPO_ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location('demo', REPO_ROOT / 'tools' / 'demo.py')
demo = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(demo)

from chrnn_plugin.datasets.spatial_relations import CLASSES, TASK_CLASSES  # noqa: E402
from chrnn_plugin.engine.safe_loading import load_from_local_safe  # noqa: E402

RUNS = {
    'gap': ('gap', False),
    'hsrn': ('hsrn', False),
    'hsrn_residual': ('hsrn', True),
    'hlstm': ('hlstm', False),
    'hlstm_residual': ('hlstm', True),
}


class StepZeroValidation(Hook):
    """Validate once after the checkpoint is loaded and before the first update."""

    # After the demo's progress hook has set up its bar (VERY_LOW).
    priority = 'LOWEST'

    def before_train(self, runner) -> None:
        runner.val_loop.run()


def task_config(neck: str, task: str, work_dir: Path, args):
    cfg = demo.demo_config(
        neck, work_dir, args.epochs, args.train_size, args.val_size, args.seed, args.image_size
    )
    num_classes = len(TASK_CLASSES[task])
    cfg.model.head.num_classes = num_classes
    cfg.model.data_preprocessor.num_classes = num_classes
    for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        cfg[loader].dataset.task = task
    return cfg


def expanded_head_checkpoint(pretrained: str, path: Path) -> Path:
    """The pre-trained backbone, and its 3-class head repeated for the 4 relations."""
    state = load_from_local_safe(pretrained, map_location='cpu')['state_dict']
    kept = {k: v for k, v in state.items() if k.startswith('backbone.')}
    for name in ('head.fc.weight', 'head.fc.bias'):
        # Class shape * 4 + relation gets shape's row.
        kept[name] = state[name].repeat_interleave(len(CLASSES), dim=0)
    torch.save(dict(state_dict=kept), path)
    return path


def train(cfg, label: str, step_zero: bool) -> dict:
    progress = demo.Progress(disable=True)
    with demo._quiet_construction(False):
        runner = demo.Runner.from_cfg(cfg)
    hook = demo.DemoProgressHook(progress, label)
    runner.register_hook(hook)
    if step_zero:
        runner.register_hook(StepZeroValidation())
    runner.train()
    return dict(val_top1=hook.val_top1, ms_per_step=hook.ms_per_step, work_dir=cfg.work_dir)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split('\n\n')[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument('--work-dir', default='work_dirs/finetune_residual', help='outputs')
    parser.add_argument('--image-size', type=int, default=56, help='image side in px')
    parser.add_argument('--epochs', type=int, default=None, help='epochs (default: config)')
    parser.add_argument('--train-size', type=int, default=None, help='(default: config)')
    parser.add_argument('--val-size', type=int, default=None, help='(default: config)')
    parser.add_argument('--seed', type=int, default=0, help='seed of data and training')
    parser.add_argument(
        '--runs', nargs='+', choices=list(RUNS), default=list(RUNS), help='fine-tuning runs'
    )
    args = parser.parse_args(argv)
    work_dir = Path(args.work_dir).resolve()
    work_dir.mkdir(parents=True, exist_ok=True)

    pretrain = task_config('gap', 'shape', work_dir / 'pretrain', args)
    pretrained = train(pretrain, 'pretrain', step_zero=False)
    checkpoint = (Path(pretrain.work_dir) / 'last_checkpoint').read_text().strip()
    init = expanded_head_checkpoint(checkpoint, work_dir / 'init.pth')
    results = dict(pretrain=pretrained)
    curve = ' / '.join(f'{v:.1f}' for v in pretrained['val_top1'])
    print(f'Pre-training (GAP, shape of A, 3 classes): val top-1 by epoch {curve}')
    print('| neck | residual | step 0 | val top-1 by epoch | ms / step |')
    print('|---|---|---|---|---|')
    for run in args.runs:
        neck, residual = RUNS[run]
        cfg = task_config(neck, 'shape_relation', work_dir / 'finetune', args)
        cfg.work_dir = str(work_dir / 'finetune' / run)
        if residual:
            cfg.model.neck.residual = True
        cfg.load_from = str(init)
        result = train(cfg, run, step_zero=True)
        results[run] = result
        step_zero, *curve = result['val_top1']
        print(
            f'| {demo.NECKS[neck]} | {"yes" if residual else "no"} | {step_zero:.1f} '
            f'| {" / ".join(f"{v:.1f}" for v in curve)} | {result["ms_per_step"]:.0f} |',
            flush=True,
        )
        (work_dir / 'finetune.json').write_text(json.dumps(results, indent=2))
    return 0


if __name__ == '__main__':
    sys.exit(main())
