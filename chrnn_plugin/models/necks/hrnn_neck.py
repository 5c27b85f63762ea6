"""HSRN and HLSTM necks: hierarchical recurrent networks on CNN feature maps."""

from collections.abc import Sequence

from mmpretrain.registry import MODELS
from torch import Tensor

from chrnn_plugin._checks import check_bool, check_choice, check_probability

from .base_neck import ContextNeck
from .hrnn_level import HRNNLevel
from .pooling import adaptive_max_pool_to
from .recurrent_cells import (
    NONLINEARITIES,
    ConvexLSTMCell2d,
    RecurrentCell2d,
    SimpleRecurrentCell2d,
    SumLSTMCell2d,
)
from .wavefront import DIRECTION_FLIPS

ALL_DIRECTIONS = tuple(DIRECTION_FLIPS)


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


class HRNNNeck(ContextNeck):
    """Shared wiring of :class:`HSRNNeck` and :class:`HLSTMNeck`.

    Levels run finest to coarsest. Level ``s`` reads the input map ``x_s`` and,
    with ``cross_scale``, the cross-scale map ``z_s``: the output of level
    ``s - 1`` adaptive-max-pooled to level ``s``'s grid. Extra levels take as
    ``x`` a 2x2 max pooling (ceil mode) of the level before's input.

    No argument has a default here: the subclasses set the defaults, check
    their cell options and pick ``cell``.

    Args:
        in_channels (int | Sequence[int]): channels of each input level, finest
            first; an int for a single level.
        hidden_channels (int): D, hidden size of each directional RNN.
        out_channels (int, optional): channels of each level's output after
            merging the directions; None for ``hidden_channels``.
        directions (Sequence[str]): sweep origins, a non-empty subset of
            ``('top_left', 'top_right', 'bottom_left', 'bottom_right')``, each
            with its own weights.
        extra_levels (int): extra coarser levels, each a 2x2 max pooling
            (ceil mode) of the level before's input.
        cross_scale (bool): feed level ``s - 1``'s output to level ``s`` at
            the same location.
        global_pool (str | None): ``'avg'``, ``'max'`` or None to return the
            per-level maps.
        out_levels (str): ``'all'`` to concatenate every level's output,
            ``'last'`` for the coarsest level only.
        residual (bool): level ``s`` gives ``x_s + gamma_s * P_s y_s``,
            ``gamma_s = 0`` at initialisation (see
            :class:`~.base_neck.ContextNeck`).
        dropout (float): dropout on the hidden states before the merge.
        init_cfg (dict | list[dict], optional): MMEngine initialisation config.
        cell (type[RecurrentCell2d]): the cell class every level builds, one
            cell per direction.
        cell_kwargs (dict, optional): keyword arguments of ``cell``, the same
            for every level (HSRN passes its ``nonlinearity``; the LSTM cells
            take none).
    """

    def __init__(
        self,
        in_channels: int | Sequence[int],
        hidden_channels: int,
        out_channels: int | None,
        directions: Sequence[str],
        extra_levels: int,
        cross_scale: bool,
        global_pool: str | None,
        out_levels: str,
        residual: bool,
        dropout: float,
        init_cfg: dict | list | None,
        cell: type[RecurrentCell2d],
        cell_kwargs: dict | None = None,
    ) -> None:
        super().__init__(
            in_channels,
            hidden_channels,
            out_channels,
            global_pool,
            out_levels,
            init_cfg,
            residual=residual,
            extra_levels=extra_levels,
        )
        owner = type(self).__name__
        self.directions = _directions_tuple(owner, directions)
        self.cross_scale = check_bool(owner, 'cross_scale', cross_scale)
        dropout = check_probability(owner, 'dropout', dropout)

        for index, channels in enumerate(self.level_channels):
            self.levels.append(
                HRNNLevel(
                    cell,
                    in_channels=channels,
                    cross_channels=self.out_channels if cross_scale and index > 0 else None,
                    hidden_channels=self.hidden_channels,
                    out_channels=self.out_channels,
                    directions=self.directions,
                    cell_kwargs=cell_kwargs,
                    dropout=dropout,
                )
            )

    def compute_maps(self, maps: list[Tensor]) -> list[Tensor]:
        """Run every level on its input map, finest first, each fed the previous one's output."""
        outputs = []
        previous = None
        for level, x in zip(self.levels, maps):
            cross = None
            if self.cross_scale and previous is not None:
                # Python ints: under tracing a tensor-valued size stops the ONNX export.
                cross = adaptive_max_pool_to(previous, (int(x.shape[-2]), int(x.shape[-1])))
            previous = level(x, cross)
            outputs.append(previous)
        return outputs


