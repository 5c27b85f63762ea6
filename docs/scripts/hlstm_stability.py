"""Cell-state size and gradient balance of a neck at initialisation, per map size.

Produces the stability table of the concepts page::

    python docs/scripts/hlstm_stability.py --neck HLSTMNeck --cell-merge sum --sizes 7 14 28 56
    python docs/scripts/hlstm_stability.py --neck HLSTMNeck --sizes 7 14 28 56 128
    python docs/scripts/hlstm_stability.py --neck HSRNNeck --sizes 7 14 28 56 128

For each map size ``S`` it builds a fresh neck (``in_channels=256``,
``hidden_channels=64``, ``out_channels=64`` by default), feeds it
``relu(randn(2, 256, S, S))`` in float32, and reports

* the largest ``|c|`` (HLSTM) or ``|h|`` (HSRN) over every region, direction
  and image;
* the mean absolute gradient of ``neck(x)[0].sum()`` with respect to ``x`` at
  the four corner regions and at the centre region (the central 2x2 block when
  ``S`` is even), averaged over channels and images, and their ratio;
* whether the output and the input gradient are free of inf and NaN.
"""

import argparse

import torch

import chrnn_plugin  # noqa: F401  (registers the necks)
from chrnn_plugin.models import HLSTMNeck, HSRNNeck

NECKS = {'HLSTMNeck': HLSTMNeck, 'HSRNNeck': HSRNNeck}


def corner_and_centre(grad_map: torch.Tensor) -> tuple[float, float]:
    """Mean of an ``(S, S)`` map over its four corners and over its centre."""
    size = grad_map.shape[0]
    corners = grad_map[[0, 0, -1, -1], [0, -1, 0, -1]].mean()
    lo, hi = (size - 1) // 2, size // 2 + 1
    return corners.item(), grad_map[lo:hi, lo:hi].mean().item()


def measure(neck: torch.nn.Module, size: int, in_channels: int, batch: int) -> dict:
    """Largest state and corner / centre input gradient of ``neck`` on one random map."""
    largest = []

    def record(_module, _inputs, states):
        # The cell state for HLSTM (states = (h, c)), the hidden state for HSRN.
        largest.append(states[-1].detach().abs().max().item())

    hooks = [level.cell.register_forward_hook(record) for level in neck.levels]
    x = torch.relu(torch.randn(batch, in_channels, size, size)).requires_grad_()
    (vec,) = neck(x)
    vec.sum().backward()
    for hook in hooks:
        hook.remove()
    corner, centre = corner_and_centre(x.grad.abs().mean(dim=(0, 1)))
    return dict(
        state=max(largest),
        corner=corner,
        centre=centre,
        finite=bool(torch.isfinite(vec).all() and torch.isfinite(x.grad).all()),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--neck', choices=tuple(NECKS), default='HLSTMNeck')
    parser.add_argument('--cell-merge', default=None, help="HLSTMNeck: 'convex' or 'sum'")
    parser.add_argument('--sizes', type=int, nargs='+', default=[7, 14, 28, 56])
    parser.add_argument('--in-channels', type=int, default=256)
    parser.add_argument('--hidden-channels', type=int, default=64)
    parser.add_argument('--batch', type=int, default=2)
    parser.add_argument('--seed', type=int, default=0)
    args = parser.parse_args()

    kwargs = {} if args.cell_merge is None else dict(cell_merge=args.cell_merge)
    state_name = 'c' if args.neck == 'HLSTMNeck' else 'h'
    print(f'| map | max abs `{state_name}` | input gradient corner / centre | ratio | finite |')
    print('|---|---|---|---|---|')
    for size in args.sizes:
        torch.manual_seed(args.seed)
        neck = NECKS[args.neck](
            in_channels=args.in_channels,
            hidden_channels=args.hidden_channels,
            out_channels=args.hidden_channels,
            **kwargs,
        )
        row = measure(neck, size, args.in_channels, args.batch)
        ratio = row['corner'] / row['centre'] if row['centre'] > 0 else float('inf')
        print(
            f'| {size}x{size} | {row["state"]:.3g} | {row["corner"]:.2g} / {row["centre"]:.2g} '
            f'| {ratio:.3g} | {row["finite"]} |'
        )


if __name__ == '__main__':
    main()
