"""Triton kernels of the wavefront sweep: one GEMM and one fused kernel per anti-diagonal.

The ``triton`` path of ``chrnn::wavefront_scan`` (see
:mod:`~.fused_wavefront`), for GPU sweeps. It keeps the op's buffers: the
gates in sweep order ``(K, R, N, G * D)`` and the padded state buffers
``(K, R + 2T, N, D)``, so either half pairs with the other paths' other half.

Per anti-diagonal ``t``, forward:

1. one batched GEMM: the previous diagonal's states times ``[W_h | W_v]``,
   ``(K, rows, 2 * G * D)``: what every region sends to its right and its
   lower successor;
2. one kernel, :func:`_forward_step`: each region adds what its left and upper
   predecessors sent to its input term (a predecessor off the map sends
   nothing), activates its gates, updates its cell and writes its states.

Backward, in reverse:

1. one kernel, :func:`_backward_step`: each region adds to its output's
   gradient what its successors sent back, and writes the gradient of its
   pre-activation and the cell gradients it sends its two predecessors;
2. one batched GEMM: that gradient times ``[W_h^T | W_v^T]``, what it sends
   its predecessors' hidden states.

The kernels run in the states' precision, float32 at least (float64 for
float64 states). Under ``TRITON_INTERPRET=1`` (set before this module is
first imported) Triton runs them on CPU tensors: the test suite checks them
that way on tiny maps.
"""

import os
from contextlib import nullcontext

import torch
import triton
import triton.language as tl
from torch import Tensor

#: Set while the kernels were built for Triton's interpreter (CPU tensors).
INTERPRETED = os.environ.get('TRITON_INTERPRET') == '1'
_CELL_CODES = {'relu': 0, 'tanh': 1, 'convex': 2, 'sum': 3}


@triton.jit
def _sigmoid(x):
    return 1.0 / (1.0 + tl.exp(-x))


@triton.jit
def _tanh(x):
    # Written with exp so that it compiles for every dtype and Triton version.
    return 2.0 * _sigmoid(2.0 * x) - 1.0


@triton.jit
def _gate(
    gates_at, left_at, above_at, q, mask, left_ok, above_ok, D: tl.constexpr, ACC: tl.constexpr
):
    """Gate ``q``'s input term plus what the region's two predecessors sent."""
    z = tl.load(gates_at + q * D, mask=mask, other=0.0).to(ACC)
    z += tl.load(left_at + q * D, mask=left_ok, other=0.0).to(ACC)
    return z + tl.load(above_at + q * D, mask=above_ok, other=0.0).to(ACC)


@triton.jit
def _block(rows, directions, D: tl.constexpr, BLOCK_R: tl.constexpr, BLOCK_D: tl.constexpr):
    """This program's rows and channels: ``(k, r, kr, c, mask)``.

    ``program_id(0)`` spans the (direction, row) pairs of every direction in one
    range (``kr``: direction ``k``, row ``r``), ``program_id(1)`` the channels
    ``c``; ``mask`` says which of the block are in range.
    """
    kr = tl.program_id(0).to(tl.int64) * BLOCK_R + tl.arange(0, BLOCK_R).to(tl.int64)
    c = tl.program_id(1) * BLOCK_D + tl.arange(0, BLOCK_D)
    mask = (kr < directions * rows)[:, None] & (c < D)[None, :]
    return kr // rows, kr % rows, kr, c, mask


@triton.jit
def _predecessors(r, shift, batch, prev_rows, mask):
    """Rows of ``r``'s left and upper predecessors in the previous diagonal, and which exist."""
    left, above = r + shift, r + shift - batch
    left_ok = mask & ((left >= 0) & (left < prev_rows))[:, None]
    above_ok = mask & ((above >= 0) & (above < prev_rows))[:, None]
    return left, above, left_ok, above_ok


