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

from chrnn_plugin._checks import (
    check_bool,
    check_channels,
    check_choice,
    check_non_negative_int,
    check_positive_int,
)

from .residual import ScaledShortcut

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
        residual (bool): level ``s`` gives ``x_s + gamma_s * P_s y_s``
            (:class:`~.residual.ScaledShortcut`, ``gamma_s = 0`` at
            initialisation), ``C_s`` channels wide, instead of its context
            map ``y_s``. Defaults to False.
        extra_levels (int): extra coarser levels, each a 2x2 max pooling
            (ceil mode) of the level before's input; ``x_s`` of an extra
            level is that pooled map. Defaults to 0.
    """

    def __init__(
        self,
        in_channels: int | Sequence[int],
        hidden_channels: int,
        out_channels: int | None,
        global_pool: str | None,
        out_levels: str,
        init_cfg: dict | list | None,
        residual: bool = False,
        extra_levels: int = 0,
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
        self.residual = check_bool(owner, 'residual', residual)
        self.extra_levels = check_non_negative_int(owner, 'extra_levels', extra_levels)
        # mmengine's ModuleList passes init_weights on to every level.
        self.levels: ModuleList = ModuleList()
        self.shortcuts: ModuleList = ModuleList(
            ScaledShortcut(channels, self.out_channels)
            for channels in (self.level_channels if residual else ())
        )

    @property
    def level_channels(self) -> tuple[int, ...]:
        """Channels ``C_s`` of every level's input ``x_s``, extra levels counted."""
        return self.in_channels + (self.in_channels[-1],) * self.extra_levels

    @property
    def num_levels(self) -> int:
        """Number of levels, extra ones counted."""
        return len(self.level_channels)

    @property
    def map_widths(self) -> tuple[int, ...]:
        """Channels of every output map: ``out_channels``, or ``C_s`` with ``residual``."""
        widths = self.level_channels if self.residual else (self.out_channels,) * self.num_levels
        return widths[-1:] if self.out_levels == 'last' else widths

    @property
    def output_width(self) -> int:
        """Channels of the output: what the next module's ``in_channels`` must be.

        With ``global_pool`` set, the length of the single output vector: the
        sum of :attr:`map_widths` (``out_channels * num_levels`` for
        ``out_levels='all'`` without ``residual``). With ``global_pool=None``,
        the channels of every output map; a residual neck whose maps differ in
        width has no single one, and says so (see :attr:`map_widths`).
        """
        widths = self.map_widths
        if self.global_pool is not None:
            return sum(widths)
        if len(set(widths)) > 1:
            raise ValueError(
                f'{type(self).__name__} with residual=True and global_pool=None gives maps '
                f'of different widths {widths} (the input channels of each level): see '
                f'map_widths'
            )
        return widths[0]

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

    def level_inputs(self, inputs: tuple[Tensor, ...]) -> list[Tensor]:
        """The input map ``x_s`` of every level: the backbone's, then the extra ones."""
        maps = list(inputs)
        for _ in range(self.extra_levels):
            maps.append(F.max_pool2d(maps[-1], kernel_size=2, stride=2, ceil_mode=True))
        return maps

    def compute_maps(self, maps: list[Tensor]) -> list[Tensor]:
        """The context map ``y_s`` of every level, finest first, from its input ``x_s``.

        ``maps`` is :meth:`level_inputs` of the checked inputs: one map per
        level, extra levels included.
        """
        raise NotImplementedError(f'{type(self).__name__} must implement compute_maps')

    def _level_pairs(self, inputs) -> tuple[list[Tensor], list[Tensor]]:
        """``x_s`` and ``y_s`` of every output level."""
        levels = self.level_inputs(self.check_inputs(inputs))
        contexts = self.compute_maps(levels)
        if self.out_levels == 'last':
            return levels[-1:], contexts[-1:]
        return levels, contexts

    def forward_maps(self, inputs: Tensor | Sequence[Tensor]) -> tuple[Tensor, ...]:
        """The per-level output maps, before global pooling.

        Exactly what :meth:`forward` returns with ``global_pool=None``,
        whatever ``global_pool`` is set to; ``out_levels`` applies.

        Args:
            inputs (Tensor | tuple[Tensor]): ``(N, C_s, H_s, W_s)`` per input
                level, finest first; a single tensor for one level.

        Returns:
            tuple[Tensor]: one ``(N, out_channels, H_s, W_s)`` map per output
            level (``(N, C_s, H_s, W_s)`` with ``residual``), finest first
            (only the coarsest for ``out_levels='last'``).
        """
        levels, contexts = self._level_pairs(inputs)
        if not self.residual:
            return tuple(contexts)
        return tuple(shortcut(x, y) for shortcut, x, y in zip(self._shortcuts(), levels, contexts))

    def _shortcuts(self) -> list[ScaledShortcut]:
        return list(self.shortcuts)[-1:] if self.out_levels == 'last' else list(self.shortcuts)

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
        if self.global_pool is None:
            return self.forward_maps(inputs)
        if self.global_pool == 'max':
            return (
                torch.cat(
                    [_pooled(F.adaptive_max_pool2d, y) for y in self.forward_maps(inputs)], 1
                ),
            )
        # Average pooling is linear, so it commutes with the shortcut's
        # projection: pooling first projects one vector, not every region.
        levels, contexts = self._level_pairs(inputs)
        vectors = [_pooled(F.adaptive_avg_pool2d, y) for y in contexts]
        if self.residual:
            vectors = [
                shortcut(_pooled(F.adaptive_avg_pool2d, x), y)
                for shortcut, x, y in zip(self._shortcuts(), levels, vectors)
            ]
        return (torch.cat(vectors, dim=1),)


def _pooled(pool, x: Tensor) -> Tensor:
    """``(N, C, H, W)`` -> ``(N, C)``."""
    return pool(x, 1).flatten(1)