@MODELS.register_module()
class HSRNNeck(HRNNNeck):
    r"""Hierarchical simple recurrent network (HSRN) neck.

    For every sweep direction and region ``p`` with horizontal and vertical
    predecessors ``p_h``, ``p_v`` (zero state at the border):

    .. math::
        h_p = \phi(U x_p + V z_p + b + W_h h_{p_h} + W_v h_{p_v})

    Level output :math:`y_p = M [h_p^{d_1}; h_p^{d_2}; \ldots] + m`: the
    directions' hidden states at ``p``, concatenated and mixed by one linear
    layer ``out_channels`` wide. Recurrent weights start as an identity split
    by axis, :math:`W_h = \mathrm{diag}(\lambda)`,
    :math:`W_v = \mathrm{diag}(1 - \lambda)` with the unit mixes
    :math:`\lambda_j` spread over (0, 1) (ReLU; see
    :mod:`~chrnn_plugin.models.necks.reach_init`), or orthogonal (tanh).
    Every level's cell is a
    :class:`~chrnn_plugin.models.necks.recurrent_cells.SimpleRecurrentCell2d`
    (:attr:`cell_class`).

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
        nonlinearity (str): :math:`\phi`, ``'relu'`` or ``'tanh'``.
            Defaults to ``'relu'``.
        cell_merge (None): not an option of HSRN, which has no cell state;
            any other value than None raises an error pointing to
            :class:`HLSTMNeck`. Defaults to None.
        residual (bool): level ``s`` gives ``GAP(x_s) + gamma_s * P_s(GAP(y_s))``
            (with ``global_pool='avg'``; the maps ``x_s + gamma_s * P_s y_s``
            otherwise), ``C_s`` wide, with ``gamma_s`` zero at
            initialisation: the neck starts as global pooling of its inputs,
            so a head trained on those features gives the same logits at
            step 0. Defaults to False.
        dropout (float): dropout on the hidden states before the merge.
            Defaults to 0.
        init_cfg (dict | list[dict], optional): MMEngine initialisation
            config. Recurrent weights and input biases are always reset to
            their recurrent-specific values afterwards (unless ``init_cfg``
            loads a pretrained checkpoint).

    Output width: :attr:`output_width`.

    Inputs: inputs
        * a tuple of ``(N, C_s, H_s, W_s)`` maps, finest first, or one map.

    Outputs:
        * ``(vec,)`` with ``vec`` of shape ``(N, output_width)`` when
          ``global_pool`` is set;
        * else one ``(N, out_channels, H_s, W_s)`` map per output level
          (always available as :meth:`forward_maps`).

    Examples::

        >>> neck = HSRNNeck(in_channels=(32, 64), hidden_channels=16, out_channels=24)
        >>> inputs = (torch.randn(2, 32, 8, 8), torch.randn(2, 64, 4, 4))
        >>> neck(inputs)[0].shape
        torch.Size([2, 48])
        >>> [y.shape for y in neck.forward_maps(inputs)]
        [torch.Size([2, 24, 8, 8]), torch.Size([2, 24, 4, 4])]
    """

    #: The cell every level builds.
    cell_class = SimpleRecurrentCell2d

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
        nonlinearity: str = 'relu',
        cell_merge: None = None,
        residual: bool = False,
        dropout: float = 0.0,
        init_cfg: dict | list | None = None,
    ) -> None:
        check_choice(type(self).__name__, 'nonlinearity', nonlinearity, NONLINEARITIES)
        if cell_merge is not None:
            raise ValueError(
                f'HSRNNeck takes no cell_merge (it has no cell state), got '
                f'cell_merge={cell_merge!r}; remove it or use HLSTMNeck'
            )
        super().__init__(
            in_channels,
            hidden_channels,
            out_channels,
            directions,
            extra_levels,
            cross_scale,
            global_pool,
            out_levels,
            residual,
            dropout,
            init_cfg,
            cell=self.cell_class,
            cell_kwargs=dict(nonlinearity=nonlinearity),
        )
        self.nonlinearity = nonlinearity


