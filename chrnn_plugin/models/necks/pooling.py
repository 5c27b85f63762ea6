"""Cross-scale pooling that traces and exports like it runs."""

import torch
import torch.nn.functional as F
from torch import Tensor


def adaptive_max_pool_to(x: Tensor, size: tuple[int, int]) -> Tensor:
    """``F.adaptive_max_pool2d(x, size)``, exportable for any fixed ``size``.

    Output cell ``(i, j)`` is the maximum over rows ``floor(i * H / h)`` to
    ``ceil((i + 1) * H / h)`` and the same bins over the columns. Under
    :func:`torch.jit.trace` (and so the TorchScript-based ONNX exporter, which
    only converts the operator when ``h`` divides ``H`` and ``w`` divides
    ``W``) the same bins are taken as slices: a maximum over a rectangle is the
    maximum over its rows of the maximum over its columns, so the values are
    the same. Eager mode and ``torch.compile`` / ``torch.export`` call the
    operator itself.

    Args:
        x (Tensor): ``(N, C, H, W)``.
        size (tuple[int, int]): ``(h, w)``, Python ints.

    Returns:
        Tensor: ``(N, C, h, w)``.
    """
    if not (torch.jit.is_tracing() or torch.onnx.is_in_onnx_export()):
        return F.adaptive_max_pool2d(x, size)
    for dim, out_size in ((2, size[0]), (3, size[1])):
        in_size = int(x.shape[dim])
        if in_size % out_size == 0:
            x = F.max_pool2d(x, _window(dim, in_size // out_size))
            continue
        bins = [
            x.narrow(dim, start, stop - start).amax(dim=dim, keepdim=True)
            for start, stop in (
                (i * in_size // out_size, -(-(i + 1) * in_size // out_size))
                for i in range(out_size)
            )
        ]
        x = torch.cat(bins, dim=dim)
    return x


def _window(dim: int, length: int) -> tuple[int, int]:
    return (length, 1) if dim == 2 else (1, length)
