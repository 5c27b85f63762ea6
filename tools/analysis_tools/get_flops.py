"""Count the parameters and FLOPs of a classifier: backbone, neck and head.

Usage::

    python tools/analysis_tools/get_flops.py CONFIG [--shape 224] [--show-table]

The whole classifier is traced (``extract_feat`` and the head, i.e.
``model(inputs, mode='tensor')``) with MMEngine's ``FlopAnalyzer``. Conventions:
one multiply-add counts as one FLOP for convolutions and matrix products (as in
fvcore/MMEngine and most papers); element-wise operations (add, mul, sigmoid,
tanh, pooling, ...) count one FLOP per element; data movement (indexing,
reshapes, concatenation) and ReLU count zero. Operators with no formula are
not hidden: they are listed in the last line of the report as uncounted.
"""

import argparse
from collections import Counter
from math import prod
from typing import Any

from chrnn_plugin.engine import quiet

quiet.silence_known_warnings()

import torch  # noqa: E402
from mmengine.analysis import FlopAnalyzer, parameter_count  # noqa: E402
from mmengine.analysis.jit_handles import get_shape  # noqa: E402

import chrnn_plugin  # noqa: E402,F401  (registers our necks even if the config forgets custom_imports)
from chrnn_plugin.engine import cli  # noqa: E402

# One FLOP per output element.
ELEMENTWISE_OUTPUT_OPS = (
    'aten::add',
    'aten::add_',
    'aten::sub',
    'aten::sub_',
    'aten::rsub',
    'aten::mul',
    'aten::mul_',
    'aten::div',
    'aten::div_',
    'aten::addcmul',
    'aten::sigmoid',
    'aten::sigmoid_',
    'aten::tanh',
    'aten::tanh_',
    'aten::exp',
    'aten::softmax',
    'aten::maximum',
    'aten::minimum',
    'aten::leaky_relu',
    'aten::leaky_relu_',
    'aten::gelu',
    'aten::hardtanh',
    'aten::hardtanh_',
)
# One FLOP per input element (reductions and pooling).
ELEMENTWISE_INPUT_OPS = (
    'aten::max_pool2d',
    'aten::adaptive_max_pool2d',
    'aten::avg_pool2d',
    'aten::mean',
    'aten::sum',
    'aten::amax',
)
# Data movement: zero FLOPs, listed so they are not reported as uncounted.
ZERO_FLOP_OPS = (
    'aten::index_select',
    'aten::flip',
    'aten::pad',
    'aten::max_pool2d_with_indices',
    'aten::expand_as',
    'aten::repeat',
    'aten::clone',
    'aten::fill_',
    'aten::zero_',
    'aten::feature_dropout',
    'aten::alpha_dropout',
    'aten::diagonal',
    'aten::as_strided',
    'aten::empty_like',
)


def _numel(value: Any) -> int:
    shape = get_shape(value)
    return prod(shape) if shape else 1


def _per_output_element(inputs: list, outputs: list) -> int:
    return _numel(outputs[0])


def _per_input_element(inputs: list, outputs: list) -> int:
    return _numel(inputs[0])


def _zero(inputs: list, outputs: list) -> int:
    return 0


def _baddbmm(inputs: list, outputs: list) -> int:
    # baddbmm(bias, batch1 (B x N x K), batch2 (B x K x M)): count the product's
    # multiply-adds, like MMEngine's addmm handle (the bias add is not counted).
    b, n, k = get_shape(inputs[1])
    m = get_shape(inputs[2])[-1]
    return b * n * k * m


def flop_analyzer(model: torch.nn.Module, inputs: tuple) -> FlopAnalyzer:
    """A ``FlopAnalyzer`` with our handles for element-wise, batched-matmul and indexing ops."""
    analyzer = FlopAnalyzer(model, inputs)
    handles = {'aten::baddbmm': _baddbmm}
    handles.update(dict.fromkeys(ELEMENTWISE_OUTPUT_OPS, _per_output_element))
    handles.update(dict.fromkeys(ELEMENTWISE_INPUT_OPS, _per_input_element))
    handles.update(dict.fromkeys(ZERO_FLOP_OPS, _zero))
    analyzer.set_op_handle(**handles)
    # We report unsupported ops ourselves, in one summary line.
    analyzer.unsupported_ops_warnings(False)
    analyzer.uncalled_modules_warnings(False)
    analyzer.tracer_warnings('none')
    return analyzer


