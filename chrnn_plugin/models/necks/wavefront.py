"""Anti-diagonal wavefront scheduling of the 2-D recurrence.

A region depends only on its horizontal and vertical predecessor, which both
lie on the previous anti-diagonal of the sweep. So all regions of one
anti-diagonal are computed in one step: ``H + W - 1`` sequential steps per map
instead of ``H * W``, each step batching every region of the diagonal, every
direction and every batch element.

A direction is a sweep from one corner. Flipping the grid turns every sweep
into a sweep from the top-left corner, so all directions share one schedule:
a permutation that lists the regions of each (flipped) grid diagonal by
diagonal, applied once before the sweep and inverted once after it.
"""

from functools import lru_cache

import torch
from torch import Tensor

from .recurrent_cells import RecurrentCell2d, States

#: Sweep origin -> (flip rows, flip columns) that turns it into 'top_left'.
DIRECTION_FLIPS = {
    'top_left': (False, False),
    'top_right': (False, True),
    'bottom_left': (True, False),
    'bottom_right': (True, True),
}


def diagonal_bounds(height: int, width: int, step: int) -> tuple[int, int]:
    """First and last row of anti-diagonal ``step`` (regions with ``i + j == step``)."""
    return max(0, step - width + 1), min(step, height - 1)


@lru_cache(maxsize=256)
def _diagonal_permutation(height: int, width: int, directions: tuple[str, ...]) -> tuple:
    rows = torch.arange(height).view(-1, 1).expand(height, width)
    cols = torch.arange(width).view(1, -1).expand(height, width)
    # Row-major rank of (diagonal, row): the order in which the sweep visits regions.
    visit_key = ((rows + cols) * height + rows).flatten()
    visit_order = torch.argsort(visit_key)
    orders = []
    for direction in directions:
        flip_rows, flip_cols = DIRECTION_FLIPS[direction]
        source_rows = height - 1 - rows if flip_rows else rows
        source_cols = width - 1 - cols if flip_cols else cols
        orders.append((source_rows * width + source_cols).flatten()[visit_order])
    order = torch.stack(orders)
    return order, torch.argsort(order, dim=1)


def diagonal_permutation(
    height: int, width: int, directions: tuple[str, ...], device: torch.device
) -> tuple[Tensor, Tensor]:
    """Permutation from row-major regions to the sweep order of each direction.

    Returns:
        tuple: ``order`` and ``inverse``, both ``(K, H * W)``. ``order[k, m]``
        is the row-major index of the ``m``-th region visited by direction
        ``k``; ``inverse`` undoes it.
    """
    build = _diagonal_permutation
    if torch.compiler.is_compiling():
        # Dynamo traces through lru_cache anyway (and warns); build in-graph.
        build = _diagonal_permutation.__wrapped__
    order, inverse = build(height, width, tuple(directions))
    return order.to(device), inverse.to(device)


def _predecessors(states: States, offset: int, size: int) -> tuple[States, States]:
    """Left and upper neighbours of a diagonal, taken from the diagonal before.

    ``states`` hold the previous diagonal as ``(K, n_prev, N, D)``. Padding it
    with one zero region at each end makes both neighbours contiguous slices:
    region ``i`` of the new diagonal has its left neighbour at padded row
    ``i - lo_prev + 1`` and its upper one at ``i - lo_prev``; the zero pads
    are the missing predecessors at the borders. ``offset`` is
    ``lo_new - lo_prev`` (0 or 1) and ``size`` the length of the new diagonal.
    """
    left, above = [], []
    for state in states:
        padded = torch.nn.functional.pad(state, (0, 0, 0, 0, 1, 1))
        left.append(padded[:, offset + 1 : offset + 1 + size])
        above.append(padded[:, offset : offset + size])
    return tuple(left), tuple(above)


def _flat(states: States) -> States:
    return tuple(s.flatten(1, 2) for s in states)


def wavefront_sweep(
    cell: RecurrentCell2d, pre_activation: Tensor, directions: tuple[str, ...]
) -> Tensor:
    """Run ``cell`` over every region of a map in all ``directions`` at once.

    Args:
        cell (RecurrentCell2d): the recurrent unit, with weights for ``K``
            directions.
        pre_activation (Tensor): the input term ``a = U x + V z + b`` of
            every region, ``(N, K * G * D, H, W)``, directions outermost.
        directions (tuple[str]): the ``K`` sweep origins, in the order of the
            weights.

    Returns:
        Tensor: the hidden state ``h`` of every region, ``(N, K * D, H, W)``.
    """
    n, _, height, width = pre_activation.shape
    k = len(directions)
    d = cell.hidden_channels
    order, inverse = diagonal_permutation(height, width, directions, pre_activation.device)
    direction_index = torch.arange(k, device=pre_activation.device).view(k, 1)

    # (N, K, G*D, HW) -> (K, HW, N, G*D) in sweep order, one gather for all directions.
    grid = pre_activation.view(n, k, -1, height * width).permute(1, 3, 0, 2)
    in_sweep_order = grid[direction_index, order]

    hidden_per_step = []
    previous: States | None = None
    start = 0
    previous_first_row = 0
    for step in range(height + width - 1):
        first_row, last_row = diagonal_bounds(height, width, step)
        size = last_row - first_row + 1
        pre = in_sweep_order[:, start : start + size].flatten(1, 2)
        if previous is None:
            states = cell(pre, None, None)
        else:
            left, above = _predecessors(previous, first_row - previous_first_row, size)
            states = cell(pre, _flat(left), _flat(above))
        previous = tuple(s.view(k, size, n, d) for s in states)
        hidden_per_step.append(previous[0])
        start += size
        previous_first_row = first_row

    hidden = torch.cat(hidden_per_step, dim=1)[direction_index, inverse]
    # (K, HW, N, D) -> (N, K*D, H, W)
    return hidden.permute(2, 0, 3, 1).reshape(n, k * d, height, width)
