"""Linear maps between a feature map and its regions, without transposing copies.

A level's input projection takes an ``(N, C, H, W)`` map to region-major
``(H, W, N, G)`` pre-activations, and its merge takes region-major hidden
states back to an ``(N, C_out, H, W)`` map. ``nn.Linear`` on a permuted view
does each with a transposing copy in both passes, and it hands the backbone a
gradient in region-major memory order, which CPU batch norm's backward then
runs through a single-threaded strided kernel. Here each map is one batched
GEMM over the batch: sample ``n`` of an ``(N, C, H, W)`` map is a ``C x HW``
matrix, region-major tensors hold sample ``n`` as an ``HW x G`` matrix with row
stride ``N * G``, and BLAS reads and writes both layouts in place. Gradients
come out in the layout of what they belong to: the map's gradient is a
contiguous ``(N, C, H, W)`` tensor.

Measured on the development machine (2 cores, 2 threads), on the 112 px demo's
model (28x28 map, batch 32, 64 channels), in one process against ``nn.Linear``:
a training step took 64.9 against 77.9 ms with HSRN and 148.7 against 158.8 ms
with HLSTM. On maps of fewer than :data:`MIN_REGIONS` regions one GEMM over all
regions was faster, so those keep ``nn.Linear``.

The batched GEMMs are the eager CPU path for float32 and float64 maps of at
least :data:`MIN_REGIONS` regions. Everything else (CUDA, smaller maps, other
dtypes, autocast, a non-contiguous map, tracing, exporting,
``torch.compile``, and hooks on the ``nn.Linear``, which only a module call
runs) goes through ``nn.Linear`` as before, with the same values.
"""

import torch
import torch.nn as nn
from torch import Tensor

#: Dtypes of the batched-GEMM path: those CPU BLAS runs in place on strided operands.
BATCHED_DTYPES = (torch.float32, torch.float64)

#: Fewest regions (``H * W``) of a map for the batched-GEMM path. Each per-sample
#: GEMM has ``H * W`` rows; on smaller maps one GEMM over all regions is faster.
#: Measured: ResNet-50's C4 (14x14, 1024 channels, batch 8) into HLSTM's 5120 gates
#: took 192 ms forward+backward batched against 164 ms through ``nn.Linear``.
MIN_REGIONS = 256


def tracing_or_exporting() -> bool:
    """Whether the model is being traced or exported: exporters convert plain operators."""
    return torch.jit.is_tracing() or torch.onnx.is_in_onnx_export() or torch.compiler.is_exporting()


def map_to_regions(linear: nn.Linear, x: Tensor) -> Tensor:
    """``linear`` applied to every region of ``x``, region-major.

    Args:
        linear (nn.Linear): ``C -> G``.
        x (Tensor): ``(N, C, H, W)``.

    Returns:
        Tensor: ``(H, W, N, G)``, contiguous.
    """
    if not _batched(linear, x, spatial_dim=2):
        return linear(x.permute(2, 3, 0, 1))
    return _MapToRegions.apply(x, linear.weight, linear.bias)


def regions_to_map(linear: nn.Linear, regions: Tensor) -> Tensor:
    """``linear`` applied to every region of region-major ``regions``, as a map.

    Args:
        linear (nn.Linear): ``K -> C``.
        regions (Tensor): ``(H, W, N, K)``.

    Returns:
        Tensor: ``(N, C, H, W)``, contiguous.
    """
    if not _batched(linear, regions, spatial_dim=0):
        return linear(regions).permute(2, 3, 0, 1).contiguous()
    return _RegionsToMap.apply(regions, linear.weight, linear.bias)


def _batched(linear: nn.Linear, x: Tensor, spatial_dim: int) -> bool:
    """Whether the batched-GEMM path applies to ``x`` (see the module docstring).

    ``x``'s height and width are its dims ``spatial_dim`` and ``spatial_dim + 1``.
    """
    return (
        x.device.type == 'cpu'
        and x.dtype in BATCHED_DTYPES
        and linear.weight.dtype == x.dtype
        and x.dim() == 4
        and x.shape[spatial_dim] * x.shape[spatial_dim + 1] >= MIN_REGIONS
        and x.is_contiguous()
        and not torch.is_autocast_enabled('cpu')
        and not (linear._forward_hooks or linear._forward_pre_hooks)
        and not tracing_or_exporting()
        # Inductor fuses the permutations itself.
        and not torch.compiler.is_compiling()
    )


