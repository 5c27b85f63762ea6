"""Speed, memory, FLOPs and op counts of the HSRN and HLSTM necks.

Everything is measured in one process and reported as ratios against
baselines measured alongside it: the per-region reference loop, MMPretrain's
GlobalAveragePooling, and ResNet-50's own forward+backward. A second table
puts the HRNN necks beside the context necks a user would try instead:
self-attention over the regions and a ReNet-style neck.

Example::

    python tools/analysis_tools/benchmark_neck.py                 # CPU, batch 32
    python tools/analysis_tools/benchmark_neck.py --device cuda --amp bf16
"""

import argparse
import json
import statistics
import time
import warnings
from collections.abc import Callable
from contextlib import ExitStack, nullcontext

from chrnn_plugin.engine import quiet

quiet.silence_known_warnings()

import torch  # noqa: E402
from mmpretrain.registry import MODELS  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402
from torch.nn.attention import SDPBackend, sdpa_kernel  # noqa: E402
from torch.profiler import ProfilerActivity, profile  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

import chrnn_plugin  # noqa: E402,F401  (registers the necks)
from chrnn_plugin.testing.op_counter import OP_GROWTH_LIMIT, count_dispatched_ops  # noqa: E402
from chrnn_plugin.testing.reference import reference_forward  # noqa: E402


