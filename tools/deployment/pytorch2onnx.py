"""Export a trained classifier (backbone, HRNN neck, head) to ONNX, checked.

Usage::

    python tools/deployment/pytorch2onnx.py CONFIG CHECKPOINT --shape H W \\
        [--dynamic-batch] [--opset 18] [--exporter torchscript|dynamo] \\
        [--out model.onnx] [--atol 1e-4]

The graph maps normalised images ``(N, 3, H, W)`` (the data preprocessor's
output: mean subtracted, divided by std, channels as the config orders them)
to the head's logits ``(N, num_classes)``, before any softmax.

The neck's wavefront sweep is unrolled for the traced H x W, so the exported
model computes the right answer for that input size only. Its input has fixed
height and width, and onnxruntime refuses any other size with ``Got invalid
dimensions for input``. The batch is 1, or free with ``--dynamic-batch``.

Before writing the file, the tool runs onnxruntime and PyTorch on the same
random inputs (batch 1, and batch 3 with ``--dynamic-batch``) and prints the
max abs difference. Above ``--atol`` it writes nothing and exits with status 1.
"""

import argparse
import os.path as osp
import sys

from chrnn_plugin.engine import quiet

quiet.silence_known_warnings()

import chrnn_plugin  # noqa: E402,F401  (registers the necks and the safe checkpoint loader)
from chrnn_plugin.deployment import (  # noqa: E402
    EXPORTERS,
    ClassifierLogits,
    OnnxDependencyError,
    OnnxParityError,
    check_export_packages,
    export_checked,
)
from chrnn_plugin.engine import cli  # noqa: E402

CHECK_BATCH = 3


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = cli.checkpoint_tool_parser(__doc__.split('\n\n')[0])
    parser.add_argument('config', help='config file of the trained model')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument(
        '--shape',
        type=int,
        nargs=2,
        required=True,
        metavar=('H', 'W'),
        help='input height and width; the exported model accepts this size only',
    )
    parser.add_argument(
        '--dynamic-batch', action='store_true', help='leave the batch dimension free (else 1)'
    )
    parser.add_argument('--opset', type=int, default=18, help='ONNX opset version (default 18)')
    parser.add_argument(
        '--exporter',
        choices=EXPORTERS,
        default='torchscript',
        help='torch.onnx.export(dynamo=False) or the torch.export-based exporter',
    )
    parser.add_argument('--out', help='output file (default: the checkpoint with .onnx)')
    parser.add_argument(
        '--atol',
        type=float,
        default=1e-4,
        help='largest max abs difference from PyTorch accepted (default 1e-4)',
    )
    cli.add_trust_checkpoint_argument(parser)
    cli.add_cfg_options_argument(parser)
    args = parser.parse_args(argv)
    if min(args.shape) <= 0:
        parser.error(f'--shape: height and width must be positive, got {args.shape}')
    if not args.atol >= 0:
        parser.error(f'--atol: must be >= 0, got {args.atol}')
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        # Before the checkpoint is read and the model traced, not in torch's traceback after.
        check_export_packages(args.exporter)
    except OnnxDependencyError as error:
        print(f'error: {error}', file=sys.stderr)
        return 1
    cli.apply_trust_checkpoint(args)
    classifier = cli.build_model(cli.load_config(args.config, args.cfg_options))
    cli.load_weights(classifier, args.checkpoint)
    model = ClassifierLogits(classifier).eval()

    out = args.out or osp.splitext(args.checkpoint)[0] + '.onnx'
    height, width = args.shape
    print(
        f'Exporting with the {args.exporter} exporter at {height}x{width}, batch '
        f'{"dynamic" if args.dynamic_batch else 1}, opset {args.opset}. The sweep is unrolled '
        f'for {height}x{width}: the exported model accepts that input size only.'
    )
    try:
        diffs = export_checked(
            model,
            (3, height, width),
            out,
            atol=args.atol,
            exporter=args.exporter,
            opset=args.opset,
            dynamic_batch=args.dynamic_batch,
            check_batch=CHECK_BATCH,
        )
    except OnnxParityError as error:
        print(f'REFUSED: {error}', file=sys.stderr)
        return 1
    for batch, diff in diffs.items():
        print(f'onnxruntime vs PyTorch, batch {batch}: max abs diff {diff:.3g}')
    print(f'Wrote {out}: input "images" (N, 3, {height}, {width}) normalised, output "logits".')
    return 0


if __name__ == '__main__':
    sys.exit(main())
