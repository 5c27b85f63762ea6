"""Shared builders for the neck tests."""

import pytest
import torch

from chrnn_plugin.models import HLSTMNeck, HSRNNeck
from chrnn_plugin.models.necks import fused_wavefront

# (neck class, extra kwargs): HSRN with each nonlinearity, HLSTM with each cell merge.
UNITS = {
    'hsrn_relu': (HSRNNeck, dict(nonlinearity='relu')),
    'hsrn_tanh': (HSRNNeck, dict(nonlinearity='tanh')),
    'hlstm': (HLSTMNeck, {}),
    'hlstm_sum': (HLSTMNeck, dict(cell_merge='sum')),
}

ALL_DIRECTIONS = ('top_left', 'top_right', 'bottom_left', 'bottom_right')


def build_neck(unit: str, dtype=torch.float64, weight_std: float = 0.5, device='cpu', **kwargs):
    """A neck with random weights large enough that every path matters, on ``device``."""
    cls, unit_kwargs = UNITS[unit]
    neck = cls(**unit_kwargs, **kwargs).to(dtype)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for param in neck.parameters():
            param.copy_(torch.randn(param.shape, generator=generator, dtype=dtype) * weight_std)
    return neck.to(device)


def random_maps(
    shapes, batch: int = 2, dtype=torch.float64, requires_grad: bool = False, device='cpu'
):
    """One ``(batch, C, H, W)`` map per ``(C, H, W)`` in ``shapes``, on ``device``.

    Drawn on the CPU, so every device gets the same numbers.
    """
    generator = torch.Generator().manual_seed(1)
    return tuple(
        torch.randn(batch, *shape, generator=generator, dtype=dtype)
        .to(device)
        .requires_grad_(requires_grad)
        for shape in shapes
    )


def two_level_float32(unit: str, device, weight_std: float = 0.2):
    """A float32 neck of ``unit`` on a 5x4 and a 3x2 level (4 and 6 channels), and inputs for it."""
    neck = build_neck(
        unit,
        dtype=torch.float32,
        weight_std=weight_std,
        in_channels=(4, 6),
        hidden_channels=3,
        device=device,
    )
    inputs = random_maps([(4, 5, 4), (6, 3, 2)], dtype=torch.float32, device=device)
    return neck, inputs


def select_path(path: str, monkeypatch, device) -> None:
    """Point ``$CHRNN_WAVEFRONT`` at ``path``; skip where its kernels cannot run on ``device``.

    ``compiled`` runs on the CPU only; ``triton`` on the CPU runs in Triton's
    interpreter (``TRITON_INTERPRET=1``, which the test session sets on the CPU
    before any kernel is defined; here for the sweep's own check).
    """
    if path == 'compiled' and device.type != 'cpu':
        pytest.skip('the compiled kernels are CPU kernels')
    if path == 'triton':
        if not fused_wavefront.triton_installed():
            pytest.skip('Triton is not installed')
        if device.type == 'cpu':
            monkeypatch.setenv(fused_wavefront.TRITON_INTERPRET_ENV_VAR, '1')
    monkeypatch.setenv(fused_wavefront.PATH_ENV_VAR, path)
