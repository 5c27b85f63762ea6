"""HSRN and HLSTM necks: hierarchical recurrent networks on CNN feature maps."""

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from mmengine.model import BaseModule, ModuleList
from mmpretrain.registry import MODELS
from torch import Tensor

from .hrnn_level import HRNNLevel
from .recurrent_cells import LSTM_CELLS
from .wavefront import DIRECTION_FLIPS

ALL_DIRECTIONS = tuple(DIRECTION_FLIPS)
GLOBAL_POOLS = ('avg', 'max', None)
OUT_LEVELS = ('all', 'last')
NONLINEARITIES = ('relu', 'tanh')
CELL_MERGES = tuple(LSTM_CELLS)


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _positive_int(owner: str, name: str, value) -> int:
    if not _is_int(value) or value <= 0:
        raise ValueError(f'{owner}: {name} must be a positive int, got {value!r}')
    return value


def _channels_tuple(owner: str, in_channels) -> tuple[int, ...]:
    if _is_int(in_channels):
        in_channels = (in_channels,)
    if not isinstance(in_channels, Sequence) or isinstance(in_channels, str):
        raise TypeError(
            f'{owner}: in_channels must be an int or a sequence of ints (one per input '
            f'level, finest first), got {in_channels!r}'
        )
    if len(in_channels) == 0 or not all(_is_int(c) and c > 0 for c in in_channels):
        raise ValueError(
            f'{owner}: in_channels must hold one positive int per input level, '
            f'got {tuple(in_channels)!r}'
        )
    return tuple(in_channels)


def _directions_tuple(owner: str, directions) -> tuple[str, ...]:
    if isinstance(directions, str):
        directions = (directions,)
    directions = tuple(directions)
    if not directions:
        raise ValueError(
            f'{owner}: directions must name at least one of {ALL_DIRECTIONS}, got an empty sequence'
        )
    unknown = [d for d in directions if d not in ALL_DIRECTIONS]
    if unknown:
        raise ValueError(
            f'{owner}: unknown direction(s) {unknown!r} in directions; '
            f'expected a non-empty subset of {ALL_DIRECTIONS}'
        )
    if len(set(directions)) != len(directions):
        raise ValueError(f'{owner}: directions must not repeat, got {directions!r}')
    return directions


def _choice(owner: str, name: str, value, choices: tuple):
    if value not in choices:
        raise ValueError(f'{owner}: {name} must be one of {choices!r}, got {value!r}')
    return value


