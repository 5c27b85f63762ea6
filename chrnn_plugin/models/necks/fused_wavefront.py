"""The wavefront sweep as one registered op, forward and backward written out.

:func:`~.wavefront.wavefront_sweep` builds the sweep from small autograd
ops: every anti-diagonal adds about 20 nodes to the graph, and its
predecessors are concatenations. This module runs the same recurrence as one
op, ``chrnn::wavefront_scan``, with its backward ``chrnn::wavefront_scan_backward``
written by hand:

* **States in a padded buffer.** Every diagonal's states sit in one buffer
  ``(K, R + 2T, N, D)`` (``R`` regions, ``T = H + W - 1`` diagonals), each
  diagonal between two permanent zero rows. The left and upper predecessors
  of a diagonal are then two overlapping slices of the diagonal before:
  views, not concatenations, with the borders' zero states for free.
* **Recurrent terms as accumulating GEMMs.** ``a + W_h h_left + W_v h_above``
  is one ``baddbmm`` (into a new, contiguous accumulator: an accumulating
  GEMM whose output is a strided view runs as one GEMM per direction) and one
  ``baddbmm_`` on it; the predecessors are read in place, never copied.
* **Gate maths in place** on the accumulator: ``sigmoid_``/``tanh_``, the
  convex mix as one ``lerp``, the cell update as ``mul`` and ``addcmul_``.
* **Backward by hand**, diagonal by diagonal in reverse, from what the forward
  kept: the activated gates (LSTM) and the state buffers (the cell's
  ``tanh(c)`` and the convex mix are recomputed, one pass each). Per
  diagonal, one GEMM gives the gradients of both predecessors; the gradients
  of ``W_h`` and ``W_v`` are one GEMM each over the whole map at the end, not
  one per diagonal.
* **Permutations as ``index_select``** of whole channel vectors, into and out
  of sweep order.

The op has a fake (meta) implementation, so ``torch.compile`` sees one node
per sweep. On the CPU it runs its loops in compiled kernels,
``torch.ops.chrnn_cpu.scan_forward`` / ``scan_backward``
(:mod:`~.cpu_kernels`), for float32 and float64 sweeps: the same buffers, with
the permutations, the gate maths and the cell update fused into one pass per
diagonal. On a GPU it can run them in Triton kernels (:mod:`~.triton_kernels`):
per diagonal one GEMM and one fused kernel, each way. :func:`choose_path`
picks, per sweep, one of :data:`PATHS`: by default the compiled kernels where
they apply (and build), the plain-PyTorch path everywhere else. Tracing and
exports always take the plain path, which exporters know how to convert.
"""

import importlib.util
import os
from functools import lru_cache

import torch
from torch import Tensor

from . import cpu_kernels
from .wavefront import (
    DIRECTION_FLIPS,
    diagonal_bounds,
    from_sweep_order,
    region_rows,
    sweep_permutations,
    to_sweep_order,
)

#: Cell kinds of the op: HSRN's two nonlinearities and HLSTM's two merge rules.
CELLS = ('relu', 'tanh', 'convex', 'sum')
_LSTM_CELLS = ('convex', 'sum')
_DIRECTIONS = tuple(DIRECTION_FLIPS)
#: Environment switch for every sweep: one of :data:`PATHS`; unset, :func:`choose_path`
#: picks the fastest path we measured that applies.
PATH_ENV_VAR = 'CHRNN_WAVEFRONT'
#: ``compiled``: the registered op with its compiled CPU kernels (float32/float64 on the
#: CPU); ``triton``: the op with its Triton kernels (CUDA, or the CPU under Triton's
#: interpreter); ``fused``: the op in PyTorch operators (any device and dtype);
#: ``plain``: plain PyTorch under autograd, the reference and the fallback.
PATHS = ('compiled', 'triton', 'fused', 'plain')
#: The paths that run the registered op: its ``path`` argument.
OP_PATHS = PATHS[:-1]
#: State dtypes the compiled kernels take (the input's dtype must be the same).
COMPILED_DTYPES = (torch.float32, torch.float64)
#: Triton's own switch that runs its kernels on CPU tensors, in its interpreter.
TRITON_INTERPRET_ENV_VAR = 'TRITON_INTERPRET'


