"""One level (one scale) of a hierarchical recurrent neck."""

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from .fused_wavefront import choose_path, fused_sweep, state_dtype
from .recurrent_cells import RecurrentCell2d
from .region_linear import map_to_regions, regions_to_map, tracing_or_exporting
from .wavefront import wavefront_sweep


class HRNNLevel(nn.Module):
    r"""Directional 2-D recurrences over the regions of one feature map.

    For every sweep direction ``d`` and region ``p``:

    .. math::
        a^d_p = U^d x_p + V^d z_p + b^d

    then the cell's recurrence over the sweep (see
    :mod:`~chrnn_plugin.models.necks.recurrent_cells`), and finally

    .. math::
        y_p = M \, \mathrm{dropout}([h^{d_1}_p; h^{d_2}_p; \dots]) + m

    ``U x + V z + b`` has no dependence on ``h``, so it is one matrix
    product over all regions before the sweep. ``U``, ``V`` and ``M`` are
    ``nn.Linear`` layers applied to region-major ``(H * W, N, C)`` views:
    the sweep gathers and scatters whole channel vectors, which is what keeps
    its memory access contiguous.

    Args:
        cell (type[RecurrentCell2d] | RecurrentCell2d): the recurrent cell: a
            class, built here as ``cell(len(directions), hidden_channels,
            **cell_kwargs)``, or a built cell with ``num_directions ==
            len(directions)`` and ``hidden_channels``.
        in_channels (int): channels of ``x``.
        cross_channels (int | None): channels of the cross-scale input ``z``,
            or None when the level has none.
        hidden_channels (int): D, per direction.
        out_channels (int): channels of ``y``.
        directions (Sequence[str]): sweep origins.
        cell_kwargs (dict, optional): further arguments of a cell class, e.g.
            ``dict(nonlinearity='tanh')`` for
            :class:`~.recurrent_cells.SimpleRecurrentCell2d`; not allowed with
            a built cell. Defaults to none (the cell's own defaults).
        dropout (float): dropout probability on the hidden states.

    Inputs: x, z
        * **x**: ``(N, in_channels, H, W)``
        * **z**: ``(N, cross_channels, H, W)`` or None

    Outputs: y
        * **y**: ``(N, out_channels, H, W)``
    """

    def __init__(
        self,
        cell: type[RecurrentCell2d] | RecurrentCell2d,
        in_channels: int,
        cross_channels: int | None,
        hidden_channels: int,
        out_channels: int,
        directions: Sequence[str],
        cell_kwargs: dict | None = None,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.directions = tuple(directions)
        self.cell = _cell_for(cell, len(self.directions), hidden_channels, cell_kwargs)
        gate_channels = len(self.directions) * self.cell.num_gates * hidden_channels
        self.input_proj = nn.Linear(in_channels, gate_channels)
        self.cross_proj = (
            nn.Linear(cross_channels, gate_channels, bias=False) if cross_channels else None
        )
        self.dropout = nn.Dropout(dropout)
        self.merge = nn.Linear(len(self.directions) * hidden_channels, out_channels)
        self.init_weights()

    def init_weights(self) -> None:
        """Reset the recurrent weights and the input bias as the cell wants them.

        The neck's ``init_weights`` calls this after its generic ``init_cfg``
        initialisers (and before a pretrained checkpoint), so those cannot
        undo the recurrent-specific initialisation.
        """
        self.cell.init_weights()
        with torch.no_grad():
            self.input_proj.bias.copy_(self.cell.input_bias().repeat(len(self.directions)))

    def forward(self, x: Tensor, z: Tensor | None = None) -> Tensor:
        pre_activation = map_to_regions(self.input_proj, x)
        if self.cross_proj is not None and z is not None:
            pre_activation = pre_activation + map_to_regions(self.cross_proj, z)
        path = self.sweep_path(pre_activation.device, pre_activation.dtype)
        if path == 'plain':
            hidden = wavefront_sweep(self.cell, pre_activation, self.directions)
        else:
            cell = self.cell
            hidden = fused_sweep(
                cell.fused_kind,
                cell.weight_h,
                cell.weight_v,
                pre_activation,
                self.directions,
                path=path,
            )
        return regions_to_map(self.merge, self.dropout(hidden))

    def sweep_path(self, device: torch.device, dtype: torch.dtype) -> str:
        """The sweep path :meth:`forward` takes for ``dtype`` pre-activations on ``device``.

        One of :data:`~.fused_wavefront.PATHS`, from
        :func:`~.fused_wavefront.choose_path` (``$CHRNN_WAVEFRONT``, or by
        default the compiled CPU kernels where they apply), except that it is
        ``'plain'`` whatever was asked for when the cell is one the op does
        not know (``fused_kind`` None), the cell has hooks (only the plain path
        calls it), or the model is being traced or exported (exporters convert
        the plain path's operators, not our op).
        """
        cell = self.cell
        if (
            cell.fused_kind is None
            or cell._forward_hooks
            or cell._forward_pre_hooks
            or tracing_or_exporting()
        ):
            return 'plain'
        states = state_dtype(cell.fused_kind, dtype, cell.weight_h.dtype)
        return choose_path(device, dtype, states)


def _cell_for(
    cell: type[RecurrentCell2d] | RecurrentCell2d,
    num_directions: int,
    hidden_channels: int,
    cell_kwargs: dict | None,
) -> RecurrentCell2d:
    """``cell`` built for ``num_directions`` and ``hidden_channels``, or checked to fit them."""
    if isinstance(cell, type) and issubclass(cell, RecurrentCell2d):
        return cell(num_directions, hidden_channels, **(cell_kwargs or {}))
    if not isinstance(cell, RecurrentCell2d):
        raise TypeError(
            f'HRNNLevel: cell must be a RecurrentCell2d subclass or instance, got {cell!r}'
        )
    if cell_kwargs:
        raise ValueError(
            f'HRNNLevel: cell_kwargs are for a cell class, but cell is already built '
            f'({type(cell).__name__}); got cell_kwargs={cell_kwargs!r}'
        )
    built = (cell.num_directions, cell.hidden_channels)
    if built != (num_directions, hidden_channels):
        raise ValueError(
            f'HRNNLevel: the built cell must have (num_directions, hidden_channels) = '
            f'{(num_directions, hidden_channels)} to match the level, got {built}'
        )
    return cell