class HRNNNeck(BaseModule):
    """Shared wiring of :class:`HSRNNeck` and :class:`HLSTMNeck`.

    Levels run finest to coarsest. Level ``s`` reads the input map ``x_s`` and,
    with ``cross_scale``, the cross-scale map ``z_s``: the output of level
    ``s - 1`` adaptive-max-pooled to level ``s``'s grid. Extra levels take as
    ``x`` a 2x2 max pooling (ceil mode) of the level before's input.
    """

    unit: str = ''

    def __init__(
        self,
        in_channels: int | Sequence[int],
        hidden_channels: int = 256,
        out_channels: int | None = None,
        directions: Sequence[str] = ALL_DIRECTIONS,
        extra_levels: int = 0,
        cross_scale: bool = True,
        global_pool: str | None = 'avg',
        out_levels: str = 'all',
        nonlinearity: str | None = None,
        cell_merge: str | None = None,
        dropout: float = 0.0,
        init_cfg: dict | list | None = None,
    ) -> None:
        super().__init__(init_cfg=init_cfg)
        owner = type(self).__name__
        self.in_channels = _channels_tuple(owner, in_channels)
        self.hidden_channels = _positive_int(owner, 'hidden_channels', hidden_channels)
        if out_channels is None:
            out_channels = hidden_channels
        self.out_channels = _positive_int(owner, 'out_channels', out_channels)
        self.directions = _directions_tuple(owner, directions)
        if not _is_int(extra_levels) or extra_levels < 0:
            raise ValueError(f'{owner}: extra_levels must be an int >= 0, got {extra_levels!r}')
        self.extra_levels = extra_levels
        if not isinstance(cross_scale, bool):
            raise TypeError(f'{owner}: cross_scale must be True or False, got {cross_scale!r}')
        self.cross_scale = cross_scale
        self.global_pool = _choice(owner, 'global_pool', global_pool, GLOBAL_POOLS)
        self.out_levels = _choice(owner, 'out_levels', out_levels, OUT_LEVELS)
        if isinstance(dropout, bool) or not isinstance(dropout, (int, float)):
            raise TypeError(f'{owner}: dropout must be a float in [0, 1), got {dropout!r}')
        if not 0 <= dropout < 1:
            raise ValueError(f'{owner}: dropout must be in [0, 1), got {dropout!r}')

        level_channels = self.in_channels + (self.in_channels[-1],) * extra_levels
        # mmengine's ModuleList passes init_weights on to every level.
        self.levels = ModuleList(
            HRNNLevel(
                self.unit,
                in_channels=channels,
                cross_channels=self.out_channels if cross_scale and index > 0 else None,
                hidden_channels=self.hidden_channels,
                out_channels=self.out_channels,
                directions=self.directions,
                nonlinearity=nonlinearity,
                cell_merge=cell_merge,
                dropout=dropout,
            )
            for index, channels in enumerate(level_channels)
        )

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
            if x.dim() != 4:
                raise ValueError(
                    f'{owner} expects 4-D input maps (N, C, H, W), '
                    f'got input level {index} with shape {tuple(x.shape)}'
                )
            if x.numel() == 0:
                raise ValueError(
                    f'{owner} expects non-empty input maps, '
                    f'got input level {index} with shape {tuple(x.shape)}'
                )
        # int(): under torch.jit.trace sizes are tensors, which compare by identity.
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

    def level_inputs(self, inputs: tuple[Tensor, ...]) -> list[Tensor]:
        """The input map of every level: the backbone's, then the extra ones."""
        maps = list(inputs)
        for _ in range(self.extra_levels):
            maps.append(F.max_pool2d(maps[-1], kernel_size=2, stride=2, ceil_mode=True))
        return maps

    def forward(self, inputs: Tensor | Sequence[Tensor]) -> tuple[Tensor, ...]:
        """Run every level, then pool and concatenate as configured.

        Args:
            inputs (Tensor | tuple[Tensor]): ``(N, C_s, H_s, W_s)`` per input
                level, finest first; a single tensor for one level.

        Returns:
            tuple[Tensor]: ``(vec,)`` with ``vec`` of shape
            ``(N, output_width)`` when ``global_pool`` is set, else one
            ``(N, out_channels, H_s, W_s)`` map per output level.
        """
        outputs = []
        previous = None
        for level, x in zip(self.levels, self.level_inputs(self._check_inputs(inputs))):
            cross = None
            if self.cross_scale and previous is not None:
                cross = F.adaptive_max_pool2d(previous, x.shape[-2:])
            previous = level(x, cross)
            outputs.append(previous)
        if self.out_levels == 'last':
            outputs = outputs[-1:]
        if self.global_pool is None:
            return tuple(outputs)
        pool = F.adaptive_avg_pool2d if self.global_pool == 'avg' else F.adaptive_max_pool2d
        return (torch.cat([pool(y, 1).flatten(1) for y in outputs], dim=1),)


_ARGS_DOC = """
    Args:
        in_channels (int | Sequence[int]): channels of each input level, finest
            first; an int for a single level.
        hidden_channels (int): D, hidden size of each directional RNN.
            Defaults to 256.
        out_channels (int, optional): channels of each level's output after
            merging the directions. Defaults to ``hidden_channels``.
        directions (Sequence[str]): sweep origins, any non-empty subset of
            ``('top_left', 'top_right', 'bottom_left', 'bottom_right')``, each
            with its own weights. Defaults to all four.
        extra_levels (int): extra coarser levels, each a 2x2 max pooling
            (ceil mode) of the level before's input. Defaults to 0.
        cross_scale (bool): feed level ``s - 1``'s output to level ``s`` at
            the same location. Defaults to True.
        global_pool (str | None): ``'avg'``, ``'max'`` or None to return the
            per-level maps. Defaults to ``'avg'``.
        out_levels (str): ``'all'`` to concatenate every level's output,
            ``'last'`` for the coarsest level only. Defaults to ``'all'``.
{unit_option}        dropout (float): dropout on the hidden states before the merge.
            Defaults to 0.
        init_cfg (dict | list[dict], optional): MMEngine initialisation
            config. Recurrent weights and gate biases are always reset to
            their recurrent-specific values afterwards (unless ``init_cfg``
            loads a pretrained checkpoint).

    Output width: :attr:`output_width`.

    Inputs: inputs
        * a tuple of ``(N, C_s, H_s, W_s)`` maps, finest first, or one map.

    Outputs:
        * ``(vec,)`` with ``vec`` of shape ``(N, output_width)`` when
          ``global_pool`` is set;
        * else one ``(N, out_channels, H_s, W_s)`` map per output level.
"""
_NONLINEARITY_DOC = """\
        nonlinearity (str): ``'relu'`` or ``'tanh'``. Defaults to ``'relu'``.
"""
_CELL_MERGE_DOC = """\
        cell_merge (str): how a region merges its predecessors' cell states:
            ``'convex'``, a convex mix under one forget gate (stable, the
            default), or ``'sum'``, one forget gate per predecessor (the
            0.1.0 cell, whose cell state grows exponentially with the map
            size). Both have the same parameters and ``state_dict`` keys.
            Defaults to ``'convex'``.
"""


