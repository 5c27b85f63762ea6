"""Why C-HRNN: train GAP, HSRN and HLSTM necks on a task where arrangement is the class.

Trains the configs in configs/demo one after the other on the CPU, through
MMEngine's Runner.from_cfg (the same runner and configs as tools/train.py),
then prints a table of val top-1, parameters and time per training step, and
saves a plot of val accuracy per epoch. How long it takes depends on the
machine, its load and the number of torch threads: every run ends by printing
its own elapsed time and the thread count it used.

    python tools/demo.py
    python tools/demo.py --epochs 3 --train-size 1000 --necks gap hsrn
    python tools/demo.py --necks all --image-size 112

--necks all adds the old two-forget-gate HLSTM cell and two baselines a user
would try instead: self-attention over the regions and a ReNet-style neck.
--image-size 112 gives the necks 28x28 maps, with relations twice as long.

In a terminal each neck has a live progress bar. In a log or a pipe (stdout not
a terminal) the demo prints progress lines instead, with the step, the rate and
the time left: one about every 15 s, or one every N steps with
--progress-interval N, and one after every validation.

Outputs (under --work-dir, default work_dirs/demo): val_accuracy.png,
results.json, and one MMEngine work dir per neck (logs, last checkpoint).
"""

import argparse
import contextlib
import datetime
import io
import json
import logging
import os
import shlex
import sys
import time
import warnings
from pathlib import Path

# Huge pages for torch's large CPU buffers (docs: Benchmark, "Huge pages"); torch reads it
# at its first allocation, so before it is imported. THP_MEM_ALLOC_ENABLE=0 opts out.
os.environ.setdefault('THP_MEM_ALLOC_ENABLE', '1')

# Before the heavy imports (torch, MMEngine): the demo's statement of its own run
# time counts them, as the user waits for them too.
STARTED = time.perf_counter()

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
# What runs without --necks: the three models the demo is about.
DEFAULT_NECKS = ('gap', 'hsrn', 'hlstm')
# The task as the configs set it (SpatialRelations' defaults): 56 px images and
# A-B gaps of at least one backbone receptive field (12 px).
BASE_IMAGE_SIZE = 56
BASE_MIN_GAP = 12
# ConvMixer's patch size: the neck's map is image_size / PATCH cells on a side.
PATCH = 4
# Without --progress-interval, a progress line in a log or pipe comes after the
# first step that ends this long after the previous line. A fixed step count
# cannot do that: a GAP step is several times faster than an HLSTM step, and a
# loaded machine several times slower than an idle one.
PROGRESS_SECONDS = 15.0
# Width of the neck's name at the start of a progress bar or line.
LABEL_WIDTH = 9

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

from chrnn_plugin.engine.host_memory import keep_freed_memory  # noqa: E402

ACC_KEY = 'accuracy/top1'


def print_line(console: Console, text: str) -> None:
    """Print ``text`` as it is, on one line, whatever the console's width.

    Rich wraps at the console width (80 columns in a log or a pipe), which
    breaks a printed command or path in two for whoever pastes it; and it reads
    ``[...]`` as markup, which a path may contain.
    """
    console.print(text, soft_wrap=True, markup=False, highlight=False)


def plural(count: int, noun: str) -> str:
    """``'1 epoch'``, ``'4 epochs'``."""
    return f'{count} {noun}{"" if count == 1 else "s"}'


def format_rate(steps_per_second: float) -> str:
    """``'12.3 it/s'``, or ``'4.5 s/it'`` below one step per second."""
    if steps_per_second >= 1:
        return f'{steps_per_second:.1f} it/s'
    return f'{1 / steps_per_second:.1f} s/it'


def format_duration(seconds: float) -> str:
    """``'0:01:05'``: H:MM:SS, as rich's bars show elapsed and remaining time."""
    return str(datetime.timedelta(seconds=round(seconds)))