def requested_path() -> str | None:
    """The path ``$CHRNN_WAVEFRONT`` asks for, or None when it is unset."""
    path = os.environ.get(PATH_ENV_VAR)
    if path is not None and path not in PATHS:
        raise ValueError(f'{PATH_ENV_VAR} must be one of {PATHS}, got {path!r}')
    return path


def state_dtype(cell_kind: str, input_dtype: torch.dtype, weight_dtype: torch.dtype):
    """The dtype the sweep keeps its states in.

    HSRN's state is its hidden state, kept in the input's (autocast) dtype as
    the plain path keeps it; an LSTM cell state keeps the weights' precision.
    """
    if cell_kind in _LSTM_CELLS:
        return torch.promote_types(input_dtype, weight_dtype)
    return input_dtype


# Both are called at trace time under torch.compile, not traced: they may build the kernels.
@torch.compiler.assume_constant_result
def _kernels_available() -> bool:
    return cpu_kernels.available()


@torch.compiler.assume_constant_result
def _load_kernels() -> bool:
    cpu_kernels.load()
    return True


@lru_cache(maxsize=1)
def triton_installed() -> bool:
    """Whether Triton can be imported (it comes with PyTorch's CUDA wheels on Linux)."""
    return importlib.util.find_spec('triton') is not None


# Called at trace time under torch.compile, not traced, as the two above.
@torch.compiler.assume_constant_result
def _triton_importable() -> bool:
    return triton_installed()


def _triton_applies(device: torch.device) -> str | None:
    """Why the Triton kernels cannot run a sweep on ``device``, or None when they can."""
    if not _triton_importable():
        return 'Triton is not installed'
    if device.type == 'cuda':
        return None
    if device.type == 'cpu' and os.environ.get(TRITON_INTERPRET_ENV_VAR) == '1':
        return None
    return (
        f'the Triton kernels run on CUDA (on the CPU only under '
        f"{TRITON_INTERPRET_ENV_VAR}=1, in Triton's interpreter); this sweep is on {device.type}"
    )


def choose_path(device: torch.device, input_dtype: torch.dtype, states: torch.dtype) -> str:
    """The path of a sweep of ``input_dtype`` pre-activations with ``states`` on ``device``.

    ``$CHRNN_WAVEFRONT`` when set; otherwise ``'compiled'`` where the compiled
    kernels apply (a CPU sweep whose input and states are both float32 or both
    float64) and are available, and ``'plain'`` everywhere else: on the CPU
    we measured the op in PyTorch operators slower than the plain path, and on
    a GPU no path has been measured against another yet (``triton`` is there
    to be asked for).

    Raises:
        ValueError: ``compiled`` or ``triton`` asked for where its kernels do not apply.
        KernelBuildError: ``compiled`` asked for, and the kernels cannot be built.
    """
    requested = requested_path()
    applies = device.type == 'cpu' and input_dtype == states and states in COMPILED_DTYPES
    if requested is None:
        return 'compiled' if applies and _kernels_available() else 'plain'
    if requested == 'compiled':
        if not applies:
            raise ValueError(
                f'{PATH_ENV_VAR}=compiled: the compiled kernels run float32 or float64 sweeps '
                f"on the CPU, with the input in the states' dtype; this sweep has {input_dtype} "
                f'input and {states} states on {device.type}. Use fused or plain.'
            )
        _load_kernels()
    if requested == 'triton':
        why_not = _triton_applies(device)
        if why_not is not None:
            raise ValueError(f'{PATH_ENV_VAR}=triton: {why_not}. Use fused or plain.')
    return requested


