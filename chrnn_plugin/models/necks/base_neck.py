"""What every context neck of this package shares: input checks, per-level maps, pooling.

A context neck takes one ``(N, C_s, H_s, W_s)`` map per backbone level,
computes one ``(N, out_channels, H_s, W_s)`` context map per level
(:meth:`ContextNeck.forward_maps`), and by default pools and concatenates
them into one vector (:meth:`ContextNeck.forward`). The HRNN necks
(:mod:`.hrnn_neck`) and the baseline necks (:mod:`.per_level_neck`) differ
only in how they compute the maps.
"""

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from mmengine.model import BaseModule, ModuleList
from torch import Tensor

from chrnn_plugin._checks import check_channels, check_choice, check_positive_int

GLOBAL_POOLS = ('avg', 'max', None)
OUT_LEVELS = ('all', 'last')


class ContextNeck(BaseModule):
    """Base of the context necks: checks, ``output_width``, ``forward_maps`` then pooling.

    Subclasses fill ``self.levels`` (one module per level) and implement
    :meth:`compute_maps`.

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
        self.in_channels = check_channels(owner, 'in_channels', in_channels)
        self.hidden_channels = check_positive_int(owner, 'hidden_channels', hidden_channels)
        if out_channels is None:
            out_channels = hidden_channels
        self.out_channels = check_positive_int(owner, 'out_channels', out_channels)
        self.global_pool = check_choice(owner, 'global_pool', global_pool, GLOBAL_POOLS)
        self.out_levels = check_choice(owner, 'out_levels', out_levels, OUT_LEVELS)
        # mmengine's ModuleList passes init_weights on to every level.
        self.levels: ModuleList = ModuleList()

    @property
    def num_levels(self) -> int:
        """Number of levels, extra ones counted."""
        return len(self.levels)

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

    def check_inputs(self, inputs) -> tuple[Tensor, ...]:
        """``inputs`` as a tuple of maps, or a clear error if they do not fit this neck."""
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
        # int(): under torch.jit.trace sizes are tensors, which compare by identity.
        channels = tuple(int(x.shape[1]) for x in inputs)
        if channels != self.in_channels:
            raise ValueError(
                f'{owner} expects {len(self.in_channels)} input levels with channels '
                f'{self.in_channels}, got {len(inputs)} levels with channels {channels}'
            )
        # Compared without int(): torch.export would fix a dynamic batch to the traced size.
        batch_sizes = tuple(x.shape[0] for x in inputs)
        if any(size != batch_sizes[0] for size in batch_sizes[1:]):
            raise ValueError(
                f'{owner} expects the same batch size at every input level, '
                f'got {tuple(int(size) for size in batch_sizes)}'
            )
        return tuple(inputs)

    def compute_maps(self, inputs: tuple[Tensor, ...]) -> list[Tensor]:
        """The output map of every level, finest first, from checked ``inputs``."""
        raise NotImplementedError(f'{type(self).__name__} must implement compute_maps')

    def forward_maps(self, inputs: Tensor | Sequence[Tensor]) -> tuple[Tensor, ...]:
        """The per-level output maps, before global pooling.

        Exactly what :meth:`forward` returns with ``global_pool=None``,
        whatever ``global_pool`` is set to; ``out_levels`` applies.

        Args:
            inputs (Tensor | tuple[Tensor]): ``(N, C_s, H_s, W_s)`` per input
                level, finest first; a single tensor for one level.

        Returns:
            tuple[Tensor]: one ``(N, out_channels, H_s, W_s)`` map per output
            level, finest first (only the coarsest for ``out_levels='last'``).
        """
        outputs = self.compute_maps(self.check_inputs(inputs))
        if self.out_levels == 'last':
            outputs = outputs[-1:]
        return tuple(outputs)

    def forward(self, inputs: Tensor | Sequence[Tensor]) -> tuple[Tensor, ...]:
        """:meth:`forward_maps`, then pool and concatenate as configured.

        Args:
            inputs (Tensor | tuple[Tensor]): ``(N, C_s, H_s, W_s)`` per input
                level, finest first; a single tensor for one level.

        Returns:
            tuple[Tensor]: ``(vec,)`` with ``vec`` of shape
            ``(N, output_width)`` when ``global_pool`` is set, else one
            ``(N, out_channels, H_s, W_s)`` map per output level.
        """
        outputs = self.forward_maps(inputs)
        if self.global_pool is None:
            return outputs
        pool = F.adaptive_avg_pool2d if self.global_pool == 'avg' else F.adaptive_max_pool2d
        return (torch.cat([pool(y, 1).flatten(1) for y in outputs], dim=1),)
