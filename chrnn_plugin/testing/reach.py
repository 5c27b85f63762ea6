"""Reach of a context neck: how much an output region depends on input regions far away.

The reach at distance ``d`` along a line is

.. math::
    r(d) = \\frac{\\overline{|\\partial Y_p / \\partial x_{q(d)}|}}
                {\\overline{|\\partial Y_p / \\partial x_{q(1)}|}}

where :math:`Y_p` is the sum over channels of the neck's first output map at
region ``p``, the bar is the mean over input channels and batch elements, and
``q(d)`` is the input region ``d`` cells from ``p`` along the line:

* ``'row'``: ``p`` on the right edge, in the middle row; ``q`` ``d`` columns
  to its left;
* ``'column'``: ``p`` on the bottom edge, in the middle column; ``q`` ``d``
  rows above it;
* ``'off_axis'``: ``p`` as for ``'row'``; ``q`` ``d`` columns to its left and
  ``d // 2`` rows above it.

One backward pass gives the dependence of ``Y_p`` on every input region, so a
profile costs two backward passes (one per output region) whatever the number
of distances. A neck with four sweep directions sees every line from both
ends, so the rows above and below ``p`` are equivalent.
"""

from collections.abc import Sequence

import torch
from torch import Tensor, nn

#: The lines a reach profile is measured along.
LINES = ('row', 'column', 'off_axis')


def input_maps(
    channels: int, size: int, batch: int = 4, seed: int = 1, device='cpu', dtype=torch.float32
) -> Tensor:
    """``relu(randn)`` input maps ``(batch, channels, size, size)``, like post-ReLU features."""
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, channels, size, size, generator=generator)
    return torch.relu(x).to(device=device, dtype=dtype)


def dependence_map(neck: nn.Module, x: Tensor, region: tuple[int, int]) -> Tensor:
    """Mean ``|dY_p / dx_q|`` over input channels and batch, for every ``q``: ``(H, W)``."""
    x = x.detach().requires_grad_()
    first_map = neck.forward_maps(x)[0]
    first_map[:, :, region[0], region[1]].sum().backward()
    return x.grad.abs().mean(dim=(0, 1))


def _output_region(line: str, size: int) -> tuple[int, int]:
    middle = size // 2
    return (size - 1, middle) if line == 'column' else (middle, size - 1)


def _input_region(line: str, size: int, distance: int) -> tuple[int, int]:
    row, col = _output_region(line, size)
    if line == 'row':
        return row, col - distance
    if line == 'column':
        return row - distance, col
    return row - distance // 2, col - distance


def reach_profile(
    neck: nn.Module,
    x: Tensor,
    distances: Sequence[int],
    lines: Sequence[str] = LINES,
) -> dict[str, list[float]]:
    """Reach ``r(d)`` of ``neck`` on input ``x`` for every line and distance.

    Args:
        neck (nn.Module): a context neck with ``forward_maps`` (its first
            output map is the one measured).
        x (Tensor): one input level ``(N, C, S, S)``, square.
        distances (Sequence[int]): the distances ``d``, each from 1 to
            ``S - 1`` (and ``d // 2 <= S // 2`` for ``'off_axis'``).
        lines (Sequence[str]): a subset of :data:`LINES`.

    Returns:
        dict[str, list[float]]: per line, ``r(d)`` for every distance, relative
        to ``d = 1`` on the same line.

    Examples::

        >>> from chrnn_plugin.models import HSRNNeck
        >>> neck = HSRNNeck(in_channels=8, hidden_channels=8)
        >>> profile = reach_profile(neck, input_maps(8, 12), distances=(1, 6))
        >>> sorted(profile), profile['row'][0]
        (['column', 'off_axis', 'row'], 1.0)
    """
    size = x.shape[-1]
    if x.dim() != 4 or x.shape[-2] != size:
        raise ValueError(
            f'reach_profile: x must be one square map (N, C, S, S), got {tuple(x.shape)}'
        )
    unknown = [line for line in lines if line not in LINES]
    if unknown:
        raise ValueError(f'reach_profile: unknown line(s) {unknown}; expected a subset of {LINES}')
    profile = {}
    maps = {}
    for line in lines:
        region = _output_region(line, size)
        if region not in maps:
            maps[region] = dependence_map(neck, x, region)
        grad = maps[region]
        near = grad[_input_region(line, size, 1)]
        values = []
        for distance in distances:
            row, col = _input_region(line, size, distance)
            if not (0 <= row < size and 0 <= col < size) or distance < 1:
                raise ValueError(
                    f'reach_profile: distance {distance} along {line!r} leaves the '
                    f'{size}x{size} map'
                )
            values.append((grad[row, col] / near).item())
        profile[line] = values
    return profile