@lru_cache(maxsize=256)
def _layout(height: int, width: int) -> dict:
    """Where each diagonal and its predecessors sit in the sweep order and the padded buffer."""
    steps = height + width - 1
    bounds = [diagonal_bounds(height, width, t) for t in range(steps)]
    sizes = [hi - lo + 1 for lo, hi in bounds]
    starts = [0]
    for size in sizes[:-1]:
        starts.append(starts[-1] + size)
    # Diagonal t occupies padded rows base[t] + 1 .. base[t] + size[t], with a
    # zero row before and after it.
    base = [start + 2 * t for t, start in enumerate(starts)]
    # Padded row of the left predecessor of diagonal t's first region; its
    # upper predecessor is the row before.
    left = [0] + [base[t - 1] + 1 + bounds[t][0] - bounds[t - 1][0] for t in range(1, steps)]
    position, left_row = [], []
    for t in range(steps):
        position.extend(range(base[t] + 1, base[t] + 1 + sizes[t]))
        # The origin has no predecessors: padded row 0 is a zero row.
        left_row.extend(range(left[t], left[t] + sizes[t]) if t else [0] * sizes[t])
    above_row = [row - 1 if row else 0 for row in left_row]
    pad_rows = [row for b, size in zip(base, sizes) for row in (b, b + size + 1)]
    return dict(
        sizes=sizes,
        starts=starts,
        out_rows=[b + 1 for b in base],
        left=left,
        padded=height * width + 2 * steps,
        position=torch.tensor(position),
        left_row=torch.tensor(left_row),
        above_row=torch.tensor(above_row),
        pad_rows=torch.tensor(pad_rows),
    )


def _lstm_step(z: Tensor, d: int, cell: str, left_c, above_c) -> tuple[Tensor, Tensor]:
    """Activate the gates ``z`` in place; return the new cell state and ``tanh(c)``."""
    z[..., : 4 * d].sigmoid_()
    z[..., 4 * d :].tanh_()
    i, g1, g2, o, g = z.split(d, dim=-1)
    if left_c is None:
        c = i * g
    elif cell == 'convex':
        c = torch.lerp(above_c, left_c, g2).mul_(g1).addcmul_(i, g)
    else:
        c = (g1 * left_c).addcmul_(g2, above_c).addcmul_(i, g)
    return c, torch.tanh(c)


def _permutations(height: int, width: int, directions: list[int], device) -> tuple[Tensor, Tensor]:
    """:func:`~.wavefront.sweep_permutations` of the op's direction codes."""
    return sweep_permutations(height, width, tuple(_DIRECTIONS[d] for d in directions), device)


