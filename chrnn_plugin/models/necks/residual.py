"""LayerScale shortcut: a context neck that starts as global average pooling."""

import torch
from torch import Tensor, nn


class ScaledShortcut(nn.Module):
    r"""The input plus a zero-initialised, per-channel scaled projection of the context.

    .. math::
        x + \gamma \odot P y, \qquad \gamma = 0 \text{ at initialisation}

    as LayerScale (Touvron et al., CaiT, ICCV 2021). At initialisation the
    output is exactly ``x``, so a neck built with ``residual=True`` gives the
    features of global pooling alone, and a head trained on them the same
    logits; ``gamma`` then grows from the gradient of ``P y``.

    Args:
        in_channels (int): channels of ``x`` and of the output.
        context_channels (int): channels of ``y``.

    Inputs: x, y
        * **x**: ``(N, in_channels, *)``, a map or a pooled vector.
        * **y**: ``(N, context_channels, *)``, the same trailing shape.

    Outputs: out
        * **out**: ``(N, in_channels, *)``.

    Examples::

        >>> shortcut = ScaledShortcut(in_channels=6, context_channels=4)
        >>> x = torch.randn(2, 6, 3, 3)
        >>> torch.equal(shortcut(x, torch.randn(2, 4, 3, 3)), x)
        True
    """

    def __init__(self, in_channels: int, context_channels: int) -> None:
        super().__init__()
        self.proj = nn.Linear(context_channels, in_channels)
        self.scale = nn.Parameter(torch.zeros(in_channels))

    def init_weights(self) -> None:
        """Zero ``gamma``, after any generic initialiser of ``init_cfg``."""
        with torch.no_grad():
            self.scale.zero_()

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        # Channels last for the projection, then back: works for maps and vectors.
        context = self.proj(y.movedim(1, -1)) * self.scale
        return x + context.movedim(-1, 1)