def _accumulate_over_batch(a: Tensor, b: Tensor, out_shape: torch.Size) -> Tensor:
    """``sum_n a[n] @ b[n]``: one GEMM per sample, accumulated in place.

    A batched product summed afterwards would hold ``N`` copies of the result
    (335 MB for HLSTM on ResNet-50's C5 at batch 8); the loop is over the
    batch, never over regions. ``out=`` rather than ``addmm_``, because
    ``FlopCounterMode`` counts the former's FLOPs and not the latter's; the same
    holds for the other products here.
    """
    if torch.is_grad_enabled():  # a double backward: ``out=`` is not differentiable
        return torch.bmm(a, b).sum(0)
    out = a.new_zeros(out_shape)
    for a_n, b_n in zip(a.unbind(0), b.unbind(0)):
        torch.addmm(out, a_n, b_n, out=out)
    return out


class _MapToRegions(torch.autograd.Function):
    """``(N, C, H, W)`` -> ``(H, W, N, G)``: ``y[h, w, n] = W x[n, :, h, w] + b``."""

    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
        n, c, height, width = x.shape
        g = weight.shape[0]
        out = x.new_empty(height * width, n, g)
        per_sample = out.transpose(0, 1)  # (N, HW, G), a view: the GEMMs write in place
        samples = x.view(n, c, height * width).transpose(1, 2)  # (N, HW, C)
        weights = weight.t().expand(n, c, g)
        if bias is None:
            torch.bmm(samples, weights, out=per_sample)
        else:
            out.copy_(bias.expand_as(out))
            torch.baddbmm(per_sample, samples, weights, out=per_sample)
        ctx.save_for_backward(x, weight)
        return out.view(height, width, n, g)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor | None, Tensor | None, Tensor | None]:
        x, weight = ctx.saved_tensors
        n, c, height, width = x.shape
        g = weight.shape[0]
        per_sample = grad.reshape(height * width, n, g).permute(1, 2, 0)  # (N, G, HW)
        grad_x = grad_weight = grad_bias = None
        if ctx.needs_input_grad[0]:
            grad_x = torch.bmm(weight.t().expand(n, c, g), per_sample).view_as(x)
        if ctx.needs_input_grad[1]:
            samples = x.view(n, c, height * width).transpose(1, 2)  # (N, HW, C)
            grad_weight = _accumulate_over_batch(per_sample, samples, weight.shape)
        if ctx.needs_input_grad[2]:  # False when there is no bias
            grad_bias = grad.reshape(-1, g).sum(0)
        return grad_x, grad_weight, grad_bias


class _RegionsToMap(torch.autograd.Function):
    """``(H, W, N, K)`` -> ``(N, C, H, W)``: ``y[n, :, h, w] = W r[h, w, n] + b``."""

    @staticmethod
    def forward(ctx, regions: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
        height, width, n, k = regions.shape
        c = weight.shape[0]
        per_sample = regions.view(height * width, n, k).permute(1, 2, 0)  # (N, K, HW)
        if bias is None:
            out = torch.bmm(weight.expand(n, c, k), per_sample)
        else:
            bias = bias.view(1, c, 1).expand(n, c, height * width)
            out = torch.baddbmm(bias, weight.expand(n, c, k), per_sample)
        ctx.save_for_backward(regions, weight)
        return out.view(n, c, height, width)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor | None, Tensor | None, Tensor | None]:
        regions, weight = ctx.saved_tensors
        height, width, n, k = regions.shape
        c = weight.shape[0]
        per_sample = grad.reshape(n, c, height * width)  # (N, C, HW)
        grad_regions = grad_weight = grad_bias = None
        if ctx.needs_input_grad[0]:
            factors = (per_sample.transpose(1, 2), weight.expand(n, c, k))
            if torch.is_grad_enabled():  # a double backward: ``out=`` is not differentiable
                grad_regions = torch.bmm(*factors).transpose(0, 1).contiguous()
            else:
                grad_regions = regions.new_empty(height * width, n, k)
                torch.bmm(*factors, out=grad_regions.transpose(0, 1))
            grad_regions = grad_regions.view_as(regions)
        if ctx.needs_input_grad[1]:
            samples = regions.view(height * width, n, k).transpose(0, 1)  # (N, HW, K)
            grad_weight = _accumulate_over_batch(per_sample, samples, weight.shape)
        if ctx.needs_input_grad[2]:  # False when there is no bias
            grad_bias = per_sample.sum((0, 2))
        return grad_regions, grad_weight, grad_bias