@MODELS.register_module()
class HLSTMNeck(HRNNNeck):
    r"""Hierarchical LSTM (HLSTM) neck.

    For every sweep direction and region ``p``, with the default
    ``cell_merge='convex'``:

    .. math::
        \begin{array}{ll}
        [i, f, l, o, g] = U x_p + V z_p + b + W_h h_{p_h} + W_v h_{p_v} \\
        \lambda = \sigma(l) \\
        c_p = \sigma(f) \odot (\lambda \odot c_{p_h} + (1 - \lambda) \odot c_{p_v})
              + \sigma(i) \odot \tanh(g) \\
        h_p = \sigma(o) \odot \tanh(c_p)
        \end{array}

    so :math:`|c_p|` never exceeds the number of regions on the longest path
    from the sweep's origin to ``p`` (at most ``H + W - 1``), and stays a
    small constant while :math:`\sigma(f)` is away from 1 (see
    :class:`~chrnn_plugin.models.necks.recurrent_cells.ConvexLSTMCell2d`).
    With ``cell_merge='sum'``, the 0.1.0 cell
    (:class:`~chrnn_plugin.models.necks.recurrent_cells.SumLSTMCell2d`), one
    forget gate per predecessor: :math:`[i, f_h, f_v, o, g]` and
    :math:`c_p = \sigma(f_h) \odot c_{p_h} + \sigma(f_v) \odot c_{p_v}
    + \sigma(i) \odot \tanh(g)`.

    Level output :math:`y_p = M [h_p^{d_1}; h_p^{d_2}; \ldots] + m`: the
    directions' hidden states at ``p``, concatenated and mixed by one linear
    layer ``out_channels`` wide. Recurrent weights start orthogonal. With
    ``'convex'`` the forget and input gates are chrono-initialised (time
    scales 2 to 128 regions) and the mix gates spread over (0, 1) (see
    :mod:`~chrnn_plugin.models.necks.reach_init`); with ``'sum'`` both forget
    biases start at +1 and the other biases at 0, as in release 0.1.0.

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
        nonlinearity (None): not an option of HLSTM, whose gates are fixed to
            sigmoid and tanh; any other value than None raises an error
            pointing to :class:`HSRNNeck`. Defaults to None.
        cell_merge (str): how a region merges its predecessors' cell states,
            a key of :attr:`cell_classes`: ``'convex'``, a convex mix under
            one forget gate (stable, the default), or ``'sum'``, one forget
            gate per predecessor (the 0.1.0 cell, whose cell state grows
            exponentially with the map size). Both have the same parameters
            and ``state_dict`` keys. Defaults to ``'convex'``.
        residual (bool): level ``s`` gives ``GAP(x_s) + gamma_s * P_s(GAP(y_s))``
            (with ``global_pool='avg'``; the maps ``x_s + gamma_s * P_s y_s``
            otherwise), ``C_s`` wide, with ``gamma_s`` zero at
            initialisation: the neck starts as global pooling of its inputs,
            so a head trained on those features gives the same logits at
            step 0. Defaults to False.
        dropout (float): dropout on the hidden states before the merge.
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
        * else one ``(N, out_channels, H_s, W_s)`` map per output level
          (always available as :meth:`forward_maps`).

    Examples::

        >>> neck = HLSTMNeck(in_channels=32, hidden_channels=16, extra_levels=1)
        >>> x = torch.randn(2, 32, 7, 7)
        >>> neck(x)[0].shape
        torch.Size([2, 32])
        >>> [y.shape for y in neck.forward_maps(x)]
        [torch.Size([2, 16, 7, 7]), torch.Size([2, 16, 4, 4])]
        >>> type(HLSTMNeck(32, 16, cell_merge='sum').levels[0].cell).__name__
        'SumLSTMCell2d'
    """

    #: ``cell_merge`` -> the cell class every level builds.
    cell_classes = {'convex': ConvexLSTMCell2d, 'sum': SumLSTMCell2d}

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
        nonlinearity: None = None,
        cell_merge: str = 'convex',
        residual: bool = False,
        dropout: float = 0.0,
        init_cfg: dict | list | None = None,
    ) -> None:
        if nonlinearity is not None:
            raise ValueError(
                f'HLSTMNeck takes no nonlinearity (its gates are fixed to sigmoid and '
                f'tanh), got nonlinearity={nonlinearity!r}; remove it or use HSRNNeck'
            )
        check_choice(type(self).__name__, 'cell_merge', cell_merge, self.cell_classes)
        super().__init__(
            in_channels,
            hidden_channels,
            out_channels,
            directions,
            extra_levels,
            cross_scale,
            global_pool,
            out_levels,
            residual,
            dropout,
            init_cfg,
            cell=self.cell_classes[cell_merge],
        )
        self.cell_merge = cell_merge