@torch.library.custom_op('chrnn::wavefront_scan', mutates_args=())
def wavefront_scan(
    pre_activation: Tensor,
    weight_h: Tensor,
    weight_v: Tensor,
    directions: list[int],
    cell: str,
    path: str,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Hidden states ``(H, W, N, K * D)`` of every region, and what backward needs.

    ``pre_activation`` is the input term ``U x + V z + b``, region-major
    ``(H, W, N, K * G * D)``. Returns ``(hidden, gates, hidden_buffer,
    cell_buffer)``: the activated gates in sweep order and the padded cell
    buffer, both empty for HSRN, and the padded hidden-state buffer.

    The states and the step arithmetic are in the weights' dtype (which
    :func:`fused_sweep` chooses); the gates stay in the input's dtype. So under
    autocast (bfloat16 input, float32 weights for HLSTM) the gates are kept in
    bfloat16 and the states in float32, as the plain path keeps them.

    ``path`` is one of :data:`OP_PATHS`: the loops run in
    ``chrnn_cpu::scan_forward`` (``compiled``: CPU, input and states of one
    dtype in :data:`COMPILED_DTYPES`), in :mod:`~.triton_kernels`
    (``triton``) or in PyTorch operators (``fused``).
    """
    _check_op_path(path)
    height, width, batch, _ = pre_activation.shape
    k, d, gd = weight_h.shape
    device = pre_activation.device
    order, inverse = _permutations(height, width, directions, device)
    if path == 'compiled':
        cpu_kernels.load()
        return torch.ops.chrnn_cpu.scan_forward(
            pre_activation, weight_h, weight_v, order, CELLS.index(cell)
        )
    layout = _layout(height, width)
    lstm = cell in _LSTM_CELLS
    with torch.autocast(device.type, enabled=False):
        gates = to_sweep_order(pre_activation.view(-1, batch, k, gd), order)
        hidden = _padded_buffer(weight_h, layout, k, batch, d)
        cells = _padded_buffer(weight_h, layout, k, batch, d) if lstm else None
        sweep = _triton_kernels().forward_sweep if path == 'triton' else _forward_sweep
        sweep(gates, hidden, cells, weight_h, weight_v, layout, cell)
        position = layout['position'].to(device)
        rows = region_rows(inverse, position, layout['padded'], batch)
        out = hidden.view(-1, d).index_select(0, rows).view(height, width, batch, k * d)
    if not lstm:
        gates, cells = pre_activation.new_zeros(0), pre_activation.new_zeros(0)
    return out, gates, hidden, cells


def _check_op_path(path: str) -> None:
    if path not in OP_PATHS:
        raise ValueError(f'chrnn::wavefront_scan: path must be one of {OP_PATHS}, got {path!r}')


def _triton_kernels():
    """:mod:`~.triton_kernels`, imported on first use: Triton is optional."""
    from . import triton_kernels

    return triton_kernels


def _forward_sweep(gates, hidden, cells, weight_h, weight_v, layout, cell) -> None:
    """:func:`~.triton_kernels.forward_sweep` in PyTorch operators."""
    k, _, batch, gd = gates.shape
    d = weight_h.shape[1]
    for t, size in enumerate(layout['sizes']):
        start, out, left = layout['starts'][t], layout['out_rows'][t], layout['left'][t]
        step = gates[:, start : start + size].view(k, size * batch, gd)
        acc, left_c, above_c = step.to(hidden.dtype), None, None
        if t:
            # Into a new contiguous tensor: an accumulating bmm whose output
            # is a strided view runs as one GEMM per direction.
            acc = torch.baddbmm(acc, hidden[:, left : left + size].view(k, -1, d), weight_h)
            acc.baddbmm_(hidden[:, left - 1 : left - 1 + size].view(k, -1, d), weight_v)
            if cells is not None:
                left_c = cells[:, left : left + size].view(k, -1, d)
                above_c = cells[:, left - 1 : left - 1 + size].view(k, -1, d)
        h_out = hidden[:, out : out + size].view(k, -1, d)
        if cell == 'relu':
            torch.clamp_min(acc, 0, out=h_out)
        elif cell == 'tanh':
            torch.tanh(acc, out=h_out)
        else:
            c, tanh_c = _lstm_step(acc, d, cell, left_c, above_c)
            if acc.data_ptr() != step.data_ptr():
                step.copy_(acc)  # the activated gates, for backward
            cells[:, out : out + size].view(k, -1, d).copy_(c)
            torch.mul(acc[..., 3 * d : 4 * d], tanh_c, out=h_out)


def _padded_buffer(like: Tensor, layout: dict, k: int, batch: int, d: int) -> Tensor:
    """``(K, R + 2T, N, D)`` of ``like``'s dtype, uninitialised but for its zero rows."""
    buffer = like.new_empty(k, layout['padded'], batch, d)
    buffer.index_fill_(1, layout['pad_rows'].to(like.device), 0)
    return buffer


@wavefront_scan.register_fake
def _(pre_activation, weight_h, weight_v, directions, cell, path):
    height, width, batch, _ = pre_activation.shape
    k, d, gd = weight_h.shape
    padded = height * width + 2 * (height + width - 1)
    lstm = cell in _LSTM_CELLS
    out = weight_h.new_empty(height, width, batch, k * d)
    empty = pre_activation.new_empty(0)
    gates = pre_activation.new_empty(k, height * width, batch, gd) if lstm else empty
    hidden = weight_h.new_empty(k, padded, batch, d)
    cells = weight_h.new_empty(k, padded, batch, d) if lstm else empty.clone()
    return out, gates, hidden, cells


