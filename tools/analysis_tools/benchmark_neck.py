"""Speed, memory, FLOPs and op counts of the HSRN and HLSTM necks.

Everything is measured in one process and reported as ratios against
baselines measured alongside it: the per-region reference loop, MMPretrain's
GlobalAveragePooling, ResNet-50's own forward+backward, and a plain 1024x1024
float32 matrix product (the share of GEMM speed). Each HRNN neck is measured
once per sweep implementation in ``--paths`` (``$CHRNN_WAVEFRONT``: ``compiled``,
the registered op with its compiled CPU kernels, ``triton``, the op with its
Triton kernels, ``fused``, the op in PyTorch operators, and ``plain``, plain
PyTorch), one column each. A second
table puts the HRNN necks beside the context necks a user would try instead:
self-attention over the regions and a ReNet-style neck. ``--preset`` picks the
sizes: ResNet-50's C4+C5 maps, or the demo's one 64x14x14 map.

It ends with one PASS/FAIL line per target, each computed from the figures it
names, and exits with status 1 if any target failed (``--skip-time-targets``
reports the timing targets as not checked, for smoke runs at tiny sizes).

Example::

    python tools/analysis_tools/benchmark_neck.py                 # CPU, batch 32
    python tools/analysis_tools/benchmark_neck.py --device cuda --amp bf16
    python tools/analysis_tools/benchmark_neck.py --preset demo --paths fused
"""

import argparse
import json
import os
import statistics
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from contextlib import ExitStack, contextmanager, nullcontext

# Huge pages for torch's large CPU buffers (docs: Benchmark, "Huge pages"); torch reads it
# at its first allocation, so before it is imported. THP_MEM_ALLOC_ENABLE=0 opts out.
os.environ.setdefault('THP_MEM_ALLOC_ENABLE', '1')

from chrnn_plugin.engine import quiet

quiet.silence_known_warnings()

import torch  # noqa: E402
from mmpretrain.registry import MODELS  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402
from torch.autograd import DeviceType  # noqa: E402
from torch.nn.attention import SDPBackend, sdpa_kernel  # noqa: E402
from torch.profiler import ProfilerActivity, profile  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

import chrnn_plugin  # noqa: E402,F401  (registers the necks)
from chrnn_plugin.engine.host_memory import keep_freed_memory  # noqa: E402
from chrnn_plugin.models.necks.fused_wavefront import (  # noqa: E402
    OP_PATHS,
    PATH_ENV_VAR,
    PATHS,
    triton_installed,
)
from chrnn_plugin.models.necks.hrnn_level import HRNNLevel  # noqa: E402
from chrnn_plugin.testing.op_counter import OP_GROWTH_LIMIT, count_dispatched_ops  # noqa: E402
from chrnn_plugin.testing.reference import reference_forward  # noqa: E402

HRNN_NECKS = ('HSRNNeck', 'HLSTMNeck')
#: Side of the square float32 matrices whose product is the GEMM-speed baseline.
GEMM_SIZE = 1024
#: Products per timed run of the baseline: one takes tens of ms on a CPU but
#: only microseconds on a GPU, where one launch would be mostly overhead.
GEMM_CALLS = {'cuda': 100}
#: Kineto (the profiler behind the CPU peak memory) logs at levels 0 to 5 and
#: prints nothing at or above this one.
KINETO_SILENT_LEVEL = '99'
#: The sizes ``--preset`` picks: ResNet-50's stages 3 and 4 at ``--image-size``
#: (the ResNet-50 figures are measured), or the demo's neck (configs/demo/hsrn.py:
#: one 64x14x14 ConvMixer map, hidden 32, out 64; no ResNet-50 figures).
PRESETS = ('c4c5', 'demo')
DEMO_LEVELS = ((64, 14, 14),)
#: Least share of GEMM speed of an HRNN neck's forward+backward, per preset.
GEMM_SHARE_TARGETS = {'c4c5': 0.75, 'demo': 0.4}
#: The peer whose share of GEMM speed every HRNN neck must reach.
ATTENTION = 'RegionSelfAttentionNeck'


