"""Wiring of the baseline context necks: one independent context module per input level.

:class:`~.region_attention.RegionSelfAttentionNeck` and :class:`~.renet.ReNetNeck`
take the same inputs and give the same outputs as the HRNN necks, so a config
can swap one for another. Unlike the HRNN necks they have no cross-scale
connections: each level is processed on its own, then pooled and concatenated.
"""

from torch import Tensor

from .base_neck import ContextNeck


class PerLevelContextNeck(ContextNeck):
    """Runs one context module per input level, on its own.

    Subclasses append to ``self.levels`` one module per input level, mapping
    ``(N, in_channels[s], H, W)`` to ``(N, out_channels, H, W)``, after
    calling ``__init__`` (the arguments of :class:`~.base_neck.ContextNeck`).
    """

    def compute_maps(self, maps: list[Tensor]) -> list[Tensor]:
        """Each level's context module on its own input map."""
        return [level(x) for level, x in zip(self.levels, maps)]


def to_tokens(x: Tensor) -> Tensor:
    """``(N, C, H, W)`` -> ``(N, H * W, C)``, regions in row-major order."""
    return x.flatten(2).transpose(1, 2)


def from_tokens(tokens: Tensor, height: int, width: int) -> Tensor:
    """``(N, H * W, C)`` -> ``(N, C, H, W)``."""
    return tokens.transpose(1, 2).reshape(tokens.shape[0], -1, height, width)