def resnet50_levels(image_size: int) -> tuple[tuple[int, int, int], ...]:
    """(C, H, W) of ResNet-50's stages 3 and 4 (C4, C5): strides 16 and 32."""
    c4, c5 = -(-image_size // 16), -(-image_size // 32)
    return (1024, c4, c4), (2048, c5, c5)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--device', default='cpu', help="'cpu' or 'cuda'")
    parser.add_argument('--batch-size', type=int, default=32)
    parser.add_argument('--hidden-channels', type=int, default=256)
    parser.add_argument(
        '--image-size', type=int, default=224, help='input size of ResNet-50; sets the map sizes'
    )
    parser.add_argument('--repeats', type=int, default=3, help='timed runs; the median is kept')
    parser.add_argument(
        '--amp', choices=['none', 'bf16', 'fp16'], default='none', help='autocast dtype'
    )
    parser.add_argument('--skip-reference', action='store_true', help='skip the slow loop')
    parser.add_argument('--out', help='also write the figures to this JSON file')
    return parser.parse_args()


class Bench:
    """Times and measures callables on one device."""

    def __init__(self, device: torch.device, repeats: int, amp: str) -> None:
        self.device = device
        self.repeats = repeats
        dtype = {'bf16': torch.bfloat16, 'fp16': torch.float16}.get(amp)
        self.autocast = (
            (lambda: torch.autocast(device.type, dtype=dtype)) if dtype else (lambda: nullcontext())
        )

    def _sync(self) -> None:
        if self.device.type == 'cuda':
            torch.cuda.synchronize(self.device)

    def seconds(self, fn: Callable[[], object], repeats: int | None = None, warm_up=True) -> float:
        """Median wall time of ``fn``, after one warm-up run unless told otherwise."""
        with self.autocast():
            if warm_up:
                fn()
            times = []
            for _ in range(repeats or self.repeats):
                self._sync()
                start = time.perf_counter()
                fn()
                self._sync()
                times.append(time.perf_counter() - start)
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

    def flops(self, fn: Callable[[], object]) -> int:
        with self.autocast(), FlopCounterMode(display=False) as counter:
            fn()
        return counter.get_total_flops()


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


def build_neck(neck_type: str, hidden: int, levels, device: torch.device) -> torch.nn.Module:
    cfg = dict(type=neck_type, in_channels=tuple(c for c, _, _ in levels), hidden_channels=hidden)
    return MODELS.build(cfg).to(device)


def count_ops(neck_type: str, hidden: int, side: int, device: torch.device) -> int:
    neck = MODELS.build(dict(type=neck_type, in_channels=1024, hidden_channels=hidden)).to(device)
    x = torch.randn(2, 1024, side, side, device=device, requires_grad=True)
    return sum(count_dispatched_ops(forward_backward(neck, x)).values())


def main() -> None:
    args = parse_args()
    device = torch.device(args.device)
    bench = Bench(device, args.repeats, args.amp)
    console = Console()
    torch.manual_seed(0)
    levels = resnet50_levels(args.image_size)
    inputs = tuple(
        torch.randn(args.batch_size, c, h, w, device=device, requires_grad=True)
        for c, h, w in levels
    )
    results: dict = {
        'levels': levels,
        'image_size': args.image_size,
        'device': str(device),
        'batch_size': args.batch_size,
        'hidden_channels': args.hidden_channels,
        'amp': args.amp,
        'threads': torch.get_num_threads(),
    }

    console.print(
        f'ResNet-50 forward+backward, batch {args.batch_size} at {args.image_size} px ...'
    )
    resnet = MODELS.build(dict(type='ResNet', depth=50)).to(device)
    images = torch.randn(args.batch_size, 3, args.image_size, args.image_size, device=device)
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

    for neck_type in ('HSRNNeck', 'HLSTMNeck'):
        console.print(f'{neck_type} ...')
        neck = build_neck(neck_type, args.hidden_channels, levels, device)
        fast_step = forward_backward(neck, inputs)
        entry = {
            'fwd_s': bench.seconds(forward_only(neck, inputs)),
            'fwd_bwd_s': bench.seconds(fast_step),
            'fwd_bwd_peak_bytes': bench.peak_bytes(fast_step),
            'fwd_bwd_flops': bench.flops(fast_step),
            'ops_14x14': count_ops(neck_type, args.hidden_channels, 14, device),
            'ops_28x28': count_ops(neck_type, args.hidden_channels, 28, device),
        }
        if not args.skip_reference:
            console.print(f'{neck_type} reference loop ...')

            def reference(x, neck=neck):
                return reference_forward(neck, x)

            slow_step = forward_backward(neck, inputs, reference)
            # One run each: the loop is pure Python, minutes long, and gains nothing from warm-up.
            entry['reference_fwd_s'] = bench.seconds(
                forward_only(neck, inputs, reference), 1, warm_up=False
            )
            entry['reference_fwd_bwd_s'] = bench.seconds(slow_step, 1, warm_up=False)
            entry['reference_fwd_bwd_peak_bytes'] = bench.peak_bytes(slow_step)
        results[neck_type] = entry
        del neck

    results.update(measure_peers(bench, args.hidden_channels, levels, inputs, device, console))
    add_params(results, args.hidden_channels, levels)
    report(console, results)
    report_context_necks(console, results)
    if args.out:
        with open(args.out, 'w') as f:
            json.dump(results, f, indent=2)


MIB = 2**20
#: (row name, formatter of one neck's results): the cost rows both tables show.
COST_ROWS = [
    ('fwd ms', lambda r: f'{1e3 * r["fwd_s"]:.1f}'),
    ('fwd+bwd ms', lambda r: f'{1e3 * r["fwd_bwd_s"]:.1f}'),
    ('fwd+bwd peak MiB', lambda r: f'{r["fwd_bwd_peak_bytes"] / MIB:.0f}'),
]


def report(console: Console, results: dict) -> None:
    resnet = results['resnet50']
    gap = results['gap']
    table = Table(
        title=(
            f'Necks on C4+C5 of ResNet-50 at {results["image_size"]} px '
            f'({" + ".join("x".join(map(str, level)) for level in results["levels"])}), '
            f'batch {results["batch_size"]}, '
            f'D={results["hidden_channels"]}, {results["device"]}, amp={results["amp"]}, '
            f'{results["threads"]} threads'
        )
    )
    for column in ('measure', 'HSRNNeck', 'HLSTMNeck'):
        table.add_column(column, justify='right' if column != 'measure' else 'left')
    rows = []
    checks = []
    for neck_type in ('HSRNNeck', 'HLSTMNeck'):
        r = results[neck_type]
        flop_share = r['fwd_bwd_flops'] / resnet['fwd_bwd_flops']
        time_share = r['fwd_bwd_s'] / resnet['fwd_bwd_s']
        r['flop_share_of_resnet50'] = flop_share
        r['time_share_of_resnet50'] = time_share
        r['time_share_over_flop_share'] = time_share / flop_share
        r['ops_growth_14_to_28'] = r['ops_28x28'] / r['ops_14x14']
        checks.append(
            (
                neck_type,
                f'op growth 14->28 <= {OP_GROWTH_LIMIT}',
                r['ops_growth_14_to_28'] <= OP_GROWTH_LIMIT,
            )
        )
        checks.append(
            (neck_type, 'time share <= 1.5 x FLOP share', r['time_share_over_flop_share'] <= 1.5)
        )
        if 'reference_fwd_bwd_s' in r:
            r['speedup_vs_reference'] = r['reference_fwd_bwd_s'] / r['fwd_bwd_s']
            target = 20 if results['device'].startswith('cuda') else 2
            checks.append(
                (
                    neck_type,
                    f'fwd+bwd >= {target}x faster than reference',
                    r['speedup_vs_reference'] >= target,
                )
            )
    rows = [
        *COST_ROWS,
        ('reference fwd ms', lambda r: f'{1e3 * r.get("reference_fwd_s", float("nan")):.1f}'),
        (
            'reference fwd+bwd ms',
            lambda r: f'{1e3 * r.get("reference_fwd_bwd_s", float("nan")):.1f}',
        ),
        (
            'reference peak MiB',
            lambda r: f'{r.get("reference_fwd_bwd_peak_bytes", float("nan")) / MIB:.0f}',
        ),
        (
            'speed-up vs reference (fwd+bwd)',
            lambda r: f'{r.get("speedup_vs_reference", float("nan")):.1f}x',
        ),
        ('fwd+bwd time / GAP', lambda r: f'{r["fwd_bwd_s"] / gap["fwd_bwd_s"]:.0f}x'),
        (
            'fwd+bwd peak / GAP',
            lambda r: f'{r["fwd_bwd_peak_bytes"] / max(gap["fwd_bwd_peak_bytes"], 1):.0f}x',
        ),
        ('fwd+bwd GFLOPs', lambda r: f'{r["fwd_bwd_flops"] / 1e9:.1f}'),
        ('FLOPs / ResNet-50 fwd+bwd', lambda r: f'{r["flop_share_of_resnet50"]:.3f}'),
        ('time / ResNet-50 fwd+bwd', lambda r: f'{r["time_share_of_resnet50"]:.3f}'),
        ('time share / FLOP share', lambda r: f'{r["time_share_over_flop_share"]:.2f}'),
        ('ops fwd+bwd at 14x14', lambda r: str(r['ops_14x14'])),
        ('ops fwd+bwd at 28x28', lambda r: str(r['ops_28x28'])),
        ('op growth 14 -> 28', lambda r: f'{r["ops_growth_14_to_28"]:.2f}x'),
    ]
    for name, fmt in rows:
        table.add_row(name, fmt(results['HSRNNeck']), fmt(results['HLSTMNeck']))
    console.print(table)
    console.print(
        f'Baselines: ResNet-50 fwd+bwd {1e3 * resnet["fwd_bwd_s"]:.0f} ms, '
        f'{resnet["fwd_bwd_flops"] / 1e9:.0f} GFLOPs; GAP fwd+bwd {1e3 * gap["fwd_bwd_s"]:.2f} ms, '
        f'peak {gap["fwd_bwd_peak_bytes"] / MIB:.1f} MiB'
    )
    for neck_type, name, ok in checks:
        console.print(f'{"PASS" if ok else "FAIL"}  {neck_type}: {name}')
    results['checks'] = [dict(neck=n, target=t, passed=ok) for n, t, ok in checks]


# The baselines beside the HRNN necks, with the display names of the side-by-side table.
PEER_NECKS = {'RegionSelfAttentionNeck': 'Attention', 'ReNetNeck': 'ReNet'}
CONTEXT_NECKS = {'HSRNNeck': 'HSRN', 'HLSTMNeck': 'HLSTM', **PEER_NECKS}


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


def num_params(neck_type: str, hidden: int, levels) -> int:
    """Parameters of the neck as the benchmark builds it."""
    return sum(
        p.numel() for p in build_neck(neck_type, hidden, levels, torch.device('cpu')).parameters()
    )


def measure_peers(
    bench: Bench, hidden: int, levels, inputs, device: torch.device, console: Console
) -> dict:
    """Time, peak memory and FLOPs of the baseline context necks on the same inputs."""
    results = {}
    for neck_type in PEER_NECKS:
        console.print(f'{neck_type} ...')
        neck = build_neck(neck_type, hidden, levels, device)
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


def add_params(results: dict, hidden: int, levels) -> None:
    """Parameter count of every context neck, beside its other figures."""
    for neck_type in CONTEXT_NECKS:
        results[neck_type]['params'] = num_params(neck_type, hidden, levels)


def report_context_necks(console: Console, results: dict) -> None:
    """HSRN and HLSTM beside self-attention and ReNet: cost per neck, one column each."""
    resnet = results['resnet50']
    gap = results['gap']
    table = Table(
        title=(
            f'Context necks side by side, batch {results["batch_size"]}, '
            f'D={results["hidden_channels"]}, {results["device"]}, amp={results["amp"]}'
        )
    )
    table.add_column('measure', justify='left')
    for name in ('GAP', *CONTEXT_NECKS.values()):
        table.add_column(name, justify='right')
    rows = [
        ('params (M)', lambda r: f'{r["params"] / 1e6:.2f}'),
        *COST_ROWS,
        ('fwd+bwd GFLOPs', lambda r: f'{r["fwd_bwd_flops"] / 1e9:.1f}'),
        (
            'FLOPs / ResNet-50 fwd+bwd',
            lambda r: f'{r["fwd_bwd_flops"] / resnet["fwd_bwd_flops"]:.3f}',
        ),
        ('time / ResNet-50 fwd+bwd', lambda r: f'{r["fwd_bwd_s"] / resnet["fwd_bwd_s"]:.3f}'),
        ('fwd+bwd time / GAP', lambda r: f'{r["fwd_bwd_s"] / gap["fwd_bwd_s"]:.0f}x'),
    ]
    gap_cells = {
        'params (M)': '0',
        'fwd ms': f'{1e3 * gap["fwd_s"]:.1f}',
        'fwd+bwd ms': f'{1e3 * gap["fwd_bwd_s"]:.1f}',
        'fwd+bwd peak MiB': f'{gap["fwd_bwd_peak_bytes"] / MIB:.0f}',
    }
    for name, fmt in rows:
        cells = [fmt(results[neck_type]) for neck_type in CONTEXT_NECKS]
        table.add_row(name, gap_cells.get(name, '-'), *cells)
    console.print(table)


if __name__ == '__main__':
    main()
