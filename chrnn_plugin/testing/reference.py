"""A slow, obviously correct C-HRNN forward pass, region by region.

It reads the parameters of a built :class:`~chrnn_plugin.models.necks.hrnn_neck.HRNNNeck` and
evaluates the equations of the concepts page literally: one Python iteration
per region and direction, in sweep order, vectorised only over the batch. Tests and the
benchmark check the wavefront implementation against it; models never use it.
"""

import torch
import torch.nn.functional as F
from torch import Tensor

from chrnn_plugin.models.necks.hrnn_level import HRNNLevel
from chrnn_plugin.models.necks.hrnn_neck import HRNNNeck
from chrnn_plugin.models.necks.recurrent_cells import (
    ConvexLSTMCell2d,
    RecurrentCell2d,
    SimpleRecurrentCell2d,
    SumLSTMCell2d,
)

# Sweep origin -> (row step, column step): the predecessors of (i, j) are
# (i, j - col_step) horizontally and (i - row_step, j) vertically.
SWEEP_STEPS = {
    'top_left': (1, 1),
    'top_right': (1, -1),
    'bottom_left': (-1, 1),
    'bottom_right': (-1, -1),
}


def _region_update(cell: RecurrentCell2d, pre: Tensor, left: tuple, above: tuple):
    """``(h_p, c_p)`` of one region (``c_p`` None for HSRN), as the concepts page writes it."""
    if isinstance(cell, SimpleRecurrentCell2d):
        return (torch.relu(pre) if cell.nonlinearity == 'relu' else torch.tanh(pre)), None
    if not isinstance(cell, (ConvexLSTMCell2d, SumLSTMCell2d)):
        raise TypeError(
            f'reference_level: no reference for cell {type(cell).__name__}; expected '
            'SimpleRecurrentCell2d, ConvexLSTMCell2d or SumLSTMCell2d'
        )
    i, f_1, f_2, o, g = pre.split(cell.hidden_channels, dim=-1)
    if isinstance(cell, ConvexLSTMCell2d):
        lam = torch.sigmoid(f_2)
        kept = torch.sigmoid(f_1) * (lam * left[1] + (1 - lam) * above[1])
    else:
        kept = torch.sigmoid(f_1) * left[1] + torch.sigmoid(f_2) * above[1]
    cell_state = kept + torch.sigmoid(i) * torch.tanh(g)
    return torch.sigmoid(o) * torch.tanh(cell_state), cell_state


def reference_level(level: HRNNLevel, x: Tensor, z: Tensor | None) -> Tensor:
    """Output ``y`` of one level, computed one region at a time."""
    cell = level.cell
    d = cell.hidden_channels
    gates = cell.num_gates * d
    n, _, height, width = x.shape
    u = level.input_proj.weight  # (K*G*D, C)
    b = level.input_proj.bias
    v = level.cross_proj.weight if level.cross_proj is not None else None

    hidden_maps = []
    for k, direction in enumerate(level.directions):
        rows = slice(k * gates, (k + 1) * gates)
        row_step, col_step = SWEEP_STEPS[direction]
        zero = x.new_zeros(n, d)
        h = {}
        c = {}
        row_order = range(height) if row_step > 0 else range(height - 1, -1, -1)
        col_order = range(width) if col_step > 0 else range(width - 1, -1, -1)
        for i in row_order:
            for j in col_order:
                pre = x[:, :, i, j] @ u[rows].T + b[rows]
                if v is not None and z is not None:
                    pre = pre + z[:, :, i, j] @ v[rows].T
                p_h = (i, j - col_step)
                p_v = (i - row_step, j)
                left = (h.get(p_h, zero), c.get(p_h, zero))
                above = (h.get(p_v, zero), c.get(p_v, zero))
                pre = pre + left[0] @ cell.weight_h[k] + above[0] @ cell.weight_v[k]
                h[i, j], c[i, j] = _region_update(cell, pre, left, above)
        hidden_maps.append(
            torch.stack(
                [torch.stack([h[i, j] for j in range(width)], -1) for i in range(height)], -2
            )
        )
    hidden = level.dropout(torch.cat(hidden_maps, dim=1))
    # y_p = M [h_p^1; ...; h_p^K] + m at every region p
    merge = level.merge
    return torch.einsum('nchw,oc->nohw', hidden, merge.weight) + merge.bias.view(-1, 1, 1)


def reference_forward(neck: HRNNNeck, inputs) -> tuple[Tensor, ...]:
    """What ``neck(inputs)`` must return, computed region by region."""
    if isinstance(inputs, Tensor):
        inputs = (inputs,)
    maps = list(inputs)
    for _ in range(neck.extra_levels):
        maps.append(F.max_pool2d(maps[-1], kernel_size=2, stride=2, ceil_mode=True))
    outputs = []
    for index, (level, x) in enumerate(zip(neck.levels, maps)):
        z = None
        if neck.cross_scale and index > 0:
            z = F.adaptive_max_pool2d(outputs[-1], x.shape[-2:])
        outputs.append(reference_level(level, x, z))
    if neck.out_levels == 'last':
        outputs = outputs[-1:]
    if neck.global_pool is None:
        return tuple(outputs)
    if neck.global_pool == 'avg':
        pooled = [y.mean(dim=(2, 3)) for y in outputs]
    else:
        pooled = [y.amax(dim=(2, 3)) for y in outputs]
    return (torch.cat(pooled, dim=1),)
