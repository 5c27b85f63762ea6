"""Show which input pixels one region's output depends on: the context of a region.

For a chosen cell ``(i, j)`` of the neck's feature grid, the influence of an
input pixel is the norm of the Jacobian of that cell's output vector with
respect to the pixel (all output channels, all colour channels):
``sqrt(sum_c sum_rgb (d y_c(i, j) / d x_rgb(p))^2)``. It is drawn over the
image.

What "the cell's output" is:

* HSRN / HLSTM necks: the neck's per-level map at ``(i, j)``, the map the neck
  pools (its ``forward_maps``);
* GAP or no neck: global pooling has no per-region output, so it is the
  backbone feature at ``(i, j)``, the thing GAP averages; its influence is
  the backbone's receptive field.

    python tools/visualize_context.py configs/demo/hsrn.py \\
        work_dirs/demo/hsrn/epoch_6.pth --sample 3 \\
        --compare configs/demo/gap.py work_dirs/demo/gap/epoch_6.pth

IMAGE is an image file; ``--sample N`` takes sample N of the config's test
(or ``--split``) dataset instead. For a SpatialRelations sample the default
region is the cell at the centre of object B, and the A and B boxes are drawn.
``--cfg-options`` apply to CONFIG, not to the ``--compare`` config.
"""

import argparse
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
try:
    import chrnn_plugin  # noqa: F401
except ImportError:  # run from a checkout without `pip install -e .`
    sys.path.insert(0, str(REPO_ROOT))

from chrnn_plugin.engine import quiet  # noqa: E402

quiet.silence_known_warnings()

import matplotlib  # noqa: E402

matplotlib.use('Agg')
import matplotlib.patches as mpatches  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import mmcv  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from mmengine.config import Config  # noqa: E402
from torch import Tensor, nn  # noqa: E402

from chrnn_plugin.engine import cli  # noqa: E402

# Output channels per backward pass; bounds memory for wide necks.
_CHANNEL_CHUNK = 64


def load_model(
    config: str, checkpoint: str, cfg_options: dict | None = None
) -> tuple[nn.Module, Config]:
    """Build the config's model, load the checkpoint's weights, switch to eval."""
    cfg = cli.load_config(config, cfg_options)
    model = cli.build_model(cfg)
    cli.load_weights(model, checkpoint)
    model.eval()
    return model, cfg


def load_sample(cfg: Config, index: int, split: str) -> tuple[np.ndarray, dict]:
    """Sample ``index`` of the config's ``<split>_dataloader`` dataset: (BGR image, info)."""
    ds_cfg = cfg[f'{split}_dataloader'].dataset.copy()
    if 'num_samples' in ds_cfg:
        # Generated datasets draw sample i from its own seed, so building
        # only i + 1 samples gives the same image.
        ds_cfg.num_samples = index + 1
    ds_cfg.pipeline = []
    dataset = cli.build_dataset(cfg, ds_cfg)
    if not 0 <= index < len(dataset):
        raise ValueError(f'--sample {index}: the {split} dataset has {len(dataset)} samples')
    info = dataset[index]
    if 'img' not in info:
        # A dataset of image files lists paths, and without its pipeline
        # nothing reads them; read as LoadImageFromFile does by default (BGR).
        info['img'] = mmcv.imread(info['img_path'])
    return info['img'], dict(info, classes=dataset.metainfo.get('classes'))


def region_maps(model: nn.Module, inputs: Tensor) -> list[Tensor]:
    """Per-region outputs of the neck: one ``(N, C, h, w)`` map per level.

    Necks with per-level maps give those (``forward_maps``: what they return
    before global pooling); for GAP or no neck, the backbone maps that GAP
    would pool.
    """
    feats = model.backbone(inputs)
    forward_maps = getattr(getattr(model, 'neck', None), 'forward_maps', None)
    if forward_maps is not None:
        return list(forward_maps(feats))
    return list(feats)