class DemoProgressHook(Hook):
    """Shows training progress and records val top-1 and step times.

    On a terminal it drives a live rich progress bar. Elsewhere (a log file, a
    pipe, CI), where rich can only print its bars once at the end, it prints a
    line with the step, the rate and the time left: every ``interval`` steps,
    or, with ``interval=None``, after the first step that ends at least
    :data:`PROGRESS_SECONDS` after the previous line; and one after every
    validation. Both show the val top-1 of the latest validation, updated as
    soon as it ends, so the last value shown is the final one.

    Registered on the runner by :func:`train_one` (not through the config), so
    the demo configs stay plain training configs.
    """

    priority = 'VERY_LOW'

    def __init__(self, progress: Progress, label: str, interval: int | None = None) -> None:
        self.progress = progress
        self.label = label
        self.interval = interval
        self.live = progress.console.is_terminal
        self.task = None
        self.val_top1: list[float] = []
        self.step_times: list[float] = []
        self._step_start = 0.0
        self._loss: float | None = None
        self._first_iter = 0
        self._train_start = 0.0
        self._last_line = 0.0

    def before_train(self, runner) -> None:
        self.task = self.progress.add_task(
            self.label, total=runner.max_iters, info='', completed=runner.iter
        )
        self._first_iter = runner.iter
        self._train_start = self._last_line = time.perf_counter()
        if not self.live:
            print_line(
                self.progress.console,
                f'{self.label:<{LABEL_WIDTH}} '
                f'{plural(runner.max_iters - runner.iter, "training step")}, '
                f'{plural(runner.max_epochs, "epoch")}',
            )

    def before_train_iter(self, runner, batch_idx: int, data_batch=None) -> None:
        self._step_start = time.perf_counter()

    def after_train_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        self.step_times.append(time.perf_counter() - self._step_start)
        loss = outputs.get('loss') if outputs else None
        if loss is not None:
            self._loss = loss.item()
        # The loop counts this step (runner.iter += 1) and the epoch only
        # after the hooks have run.
        self._show(runner, done=runner.iter + 1, epoch=runner.epoch + 1, advance=1)

    def after_val_epoch(self, runner, metrics: dict | None = None) -> None:
        if metrics and ACC_KEY in metrics:
            self.val_top1.append(float(metrics[ACC_KEY]))
            # Validation runs after the epoch's last step, so without this the
            # bar would keep showing the previous epoch's top-1 to the end.
            self._show(runner, done=runner.iter, epoch=runner.epoch, force=True)

    def _show(self, runner, done: int, epoch: int, advance: int = 0, force: bool = False) -> None:
        """Update the bar, or print a line if one is due; ``done`` steps, in ``epoch``."""
        info = f'epoch {epoch}/{runner.max_epochs}'
        if self._loss is not None:
            info += f'  loss {self._loss:.3f}'
        if self.val_top1:
            info += f'  val top-1 {self.val_top1[-1]:.1f} %'
        self.progress.update(self.task, advance=advance, info=info)
        now = time.perf_counter()
        if self.live or not (force or self._line_due(done, now)):
            return
        steps = done - self._first_iter
        if steps <= 0:  # nothing trained yet in this run: no rate to show
            return
        self._last_line = now
        # Rate over the whole run so far, validations included, so that the
        # time left includes the validations still to come.
        rate = steps / max(now - self._train_start, 1e-9)
        left = (runner.max_iters - done) / rate
        print_line(
            self.progress.console,
            f'{self.label:<{LABEL_WIDTH}} step {done}/{runner.max_iters}  {format_rate(rate)}  '
            f'ETA {format_duration(left)}  {info}',
        )

    def _line_due(self, done: int, now: float) -> bool:
        """Whether a progress line is due after ``done`` steps (not on a terminal)."""
        if self.interval is not None:
            return done % self.interval == 0
        return now - self._last_line >= PROGRESS_SECONDS

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
    # The module docstring, unwrapped: its example commands must stay on one line.
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
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
    parser.add_argument(
        '--progress-interval',
        type=int,
        default=None,
        metavar='N',
        help='when stdout is not a terminal (a log, a pipe), print a progress line every N '
        f'training steps (default: about every {PROGRESS_SECONDS:.0f} s); a terminal gets '
        'live bars',
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
    for name in ('epochs', 'train_size', 'val_size', 'progress_interval'):
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


def train_one(
    cfg: Config,
    label: str,
    progress: Progress,
    verbose: bool = False,
    progress_interval: int | None = None,
) -> dict:
    """Train one config with ``Runner.from_cfg``; return its curve and costs."""
    with _quiet_construction(verbose):
        runner = Runner.from_cfg(cfg)
    hook = DemoProgressHook(progress, label, progress_interval)
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
        # The times depend on it (and the accuracies slightly: it changes the
        # order of floating-point sums).
        threads=torch.get_num_threads(),
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
    fig, ax = plt.subplots(figsize=(7.2, 4))
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
    # Outside the axes, right of the plot: inside, it hid the last epochs' points, which is
    # where the curves end up (near 100 % and at chance).
    ax.legend(loc='upper left', bbox_to_anchor=(1.02, 1), borderaxespad=0)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def threads_text() -> str:
    """``'2 torch threads'``: what the run's times (and, slightly, accuracies) depend on."""
    return plural(torch.get_num_threads(), 'torch thread')


def run_summary(seconds: float) -> str:
    """What the run's time was measured on: threads, CPUs and load, from this run.

    The demo's times depend on all three, so every run states them rather than
    the docs promising a duration.
    """
    summary = f'Whole demo: {seconds:.0f} s with {threads_text()} on {os.cpu_count()} CPUs'
    if hasattr(os, 'getloadavg'):  # not on Windows
        summary += f' (load average {os.getloadavg()[0]:.1f} at the end)'
    return summary + '.'


def main(argv: list[str] | None = None, started: float | None = None) -> dict[str, dict]:
    """Run the demo; return the per-neck results that also go to results.json.

    ``started`` is the ``time.perf_counter()`` the stated run time counts from
    (default: now).
    """
    args = parse_args(argv)
    start = time.perf_counter() if started is None else started
    # A pipe or a file gets a block-buffered stdout: a log would show nothing
    # until a buffer fills or the demo ends. Rich flushes its own prints; this
    # covers everything else (MMEngine's --verbose log, warnings, plain print).
    if hasattr(sys.stdout, 'reconfigure'):
        sys.stdout.reconfigure(line_buffering=True)
    work_dir = Path(args.work_dir).resolve()
    work_dir.mkdir(parents=True, exist_ok=True)
    console = Console()
    size = args.image_size or BASE_IMAGE_SIZE
    console.print(
        f'[bold]C-HRNN demo[/bold]: training {", ".join(NECKS[n] for n in args.necks)} '
        f'on SpatialRelations at {size} px (CPU, {threads_text()}). The class '
        'is where the red object lies relative to the blue one, at least '
        f'{scaled_min_gap(size)} px away; each backbone cell sees 12 px.'
    )

    json_path = work_dir / 'results.json'
    results = {}
    columns = (
        TextColumn(f'{{task.description:<{LABEL_WIDTH}}}'),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        TextColumn('{task.fields[info]}'),
    )
    # Off a terminal rich would print the bars once, at the end; the hook
    # prints progress lines there instead.
    with Progress(*columns, console=console, disable=not console.is_terminal) as progress:
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
            results[neck] = train_one(
                cfg, NECKS[neck], progress, args.verbose, args.progress_interval
            )
            # Written after every neck, so a long run stopped part-way keeps what it measured.
            json_path.write_text(json.dumps(results, indent=2))

    console.print(results_table(results))
    plot_path = work_dir / 'val_accuracy.png'
    plot_curves(results, plot_path)
    console.print(
        'ms / step: median training step (forward, backward, update; batch '
        f'{cfg.train_dataloader.batch_size}); time: training and validation. '
        f'{run_summary(time.perf_counter() - start)}'
    )

    print_line(console, f'Plot:        {plot_path}')
    print_line(console, f'Results:     {json_path}')
    for neck, r in results.items():
        print_line(console, f'{NECKS[neck] + ":":<12} {r["work_dir"]} (log, last checkpoint)')
    console.print('Which pixels a region sees:')
    print_line(console, f'  {visualize_command(results)}')
    return results


def _short(path: str | Path) -> str:
    """``path`` relative to the current directory when inside it, else absolute."""
    path = Path(path).resolve()
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def visualize_command(results: dict[str, dict]) -> str:
    """The visualize_context.py command for the trained necks (an HRNN beside GAP).

    One line, every word quoted for the shell where it needs it (a work dir
    may hold spaces), with paths that work from the current directory.
    """
    hrnn = [n for n in results if n != 'gap']
    first = hrnn[0] if hrnn else 'gap'

    def model(neck: str) -> list[str]:
        # The runner saves the config it trained with (the demo's options
        # applied) in the work dir; the visualiser must draw the same task.
        config = Path(results[neck]['work_dir']) / f'{neck}.py'
        if not config.is_file():
            config = CONFIG_DIR / f'{neck}.py'
        return [_short(config), _short(results[neck]['checkpoint'])]

    # The script by its path from here: the demo may run outside the checkout.
    words = ['python', _short(REPO_ROOT / 'tools' / 'visualize_context.py')]
    words += [*model(first), '--sample', '0']
    if first != 'gap' and 'gap' in results:
        words += ['--compare', *model('gap')]
    words += ['--out', _short(Path(results[first]['work_dir']).parent / 'context.png')]
    return shlex.join(words)


if __name__ == '__main__':
    # Freed CPU buffers are reused, not page-faulted in again (docs: Benchmark).
    keep_freed_memory()
    main(started=STARTED)