@torch.library.custom_op('chrnn::wavefront_scan_backward', mutates_args=())
def wavefront_scan_backward(
    grad_out: Tensor,
    weight_h: Tensor,
    weight_v: Tensor,
    gates: Tensor,
    hidden: Tensor,
    cells: Tensor,
    directions: list[int],
    cell: str,
    path: str,
) -> tuple[Tensor, Tensor, Tensor]:
    """Gradients of the pre-activation, ``W_h`` and ``W_v`` from that of the hidden states.

    ``path`` as in :func:`wavefront_scan` (``compiled``: in ``chrnn_cpu::scan_backward``).
    """
    _check_op_path(path)
    height, width, batch, _ = grad_out.shape
    k, d, gd = weight_h.shape
    device = grad_out.device
    order, inverse = _permutations(height, width, directions, device)
    if path == 'compiled':
        cpu_kernels.load()
        return torch.ops.chrnn_cpu.scan_backward(
            grad_out.to(hidden.dtype),
            weight_h,
            weight_v,
            gates,
            hidden,
            cells,
            order,
            CELLS.index(cell),
        )
    layout = _layout(height, width)
    cells = cells if cell in _LSTM_CELLS else None
    with torch.autocast(device.type, enabled=False):
        # dL/dh from the output, in sweep order.
        from_output = to_sweep_order(grad_out.view(-1, batch, k, d).to(hidden.dtype), order)
        grad_z = hidden.new_empty(k, height * width, batch, gd)
        sweep = _triton_kernels().backward_sweep if path == 'triton' else _backward_sweep
        sweep(grad_z, from_output, gates, hidden, cells, weight_h, weight_v, layout, cell)
        dz_flat = grad_z.view(k, -1, gd)
        grad_weights = []
        for rows in (layout['left_row'], layout['above_row']):
            # The predecessors of every region, zero at the origin and the borders:
            # each weight's gradient is one GEMM over the whole map.
            states = hidden.index_select(1, rows.to(device)).view(k, -1, d)
            grad_weights.append(torch.bmm(states.mT, dz_flat))
        grad_pre = from_sweep_order(grad_z, inverse).view(height, width, batch, k * gd)
    # The input's dtype, which the (possibly empty) gates keep.
    return grad_pre.to(gates.dtype), grad_weights[0], grad_weights[1]


def _backward_sweep(
    grad_z, from_output, gates, hidden, cells, weight_h, weight_v, layout, cell
) -> None:
    """:func:`~.triton_kernels.backward_sweep` in PyTorch operators."""
    k, _, batch, gd = grad_z.shape
    d = weight_h.shape[1]
    # What successors add goes to grad_h, in the padded layout (its zero rows
    # collect what the borders would receive, and are never read).
    grad_h = torch.zeros_like(hidden)
    grad_c = torch.zeros_like(cells) if cells is not None else None
    recurrent_t = torch.cat([weight_h.mT, weight_v.mT], dim=-1)  # (K, G * D, 2 * D)
    for t in reversed(range(len(layout['sizes']))):
        size, start = layout['sizes'][t], layout['starts'][t]
        out, left = layout['out_rows'][t], layout['left'][t]
        dh = grad_h[:, out : out + size].add_(from_output[:, start : start + size])
        dh = dh.view(k, -1, d)
        h = hidden[:, out : out + size].view(k, -1, d)
        dz = grad_z[:, start : start + size].view(k, -1, gd)
        if cell == 'relu':
            torch.mul(dh, h > 0, out=dz)
        elif cell == 'tanh':
            torch.mul(dh, 1 - h * h, out=dz)
        else:
            _lstm_step_backward(
                dz,
                dh,
                gates[:, start : start + size].view(k, -1, gd),
                cells,
                grad_c,
                out,
                left if t else None,
                size,
                d,
                cell,
            )
        if t:
            # Both recurrent terms' gradients in one GEMM, then added to
            # the left and the upper predecessors.
            grad_pred = torch.bmm(dz, recurrent_t).view(k, size, batch, 2 * d)
            grad_h[:, left : left + size].add_(grad_pred[..., :d])
            grad_h[:, left - 1 : left - 1 + size].add_(grad_pred[..., d:])


