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
def _sweep_permutations(
    height: int, width: int, directions: tuple[str, ...]
) -> tuple[Tensor, Tensor]:
    rows = torch.arange(height).view(-1, 1).expand(height, width)
    cols = torch.arange(width).view(1, -1).expand(height, width)
    # Row-major rank of (diagonal, row): the order in which the sweep visits regions.
    visit_order = torch.argsort(((rows + cols) * height + rows).flatten())
    orders = []
    for direction in directions:
        flip_rows, flip_cols = DIRECTION_FLIPS[direction]
        source_rows = height - 1 - rows if flip_rows else rows
        source_cols = width - 1 - cols if flip_cols else cols
        orders.append((source_rows * width + source_cols).flatten()[visit_order])
    order = torch.stack(orders)
    return order, torch.argsort(order, dim=1)


def sweep_permutations(
    height: int, width: int, directions: tuple[str, ...], device: torch.device
) -> tuple[Tensor, Tensor]:
    """The sweep order of every direction and its inverse, both ``(K, H * W)``.

    ``order[k, m]`` is the row-major index of the ``m``-th region visited by
    direction ``k``; ``inverse[k, r]`` is the step ``m`` at which region ``r``
    is visited, so ``order[k, inverse[k, r]] == r``.
    """
    build = _sweep_permutations
    if torch.compiler.is_compiling():
        # Dynamo traces through lru_cache anyway (and warns), and torch.export
        # would cache its fake tensors: build in-graph.
        build = _sweep_permutations.__wrapped__
    order, inverse = build(height, width, tuple(directions))
    return order.to(device), inverse.to(device)


def sweep_order(
    height: int, width: int, directions: tuple[str, ...], device: torch.device
) -> Tensor:
    """Row-major index of the ``m``-th region visited by direction ``k``, ``(K, H * W)``."""
    return sweep_permutations(height, width, directions, device)[0]


# Both directions of the permutation are gathers (reads by index), never
# writes into a buffer: tracers and the TorchScript-based ONNX exporter drop
# in-place index writes from the graph.
def sweep_rows(order: Tensor, batch: int) -> Tensor:
    """Rows of a region-major ``(R * N * K, C)`` view that sweep order ``(K, R, N)`` reads."""
    k = order.shape[0]
    n = torch.arange(batch, device=order.device)
    direction = torch.arange(k, device=order.device).view(k, 1, 1)
    return ((order.unsqueeze(-1) * batch + n) * k + direction).flatten()


def to_sweep_order(regions: Tensor, order: Tensor) -> Tensor:
    """``(R, N, K, C)`` -> ``(K, R, N, C)``: ``out[k, m] = regions[order[k, m], :, k]``.

    One ``index_select`` of whole channel vectors from the contiguous input,
    not advanced indexing on a permuted view.
    """
    r, n, k, c = regions.shape
    rows = sweep_rows(order, n)
    return regions.reshape(-1, c).index_select(0, rows).view(k, r, n, c)


def region_rows(inverse: Tensor, place: Tensor, rows_per_direction: int, batch: int) -> Tensor:
    """Rows of a ``(K * rows_per_direction * N, C)`` sweep buffer read into region-major order.

    ``place[m]`` is the buffer row of the ``m``-th region visited (``m`` itself
    for a buffer in plain sweep order); the result lists region ``r``, image
    ``n``, direction ``k`` in the order of ``(R, N, K)``.
    """
    k = inverse.shape[0]
    n = torch.arange(batch, device=inverse.device).view(1, batch, 1)
    direction = torch.arange(k, device=inverse.device).view(1, 1, k)
    row = place[inverse].t().reshape(-1, 1, k)  # (R, 1, K)
    return ((direction * rows_per_direction + row) * batch + n).flatten()


def from_sweep_order(swept: Tensor, inverse: Tensor) -> Tensor:
    """The inverse of :func:`to_sweep_order`: ``(K, R, N, C)`` -> ``(R, N, K, C)``.

    ``out[r, :, k] = swept[k, inverse[k, r]]``: a gather by the inverse
    permutation, of whole channel vectors, written out contiguous in one copy.
    """
    k, r, n, c = swept.shape
    rows = region_rows(inverse, torch.arange(r, device=swept.device), r, n)
    return swept.reshape(-1, c).index_select(0, rows).view(r, -1, k, c)


