"""Shared builders for the neck tests."""

import torch

from chrnn_plugin.models import HLSTMNeck, HSRNNeck

# (neck class, extra kwargs): HSRN with each nonlinearity, HLSTM with each cell merge.
UNITS = {
    'hsrn_relu': (HSRNNeck, dict(nonlinearity='relu')),
    'hsrn_tanh': (HSRNNeck, dict(nonlinearity='tanh')),
    'hlstm': (HLSTMNeck, {}),
    'hlstm_sum': (HLSTMNeck, dict(cell_merge='sum')),
}

ALL_DIRECTIONS = ('top_left', 'top_right', 'bottom_left', 'bottom_right')


def build_neck(unit: str, dtype=torch.float64, weight_std: float = 0.5, **kwargs):
    """A neck with random weights large enough that every path matters."""
    cls, unit_kwargs = UNITS[unit]
    neck = cls(**unit_kwargs, **kwargs).to(dtype)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for param in neck.parameters():
            param.copy_(torch.randn(param.shape, generator=generator, dtype=dtype) * weight_std)
    return neck


def random_maps(shapes, batch: int = 2, dtype=torch.float64, requires_grad: bool = False):
    """One ``(batch, C, H, W)`` map per ``(C, H, W)`` in ``shapes``."""
    generator = torch.Generator().manual_seed(1)
    return tuple(
        torch.randn(batch, *shape, generator=generator, dtype=dtype).requires_grad_(requires_grad)
        for shape in shapes
    )
