"""Wiring of the baseline context necks: one independent context module per input level.

:class:`~.region_attention.RegionSelfAttentionNeck` and :class:`~.renet.ReNetNeck`
take the same inputs and give the same outputs as the HRNN necks, so a config
can swap one for another. Unlike the HRNN necks they have no cross-scale
connections: each level is processed on its own, then pooled and concatenated.
"""

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from mmengine.model import BaseModule, ModuleList
from torch import Tensor

from .hrnn_neck import GLOBAL_POOLS, OUT_LEVELS, _channels_tuple, _choice, _positive_int


def check_dropout(owner: str, dropout) -> float:
    """``dropout`` as a float in ``[0, 1)``, or a clear error."""
    if isinstance(dropout, bool) or not isinstance(dropout, (int, float)):
        raise TypeError(f'{owner}: dropout must be a float in [0, 1), got {dropout!r}')
    if not 0 <= dropout < 1:
        raise ValueError(f'{owner}: dropout must be in [0, 1), got {dropout!r}')
    return float(dropout)


class PerLevelContextNeck(BaseModule):
    """Runs one context module per input level, then pools and concatenates.

    Subclasses build ``self.levels`` (one module per input level, mapping
    ``(N, in_channels[s], H, W)`` to ``(N, out_channels, H, W)``) after calling
    this ``__init__``.

    Args:
        in_channels (int | Sequence[int]): channels of each input level, finest
            first; an int for a single level.
        hidden_channels (int): width of the context module.
        out_channels (int, optional): channels of each level's output.
            Defaults to ``hidden_channels``.
        global_pool (str | None): ``'avg'``, ``'max'`` or None to return the
            per-level maps.
        out_levels (str): ``'all'`` to concatenate every level's output,
            ``'last'`` for the coarsest level only.
        init_cfg (dict | list[dict], optional): MMEngine initialisation config.
    """

    def __init__(
        self,
        in_channels: int | Sequence[int],
        hidden_channels: int,
        out_channels: int | None,
        global_pool: str | None,
        out_levels: str,
        init_cfg: dict | list | None,
    ) -> None:
        super().__init__(init_cfg=init_cfg)
        owner = type(self).__name__
        self.in_channels = _channels_tuple(owner, in_channels)
        self.hidden_channels = _positive_int(owner, 'hidden_channels', hidden_channels)
        if out_channels is None:
            out_channels = hidden_channels
        self.out_channels = _positive_int(owner, 'out_channels', out_channels)
        self.global_pool = _choice(owner, 'global_pool', global_pool, GLOBAL_POOLS)
        self.out_levels = _choice(owner, 'out_levels', out_levels, OUT_LEVELS)
        self.levels: ModuleList = ModuleList()

    @property
    def num_levels(self) -> int:
        """Number of input levels."""
        return len(self.in_channels)

    @property
    def output_width(self) -> int:
        """Channels of the output: what the next module's ``in_channels`` must be.

        With ``global_pool`` set, the length of the single output vector:
        ``out_channels * num_levels`` for ``out_levels='all'``, else
        ``out_channels``. With ``global_pool=None``, the channels of every
        output map, ``out_channels``.
        """
        if self.global_pool is not None and self.out_levels == 'all':
            return self.out_channels * self.num_levels
        return self.out_channels

    def _check_inputs(self, inputs) -> tuple[Tensor, ...]:
        owner = type(self).__name__
        if isinstance(inputs, Tensor):
            inputs = (inputs,)
        if not isinstance(inputs, (tuple, list)) or not all(isinstance(x, Tensor) for x in inputs):
            raise TypeError(
                f'{owner} expects a tensor or a tuple of tensors (N, C, H, W), '
                f'got {type(inputs).__name__}'
            )
        for index, x in enumerate(inputs):
            if x.dim() != 4 or x.numel() == 0:
                raise ValueError(
                    f'{owner} expects non-empty 4-D input maps (N, C, H, W), '
                    f'got input level {index} with shape {tuple(x.shape)}'
                )
        channels = tuple(int(x.shape[1]) for x in inputs)
        if channels != self.in_channels:
            raise ValueError(
                f'{owner} expects {len(self.in_channels)} input levels with channels '
                f'{self.in_channels}, got {len(inputs)} levels with channels {channels}'
            )
        batch_sizes = tuple(int(x.shape[0]) for x in inputs)
        if len(set(batch_sizes)) > 1:
            raise ValueError(
                f'{owner} expects the same batch size at every input level, got {batch_sizes}'
            )
        return tuple(inputs)

    def forward(self, inputs: Tensor | Sequence[Tensor]) -> tuple[Tensor, ...]:
        """Run every level's context module, then pool and concatenate as configured.

        Args:
            inputs (Tensor | tuple[Tensor]): ``(N, C_s, H_s, W_s)`` per input
                level, finest first; a single tensor for one level.

        Returns:
            tuple[Tensor]: ``(vec,)`` with ``vec`` of shape
            ``(N, output_width)`` when ``global_pool`` is set, else one
            ``(N, out_channels, H_s, W_s)`` map per output level.
        """
        outputs = [level(x) for level, x in zip(self.levels, self._check_inputs(inputs))]
        if self.out_levels == 'last':
            outputs = outputs[-1:]
        if self.global_pool is None:
            return tuple(outputs)
        pool = F.adaptive_avg_pool2d if self.global_pool == 'avg' else F.adaptive_max_pool2d
        return (torch.cat([pool(y, 1).flatten(1) for y in outputs], dim=1),)


def to_tokens(x: Tensor) -> Tensor:
    """``(N, C, H, W)`` -> ``(N, H * W, C)``, regions in row-major order."""
    return x.flatten(2).transpose(1, 2)


def from_tokens(tokens: Tensor, height: int, width: int) -> Tensor:
    """``(N, H * W, C)`` -> ``(N, C, H, W)``."""
    return tokens.transpose(1, 2).reshape(tokens.shape[0], -1, height, width)
