"""Why C-HRNN: train GAP, HSRN and HLSTM necks on a task where arrangement is the class.

Trains the configs in ``configs/demo`` one after the other on the CPU, through
MMEngine's ``Runner.from_cfg`` (the same runner and configs as
``tools/train.py``), then prints a table of val top-1, parameters and time per
training step, and saves a plot of val accuracy per epoch.

    python tools/demo.py
    python tools/demo.py --epochs 3 --train-size 1000 --necks gap hsrn
    python tools/demo.py --necks all --image-size 112     # 28x28 maps, relations 2x longer

``--necks all`` adds the old two-forget-gate HLSTM cell and two baselines a user
would try instead: self-attention over the regions and a ReNet-style neck.

Outputs (under ``--work-dir``, default ``work_dirs/demo``): ``val_accuracy.png``,
``results.json``, and one MMEngine work dir per neck (logs, last checkpoint).
"""

import argparse
import contextlib
import io
import json
import logging
import sys
import time
import warnings
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
CONFIG_DIR = REPO_ROOT / 'configs' / 'demo'
# neck key -> display name; the config is configs/demo/<key>.py
NECKS = {
    'gap': 'GAP',
    'hsrn': 'HSRN',
    'hlstm': 'HLSTM',
    'hlstm_sum': 'HLSTM-sum',
    'attention': 'Attention',
    'renet': 'ReNet',
}
# What runs without --necks: the three models the demo is about, a few minutes.
DEFAULT_NECKS = ('gap', 'hsrn', 'hlstm')
# The task as the configs set it (SpatialRelations' defaults): 56 px images and
# A-B gaps of at least one backbone receptive field (12 px).
BASE_IMAGE_SIZE = 56
BASE_MIN_GAP = 12
# ConvMixer's patch size: the neck's map is image_size / PATCH cells on a side.
PATCH = 4

try:
    import chrnn_plugin  # noqa: F401
except ImportError:  # run from a checkout without `pip install -e .`
    sys.path.insert(0, str(REPO_ROOT))

# mmcv-lite lacks compiled ops that only detection models use; the warning
# about it is noise here.
warnings.filterwarnings('ignore', message='Fail to import ``MultiScaleDeformableAttention``')