class _ToSweepOrder(torch.autograd.Function):
    # Autograd's own backward of a gather is a scatter-add (index_put_ with
    # accumulation); a permutation only needs the gather by the inverse.
    @staticmethod
    def forward(ctx, regions: Tensor, order: Tensor, inverse: Tensor) -> Tensor:
        ctx.save_for_backward(inverse)
        return to_sweep_order(regions, order)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None, None]:
        (inverse,) = ctx.saved_tensors
        return from_sweep_order(grad, inverse), None, None


class _FromSweepOrder(torch.autograd.Function):
    @staticmethod
    def forward(ctx, swept: Tensor, order: Tensor, inverse: Tensor) -> Tensor:
        ctx.save_for_backward(order)
        return from_sweep_order(swept, inverse)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None, None]:
        (order,) = ctx.saved_tensors
        return to_sweep_order(grad, order), None, None


def _predecessors(states: States, offset: int, size: int) -> tuple[States, States]:
    """Left and upper neighbours of a diagonal, taken from the diagonal before.

    ``states`` hold the previous diagonal, rows ``lo_prev ..`` of the grid, as
    ``(K, n_prev, N, D)``; the new diagonal has ``size`` rows from
    ``lo_prev + offset`` (``offset`` is 0 or 1). Region ``i`` has its left
    neighbour at previous row ``i`` and its upper one at row ``i - 1``; a row
    outside the previous diagonal is a border, whose state is zero. Built from
    concatenations and splits, whose backward passes copy no more than the
    rows they keep.
    """
    left, above = [], []
    for state in states:
        zero = state.new_zeros(state.shape[0], 1, *state.shape[2:])
        left.append(_rows(state, offset, offset + size, zero))
        above.append(_rows(state, offset - 1, offset - 1 + size, zero))
    return tuple(left), tuple(above)


def _rows(state: Tensor, start: int, stop: int, zero: Tensor) -> Tensor:
    """Rows ``start:stop`` of ``state``, where row -1 and row ``n`` are ``zero``."""
    n = state.shape[1]
    inner = state
    if start > 0 or min(stop, n) < n:
        lo, hi = max(start, 0), min(stop, n)
        inner = state.split([lo, hi - lo, n - hi], dim=1)[1]
    parts = ([zero] if start < 0 else []) + [inner] + ([zero] if stop > n else [])
    return torch.cat(parts, dim=1) if len(parts) > 1 else inner


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
            every region, region-major ``(H, W, N, K * G * D)``, directions
            outermost in the last dimension.
        directions (tuple[str]): the ``K`` sweep origins, in the order of the
            weights.

    Returns:
        Tensor: the hidden states ``[h^1; ...; h^K]`` of every region,
        ``(H, W, N, K * D)``.
    """
    height, width, n, _ = pre_activation.shape
    k = len(directions)
    d = cell.hidden_channels
    order, inverse = sweep_permutations(height, width, directions, pre_activation.device)
    regions = pre_activation.reshape(height * width, n, k, -1)
    in_sweep_order = _ToSweepOrder.apply(regions, order, inverse)  # (K, HW, N, G*D)

    bounds = [diagonal_bounds(height, width, step) for step in range(height + width - 1)]
    # One split, not a slice per step: a slice's backward materialises a
    # zero gradient of the whole input, once per step.
    per_step = in_sweep_order.split([last - first + 1 for first, last in bounds], dim=1)

    hidden_per_step = []
    previous: States | None = None
    previous_first_row = 0
    for (first_row, last_row), pre in zip(bounds, per_step):
        size = last_row - first_row + 1
        pre = pre.flatten(1, 2)
        if previous is None:
            states = cell(pre, None, None)
        else:
            left, above = _predecessors(previous, first_row - previous_first_row, size)
            states = cell(pre, _flat(left), _flat(above))
        previous = tuple(s.view(k, size, n, d) for s in states)
        hidden_per_step.append(previous[0])
        previous_first_row = first_row

    hidden = _FromSweepOrder.apply(
        torch.cat(hidden_per_step, dim=1), order, inverse
    )  # (HW, N, K, D)
    return hidden.view(height, width, n, k * d)