@triton.jit
def _forward_step(
    gates_ptr,
    sent_ptr,
    hidden_ptr,
    cells_ptr,
    gates_stride,
    padded_stride,
    first,
    rows,
    prev_first,
    prev_rows,
    shift,
    batch,
    out_first,
    directions,
    D: tl.constexpr,
    GD: tl.constexpr,
    CELL: tl.constexpr,
    ACC: tl.constexpr,
    BLOCK_R: tl.constexpr,
    BLOCK_D: tl.constexpr,
):
    """One anti-diagonal's states, in every one of ``directions``.

    Rows are (region, image) pairs: row ``r`` of the diagonal is sweep-order
    row ``first + r`` and padded row ``out_first + r``. Its left predecessor is
    row ``r + shift`` of the previous diagonal and its upper one row ``r + shift
    - batch``, present when within ``[0, prev_rows)``; the previous diagonal
    starts at padded row ``prev_first``.
    """
    k, r, _, c, mask = _block(rows, directions, D, BLOCK_R, BLOCK_D)
    left, above, left_ok, above_ok = _predecessors(r, shift, batch, prev_rows, mask)
    gates_at = gates_ptr + (k * gates_stride + (first + r) * GD)[:, None] + c[None, :]
    sent_at = sent_ptr + (k * prev_rows * (2 * GD))[:, None] + c[None, :]
    left_at, above_at = sent_at + left[:, None] * (2 * GD), sent_at + above[:, None] * (2 * GD) + GD
    state_at = (k * padded_stride)[:, None] + c[None, :]
    out_at = state_at + (out_first + r)[:, None] * D
    if CELL < 2:
        z = _gate(gates_at, left_at, above_at, 0, mask, left_ok, above_ok, D, ACC)
        if CELL == 0:
            h = tl.maximum(z, 0.0)
        else:
            h = _tanh(z)
    else:
        i = _sigmoid(_gate(gates_at, left_at, above_at, 0, mask, left_ok, above_ok, D, ACC))
        f1 = _sigmoid(_gate(gates_at, left_at, above_at, 1, mask, left_ok, above_ok, D, ACC))
        f2 = _sigmoid(_gate(gates_at, left_at, above_at, 2, mask, left_ok, above_ok, D, ACC))
        o = _sigmoid(_gate(gates_at, left_at, above_at, 3, mask, left_ok, above_ok, D, ACC))
        g = _tanh(_gate(gates_at, left_at, above_at, 4, mask, left_ok, above_ok, D, ACC))
        left_c = tl.load(cells_ptr + state_at + (prev_first + left)[:, None] * D, left_ok, 0.0)
        above_c = tl.load(cells_ptr + state_at + (prev_first + above)[:, None] * D, above_ok, 0.0)
        left_c, above_c = left_c.to(ACC), above_c.to(ACC)
        if CELL == 2:
            cell = f1 * (above_c + f2 * (left_c - above_c)) + i * g
        else:
            cell = f1 * left_c + f2 * above_c + i * g
        h = o * _tanh(cell)
        kind = gates_ptr.dtype.element_ty
        # The activated gates replace the input terms: backward reads them.
        tl.store(gates_at, i.to(kind), mask=mask)
        tl.store(gates_at + D, f1.to(kind), mask=mask)
        tl.store(gates_at + 2 * D, f2.to(kind), mask=mask)
        tl.store(gates_at + 3 * D, o.to(kind), mask=mask)
        tl.store(gates_at + 4 * D, g.to(kind), mask=mask)
        tl.store(cells_ptr + out_at, cell.to(cells_ptr.dtype.element_ty), mask=mask)
    tl.store(hidden_ptr + out_at, h.to(hidden_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _backward_step(
    grad_z_ptr,
    from_output_ptr,
    back_ptr,
    cell_grad_in_ptr,
    cell_grad_out_ptr,
    gates_ptr,
    hidden_ptr,
    cells_ptr,
    gates_stride,
    output_stride,
    padded_stride,
    first,
    rows,
    prev_first,
    prev_rows,
    shift,
    next_rows,
    next_shift,
    batch,
    out_first,
    directions,
    D: tl.constexpr,
    GD: tl.constexpr,
    CELL: tl.constexpr,
    ACC: tl.constexpr,
    BLOCK_R: tl.constexpr,
    BLOCK_D: tl.constexpr,
):
    """One anti-diagonal's ``dL/d(pre-activation)``, in every one of ``directions``.

    Rows as in :func:`_forward_step`. Row ``r``'s right successor is row ``r -
    next_shift`` of the next diagonal and its lower one row ``r - next_shift +
    batch``, present when within ``[0, next_rows)``. ``back_ptr`` holds what
    the next diagonal's rows send back, ``(K, next_rows, 2 * D)``: the left
    half to their left predecessor, the right half to their upper one; so do
    ``cell_grad_in_ptr`` (LSTM) and, for this diagonal, ``cell_grad_out_ptr``.
    """
    k, r, kr, c, mask = _block(rows, directions, D, BLOCK_R, BLOCK_D)
    right, below = r - next_shift, r - next_shift + batch
    right_ok = mask & ((right >= 0) & (right < next_rows))[:, None]
    below_ok = mask & ((below >= 0) & (below < next_rows))[:, None]
    back_at = (k * next_rows * (2 * D))[:, None] + c[None, :]
    from_right = back_at + right[:, None] * (2 * D)
    from_below = back_at + below[:, None] * (2 * D) + D
    from_output_at = from_output_ptr + (k * output_stride + (first + r) * D)[:, None] + c[None, :]
    dh = tl.load(from_output_at, mask, 0.0)
    dh = dh.to(ACC) + tl.load(back_ptr + from_right, right_ok, 0.0).to(ACC)
    dh += tl.load(back_ptr + from_below, below_ok, 0.0).to(ACC)
    state_at = (k * padded_stride)[:, None] + c[None, :]
    out_at = state_at + (out_first + r)[:, None] * D
    grad_at = grad_z_ptr + (k * gates_stride + (first + r) * GD)[:, None] + c[None, :]
    kind = grad_z_ptr.dtype.element_ty
    if CELL < 2:
        h = tl.load(hidden_ptr + out_at, mask, 0.0).to(ACC)
        if CELL == 0:
            dz = tl.where(h > 0, dh, 0.0)
        else:
            dz = dh * (1.0 - h * h)
        tl.store(grad_at, dz.to(kind), mask=mask)
    else:
        gates_at = gates_ptr + (k * gates_stride + (first + r) * GD)[:, None] + c[None, :]
        i = tl.load(gates_at, mask, 0.0).to(ACC)
        f1 = tl.load(gates_at + D, mask, 0.0).to(ACC)
        f2 = tl.load(gates_at + 2 * D, mask, 0.0).to(ACC)
        o = tl.load(gates_at + 3 * D, mask, 0.0).to(ACC)
        g = tl.load(gates_at + 4 * D, mask, 0.0).to(ACC)
        tanh_c = _tanh(tl.load(cells_ptr + out_at, mask, 0.0).to(ACC))
        dc = dh * o * (1.0 - tanh_c * tanh_c)
        dc += tl.load(cell_grad_in_ptr + from_right, right_ok, 0.0).to(ACC)
        dc += tl.load(cell_grad_in_ptr + from_below, below_ok, 0.0).to(ACC)
        left, above, left_ok, above_ok = _predecessors(r, shift, batch, prev_rows, mask)
        left_c = tl.load(cells_ptr + state_at + (prev_first + left)[:, None] * D, left_ok, 0.0)
        above_c = tl.load(cells_ptr + state_at + (prev_first + above)[:, None] * D, above_ok, 0.0)
        left_c, above_c = left_c.to(ACC), above_c.to(ACC)
        if CELL == 2:
            d_mix = dc * f1
            d_f1 = dc * (above_c + f2 * (left_c - above_c))
            d_f2 = d_mix * (left_c - above_c)
            to_left, to_above = d_mix * f2, d_mix * (1.0 - f2)
        else:
            d_f1, d_f2 = dc * left_c, dc * above_c
            to_left, to_above = dc * f1, dc * f2
        tl.store(grad_at, (dc * g * i * (1.0 - i)).to(kind), mask=mask)
        tl.store(grad_at + D, (d_f1 * f1 * (1.0 - f1)).to(kind), mask=mask)
        tl.store(grad_at + 2 * D, (d_f2 * f2 * (1.0 - f2)).to(kind), mask=mask)
        tl.store(grad_at + 3 * D, (dh * tanh_c * o * (1.0 - o)).to(kind), mask=mask)
        tl.store(grad_at + 4 * D, (dc * i * (1.0 - g * g)).to(kind), mask=mask)
        sent_at = cell_grad_out_ptr + (kr * (2 * D))[:, None] + c[None, :]
        sent_kind = cell_grad_out_ptr.dtype.element_ty
        tl.store(sent_at, to_left.to(sent_kind), mask=mask)
        tl.store(sent_at + D, to_above.to(sent_kind), mask=mask)


def _launch_shape(rows: int, d: int) -> tuple[tuple[int, int], dict]:
    """Grid and blocks of a step over ``rows`` (direction, row) pairs of ``d`` channels."""
    block_d = min(64, triton.next_power_of_2(d))
    block_r = 1024 // block_d
    return (triton.cdiv(rows, block_r), triton.cdiv(d, block_d)), dict(
        BLOCK_R=block_r, BLOCK_D=block_d
    )


def _accumulator(states: Tensor):
    return tl.float64 if states.dtype == torch.float64 else tl.float32


def _on_device(tensor: Tensor):
    """The context the kernels launch in: ``tensor``'s GPU made current (Triton launches there)."""
    if tensor.device.type == 'cpu' and not INTERPRETED:
        raise RuntimeError(
            'the Triton kernels run CPU tensors only under TRITON_INTERPRET=1, set before '
            'chrnn_plugin.models.necks.triton_kernels is first imported'
        )
    return torch.cuda.device(tensor.device) if tensor.device.type == 'cuda' else nullcontext()


def forward_sweep(
    gates: Tensor,
    hidden: Tensor,
    cells: Tensor | None,
    weight_h: Tensor,
    weight_v: Tensor,
    layout: dict,
    cell: str,
) -> None:
    """Fill ``hidden`` (and ``cells``) diagonal by diagonal; LSTM: activate ``gates`` in place.

    ``gates`` holds the input terms in sweep order, ``(K, R, N, G * D)``;
    ``hidden`` and ``cells`` are the padded buffers of ``layout``
    (:func:`~.fused_wavefront._layout`), their zero rows already zero.
    """
    k, _, batch, gd = gates.shape
    d = weight_h.shape[1]
    cells = hidden if cells is None else cells
    # Both recurrent terms of a diagonal in one GEMM.
    recurrent = torch.cat([weight_h, weight_v], dim=-1)
    sent, prev_out, prev_rows = gates, 0, 0
    with _on_device(gates):
        for t, size in enumerate(layout['sizes']):
            rows, out = size * batch, layout['out_rows'][t]
            shift = (layout['left'][t] - prev_out) * batch if t else 0
            grid, blocks = _launch_shape(k * rows, d)
            _forward_step[grid](
                gates, sent, hidden, cells,
                gates[0].numel(), hidden[0].numel(),
                layout['starts'][t] * batch, rows, prev_out * batch, prev_rows, shift, batch,
                out * batch, k,
                D=d, GD=gd, CELL=_CELL_CODES[cell], ACC=_accumulator(hidden), **blocks,
            )  # fmt: skip
            if t + 1 < len(layout['sizes']):
                sent = torch.bmm(hidden[:, out : out + size].view(k, rows, d), recurrent)
            prev_out, prev_rows = out, rows


def backward_sweep(
    grad_z: Tensor,
    from_output: Tensor,
    gates: Tensor,
    hidden: Tensor,
    cells: Tensor | None,
    weight_h: Tensor,
    weight_v: Tensor,
    layout: dict,
    cell: str,
) -> None:
    """Write ``dL/d(pre-activation)`` into ``grad_z`` (sweep order), diagonal by diagonal.

    ``from_output`` is ``dL/dh`` from the output in sweep order, ``(K, R, N,
    D)``; the other buffers are :func:`forward_sweep`'s.
    """
    k, _, batch, gd = grad_z.shape
    d = weight_h.shape[1]
    lstm = cells is not None
    # HSRN keeps no gates nor cells: its kernel reads neither; any real buffer stands in.
    gates, cells = (gates, cells) if lstm else (hidden, hidden)
    recurrent_t = torch.cat([weight_h.mT, weight_v.mT], dim=-1)
    steps = len(layout['sizes'])
    back = cell_grad_in = grad_z
    next_rows = next_shift = 0
    with _on_device(grad_z):
        for t in reversed(range(steps)):
            size, out = layout['sizes'][t], layout['out_rows'][t]
            rows = size * batch
            prev_out = layout['out_rows'][t - 1] if t else 0
            shift = (layout['left'][t] - prev_out) * batch if t else 0
            cell_grad_out = hidden.new_empty(k, rows, 2 * d) if lstm else grad_z
            grid, blocks = _launch_shape(k * rows, d)
            _backward_step[grid](
                grad_z, from_output, back, cell_grad_in, cell_grad_out, gates, hidden, cells,
                grad_z[0].numel(), from_output[0].numel(), hidden[0].numel(),
                layout['starts'][t] * batch, rows, prev_out * batch,
                layout['sizes'][t - 1] * batch if t else 0, shift, next_rows, next_shift, batch,
                out * batch, k,
                D=d, GD=gd, CELL=_CELL_CODES[cell], ACC=_accumulator(hidden), **blocks,
            )  # fmt: skip
            if t:
                start = layout['starts'][t]
                back = torch.bmm(grad_z[:, start : start + size].view(k, rows, gd), recurrent_t)
            cell_grad_in, next_rows, next_shift = cell_grad_out, rows, shift