def _lstm_step_backward(dz, dh, z, cells, grad_c, out, left, size, d, cell) -> None:
    """Write ``dL/d(pre-activation)`` of one diagonal into ``dz``; add its predecessors dL/dc."""
    k = dz.shape[0]
    i, g1, g2, o, g = z.to(dz.dtype).split(d, dim=-1)
    c = cells[:, out : out + size].view(k, -1, d)
    tanh_c = torch.tanh(c)
    dc = grad_c[:, out : out + size].view(k, -1, d)
    dc = dc + dh * o * (1 - tanh_c * tanh_c)
    d_i, d_g1, d_g2, d_o, d_g = dz.split(d, dim=-1)
    torch.mul(dh, tanh_c, out=d_o).mul_(o * (1 - o))
    torch.mul(dc, g, out=d_i).mul_(i * (1 - i))
    torch.mul(dc, i, out=d_g).mul_(1 - g * g)
    if left is None:
        d_g1.zero_()
        d_g2.zero_()
        return
    left_c = cells[:, left : left + size].view(k, -1, d)
    above_c = cells[:, left - 1 : left - 1 + size].view(k, -1, d)
    grad_left = grad_c[:, left : left + size].view(k, -1, d)
    grad_above = grad_c[:, left - 1 : left - 1 + size].view(k, -1, d)
    if cell == 'convex':
        mix = torch.lerp(above_c, left_c, g2)
        torch.mul(dc, mix, out=d_g1).mul_(g1 * (1 - g1))
        d_mix = dc * g1
        torch.mul(d_mix, left_c - above_c, out=d_g2).mul_(g2 * (1 - g2))
        grad_left.addcmul_(d_mix, g2)
        grad_above.addcmul_(d_mix, 1 - g2)
    else:
        torch.mul(dc, left_c, out=d_g1).mul_(g1 * (1 - g1))
        torch.mul(dc, above_c, out=d_g2).mul_(g2 * (1 - g2))
        grad_left.addcmul_(dc, g1)
        grad_above.addcmul_(dc, g2)


@wavefront_scan_backward.register_fake
def _(grad_out, weight_h, weight_v, gates, hidden, cells, directions, cell, path):
    height, width, batch, _ = grad_out.shape
    k, d, gd = weight_h.shape
    grad_pre = gates.new_empty(height, width, batch, k * gd)
    return grad_pre, weight_h.new_empty(weight_h.shape), weight_v.new_empty(weight_v.shape)


def _setup_context(ctx, inputs, output) -> None:
    _, weight_h, weight_v, directions, cell, path = inputs
    _, gates, hidden, cells = output
    ctx.save_for_backward(weight_h, weight_v, gates, hidden, cells)
    ctx.directions, ctx.cell, ctx.path = directions, cell, path
    # The buffers are for backward, not outputs to differentiate: without this,
    # autograd would zero-fill a gradient of each for every backward (for HLSTM
    # at 28x28, batch 32: 95 MB per step).
    ctx.mark_non_differentiable(gates, hidden, cells)
    ctx.set_materialize_grads(False)


def _backward(ctx, grad_out, *_unused):
    if grad_out is None:  # an undefined gradient (gradcheck sends one): zero everywhere
        return None, None, None, None, None, None
    weight_h, weight_v, gates, hidden, cells = ctx.saved_tensors
    grads = wavefront_scan_backward(
        grad_out.contiguous(),
        weight_h,
        weight_v,
        gates,
        hidden,
        cells,
        ctx.directions,
        ctx.cell,
        ctx.path,
    )
    return (*grads, None, None, None)


wavefront_scan.register_autograd(_backward, setup_context=_setup_context)


def fused_sweep(
    cell_kind: str,
    weight_h: Tensor,
    weight_v: Tensor,
    pre_activation: Tensor,
    directions: tuple[str, ...],
    path: str = 'fused',
) -> Tensor:
    """:func:`~.wavefront.wavefront_sweep` through ``chrnn::wavefront_scan``.

    Args:
        cell_kind (str): one of :data:`CELLS`.
        weight_h, weight_v (Tensor): the recurrent weights, ``(K, D, G * D)``.
        pre_activation (Tensor): ``U x + V z + b``, region-major
            ``(H, W, N, K * G * D)``.
        directions (tuple[str]): the ``K`` sweep origins.
        path (str): where the op runs its loops, one of :data:`OP_PATHS`
            (see :func:`choose_path` for where each applies). Defaults to
            ``'fused'``, PyTorch operators.

    Returns:
        Tensor: the hidden states ``(H, W, N, K * D)`` in
        :func:`state_dtype`: for HSRN the dtype of ``pre_activation`` (the
        autocast dtype under autocast), for HLSTM its promoted dtype with the
        weights (float32 under autocast for a float32 model, whose gates stay
        in the autocast dtype; see :func:`wavefront_scan`).
    """
    dtype = state_dtype(cell_kind, pre_activation.dtype, weight_h.dtype)
    return wavefront_scan(
        pre_activation.contiguous(),
        weight_h.to(dtype),
        weight_v.to(dtype),
        [_DIRECTIONS.index(name) for name in directions],
        cell_kind,
        path,
    )[0]