import matplotlib  # noqa: E402

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
from mmengine.config import Config  # noqa: E402
from mmengine.hooks import Hook  # noqa: E402
from mmengine.runner import Runner  # noqa: E402
from mmpretrain.registry import MODELS  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.progress import (  # noqa: E402
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table  # noqa: E402

ACC_KEY = 'accuracy/top1'


class DemoProgressHook(Hook):
    """Drives a rich progress bar and records val top-1 and step times.

    Registered on the runner by :func:`train_one` (not through the config), so
    the demo configs stay plain training configs.
    """

    priority = 'VERY_LOW'

    def __init__(self, progress: Progress, label: str) -> None:
        self.progress = progress
        self.label = label
        self.task = None
        self.val_top1: list[float] = []
        self.step_times: list[float] = []
        self._step_start = 0.0

    def before_train(self, runner) -> None:
        self.task = self.progress.add_task(
            self.label, total=runner.max_iters, info='', completed=runner.iter
        )

    def before_train_iter(self, runner, batch_idx: int, data_batch=None) -> None:
        self._step_start = time.perf_counter()

    def after_train_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        self.step_times.append(time.perf_counter() - self._step_start)
        loss = outputs.get('loss') if outputs else None
        info = f'epoch {runner.epoch + 1}/{runner.max_epochs}'
        if loss is not None:
            info += f'  loss {loss.item():.3f}'
        if self.val_top1:
            info += f'  val top-1 {self.val_top1[-1]:.1f}%'
        self.progress.update(self.task, advance=1, info=info)

    def after_val_epoch(self, runner, metrics: dict | None = None) -> None:
        if metrics and ACC_KEY in metrics:
            self.val_top1.append(float(metrics[ACC_KEY]))
            if not self.progress.console.is_terminal:
                # No live bars in a log file or CI: one line per epoch instead.
                self.progress.console.print(
                    f'{self.label}: epoch {runner.epoch}/{runner.max_epochs}, '
                    f'val top-1 {self.val_top1[-1]:.1f} %'
                )

    @property
    def ms_per_step(self) -> float:
        """Median training step time in ms (forward, backward, update).

        The median ignores the first step's one-off warm-up.
        """
        if not self.step_times:
            return float('nan')
        times = sorted(self.step_times)
        return 1000 * times[len(times) // 2]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options of the demo."""
    parser = argparse.ArgumentParser(
        description='Train GAP, HSRN and HLSTM necks on SpatialRelations (CPU, minutes) '
        'and compare their val accuracy.'
    )
    parser.add_argument('--work-dir', default='work_dirs/demo', help='where outputs go')
    parser.add_argument('--epochs', type=int, default=None, help='epochs (default: config)')
    parser.add_argument(
        '--train-size', type=int, default=None, help='training images (default: config)'
    )
    parser.add_argument('--val-size', type=int, default=None, help='val images (default: config)')
    parser.add_argument(
        '--necks',
        nargs='+',
        choices=[*NECKS, 'all'],
        default=list(DEFAULT_NECKS),
        help=f'which necks to train (default: {" ".join(DEFAULT_NECKS)}; all: {" ".join(NECKS)})',
    )
    parser.add_argument(
        '--image-size',
        type=int,
        default=None,
        help=f'image side in px, a multiple of {PATCH} and >= {BASE_IMAGE_SIZE} (default: '
        f'{BASE_IMAGE_SIZE}, a {BASE_IMAGE_SIZE // PATCH}x{BASE_IMAGE_SIZE // PATCH} map); the '
        'minimum A-B gap grows in proportion, objects keep their size',
    )
    parser.add_argument(
        '--seed', type=int, default=0, help='seed of the data and of the training run'
    )
    parser.add_argument(
        '--verbose', action='store_true', help="also show MMEngine's log on the console"
    )
    args = parser.parse_args(argv)
    if 'all' in args.necks:
        args.necks = list(NECKS)
    args.necks = list(dict.fromkeys(args.necks))  # drop repeats, keep the order
    if args.image_size is not None and (
        args.image_size < BASE_IMAGE_SIZE or args.image_size % PATCH
    ):
        parser.error(
            f'--image-size must be a multiple of {PATCH} (the backbone patch) and at least '
            f'{BASE_IMAGE_SIZE} (smaller images cannot keep A and B a receptive field apart), '
            f'got {args.image_size}'
        )
    for name in ('epochs', 'train_size', 'val_size'):
        value = getattr(args, name)
        if value is not None and value <= 0:
            parser.error(f'--{name.replace("_", "-")} must be positive, got {value}')
    return args


def scaled_min_gap(image_size: int) -> int:
    """Least A-B gap in px at ``image_size``: the 56 px task's gap, scaled with the image.

    The layout (where A and B may lie, how far apart) scales with the image,
    while objects keep their size and the backbone its 12 px receptive field,
    so on larger images the relation spans more regions.
    """
    return round(BASE_MIN_GAP * image_size / BASE_IMAGE_SIZE)


def demo_config(
    neck: str,
    work_dir: Path,
    epochs: int | None = None,
    train_size: int | None = None,
    val_size: int | None = None,
    seed: int = 0,
    image_size: int | None = None,
) -> Config:
    """Load ``configs/demo/<neck>.py`` and apply the demo's options to it."""
    cfg = Config.fromfile(str(CONFIG_DIR / f'{neck}.py'))
    cfg.work_dir = str(work_dir / neck)
    if epochs is not None:
        cfg.train_cfg.max_epochs = epochs
        # The schedules are set in epochs: the last one ends with training, and
        # any that would start after it (a 1-epoch run) are dropped.
        schedulers = [s for s in cfg.param_scheduler if s.get('begin', 0) < epochs]
        for scheduler in schedulers:
            scheduler.end = min(scheduler.get('end', epochs), epochs)
        schedulers[-1].end = epochs
        cfg.param_scheduler = schedulers
    if train_size is not None:
        cfg.train_dataloader.dataset.num_samples = train_size
    if val_size is not None:
        cfg.val_dataloader.dataset.num_samples = val_size
    for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        cfg[loader].dataset.seed = seed
        if image_size is not None:
            cfg[loader].dataset.img_size = image_size
            cfg[loader].dataset.min_gap = scaled_min_gap(image_size)
    cfg.randomness = dict(seed=seed, deterministic=False)
    return cfg


@contextlib.contextmanager
def _quiet_construction(verbose: bool):
    """Keep the runner's INFO log off the console (it still goes to the log file).

    MMEngine's logger binds its console handler to ``sys.stdout`` when the
    runner is built; building it under a redirected stdout and then pointing
    that handler back at the console at WARNING level leaves the console to
    the progress bars.
    """
    if verbose:
        yield
        return
    sink = io.StringIO()
    with contextlib.redirect_stdout(sink):
        yield
    for logger in (logging.getLogger(name) for name in list(logging.root.manager.loggerDict)):
        for handler in getattr(logger, 'handlers', []):
            if isinstance(handler, logging.StreamHandler) and handler.stream is sink:
                handler.setStream(sys.stdout)
                handler.setLevel(logging.WARNING)


def train_one(cfg: Config, label: str, progress: Progress, verbose: bool = False) -> dict:
    """Train one config with ``Runner.from_cfg``; return its curve and costs."""
    with _quiet_construction(verbose):
        runner = Runner.from_cfg(cfg)
    hook = DemoProgressHook(progress, label)
    runner.register_hook(hook)
    start = time.perf_counter()
    runner.train()
    seconds = time.perf_counter() - start
    # CheckpointHook writes the path of the newest checkpoint here.
    last = Path(cfg.work_dir) / 'last_checkpoint'
    return dict(
        checkpoint=last.read_text().strip() if last.exists() else None,
        val_top1=hook.val_top1,
        params=sum(p.numel() for p in runner.model.parameters()),
        ms_per_step=hook.ms_per_step,
        steps=len(hook.step_times),
        seconds=seconds,
        work_dir=cfg.work_dir,
        image_size=cfg.train_dataloader.dataset.get('img_size', BASE_IMAGE_SIZE),
        neck_map=list(neck_map_size(cfg)),
    )


def neck_map_size(cfg: Config) -> tuple[int, int]:
    """(H, W) of the backbone map the neck sees: the config's backbone run on one image."""
    size = cfg.train_dataloader.dataset.get('img_size', BASE_IMAGE_SIZE)
    backbone = MODELS.build(cfg.model.backbone)
    backbone.eval()  # ConvMixer.train() returns None, so no chaining
    with torch.no_grad():
        feats = backbone(torch.zeros(1, 3, size, size))
    return tuple(int(s) for s in feats[-1].shape[-2:])


def results_table(results: dict[str, dict]) -> Table:
    """The summary table: final and best val top-1, parameters, time."""
    first = next(iter(results.values()), {})
    size = first.get('image_size', BASE_IMAGE_SIZE)
    grid = 'x'.join(map(str, first.get('neck_map', ())))
    table = Table(title=f'SpatialRelations at {size} px ({grid} map), val top-1 (chance 25 %)')
    for column in ('neck', 'val top-1 (last)', 'best', 'params', 'ms / step', 'time'):
        table.add_column(column, justify='left' if column == 'neck' else 'right')
    for neck, r in results.items():
        curve = r['val_top1']
        table.add_row(
            NECKS[neck],
            f'{curve[-1]:.1f} %' if curve else '-',
            f'{max(curve):.1f} %' if curve else '-',
            f'{r["params"] / 1e3:.0f} k',
            f'{r["ms_per_step"]:.0f}',
            f'{r["seconds"]:.0f} s',
        )
    return table


def plot_curves(results: dict[str, dict], path: Path) -> None:
    """Save val top-1 per epoch, one curve per neck, with the chance level."""
    fig, ax = plt.subplots(figsize=(6, 4))
    for neck, r in results.items():
        epochs = range(1, len(r['val_top1']) + 1)
        ax.plot(epochs, r['val_top1'], marker='o', label=NECKS[neck])
    ax.axhline(25, color='grey', linestyle='--', linewidth=1, label='chance')
    ax.set_xlabel('epoch')
    ax.set_ylabel('val top-1 (%)')
    ax.set_ylim(0, 100)
    size = next(iter(results.values()), {}).get('image_size', BASE_IMAGE_SIZE)
    ax.set_title(
        f'SpatialRelations at {size} px: red object above / below / left / right of blue',
        fontsize=10,
    )
    ax.grid(alpha=0.3)
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.legend(loc='center right')
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> dict[str, dict]:
    """Run the demo; return the per-neck results that also go to results.json."""
    args = parse_args(argv)
    start = time.perf_counter()
    work_dir = Path(args.work_dir).resolve()
    work_dir.mkdir(parents=True, exist_ok=True)
    console = Console()
    size = args.image_size or BASE_IMAGE_SIZE
    console.print(
        f'[bold]C-HRNN demo[/bold]: training {", ".join(NECKS[n] for n in args.necks)} '
        f'on SpatialRelations at {size} px (CPU, {torch.get_num_threads()} threads). The class '
        'is where the red object lies relative to the blue one, at least '
        f'{scaled_min_gap(size)} px away; each backbone cell sees 12 px.'
    )

    json_path = work_dir / 'results.json'
    results = {}
    columns = (
        TextColumn('{task.description:<9}'),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        TextColumn('{task.fields[info]}'),
    )
    with Progress(*columns, console=console) as progress:
        for neck in args.necks:
            cfg = demo_config(
                neck,
                work_dir,
                args.epochs,
                args.train_size,
                args.val_size,
                args.seed,
                args.image_size,
            )
            results[neck] = train_one(cfg, NECKS[neck], progress, verbose=args.verbose)
            # Written after every neck, so a long run stopped part-way keeps what it measured.
            json_path.write_text(json.dumps(results, indent=2))

    console.print(results_table(results))
    console.print(
        'ms / step: median training step (forward, backward, update; batch '
        f'{cfg.train_dataloader.batch_size}); time: training and validation. '
        f'Whole demo: {time.perf_counter() - start:.0f} s.'
    )
    plot_path = work_dir / 'val_accuracy.png'
    plot_curves(results, plot_path)

    console.print(f'Plot:        {plot_path}')
    console.print(f'Results:     {json_path}')
    for neck, r in results.items():
        console.print(f'{NECKS[neck] + ":":<12} {r["work_dir"]} (log, last checkpoint)')
    console.print(f'Which pixels a region sees:\n  {visualize_command(results)}')
    return results


def _short(path: str | Path) -> str:
    """``path`` relative to the current directory when inside it, else absolute."""
    path = Path(path).resolve()
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def visualize_command(results: dict[str, dict]) -> str:
    """The visualize_context.py command for the trained necks (an HRNN beside GAP)."""
    hrnn = [n for n in results if n != 'gap']
    first = hrnn[0] if hrnn else 'gap'

    def model(neck: str) -> str:
        # The runner saves the config it trained with (the demo's options
        # applied) in the work dir; the visualiser must draw the same task.
        config = Path(results[neck]['work_dir']) / f'{neck}.py'
        if not config.is_file():
            config = CONFIG_DIR / f'{neck}.py'
        return f'{_short(config)} {_short(results[neck]["checkpoint"])}'

    command = f'python tools/visualize_context.py {model(first)} --sample 0'
    if first != 'gap' and 'gap' in results:
        command += f' --compare {model("gap")}'
    return command + f' --out {_short(Path(results[first]["work_dir"]).parent / "context.png")}'


if __name__ == '__main__':
    main()