def influence(model: nn.Module, inputs: Tensor, level: int, region: tuple[int, int]) -> Tensor:
    """``(H, W)`` Jacobian norm of region ``(i, j)``'s output w.r.t. each input pixel.

    Each output channel gets its own copy of the image in the batch, so one
    backward pass yields one Jacobian row per copy (the model is in eval mode,
    so the copies do not interact).
    """
    with torch.no_grad():
        probe = region_maps(model, inputs)[level]
    channels = probe.shape[1]
    i, j = region
    total = torch.zeros(inputs.shape[-2:])
    for start in range(0, channels, _CHANNEL_CHUNK):
        idx = torch.arange(start, min(start + _CHANNEL_CHUNK, channels))
        x = inputs.expand(len(idx), -1, -1, -1).clone().requires_grad_(True)
        y = region_maps(model, x)[level]
        y[torch.arange(len(idx)), idx, i, j].sum().backward()
        total += x.grad.pow(2).sum(dim=(0, 1))
    return total.sqrt()


def _describe(model: nn.Module) -> str:
    neck = getattr(model, 'neck', None)
    return 'no neck' if neck is None else type(neck).__name__


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    parser = cli.checkpoint_tool_parser(
        'Draw how strongly each input region influences one region of the neck.'
    )
    parser.add_argument('config')
    parser.add_argument('checkpoint')
    parser.add_argument('image', nargs='?', help='image file (or use --sample)')
    parser.add_argument('--sample', type=int, help='take sample N of the config dataset')
    parser.add_argument('--split', default='test', choices=('train', 'val', 'test'))
    parser.add_argument(
        '--region',
        type=int,
        nargs=2,
        metavar=('I', 'J'),
        help='cell (row, column) on the feature grid (default: object B, else the centre)',
    )
    parser.add_argument('--level', type=int, default=0, help='which level / backbone output')
    parser.add_argument(
        '--compare', nargs=2, metavar=('CONFIG2', 'CHECKPOINT2'), help='second model, drawn beside'
    )
    parser.add_argument('--linear', action='store_true', help='linear colour scale (default: log)')
    parser.add_argument('--out', default='context.png', help='output PNG')
    cli.add_cfg_options_argument(parser)
    cli.add_trust_checkpoint_argument(parser)
    args = parser.parse_args(argv)
    if (args.image is None) == (args.sample is None):
        parser.error('give either IMAGE or --sample N')
    return args


def _default_region(info: dict, img_shape: tuple[int, int], grid: tuple[int, int]):
    """The cell under object B's centre, if the sample names one; else the grid centre."""
    for obj in info.get('objects', []):
        if obj.get('role') == 'B':
            y, x, h, w = obj['box']
            return (
                min(int((y + h / 2) * grid[0] / img_shape[0]), grid[0] - 1),
                min(int((x + w / 2) * grid[1] / img_shape[1]), grid[1] - 1),
            )
    return grid[0] // 2, grid[1] // 2


def main(argv: list[str] | None = None) -> Path:
    """Compute and save the figure; return its path."""
    args = parse_args(argv)
    cli.apply_trust_checkpoint(args)
    models = [load_model(args.config, args.checkpoint, args.cfg_options)]
    if args.compare:
        models.append(load_model(*args.compare))

    if args.sample is not None:
        img, info = load_sample(models[0][1], args.sample, args.split)
    else:
        img = mmcv.imread(args.image)
        if img is None:
            raise FileNotFoundError(f'cannot read image {args.image!r}')
        info = {}

    panels = []
    region = tuple(args.region) if args.region else None
    for model, _cfg in models:
        data = model.data_preprocessor(
            dict(inputs=[torch.from_numpy(img).permute(2, 0, 1).contiguous()]), False
        )
        inputs = data['inputs']
        with torch.no_grad():
            maps = region_maps(model, inputs)
            scores = model(inputs, mode='tensor').softmax(-1)[0]
        if not -len(maps) <= args.level < len(maps):
            raise ValueError(f'--level {args.level}: the model has {len(maps)} output maps')
        grid = tuple(maps[args.level].shape[-2:])
        if region is None:
            region = _default_region(info, img.shape[:2], grid)
        if not (0 <= region[0] < grid[0] and 0 <= region[1] < grid[1]):
            raise ValueError(f'--region {region[0]} {region[1]}: the feature grid is {grid}')
        heat = influence(model, inputs, args.level, region)
        panels.append((model, grid, heat, scores))

    path = draw(img, info, region, panels, log_scale=not args.linear, out=Path(args.out))
    print(f'Saved {path}')
    return path


