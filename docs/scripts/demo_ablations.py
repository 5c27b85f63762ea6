"""Ablations of the demo: each part of the initialisation and of the recipe, on and off.

    python docs/scripts/demo_ablations.py --image-size 112
    python docs/scripts/demo_ablations.py --image-size 112 --variants hlstm:default hlstm:even_mix

Every variant trains one demo config (``configs/demo/<neck>.py``) with the
demo's own options and runner (``tools/demo.py``), changed in one respect:

* initialisation (patched for the run, the neck's arguments unchanged):
  ``even_mix`` (HSRN: ``W_h = W_v = 0.5 I``; HLSTM: mix bias 0),
  ``no_chrono`` (HLSTM: forget bias +1, input bias 0, mixes still spread),
  ``full_chrono`` (HLSTM: input bias ``-log(T - 1)``, Tallec and Ollivier's),
  ``before`` (HLSTM: the initialisation before the reach rule, forget +1,
  every other bias 0), ``forget_plus_one`` (ReNet: forget bias +1, input
  bias PyTorch's, the previous ReNet initialisation);
* recipe (the config): ``lr_1e-3`` (AdamW at 1e-3, not 3e-3),
  ``no_warmup``, ``no_cosine`` (constant after the warm-up),
  ``no_weight_decay``.

It prints one Markdown row per variant (val top-1 after every epoch, and the
first epoch at which it passes 90 %, with its step count) and writes them to
``--work-dir``/ablations.json after every run.
"""

import argparse
import contextlib
import importlib.util
import json
import math
import sys
from pathlib import Path
from unittest import mock

import torch

REPO_ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location('demo', REPO_ROOT / 'tools' / 'demo.py')
demo = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(demo)

from chrnn_plugin.models.necks.reach_init import chrono_time_scales, logit, mix_spread  # noqa: E402
from chrnn_plugin.models.necks.recurrent_cells import (  # noqa: E402
    ConvexLSTMCell2d,
    SimpleRecurrentCell2d,
)
from chrnn_plugin.models.necks.renet import ReNetLayer  # noqa: E402

PASS_MARK = 90.0


def _even_mix_hsrn(cell) -> None:
    eye = 0.5 * torch.eye(cell.hidden_channels)
    with torch.no_grad():
        cell.weight_h.copy_(eye.expand_as(cell.weight_h))
        cell.weight_v.copy_(eye.expand_as(cell.weight_v))


def _lstm_bias(input_scale: float | None, chrono: bool, spread: bool):
    """An ``input_bias`` for the convex cell; ``input_scale`` None: input bias 0."""

    def input_bias(cell) -> torch.Tensor:
        d = cell.hidden_channels
        forget = torch.log(chrono_time_scales(d) - 1) if chrono else torch.ones(d)
        bias = torch.zeros(5, d, dtype=torch.float64)
        bias[1] = forget
        if input_scale is not None:
            bias[0] = -input_scale * forget
        if spread:
            bias[2] = logit(mix_spread(d))
        return bias.flatten().float()

    return input_bias


def _renet_forget_plus_one(layer) -> None:
    # The previous ReNet initialisation: forget bias +1 on bias_ih, 0 on bias_hh.
    with torch.no_grad():
        for lstm in (layer.row_lstm, layer.col_lstm):
            d = lstm.hidden_size
            for name, bias in lstm.named_parameters():
                if name.startswith('bias_ih'):
                    bias[:d].uniform_(-(d**-0.5), d**-0.5)
                    bias[d : 2 * d].fill_(1.0)
                elif name.startswith('bias_hh'):
                    bias[:d].uniform_(-(d**-0.5), d**-0.5)
                    bias[d : 2 * d].fill_(0.0)


# (neck, variant) -> context manager that patches the initialisation.
INIT_PATCHES = {
    ('hsrn', 'even_mix'): lambda: mock.patch.object(
        SimpleRecurrentCell2d, 'init_weights', _even_mix_hsrn
    ),
    ('hlstm', 'even_mix'): lambda: mock.patch.object(
        ConvexLSTMCell2d, 'input_bias', _lstm_bias(0.5, chrono=True, spread=False)
    ),
    ('hlstm', 'no_chrono'): lambda: mock.patch.object(
        ConvexLSTMCell2d, 'input_bias', _lstm_bias(None, chrono=False, spread=True)
    ),
    ('hlstm', 'full_chrono'): lambda: mock.patch.object(
        ConvexLSTMCell2d, 'input_bias', _lstm_bias(1.0, chrono=True, spread=True)
    ),
    ('hlstm', 'before'): lambda: mock.patch.object(
        ConvexLSTMCell2d, 'input_bias', _lstm_bias(None, chrono=False, spread=False)
    ),
    ('renet', 'forget_plus_one'): lambda: mock.patch.object(
        ReNetLayer, '_init_gate_biases', _renet_forget_plus_one
    ),
}


