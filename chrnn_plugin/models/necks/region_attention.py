"""Self-attention over the regions of a feature map: a baseline context neck."""

import math
from collections.abc import Sequence

import torch
from mmpretrain.registry import MODELS
from torch import Tensor, nn

from chrnn_plugin._checks import check_positive_int, check_probability

from .per_level_neck import PerLevelContextNeck, from_tokens, to_tokens


def sinusoidal_position_2d(
    height: int, width: int, channels: int, temperature: float = 10000.0
) -> Tensor:
    r"""Fixed 2-D sine-cosine position encoding, ``(height * width, channels)``.

    The first half of the channels encodes the row index, the second half the
    column index, each as in Vaswani et al. (2017): for ``k < channels / 4``,
    ``sin(pos * w_k)`` and ``cos(pos * w_k)`` with
    :math:`w_k = \mathrm{temperature}^{-4k / \mathrm{channels}}`. Positions
    are region indices, so a region one step away always has the same encoding
    offset (a rotation), whatever the map size.

    Args:
        height (int): rows of the map.
        width (int): columns of the map.
        channels (int): encoding size, a multiple of 4.
        temperature (float): longest wavelength, in regions. Defaults to 10000.

    Returns:
        Tensor: ``(height * width, channels)``, regions in row-major order.
    """
    if channels % 4:
        raise ValueError(
            f'sinusoidal_position_2d: channels must be a multiple of 4, got {channels}'
        )
    quarter = channels // 4
    omega = temperature ** (-torch.arange(quarter, dtype=torch.float64) / quarter)
    rows = torch.arange(height, dtype=torch.float64)[:, None] * omega
    cols = torch.arange(width, dtype=torch.float64)[:, None] * omega
    row_code = torch.cat([rows.sin(), rows.cos()], dim=1)[:, None, :].expand(-1, width, -1)
    col_code = torch.cat([cols.sin(), cols.cos()], dim=1)[None, :, :].expand(height, -1, -1)
    return torch.cat([row_code, col_code], dim=2).reshape(height * width, channels)


class RegionSelfAttention(nn.Module):
    r"""One pre-norm transformer encoder layer over the regions of one map.

    .. math::
        \begin{array}{ll}
        t_p = P x_p + e_p \\
        t \leftarrow t + \mathrm{MHSA}(\mathrm{LN}(t)) \\
        t \leftarrow t + W_2 \, \mathrm{GELU}(W_1 \mathrm{LN}(t)) \\
        y_p = M t_p
        \end{array}

    with ``e_p`` the fixed 2-D sinusoidal encoding of region ``p``'s row and
    column (:func:`sinusoidal_position_2d`).

    Args:
        in_channels (int): channels of ``x``.
        hidden_channels (int): D, the attention width; a multiple of 4 and of
            ``num_heads``.
        out_channels (int): channels of ``y``.
        num_heads (int): attention heads.
        ffn_ratio (float): hidden width of the feed-forward block over D.
        dropout (float): dropout on the attention weights and in the
            feed-forward block.

    Inputs: x
        * **x**: ``(N, in_channels, H, W)``

    Outputs: y
        * **y**: ``(N, out_channels, H, W)``
    """

    def __init__(
        self,
        in_channels: int,
        hidden_channels: int,
        out_channels: int,
        num_heads: int,
        ffn_ratio: float,
        dropout: float,
    ) -> None:
        super().__init__()
        ffn_channels = max(1, round(ffn_ratio * hidden_channels))
        self.input_proj = nn.Linear(in_channels, hidden_channels)
        self.attn_norm = nn.LayerNorm(hidden_channels)
        self.attn = nn.MultiheadAttention(
            hidden_channels, num_heads, dropout=dropout, batch_first=True
        )
        self.ffn_norm = nn.LayerNorm(hidden_channels)
        self.ffn = nn.Sequential(
            nn.Linear(hidden_channels, ffn_channels),
            nn.GELU(),
            nn.Dropout(dropout),
            nn.Linear(ffn_channels, hidden_channels),
        )
        self.merge = nn.Linear(hidden_channels, out_channels)

    def forward(self, x: Tensor) -> Tensor:
        _, _, height, width = x.shape
        tokens = self.input_proj(to_tokens(x))
        position = sinusoidal_position_2d(height, width, tokens.shape[-1])
        tokens = tokens + position.to(device=tokens.device, dtype=tokens.dtype)
        normed = self.attn_norm(tokens)
        tokens = tokens + self.attn(normed, normed, normed, need_weights=False)[0]
        tokens = tokens + self.ffn(self.ffn_norm(tokens))
        return from_tokens(self.merge(tokens), height, width)