def draw(img, info, region, panels, log_scale: bool, out: Path) -> Path:
    """Image with the chosen cell, then one influence overlay per model."""
    rgb = img[..., ::-1]
    height, width = img.shape[:2]
    classes = info.get('classes')
    # Constrained layout makes room for the suptitle, the panel titles and the colour bar,
    # which tight_layout cannot place beside several axes.
    fig, axes = plt.subplots(
        1, len(panels) + 1, figsize=(4 * (len(panels) + 1) + 0.8, 4.4), layout='constrained'
    )
    title = 'input'
    if 'gt_label' in info and classes:
        title += f' (class: A {classes[int(info["gt_label"])]} B)'
    axes[0].imshow(rgb, interpolation='nearest')
    axes[0].set_title(title, fontsize=10)
    for ax, (model, _grid, heat, scores) in zip(axes[1:], panels):
        heat = heat / heat.max().clamp_min(1e-12)
        if log_scale:
            # Three decades: far-away context is orders of magnitude weaker
            # than the local path but is what the neck adds.
            heat = (torch.log10(heat.clamp_min(1e-3)) + 3) / 3
        ax.imshow(rgb, interpolation='nearest')
        overlay = ax.imshow(
            heat.numpy(), cmap='inferno', alpha=0.7, vmin=0, vmax=1, interpolation='nearest'
        )
        label = f'{_describe(model)}'
        if classes:
            label += (
                f'\npredicts {classes[int(scores.argmax())]} ({100 * float(scores.max()):.0f} %)'
            )
        ax.set_title(label, fontsize=10)
    for ax, grid in zip(axes, [panels[0][1]] + [p[1] for p in panels]):
        sy, sx = height / grid[0], width / grid[1]
        ax.add_patch(
            mpatches.Rectangle(
                (region[1] * sx - 0.5, region[0] * sy - 0.5),
                sx,
                sy,
                fill=False,
                edgecolor='cyan',
                linewidth=2,
            )
        )
        for obj in info.get('objects', []):
            if obj.get('role') in ('A', 'B'):
                y, x, h, w = obj['box']
                ax.add_patch(
                    mpatches.Rectangle(
                        (x - 0.5, y - 0.5), w, h, fill=False, edgecolor='white', linestyle=':'
                    )
                )
                ax.text(x, y - 1, obj['role'], color='white', fontsize=9, va='bottom')
        ax.set_xticks([])
        ax.set_yticks([])
    scale = 'log scale, 3 decades' if log_scale else 'linear scale'
    fig.suptitle(
        f'Influence of each input pixel on the output at cell {tuple(region)} (cyan), {scale}',
        fontsize=10,
    )
    # One bar for every map: each panel is scaled to its own peak, so the colours read the
    # same in all of them (a fraction of that panel's largest influence).
    bar = fig.colorbar(overlay, ax=list(axes[1:]), shrink=0.85, pad=0.02)
    bar.solids.set_alpha(1)
    if log_scale:
        bar.set_ticks([0, 1 / 3, 2 / 3, 1], labels=['≤0.001', '0.01', '0.1', '1'])
    bar.set_label('influence / largest influence in the panel', fontsize=9)
    # A little space between the figure title and the two-line panel titles.
    fig.get_layout_engine().set(h_pad=0.1)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out


if __name__ == '__main__':
    main()