def _lr(cfg) -> None:
    cfg.optim_wrapper.optimizer.lr = 1e-3


def _no_warmup(cfg) -> None:
    cosine = cfg.param_scheduler[-1]
    cosine.begin = 0
    cfg.param_scheduler = [cosine]


def _no_cosine(cfg) -> None:
    cfg.param_scheduler = cfg.param_scheduler[:1]


def _no_weight_decay(cfg) -> None:
    cfg.optim_wrapper.optimizer.weight_decay = 0.0


RECIPE_CHANGES = {
    'lr_1e-3': _lr,
    'no_warmup': _no_warmup,
    'no_cosine': _no_cosine,
    'no_weight_decay': _no_weight_decay,
}
DEFAULT_VARIANTS = (
    ['hsrn:default', 'hsrn:even_mix']
    + [f'hlstm:{v}' for v in ('default', 'even_mix', 'no_chrono', 'full_chrono', 'before')]
    + ['renet:default', 'renet:forget_plus_one']
    + [f'{neck}:{change}' for change in RECIPE_CHANGES for neck in ('hsrn', 'hlstm')]
)


def parse_variant(text: str) -> tuple[str, str]:
    neck, _, variant = text.partition(':')
    known = variant == 'default' or variant in RECIPE_CHANGES or (neck, variant) in INIT_PATCHES
    if neck not in ('hsrn', 'hlstm', 'renet') or not known:
        choices = sorted({f'{n}:{v}' for n, v in INIT_PATCHES} | set(DEFAULT_VARIANTS))
        raise argparse.ArgumentTypeError(f'unknown variant {text!r}; choose from {choices}')
    return neck, variant


def first_pass(val_top1: list[float], steps_per_epoch: int) -> str:
    for epoch, top1 in enumerate(val_top1, start=1):
        if top1 >= PASS_MARK:
            return f'epoch {epoch} ({epoch * steps_per_epoch} steps)'
    return 'not reached'


def run_variant(neck: str, variant: str, args, progress) -> dict:
    cfg = demo.demo_config(
        neck,
        Path(args.work_dir) / variant,
        args.epochs,
        args.train_size,
        args.val_size,
        args.seed,
        args.image_size,
    )
    if variant in RECIPE_CHANGES:
        RECIPE_CHANGES[variant](cfg)
    patch = INIT_PATCHES.get((neck, variant), contextlib.nullcontext)
    with patch():
        result = demo.train_one(cfg, f'{neck}:{variant}', progress)
    epochs = len(result['val_top1'])
    result['passes_90'] = first_pass(result['val_top1'], math.ceil(result['steps'] / epochs))
    return result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split('\n\n')[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument('--work-dir', default='work_dirs/demo_ablations', help='outputs')
    parser.add_argument('--image-size', type=int, default=112, help='image side in px')
    parser.add_argument('--epochs', type=int, default=None, help='epochs (default: config)')
    parser.add_argument('--train-size', type=int, default=None, help='(default: config)')
    parser.add_argument('--val-size', type=int, default=None, help='(default: config)')
    parser.add_argument('--seed', type=int, default=0, help='seed of data and training')
    parser.add_argument(
        '--variants',
        nargs='+',
        type=parse_variant,
        default=list(DEFAULT_VARIANTS),
        help='neck:variant pairs',
    )
    args = parser.parse_args(argv)
    # argparse does not pass a list default through ``type``.
    args.variants = [v if isinstance(v, tuple) else parse_variant(v) for v in args.variants]
    work_dir = Path(args.work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    results = {}
    print('| neck | variant | val top-1 by epoch | passes 90 % | ms / step |')
    print('|---|---|---|---|---|')
    progress = demo.Progress(disable=True)
    for neck, variant in args.variants:
        result = run_variant(neck, variant, args, progress)
        results[f'{neck}:{variant}'] = result
        curve = ' / '.join(f'{v:.1f}' for v in result['val_top1'])
        print(
            f'| {demo.NECKS[neck]} | {variant} | {curve} | {result["passes_90"]} '
            f'| {result["ms_per_step"]:.0f} |',
            flush=True,
        )
        (work_dir / 'ablations.json').write_text(json.dumps(results, indent=2))
    return 0


if __name__ == '__main__':
    sys.exit(main())