@MODELS.register_module()
class HSRNNeck(HRNNNeck):
    __doc__ = r"""Hierarchical simple recurrent network (HSRN) neck.

    For every sweep direction and region ``p`` with horizontal and vertical
    predecessors ``p_h``, ``p_v`` (zero state at the border):

    .. math::
        h_p = \phi(U x_p + V z_p + b + W_h h_{p_h} + W_v h_{p_v})

    Level output ``y_p = M [h_p^{d_1}; h_p^{d_2}; ...]``. Recurrent weights start
    as ``0.5 I`` (ReLU) or orthogonal (tanh).
""" + _ARGS_DOC.format(unit_option=_NONLINEARITY_DOC)

    unit = 'srn'

    def __init__(
        self,
        in_channels,
        *args,
        nonlinearity: str = 'relu',
        cell_merge: str | None = None,
        **kwargs,
    ) -> None:
        _choice(type(self).__name__, 'nonlinearity', nonlinearity, NONLINEARITIES)
        if cell_merge is not None:
            raise ValueError(
                f'HSRNNeck takes no cell_merge (it has no cell state), got '
                f'cell_merge={cell_merge!r}; remove it or use HLSTMNeck'
            )
        super().__init__(in_channels, *args, nonlinearity=nonlinearity, **kwargs)


@MODELS.register_module()
class HLSTMNeck(HRNNNeck):
    __doc__ = r"""Hierarchical LSTM (HLSTM) neck.

    For every sweep direction and region ``p``, with the default
    ``cell_merge='convex'``:

    .. math::
        \begin{array}{ll}
        [i, f, l, o, g] = U x_p + V z_p + b + W_h h_{p_h} + W_v h_{p_v} \\
        \lambda = \sigma(l) \\
        c_p = \sigma(f) (\lambda c_{p_h} + (1 - \lambda) c_{p_v}) + \sigma(i) \tanh(g) \\
        h_p = \sigma(o) \tanh(c_p)
        \end{array}

    so :math:`|c_p|` never exceeds the number of regions on the longest path
    from the sweep's origin to ``p`` (at most ``H + W - 1``), and stays a
    small constant while :math:`\sigma(f)` is away from 1 (see
    :class:`~chrnn_plugin.models.necks.recurrent_cells.ConvexLSTMCell2d`).
    With ``cell_merge='sum'``, the 0.1.0 cell, one forget gate per predecessor:
    :math:`[i, f_h, f_v, o, g]` and
    :math:`c_p = \sigma(f_h) c_{p_h} + \sigma(f_v) c_{p_v} + \sigma(i) \tanh(g)`.

    Level output ``y_p = M [h_p^{d_1}; h_p^{d_2}; ...]``. Recurrent weights start
    orthogonal; the forget-gate biases start at +1 (``'sum'``: both), the
    other biases at 0 (so :math:`\lambda` starts at 0.5).
""" + _ARGS_DOC.format(unit_option=_CELL_MERGE_DOC)

    unit = 'lstm'

    def __init__(
        self,
        in_channels,
        *args,
        nonlinearity: str | None = None,
        cell_merge: str = 'convex',
        **kwargs,
    ) -> None:
        if nonlinearity is not None:
            raise ValueError(
                f'HLSTMNeck takes no nonlinearity (its gates are fixed to sigmoid and '
                f'tanh), got nonlinearity={nonlinearity!r}; remove it or use HSRNNeck'
            )
        _choice(type(self).__name__, 'cell_merge', cell_merge, CELL_MERGES)
        super().__init__(in_channels, *args, cell_merge=cell_merge, **kwargs)
