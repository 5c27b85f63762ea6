"""Reach of every context neck at initialisation: the table of the concepts page.

    python docs/scripts/reach_profile.py
    python docs/scripts/reach_profile.py --sizes 56 --distances 25 50

For each map size it builds every neck with 64 input channels and 32 hidden
units (seeded), feeds ``relu(randn)`` maps (batch 4) and prints the reach
``r(d)``: the mean ``|dY_p / dx_q|`` of an input region ``d`` cells away,
relative to ``d = 1``, along rows, columns and off-axis lines (``d`` columns
and ``d // 2`` rows away); see :mod:`chrnn_plugin.testing.reach`. With
``--check``, it exits 1 unless HSRN and HLSTM meet the targets (1e-2 at d = 21
on 28x28, 1e-3 at d = 50 on 56x56) on every line.
"""

import argparse
import sys

import torch

from chrnn_plugin.models import HLSTMNeck, HSRNNeck, RegionSelfAttentionNeck, ReNetNeck
from chrnn_plugin.testing.reach import LINES, input_maps, reach_profile

NECKS = {
    'HSRN': lambda: HSRNNeck(in_channels=64, hidden_channels=32),
    'HLSTM': lambda: HLSTMNeck(in_channels=64, hidden_channels=32),
    'HLSTM (sum)': lambda: HLSTMNeck(in_channels=64, hidden_channels=32, cell_merge='sum'),
    'ReNet': lambda: ReNetNeck(in_channels=64, hidden_channels=32),
    'self-attention': lambda: RegionSelfAttentionNeck(in_channels=64, hidden_channels=32),
}
DEFAULT_DISTANCES = {28: (7, 14, 21), 56: (25, 50)}
# (size, distance) -> smallest reach HSRN and HLSTM must have on every line.
TARGETS = {(28, 21): 1e-2, (56, 50): 1e-3}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split('\n\n')[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument('--sizes', type=int, nargs='+', default=[28, 56], help='map sizes S')
    parser.add_argument(
        '--distances',
        type=int,
        nargs='+',
        help='distances d (default: 7 14 21 on 28x28, 25 50 on 56x56, else S/4 S/2 S-6)',
    )
    parser.add_argument('--seed', type=int, default=0, help='seed of the weights')
    parser.add_argument('--check', action='store_true', help='exit 1 if a target is missed')
    args = parser.parse_args(argv)

    missed, checked = [], 0
    print('| neck | map | d | ' + ' | '.join(LINES) + ' |')
    print('|---|---|---|' + '---|' * len(LINES))
    for size in args.sizes:
        distances = args.distances or DEFAULT_DISTANCES.get(size, (size // 4, size // 2, size - 6))
        x = input_maps(64, size, seed=args.seed + 1)
        for name, build in NECKS.items():
            torch.manual_seed(args.seed)
            profile = reach_profile(build(), x, distances)
            for index, distance in enumerate(distances):
                values = [profile[line][index] for line in LINES]
                cells = ' | '.join(f'{v:.1e}' for v in values)
                print(f'| {name} | {size}x{size} | {distance} | {cells} |', flush=True)
                target = TARGETS.get((size, distance))
                if target and name in ('HSRN', 'HLSTM'):
                    checked += 1
                    if min(values) < target:
                        missed.append(
                            f'{name} {size}x{size} d={distance}: {min(values):.1e} < {target}'
                        )
    if not args.check:
        return 0
    for line in missed:
        print(f'FAIL {line}')
    if not checked:
        print('FAIL: --check measured no target (sizes 28 and 56 with d = 21 and 50)')
        return 1
    if missed:
        return 1
    print(f'PASS: HSRN and HLSTM meet the {checked} reach targets measured, on every line')
    return 0


if __name__ == '__main__':
    sys.exit(main())