def _fmt(number: float) -> str:
    for unit, scale in (('G', 1e9), ('M', 1e6), ('K', 1e3)):
        if abs(number) >= scale:
            return f'{number / scale:.3f}{unit}'
    return f'{number:.0f}'


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse the command line."""
    parser = argparse.ArgumentParser(description='Count parameters and FLOPs of a classifier')
    parser.add_argument('config', help='config file path')
    parser.add_argument(
        '--shape',
        type=int,
        nargs='+',
        default=[224, 224],
        help='input image size: one value (square) or H W',
    )
    parser.add_argument('--show-table', action='store_true', help='also print the per-module table')
    cli.add_cfg_options_argument(parser)
    return parser.parse_args(argv)


def report(model: torch.nn.Module, input_shape: tuple[int, ...], show_table: bool = False) -> str:
    """Return the parameter and FLOP report of ``model`` on one image of ``input_shape``."""
    inputs = (torch.randn(1, *input_shape),)
    analyzer = flop_analyzer(model, inputs)
    flops_by_module = analyzer.by_module()
    params = parameter_count(model)
    total_flops = analyzer.total()

    lines = [f'Input shape: {tuple(input_shape)} (batch of 1)', '']
    lines.append(f'{"part":<10}{"type":<24}{"params":>12}{"FLOPs":>12}')
    parts = [name for name in ('backbone', 'neck', 'head') if getattr(model, name, None)]
    for name in parts:
        module = getattr(model, name)
        lines.append(
            f'{name:<10}{type(module).__name__:<24}'
            f'{_fmt(params.get(name, 0)):>12}{_fmt(flops_by_module.get(name, 0)):>12}'
        )
    lines.append(
        f'{"total":<10}{type(model).__name__:<24}{_fmt(params[""]):>12}{_fmt(total_flops):>12}'
    )
    lines.append('')

    by_op = Counter(analyzer.by_operator())
    lines.append(
        'FLOPs by operator: ' + ', '.join(f'{op} {_fmt(n)}' for op, n in by_op.most_common())
    )
    unsupported = analyzer.unsupported_ops()
    if unsupported:
        where = {}
        for name in parts:
            for op in analyzer.unsupported_ops(name):
                where.setdefault(op, []).append(name)
        listed = ', '.join(
            f'{op} x{count} (in {"/".join(where.get(op, ["model"]))})'
            for op, count in unsupported.most_common()
        )
        lines.append(f'Uncounted ops (no FLOP formula, counted as 0): {listed}')
    else:
        lines.append('Uncounted ops: none (every traced op has a FLOP formula or moves data only)')
    lines.append(
        'Convention: 1 multiply-add = 1 FLOP for conv/linear/matmul; element-wise ops and '
        'pooling 1 FLOP per element; data movement and ReLU 0.'
    )
    if show_table:
        from mmengine.analysis.print_helper import complexity_stats_table

        lines += ['', complexity_stats_table(analyzer, show_param_shapes=False)]
    return '\n'.join(lines)


def main(argv: list[str] | None = None) -> None:
    """Print the report for the config given on the command line."""
    args = parse_args(argv)
    if len(args.shape) == 1:
        input_shape = (3, args.shape[0], args.shape[0])
    elif len(args.shape) == 2:
        input_shape = (3, *args.shape)
    else:
        raise SystemExit(f'--shape takes one or two values, got {args.shape}')

    model = cli.build_model(cli.load_config(args.config, args.cfg_options))
    model.eval()
    if not hasattr(model, 'extract_feat'):
        raise SystemExit(f'get_flops.py supports classifiers with extract_feat, got {type(model)}')
    print(report(model, input_shape, show_table=args.show_table))


if __name__ == '__main__':
    main()
