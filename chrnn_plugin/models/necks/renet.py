"""ReNet-style context: bidirectional LSTMs over rows, then over columns."""

from collections.abc import Sequence

import torch
from mmpretrain.registry import MODELS
from torch import Tensor, nn

from chrnn_plugin._checks import check_probability

from .per_level_neck import PerLevelContextNeck
from .reach_init import chrono_time_scales


class ReNetLayer(nn.Module):
    r"""A bidirectional ``nn.LSTM`` along every row, then one along every column.

    .. math::
        \begin{array}{ll}
        r_{ij} = [\overrightarrow{\mathrm{LSTM}}(x_{i,1..W})_j ;
                  \overleftarrow{\mathrm{LSTM}}(x_{i,1..W})_j] \\
        c_{ij} = [\overrightarrow{\mathrm{LSTM}}(r_{1..H,j})_i ;
                  \overleftarrow{\mathrm{LSTM}}(r_{1..H,j})_i] \\
        y_{ij} = M \, \mathrm{dropout}(c_{ij})
        \end{array}

    Args:
        in_channels (int): channels of ``x``.
        hidden_channels (int): D, hidden size of each direction of each LSTM.
        out_channels (int): channels of ``y``.
        dropout (float): dropout on ``c`` before the merge.

    Inputs: x
        * **x**: ``(N, in_channels, H, W)``

    Outputs: y
        * **y**: ``(N, out_channels, H, W)``
    """

    def __init__(
        self, in_channels: int, hidden_channels: int, out_channels: int, dropout: float
    ) -> None:
        super().__init__()
        self.row_lstm = nn.LSTM(in_channels, hidden_channels, batch_first=True, bidirectional=True)
        self.col_lstm = nn.LSTM(
            2 * hidden_channels, hidden_channels, batch_first=True, bidirectional=True
        )
        self.dropout = nn.Dropout(dropout)
        self.merge = nn.Linear(2 * hidden_channels, out_channels)
        self._init_gate_biases()

    def _init_gate_biases(self) -> None:
        # Chrono gates, as HLSTMNeck has (see reach_init): unit j's forget
        # bias is log(T_j - 1), so it keeps a signal over about T_j regions,
        # and its input bias half the opposite. PyTorch's default (about 0)
        # halves the memory at every region, and +1 still loses a factor 0.73
        # per region: on the 112 px demo (28x28 maps) this neck stayed at
        # chance with +1. The other gates keep PyTorch's initialisation.
        with torch.no_grad():
            for lstm in (self.row_lstm, self.col_lstm):
                d = lstm.hidden_size
                forget = torch.log(chrono_time_scales(d) - 1).float()
                for name, bias in lstm.named_parameters():
                    if name.startswith('bias_ih'):  # gate order: i, f, g, o
                        bias[:d].copy_(-0.5 * forget)
                        bias[d : 2 * d].copy_(forget)
                    elif name.startswith('bias_hh'):
                        bias[: 2 * d].fill_(0.0)

    def forward(self, x: Tensor) -> Tensor:
        n, channels, height, width = x.shape
        # Every row is one sequence along the width: (N * H, W, C).
        rows = x.permute(0, 2, 3, 1).reshape(n * height, width, channels)
        rows = self.row_lstm(rows)[0].reshape(n, height, width, -1)
        # Every column is one sequence along the height: (N * W, H, 2D).
        cols = rows.transpose(1, 2).reshape(n * width, height, -1)
        cols = self.col_lstm(cols)[0].reshape(n, width, height, -1)
        y = self.merge(self.dropout(cols))  # (N, W, H, out)
        return y.permute(0, 3, 2, 1).contiguous()


@MODELS.register_module()
class ReNetNeck(PerLevelContextNeck):
    r"""ReNet-style neck: bidirectional LSTMs over rows, then over columns.

    A baseline beside :class:`HSRNNeck` and :class:`HLSTMNeck`, after ReNet
    (Visin et al., "ReNet: A Recurrent Neural Network Based Alternative to
    Convolutional Networks", arXiv 1505.00393, 2015), on regions (1x1
    patches) of a CNN map. Each input level gets one :class:`ReNetLayer`:

    .. math::
        \begin{array}{ll}
        r_{ij} = [\overrightarrow{\mathrm{LSTM}}(x_{i,1..W})_j ;
                  \overleftarrow{\mathrm{LSTM}}(x_{i,1..W})_j] \\
        c_{ij} = [\overrightarrow{\mathrm{LSTM}}(r_{1..H,j})_i ;
                  \overleftarrow{\mathrm{LSTM}}(r_{1..H,j})_i] \\
        y_{ij} = M \, \mathrm{dropout}(c_{ij})
        \end{array}

    The row sweep lets each region see its whole row; the column sweep over
    those row summaries lets it see the whole map. Unlike the 2-D recurrence
    of the HRNN necks, the two axes are separate 1-D recurrences, each an
    ``nn.LSTM`` with PyTorch's initialisation except the forget- and
    input-gate biases, which are chrono-initialised as in :class:`HLSTMNeck`.
    Levels do not exchange information (no cross-scale connections).

    Args:
        in_channels (int | Sequence[int]): channels of each input level, finest
            first; an int for a single level.
        hidden_channels (int): D, hidden size of each direction of each LSTM.
            Defaults to 256.
        out_channels (int, optional): channels of each level's output.
            Defaults to ``hidden_channels``.
        global_pool (str | None): ``'avg'``, ``'max'`` or None to return the
            per-level maps. Defaults to ``'avg'``.
        out_levels (str): ``'all'`` to concatenate every level's output,
            ``'last'`` for the coarsest level only. Defaults to ``'all'``.
        residual (bool): level ``s`` gives ``GAP(x_s) + gamma_s * P_s(GAP(y_s))``,
            ``C_s`` wide, with ``gamma_s`` zero at initialisation, as in
            :class:`~.hrnn_neck.HSRNNeck`. Defaults to False.
        dropout (float): dropout before the merge. Defaults to 0.
        init_cfg (dict | list[dict], optional): MMEngine initialisation config.

    Output width: :attr:`output_width`.

    Inputs: inputs
        * a tuple of ``(N, C_s, H_s, W_s)`` maps, finest first, or one map.

    Outputs:
        * ``(vec,)`` with ``vec`` of shape ``(N, output_width)`` when
          ``global_pool`` is set;
        * else one ``(N, out_channels, H_s, W_s)`` map per output level.

    Examples::

        >>> neck = ReNetNeck(in_channels=64, hidden_channels=32, out_channels=64)
        >>> neck(torch.randn(2, 64, 14, 14))[0].shape
        torch.Size([2, 64])
        >>> neck = ReNetNeck((1024, 2048), 256, 512, global_pool=None)
        >>> [y.shape for y in neck((torch.randn(2, 1024, 14, 14), torch.randn(2, 2048, 7, 7)))]
        [torch.Size([2, 512, 14, 14]), torch.Size([2, 512, 7, 7])]
    """

    def __init__(
        self,
        in_channels: int | Sequence[int],
        hidden_channels: int = 256,
        out_channels: int | None = None,
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
        dropout = check_probability(type(self).__name__, 'dropout', dropout)
        for channels in self.in_channels:
            self.levels.append(
                ReNetLayer(channels, self.hidden_channels, self.out_channels, dropout)
            )