def resnet50_levels(image_size: int) -> tuple[tuple[int, int, int], ...]:
    """(C, H, W) of ResNet-50's stages 3 and 4 (C4, C5): strides 16 and 32."""
    c4, c5 = -(-image_size // 16), -(-image_size // 32)
    return (1024, c4, c4), (2048, c5, c5)


def preset_config(
    preset: str,
    image_size: int = 224,
    batch_size: int | None = None,
    hidden_channels: int | None = None,
) -> dict:
    """Shapes and sizes of a preset: ``levels`` ((C, H, W) of each input map),
    ``batch_size``, ``hidden_channels``, ``out_channels`` and ``image_size``
    (ResNet-50's input, None for ``demo``). An explicit ``batch_size`` or
    ``hidden_channels`` wins over the preset's (32 and 256 for ``c4c5``, 32 and
    32 for ``demo``); ``image_size`` applies to ``c4c5`` only."""
    if preset == 'c4c5':
        levels, batch, hidden, out = resnet50_levels(image_size), 32, 256, None
    elif preset == 'demo':
        levels, batch, hidden, out, image_size = DEMO_LEVELS, 32, 32, 64, None
    else:
        raise ValueError(f'preset must be one of {PRESETS}, got {preset!r}')
    hidden = hidden if hidden_channels is None else hidden_channels
    return dict(
        levels=levels,
        batch_size=batch if batch_size is None else batch_size,
        hidden_channels=hidden,
        out_channels=hidden if out is None else out,  # None: the necks' own default, D
        image_size=image_size,
    )


def make_inputs(config: dict, device: torch.device) -> tuple[torch.Tensor, ...]:
    """One random ``(N, C, H, W)`` map per level of ``config``, requiring grad."""
    n = config['batch_size']
    return tuple(
        torch.randn(n, c, h, w, device=device, requires_grad=True) for c, h, w in config['levels']
    )


def column(neck_type: str, path: str) -> str:
    """Column of one HRNN neck on one sweep path, and its key in the figures: 'HSRNNeck fused'."""
    return f'{neck_type} {path}'


def hrnn_columns(results: dict) -> list[str]:
    """Every HRNN neck's column, each neck on each path of the run."""
    return [column(n, p) for n in HRNN_NECKS for p in results['paths']]


@contextmanager
def sweep_path(path: str):
    """``$CHRNN_WAVEFRONT`` set to ``path`` inside, restored after."""
    if path not in PATHS:
        raise ValueError(f'path must be one of {PATHS}, got {path!r}')
    before = os.environ.get(PATH_ENV_VAR)
    os.environ[PATH_ENV_VAR] = path
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(PATH_ENV_VAR, None)
        else:
            os.environ[PATH_ENV_VAR] = before


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f'must be at least 1, got {value}')
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__.split('\n\n')[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument('--device', default='cpu', help="torch device: 'cpu' or 'cuda'")
    parser.add_argument(
        '--preset',
        choices=PRESETS,
        default='c4c5',
        help="sizes: 'c4c5' = ResNet-50's C4+C5 maps at --image-size, batch 32, D=256, with the "
        "ResNet-50 figures; 'demo' = the demo's neck, one 64x14x14 map, batch 32, D=32, "
        'out_channels 64, without ResNet-50 (nothing of it is in the demo)',
    )
    parser.add_argument(
        '--paths',
        nargs='+',
        choices=PATHS,
        default=None,
        help=f'sweep implementations (${PATH_ENV_VAR}) to measure every HRNN neck on, '
        "one column each, in this process (default: 'compiled fused plain' on a CPU without "
        "--amp, 'triton fused plain' on CUDA (without Triton installed: 'fused plain'), 'fused "
        "plain' otherwise: the compiled kernels are float32 CPU kernels, the Triton kernels "
        'GPU kernels)',
    )
    parser.add_argument(
        '--batch-size',
        type=positive_int,
        default=None,
        help="batch size of the neck inputs; None: the preset's (32); a value given wins",
    )
    parser.add_argument(
        '--hidden-channels',
        type=positive_int,
        default=None,
        help="hidden_channels D of every neck; None: the preset's (c4c5: 256, demo: 32); "
        'a value given wins',
    )
    parser.add_argument(
        '--image-size',
        type=positive_int,
        default=224,
        help='input size of ResNet-50; sets the map sizes of --preset c4c5 (demo ignores it)',
    )
    parser.add_argument(
        '--repeats',
        type=positive_int,
        default=3,
        help='timed runs of each figure, after one warm-up run; the median is kept',
    )
    parser.add_argument(
        '--amp', choices=['none', 'bf16', 'fp16'], default='none', help='autocast dtype'
    )
    parser.add_argument(
        '--skip-reference',
        action='store_true',
        help='skip the per-region reference loop (slow); its rows and its target are left out',
    )
    parser.add_argument(
        '--skip-time-targets',
        action='store_true',
        help="report the targets on measured times as 'not checked' instead of PASS/FAIL "
        '(for smoke runs at sizes they are not meant for); the op-count and peak-memory targets '
        'are checked',
    )
    parser.add_argument(
        '--profiler-log',
        action='store_true',
        help='let the profiler that replays the CPU peak memory print its log lines to stderr '
        '(without it, KINETO_LOG_LEVEL is set to silence them unless it is already set)',
    )
    parser.add_argument('--out', help='also write the figures to this JSON file')
    return parser


def default_paths(device: torch.device, amp: str) -> list[str]:
    """The sweep paths measured without ``--paths``: every one that runs at speed there."""
    if device.type == 'cpu':
        return ['compiled', 'fused', 'plain'] if amp == 'none' else ['fused', 'plain']
    return (['triton'] if triton_installed() else []) + ['fused', 'plain']


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.paths is None:
        args.paths = default_paths(torch.device(args.device), args.amp)
    if len(set(args.paths)) != len(args.paths):
        parser.error(f'--paths names a path twice: {" ".join(args.paths)}')
    return args


class Bench:
    """Times and measures callables on one device.

    ``clock`` is the timer read around each timed run (seconds, monotonic);
    tests pass a fake one.
    """

    def __init__(
        self,
        device: torch.device,
        repeats: int,
        amp: str,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.device = device
        self.repeats = repeats
        self.amp = amp
        self.clock = clock
        dtype = {'bf16': torch.bfloat16, 'fp16': torch.float16}.get(amp)
        #: The dtype of what the necks' linear layers compute: the autocast dtype, else float32.
        self.dtype = dtype or torch.float32
        self.autocast = (
            (lambda: torch.autocast(device.type, dtype=dtype)) if dtype else (lambda: nullcontext())
        )

    def _sync(self) -> None:
        if self.device.type == 'cuda':
            torch.cuda.synchronize(self.device)

    def seconds(
        self,
        fn: Callable[[], object],
        repeats: int | None = None,
        warm_up: bool = True,
        autocast: bool = True,
    ) -> float:
        """Median time of ``repeats`` runs of ``fn``, after one untimed warm-up run unless told
        otherwise; ``autocast=False`` runs it without the ``--amp`` autocast."""
        runs = self.repeats if repeats is None else repeats
        if runs < 1:
            raise ValueError(f'repeats must be at least 1, got {runs}')
        with self.autocast() if autocast else nullcontext():
            if warm_up:
                fn()
            times = []
            for _ in range(runs):
                self._sync()
                start = self.clock()
                fn()
                self._sync()
                times.append(self.clock() - start)
        return statistics.median(times)

    def peak_bytes(self, fn: Callable[[], object]) -> int:
        """Peak bytes allocated by ``fn`` above what was live before it."""
        with self.autocast():
            if self.device.type == 'cuda':
                self._sync()
                torch.cuda.reset_peak_memory_stats(self.device)
                before = torch.cuda.memory_allocated(self.device)
                fn()
                self._sync()
                return torch.cuda.max_memory_allocated(self.device) - before
            # The CPU allocator keeps no statistics; replay the profiler's
            # allocation and free events in order and take the running peak.
            with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
                fn()
        # An op's allocations are counted in its own and all its parents'
        # totals; self_cpu_memory_usage counts each byte once.
        events = sorted(
            (e for e in prof.events() if e.self_cpu_memory_usage != 0),
            key=lambda e: e.time_range.start,
        )
        live = peak = 0
        for event in events:
            live += event.self_cpu_memory_usage
            peak = max(peak, live)
        return peak

    def flops(self, fn: Callable[[], object], autocast: bool = True) -> int:
        """FLOPs of one run of ``fn`` as ``FlopCounterMode`` counts them (2 per multiply-add)."""
        with self.autocast() if autocast else nullcontext(), FlopCounterMode(display=False) as c:
            fn()
        return c.get_total_flops()

    def kernel_launches(self, fn: Callable[[], object]) -> int | None:
        """CUDA kernels one run of ``fn`` launches, after a warm-up run; None off CUDA.

        Counted as the profiler's CUDA events, memory copies and sets left out.
        """
        if self.device.type != 'cuda':
            return None
        with self.autocast():
            fn()
            self._sync()
            with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
                fn()
                self._sync()
        return sum(
            e.device_type == DeviceType.CUDA and not e.name.startswith(('Memcpy', 'Memset'))
            for e in prof.events()
        )


def forward_backward(module: torch.nn.Module, inputs, forward=None) -> Callable[[], None]:
    forward = forward or module

    def run() -> None:
        outputs = forward(inputs)
        loss = sum(y.float().sum() for y in outputs)
        loss.backward()

    return run


def forward_only(module: torch.nn.Module, inputs, forward=None) -> Callable[[], None]:
    forward = forward or module

    def run() -> None:
        with torch.no_grad():
            forward(inputs)

    return run


def build_neck(neck_type: str, config: dict, device: torch.device) -> torch.nn.Module:
    """The neck at the sizes of ``config`` (see :func:`preset_config`)."""
    cfg = dict(
        type=neck_type,
        in_channels=tuple(c for c, _, _ in config['levels']),
        hidden_channels=config['hidden_channels'],
        out_channels=config['out_channels'],
    )
    return MODELS.build(cfg).to(device)


def count_ops(neck_type: str, config: dict, side: int, device: torch.device) -> int:
    """Dispatched ops of a forward+backward of a one-level neck on a ``side`` x ``side`` map
    of the first level's channels, batch 2."""
    channels = config['levels'][0][0]
    one_level = {**config, 'levels': ((channels, side, side),)}
    neck = build_neck(neck_type, one_level, device)
    x = torch.randn(2, channels, side, side, device=device, requires_grad=True)
    return sum(count_dispatched_ops(forward_backward(neck, x)).values())


def quiet_profiler() -> None:
    """Silence Kineto's log lines (``profiler_start``, ``gpuGetDeviceCount failed``) on stderr.

    Kineto reads ``KINETO_LOG_LEVEL`` when the first profiler starts; a level
    the user set is kept.
    """
    os.environ.setdefault('KINETO_LOG_LEVEL', KINETO_SILENT_LEVEL)


def check_path_taken(
    neck: torch.nn.Module, neck_type: str, path: str, device: torch.device, dtype: torch.dtype
) -> None:
    """Raise if ``neck``'s levels would not run the sweep ``path`` names (a mislabelled column).

    ``dtype`` is that of the levels' pre-activations: the ``--amp`` dtype, else float32.
    """
    levels = [module for module in neck.modules() if isinstance(module, HRNNLevel)]
    taken = [level.sweep_path(device, dtype) for level in levels]
    if not taken or taken != [path] * len(taken):
        raise RuntimeError(
            f'{neck_type}: ${PATH_ENV_VAR}={path}, but its levels would take {taken}'
        )


def measure_hrnn_neck(
    bench: Bench,
    neck_type: str,
    config: dict,
    inputs,
    device: torch.device,
    paths: Sequence[str] | None = None,
    skip_reference: bool = False,
    console: Console | None = None,
) -> dict[str, dict]:
    """Time, peak memory, FLOPs, op counts (and CUDA kernels) of one HRNN neck on each path.

    One neck (the same weights) is measured once per path, with
    ``$CHRNN_WAVEFRONT`` set to it. Returns ``{column(neck_type, path): figures}``;
    the reference loop, when run, is run once and its figures are repeated in
    every path's entry (``reference_*``). The FLOPs are the plain path's on
    every path, and the op counts see the fused op as one operator. ``paths``
    defaults to :func:`default_paths`.
    """
    if paths is None:
        paths = default_paths(device, bench.amp)
    neck = build_neck(neck_type, config, device)
    fast_step = forward_backward(neck, inputs)
    # FlopCounterMode sees the fused op as one operator without a FLOP formula
    # (it would count none of its products): every path is credited with the
    # FLOPs counted on the plain path, which does the same matrix products.
    with sweep_path('plain'):
        flops = bench.flops(fast_step)
    entries = {}
    for path in paths:
        if console:
            console.print(f'{column(neck_type, path)} ...')
        with sweep_path(path):
            check_path_taken(neck, neck_type, path, device, bench.dtype)
            entry = {
                'path': path,
                'fwd_s': bench.seconds(forward_only(neck, inputs)),
                'fwd_bwd_s': bench.seconds(fast_step),
                'fwd_bwd_peak_bytes': bench.peak_bytes(fast_step),
                'fwd_bwd_flops': flops,
                'ops_14x14': count_ops(neck_type, config, 14, device),
                'ops_28x28': count_ops(neck_type, config, 28, device),
            }
            kernels = bench.kernel_launches(fast_step)
            if kernels is not None:
                entry['fwd_bwd_kernels'] = kernels
        entries[column(neck_type, path)] = entry
    if not skip_reference:
        if console:
            console.print(f'{neck_type} reference loop ...')

        def reference(x, neck=neck):
            return reference_forward(neck, x)

        slow_step = forward_backward(neck, inputs, reference)
        # One run each: the loop is pure Python, minutes long, and gains nothing from warm-up.
        figures = {
            'reference_fwd_s': bench.seconds(
                forward_only(neck, inputs, reference), 1, warm_up=False
            ),
            'reference_fwd_bwd_s': bench.seconds(slow_step, 1, warm_up=False),
            'reference_fwd_bwd_peak_bytes': bench.peak_bytes(slow_step),
        }
        for entry in entries.values():
            entry.update(figures)
    return entries


def measure_gemm(bench: Bench, device: torch.device) -> dict:
    """Achieved FLOP rate of a plain float32 ``torch.mm`` of two GEMM_SIZE^2 matrices.

    Timed like the necks (warm-up, median of the repeats) but without
    autocast, and counted by the same ``FlopCounterMode`` (2 FLOPs per
    multiply-add), so a neck's rate divided by this one compares like with like.
    """
    a = torch.randn(GEMM_SIZE, GEMM_SIZE, device=device)
    b = torch.randn(GEMM_SIZE, GEMM_SIZE, device=device)
    calls = GEMM_CALLS.get(device.type, 1)

    def run() -> None:
        for _ in range(calls):
            torch.mm(a, b)

    flops = bench.flops(run, autocast=False)
    seconds = bench.seconds(run, autocast=False)
    return {
        'size': GEMM_SIZE,
        'dtype': 'float32',
        'calls_per_run': calls,
        'flops': flops,
        'seconds': seconds,
        'flop_per_s': flops / seconds,
    }


def measure(args: argparse.Namespace, bench: Bench, console: Console) -> dict:
    """Every figure of the run, as ``--out`` writes them (before :func:`derive`)."""
    device = torch.device(args.device)
    torch.manual_seed(0)
    config = preset_config(args.preset, args.image_size, args.batch_size, args.hidden_channels)
    inputs = make_inputs(config, device)
    results: dict = {
        'preset': args.preset,
        'paths': list(args.paths),
        **config,
        'device': str(device),
        'amp': args.amp,
        'threads': torch.get_num_threads(),
        'repeats': args.repeats,
    }

    console.print(f'{GEMM_SIZE}x{GEMM_SIZE} float32 matrix product ...')
    results['gemm'] = measure_gemm(bench, device)

    if args.preset == 'c4c5':
        batch, size = config['batch_size'], config['image_size']
        console.print(f'ResNet-50 forward+backward, batch {batch} at {size} px ...')
        resnet = MODELS.build(dict(type='ResNet', depth=50)).to(device)
        images = torch.randn(batch, 3, size, size, device=device)
        resnet_step = forward_backward(resnet, images)
        results['resnet50'] = {
            'fwd_bwd_s': bench.seconds(resnet_step),
            'fwd_bwd_flops': bench.flops(resnet_step),
        }
        del resnet, images

    gap = MODELS.build(dict(type='GlobalAveragePooling')).to(device)
    results['gap'] = {
        'fwd_s': bench.seconds(forward_only(gap, inputs)),
        'fwd_bwd_s': bench.seconds(forward_backward(gap, inputs)),
        'fwd_bwd_peak_bytes': bench.peak_bytes(forward_backward(gap, inputs)),
    }

    for neck_type in HRNN_NECKS:
        results.update(
            measure_hrnn_neck(
                bench, neck_type, config, inputs, device, args.paths, args.skip_reference, console
            )
        )

    results.update(measure_peers(bench, config, inputs, device, console))
    add_params(results, config)
    return results


def check(neck: str, target: str, measured: float, ok: bool, enforced: bool = True) -> dict:
    """One target line: ``passed`` is None when the target is reported but not checked."""
    return dict(neck=neck, target=target, measured=measured, passed=ok if enforced else None)


def derive(results: dict, time_targets: bool = True) -> list[dict]:
    """Add the ratios to ``results`` and return the targets, each judged on its figures.

    Every HRNN target is judged per column (neck and path), and its line names both.

    Args:
        results: What :func:`measure` returns; changed in place.
        time_targets: Whether the targets on measured times are checked; when
            not, their ``passed`` is None (the exact op-count and peak-memory
            targets are always checked).

    Returns:
        list[dict]: ``neck``, ``target``, ``measured`` and ``passed`` (True,
        False, or None for not checked) of every target; also ``results['checks']``.
    """
    resnet = results.get('resnet50')  # None for --preset demo
    gemm_rate = results['gemm']['flop_per_s']
    if resnet is not None:
        resnet['gemm_speed_share'] = resnet['fwd_bwd_flops'] / resnet['fwd_bwd_s'] / gemm_rate
    for key, _ in context_columns(results):
        r = results.get(key)
        if r is not None:
            r['gemm_speed_share'] = r['fwd_bwd_flops'] / r['fwd_bwd_s'] / gemm_rate
    share_target = GEMM_SHARE_TARGETS[results['preset']]
    attention = results.get(ATTENTION)
    checks = []
    for name in hrnn_columns(results):
        r = results[name]
        r['ops_growth_14_to_28'] = r['ops_28x28'] / r['ops_14x14']
        growth = r['ops_growth_14_to_28']
        checks.append(
            check(name, f'op growth 14->28 <= {OP_GROWTH_LIMIT}', growth, growth <= OP_GROWTH_LIMIT)
        )
        if resnet is not None:
            flop_share = r['fwd_bwd_flops'] / resnet['fwd_bwd_flops']
            time_share = r['fwd_bwd_s'] / resnet['fwd_bwd_s']
            r['flop_share_of_resnet50'] = flop_share
            r['time_share_of_resnet50'] = time_share
            r['time_share_over_flop_share'] = ratio = time_share / flop_share
            checks.append(
                check(name, 'time share <= 1.5 x FLOP share', ratio, ratio <= 1.5, time_targets)
            )
        if 'reference_fwd_bwd_s' in r:
            r['speedup_vs_reference'] = speedup = r['reference_fwd_bwd_s'] / r['fwd_bwd_s']
            target = 20 if results['device'].startswith('cuda') else 2
            checks.append(
                check(
                    name,
                    f'fwd+bwd >= {target}x faster than reference',
                    speedup,
                    speedup >= target,
                    time_targets,
                )
            )
        share = r['gemm_speed_share']
        checks.append(
            check(
                name,
                f'share of GEMM speed >= {share_target} ({results["preset"]})',
                share,
                share >= share_target,
                time_targets,
            )
        )
        if attention is not None:
            theirs = attention['gemm_speed_share']
            checks.append(
                check(
                    name,
                    f"share of GEMM speed >= self-attention's ({theirs:.3f})",
                    share,
                    share >= theirs,
                    time_targets,
                )
            )
    op_paths = [p for p in OP_PATHS if p in results['paths']]
    for path in op_paths if 'plain' in results['paths'] else []:
        for neck_type in HRNN_NECKS:
            peak = results[column(neck_type, path)]['fwd_bwd_peak_bytes']
            plain = results[column(neck_type, 'plain')]['fwd_bwd_peak_bytes']
            checks.append(
                check(
                    column(neck_type, path),
                    "fwd+bwd peak memory / plain path's <= 1",
                    peak / max(plain, 1),
                    peak <= plain,
                )
            )
    results['checks'] = checks
    return checks


def check_line(c: dict) -> str:
    verdict = {True: 'PASS', False: 'FAIL', None: 'not checked'}[c['passed']]
    return f'{verdict}  {c["neck"]}: {c["target"]} (measured {c["measured"]:.2f})'


MIB = 2**20
NOT_RUN = 'not run'
#: (row name, formatter of one neck's results): the cost rows both tables show.
COST_ROWS = [
    ('fwd ms', lambda r: f'{1e3 * r["fwd_s"]:.1f}'),
    ('fwd+bwd ms', lambda r: f'{1e3 * r["fwd_bwd_s"]:.1f}'),
    ('fwd+bwd peak MiB', lambda r: f'{r["fwd_bwd_peak_bytes"] / MIB:.0f}'),
]
#: Achieved FLOP rate of the forward+backward over that of the float32 matrix product.
GEMM_SHARE_ROW = ('share of GEMM speed', lambda r: f'{r["gemm_speed_share"]:.3f}')


def if_run(key: str, fmt: Callable[[dict], str]) -> Callable[[dict], str]:
    """``fmt`` for a neck that has the figure ``key``, 'not run' for one that has not."""
    return lambda r: fmt(r) if key in r else NOT_RUN


#: The rows of the reference loop: shown only when some neck ran it.
REFERENCE_ROWS = [
    ('reference fwd ms', if_run('reference_fwd_s', lambda r: f'{1e3 * r["reference_fwd_s"]:.1f}')),
    (
        'reference fwd+bwd ms',
        if_run('reference_fwd_bwd_s', lambda r: f'{1e3 * r["reference_fwd_bwd_s"]:.1f}'),
    ),
    (
        'reference peak MiB',
        if_run(
            'reference_fwd_bwd_peak_bytes',
            lambda r: f'{r["reference_fwd_bwd_peak_bytes"] / MIB:.0f}',
        ),
    ),
    (
        'speed-up vs reference (fwd+bwd)',
        if_run('speedup_vs_reference', lambda r: f'{r["speedup_vs_reference"]:.1f}x'),
    ),
]
#: The rows against ResNet-50's forward+backward: --preset c4c5 only.
RESNET_ROWS = [
    ('FLOPs / ResNet-50 fwd+bwd', lambda r: f'{r["flop_share_of_resnet50"]:.3f}'),
    ('time / ResNet-50 fwd+bwd', lambda r: f'{r["time_share_of_resnet50"]:.3f}'),
    ('time share / FLOP share', lambda r: f'{r["time_share_over_flop_share"]:.2f}'),
]
KERNEL_ROW = (
    'CUDA kernels fwd+bwd',
    if_run('fwd_bwd_kernels', lambda r: str(r['fwd_bwd_kernels'])),
)


def size_title(results: dict) -> str:
    """What the necks were fed: the preset's maps, batch, D and out_channels."""
    maps = ' + '.join('x'.join(map(str, level)) for level in results['levels'])
    if results['preset'] == 'c4c5':
        where = f'C4+C5 of ResNet-50 at {results["image_size"]} px ({maps})'
    else:
        where = f'the demo size ({maps}, no ResNet-50)'
    return (
        f'{where}, batch {results["batch_size"]}, D={results["hidden_channels"]}, '
        f'out {results["out_channels"]}, {results["device"]}, amp={results["amp"]}'
    )


def report(console: Console, results: dict) -> None:
    """The HRNN table, the baselines and one line per target (call :func:`derive` first)."""
    resnet = results.get('resnet50')
    gap = results['gap']
    gemm = results['gemm']
    columns = hrnn_columns(results)
    table = Table(title=f'Necks on {size_title(results)}, {results["threads"]} threads')
    for name in ('measure', *columns):
        table.add_column(name, justify='right' if name != 'measure' else 'left')
    ran_reference = any('reference_fwd_bwd_s' in results[n] for n in columns)
    counted_kernels = any('fwd_bwd_kernels' in results[n] for n in columns)
    rows = [
        *COST_ROWS,
        *(REFERENCE_ROWS if ran_reference else []),
        ('fwd+bwd time / GAP', lambda r: f'{r["fwd_bwd_s"] / gap["fwd_bwd_s"]:.0f}x'),
        (
            'fwd+bwd peak / GAP',
            lambda r: f'{r["fwd_bwd_peak_bytes"] / max(gap["fwd_bwd_peak_bytes"], 1):.0f}x',
        ),
        ('fwd+bwd GFLOPs', lambda r: f'{r["fwd_bwd_flops"] / 1e9:.1f}'),
        GEMM_SHARE_ROW,
        *(RESNET_ROWS if resnet is not None else []),
        ('ops fwd+bwd at 14x14', lambda r: str(r['ops_14x14'])),
        ('ops fwd+bwd at 28x28', lambda r: str(r['ops_28x28'])),
        ('op growth 14 -> 28', lambda r: f'{r["ops_growth_14_to_28"]:.2f}x'),
        *([KERNEL_ROW] if counted_kernels else []),
    ]
    for name, fmt in rows:
        table.add_row(name, *(fmt(results[n]) for n in columns))
    console.print(table)
    resnet_text = (
        f'ResNet-50 fwd+bwd {1e3 * resnet["fwd_bwd_s"]:.0f} ms, '
        f'{resnet["fwd_bwd_flops"] / 1e9:.0f} GFLOPs, {resnet["gemm_speed_share"]:.3f} of GEMM '
        'speed'
        if resnet is not None
        else f'ResNet-50 not measured (--preset {results["preset"]})'
    )
    console.print(
        f'Baselines: {resnet_text}; GAP fwd+bwd {1e3 * gap["fwd_bwd_s"]:.2f} ms, '
        f'peak {gap["fwd_bwd_peak_bytes"] / MIB:.1f} MiB; GEMM speed: {gemm["size"]}x'
        f'{gemm["size"]} float32 torch.mm at {gemm["flop_per_s"] / 1e9:.1f} GFLOP/s'
    )
    for c in results['checks']:
        console.print(check_line(c), markup=False, highlight=False)


# The baselines beside the HRNN necks, with the display names of the side-by-side table.
PEER_NECKS = {'RegionSelfAttentionNeck': 'Attention', 'ReNetNeck': 'ReNet'}
HRNN_SHORT_NAMES = {'HSRNNeck': 'HSRN', 'HLSTMNeck': 'HLSTM'}


def context_columns(results: dict) -> list[tuple[str, str]]:
    """(key in the figures, column name) of every context neck: HRNN on each path, then peers."""
    hrnn = [
        (column(n, p), f'{HRNN_SHORT_NAMES[n]} {p}') for n in HRNN_NECKS for p in results['paths']
    ]
    return [*hrnn, *PEER_NECKS.items()]


def countable_kernels() -> ExitStack:
    """Kernels whose matrix products the FLOP counter sees: same maths, slower.

    The fused CPU kernels of ``scaled_dot_product_attention`` and of
    ``nn.LSTM`` (oneDNN) have no FLOP formula in ``FlopCounterMode``, which
    would count attention and ReNet's recurrences as zero; the math SDPA
    backend and the native LSTM are made of ``bmm`` / ``mm`` calls it counts.
    """
    stack = ExitStack()
    # Switching oneDNN off and on warns about TF32 on Intel GPUs, which is noise here.
    stack.enter_context(warnings.catch_warnings())
    warnings.filterwarnings('ignore', message='TF32 acceleration on top of oneDNN')
    stack.enter_context(sdpa_kernel(SDPBackend.MATH))
    stack.enter_context(torch.backends.mkldnn.flags(enabled=False))
    return stack


def num_params(neck_type: str, config: dict) -> int:
    """Parameters of the neck as the benchmark builds it."""
    return sum(p.numel() for p in build_neck(neck_type, config, torch.device('cpu')).parameters())


def measure_peers(
    bench: Bench, config: dict, inputs, device: torch.device, console: Console
) -> dict:
    """Time, peak memory and FLOPs of the baseline context necks on the same inputs."""
    results = {}
    for neck_type in PEER_NECKS:
        console.print(f'{neck_type} ...')
        neck = build_neck(neck_type, config, device)
        step = forward_backward(neck, inputs)
        with countable_kernels():
            flops = bench.flops(step)
        results[neck_type] = {
            'fwd_s': bench.seconds(forward_only(neck, inputs)),
            'fwd_bwd_s': bench.seconds(step),
            'fwd_bwd_peak_bytes': bench.peak_bytes(step),
            'fwd_bwd_flops': flops,
        }
        del neck
    return results


def add_params(results: dict, config: dict) -> None:
    """Parameter count of every context neck (each HRNN path's entry), beside its other figures."""
    for neck_type in (*HRNN_NECKS, *PEER_NECKS):
        count = num_params(neck_type, config)
        hrnn = neck_type in HRNN_NECKS
        for key in [column(neck_type, p) for p in results['paths']] if hrnn else [neck_type]:
            results[key]['params'] = count


def report_context_necks(console: Console, results: dict) -> None:
    """HSRN and HLSTM (each path) beside self-attention and ReNet: one column each."""
    resnet = results.get('resnet50')
    gap = results['gap']
    table = Table(title=f'Context necks side by side on {size_title(results)}')
    table.add_column('measure', justify='left')
    columns = context_columns(results)
    for _, name in (('gap', 'GAP'), *columns):
        table.add_column(name, justify='right')
    rows = [
        ('params (M)', lambda r: f'{r["params"] / 1e6:.2f}'),
        *COST_ROWS,
        ('fwd+bwd GFLOPs', lambda r: f'{r["fwd_bwd_flops"] / 1e9:.1f}'),
        GEMM_SHARE_ROW,
        *(
            [
                (
                    'FLOPs / ResNet-50 fwd+bwd',
                    lambda r: f'{r["fwd_bwd_flops"] / resnet["fwd_bwd_flops"]:.3f}',
                ),
                (
                    'time / ResNet-50 fwd+bwd',
                    lambda r: f'{r["fwd_bwd_s"] / resnet["fwd_bwd_s"]:.3f}',
                ),
            ]
            if resnet is not None
            else []
        ),
        ('fwd+bwd time / GAP', lambda r: f'{r["fwd_bwd_s"] / gap["fwd_bwd_s"]:.0f}x'),
    ]
    gap_cells = {
        'params (M)': '0',
        'fwd ms': f'{1e3 * gap["fwd_s"]:.1f}',
        'fwd+bwd ms': f'{1e3 * gap["fwd_bwd_s"]:.1f}',
        'fwd+bwd peak MiB': f'{gap["fwd_bwd_peak_bytes"] / MIB:.0f}',
    }
    for name, fmt in rows:
        cells = [fmt(results[key]) for key, _ in columns]
        table.add_row(name, gap_cells.get(name, '-'), *cells)
    console.print(table)


def main(argv: Sequence[str] | None = None) -> int:
    """Measure, print, write ``--out``; 1 if any target failed, else 0."""
    args = parse_args(argv)
    if not args.profiler_log:
        quiet_profiler()
    bench = Bench(torch.device(args.device), args.repeats, args.amp)
    console = Console()
    results = measure(args, bench, console)
    checks = derive(results, time_targets=not args.skip_time_targets)
    report(console, results)
    report_context_necks(console, results)
    if args.out:
        with open(args.out, 'w') as f:
            json.dump(results, f, indent=2)
    failed = [c for c in checks if c['passed'] is False]
    if failed:
        console.print(f'{len(failed)} of {len(checks)} targets failed', markup=False)
        return 1
    return 0


if __name__ == '__main__':
    # Freed CPU buffers are reused, not page-faulted in again (docs: Benchmark).
    keep_freed_memory()
    sys.exit(main())