@MODELS.register_module()
class RegionSelfAttentionNeck(PerLevelContextNeck):
    r"""Multi-head self-attention over the regions of each feature map.

    A baseline beside :class:`HSRNNeck` and :class:`HLSTMNeck`: the context
    module a user would try first. Each input level gets one pre-norm
    transformer encoder layer (:class:`RegionSelfAttention`) over its
    ``H * W`` regions, with a fixed 2-D sinusoidal position encoding (a
    relation between regions needs their positions; a fixed encoding works at
    any map size, where a learned one would be tied to one size):

    .. math::
        \begin{array}{ll}
        t_p = P x_p + e_p \\
        t \leftarrow t + \mathrm{MHSA}(\mathrm{LN}(t)) \\
        t \leftarrow t + W_2 \, \mathrm{GELU}(W_1 \mathrm{LN}(t)) \\
        y_p = M t_p
        \end{array}

    Every output region depends on every input region of its level. Levels
    do not exchange information (no cross-scale connections). Cost grows with
    ``(H W)^2`` per level, where the HRNN necks grow with ``H W``.

    Args:
        in_channels (int | Sequence[int]): channels of each input level, finest
            first; an int for a single level.
        hidden_channels (int): D, the attention width; a multiple of 4 (the
            position encoding splits it into row and column sines and
            cosines) and of ``num_heads``. Defaults to 256.
        out_channels (int, optional): channels of each level's output.
            Defaults to ``hidden_channels``.
        num_heads (int): attention heads. Defaults to 4.
        ffn_ratio (float): feed-forward width over D. Defaults to 2.
        global_pool (str | None): ``'avg'``, ``'max'`` or None to return the
            per-level maps. Defaults to ``'avg'``.
        out_levels (str): ``'all'`` to concatenate every level's output,
            ``'last'`` for the coarsest level only. Defaults to ``'all'``.
        residual (bool): level ``s`` gives ``GAP(x_s) + gamma_s * P_s(GAP(y_s))``,
            ``C_s`` wide, with ``gamma_s`` zero at initialisation, as in
            :class:`~.hrnn_neck.HSRNNeck`. Defaults to False.
        dropout (float): dropout on the attention weights and in the
            feed-forward block. Defaults to 0.
        init_cfg (dict | list[dict], optional): MMEngine initialisation config.

    Output width: :attr:`output_width`.

    Inputs: inputs
        * a tuple of ``(N, C_s, H_s, W_s)`` maps, finest first, or one map.

    Outputs:
        * ``(vec,)`` with ``vec`` of shape ``(N, output_width)`` when
          ``global_pool`` is set;
        * else one ``(N, out_channels, H_s, W_s)`` map per output level.

    Examples::

        >>> neck = RegionSelfAttentionNeck(in_channels=64, hidden_channels=64)
        >>> neck(torch.randn(2, 64, 14, 14))[0].shape
        torch.Size([2, 64])
        >>> neck = RegionSelfAttentionNeck((1024, 2048), 256, 512, global_pool=None)
        >>> [y.shape for y in neck((torch.randn(2, 1024, 14, 14), torch.randn(2, 2048, 7, 7)))]
        [torch.Size([2, 512, 14, 14]), torch.Size([2, 512, 7, 7])]
    """

    def __init__(
        self,
        in_channels: int | Sequence[int],
        hidden_channels: int = 256,
        out_channels: int | None = None,
        num_heads: int = 4,
        ffn_ratio: float = 2.0,
        global_pool: str | None = 'avg',
        out_levels: str = 'all',
        residual: bool = False,
        dropout: float = 0.0,
        init_cfg: dict | list | None = None,
    ) -> None:
        super().__init__(
            in_channels,
            hidden_channels,
            out_channels,
            global_pool,
            out_levels,
            init_cfg,
            residual=residual,
        )
        owner = type(self).__name__
        self.num_heads = check_positive_int(owner, 'num_heads', num_heads)
        if self.hidden_channels % 4 or self.hidden_channels % num_heads:
            raise ValueError(
                f'{owner}: hidden_channels must be a multiple of 4 (row and column sines and '
                f'cosines) and of num_heads={num_heads}, got {self.hidden_channels}'
            )
        if isinstance(ffn_ratio, bool) or not isinstance(ffn_ratio, (int, float)):
            raise TypeError(f'{owner}: ffn_ratio must be a positive number, got {ffn_ratio!r}')
        if not (ffn_ratio > 0 and math.isfinite(ffn_ratio)):
            raise ValueError(f'{owner}: ffn_ratio must be a positive number, got {ffn_ratio!r}')
        self.ffn_ratio = ffn_ratio
        dropout = check_probability(owner, 'dropout', dropout)
        for channels in self.in_channels:
            self.levels.append(
                RegionSelfAttention(
                    channels,
                    self.hidden_channels,
                    self.out_channels,
                    self.num_heads,
                    ffn_ratio,
                    dropout,
                )
            )
