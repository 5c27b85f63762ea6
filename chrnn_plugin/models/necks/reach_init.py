r"""Initial values that let a 2-D recurrence carry a signal across the whole map.

A region has two predecessors. A unit that mixes them evenly halves an
axis-aligned signal at every region, because such a signal has only one path:
after 21 regions :math:`0.5^{21} \approx 5 \cdot 10^{-7}` is left. Mixing
with a weight :math:`\lambda` on the horizontal predecessor and
:math:`1 - \lambda` on the vertical one instead carries a signal from ``d``
columns and ``e`` rows away with the binomial weight

.. math::
    \binom{d + e}{d} \lambda^d (1 - \lambda)^e,

which is largest, about :math:`1 / \sqrt{2 \pi (d + e) \lambda (1 - \lambda)}`,
when :math:`\lambda = d / (d + e)`: a unit carries best along the slope its
mix points to, and loses only polynomially there. So the units of each
direction get mixes spread over (0, 1) (:func:`mix_spread`): the first units
follow the columns, the last follow the rows, the ones between every slope.

An LSTM unit also multiplies what it carries by its forget gate at every
region. Chrono initialisation (Tallec and Ollivier, ICLR 2018) gives unit
``j`` a forget bias :math:`\log(T_j - 1)`, so :math:`\sigma(f) = 1 - 1 / T_j`
keeps a signal over about :math:`T_j` regions, and an input bias
:math:`-\log(T_j - 1)`, so :math:`\sigma(i) = 1 - \sigma(f)` and the cell
state, an average of the candidates over the last :math:`T_j` regions, stays
within :math:`\pm 1` at rest (:func:`chrono_time_scales`).
"""

import math

import torch
from torch import Tensor

#: Longest time scale :math:`T` of the LSTM units at initialisation, in
#: regions: the length ``H + W`` of a 64x64 map's longest path.
LONGEST_TIME_SCALE = 128

# Golden-ratio stride: pairs unit j's mix (which grows with j) with a time
# scale from a low-discrepancy sequence, so every slope has long-memory units.
_GOLDEN = (math.sqrt(5) - 1) / 2


def mix_spread(hidden_channels: int) -> Tensor:
    r"""The mix weights :math:`\lambda_j = \sin^2(\frac{\pi}{2} \frac{j + 1/2}{D})` of ``D`` units.

    Quantiles of the arcsine law, increasing with ``j``: every slope gets
    units, and the axes, where one path alone carries the signal and a unit
    must keep nearly all of it per region, get the most.
    """
    quantile = (torch.arange(hidden_channels, dtype=torch.float64) + 0.5) / hidden_channels
    return torch.sin(0.5 * math.pi * quantile) ** 2


def chrono_time_scales(hidden_channels: int, longest: int = LONGEST_TIME_SCALE) -> Tensor:
    """Time scales :math:`T_j`, evenly spread over ``[2, longest]`` and shuffled against the mix.

    The quantiles ``(j * 0.618... + 1/2) mod 1`` place the units with long
    time scales among every range of mixes, whatever ``D`` is.
    """
    quantile = torch.remainder(
        torch.arange(hidden_channels, dtype=torch.float64) * _GOLDEN + 0.5, 1.0
    )
    return 2 + (longest - 2) * quantile


def logit(p: Tensor) -> Tensor:
    """:math:`\\log(p / (1 - p))`, the bias at which a sigmoid gate rests at ``p``."""
    return torch.log(p) - torch.log1p(-p)
