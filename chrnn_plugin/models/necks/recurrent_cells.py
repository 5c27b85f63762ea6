"""The two recurrent units of C-HRNN, for a 2-D grid of regions.

Each unit owns only its recurrent weights and the update rule of one step.
Which regions are updated together, and where their predecessors come from,
is decided by :mod:`.wavefront`.

Shapes used by :meth:`forward` (``K`` directions, ``M`` regions times batch
elements updated in this step, ``D`` hidden units, ``G`` gates):

* ``pre_activation``: ``(K, M, G * D)``, the input term ``a_p`` of the regions;
* each state in ``left`` and ``above``: ``(K, M, D)``, the state of every
  region's horizontal and vertical predecessor (zeros at the border);
* return: the new states, same layout, the hidden state ``h`` first.
"""

import torch
import torch.nn.functional as F
from torch import Tensor, nn

States = tuple[Tensor, ...]


class RecurrentCell2d(nn.Module):
    """Recurrent weights ``W_h``, ``W_v`` of ``K`` directions, ``G`` gates each.

    Args:
        num_directions (int): K, each direction has its own weights.
        hidden_channels (int): D, the hidden size of one direction.
    """

    num_gates: int = 1
    num_states: int = 1

    def __init__(self, num_directions: int, hidden_channels: int) -> None:
        super().__init__()
        self.num_directions = num_directions
        self.hidden_channels = hidden_channels
        shape = (num_directions, hidden_channels, self.num_gates * hidden_channels)
        self.weight_h = nn.Parameter(torch.empty(shape))
        self.weight_v = nn.Parameter(torch.empty(shape))
        self.init_weights()

    def init_weights(self) -> None:
        raise NotImplementedError

    def input_bias(self) -> Tensor:
        """Initial value of the input bias ``b`` for one direction, ``(G * D,)``."""
        return torch.zeros(self.num_gates * self.hidden_channels)

    def recurrent_term(self, pre_activation: Tensor, left: States, above: States) -> Tensor:
        """``a_p + W_h h_{p_h} + W_v h_{p_v}``, one batched matmul per predecessor."""
        out = torch.baddbmm(pre_activation, left[0], self.weight_h)
        return torch.baddbmm(out, above[0], self.weight_v)

    def _init_orthogonal(self) -> None:
        # One orthogonal (2D x D) block per direction and gate: the stacked
        # map [h_left; h_above] -> gate keeps norms at the start of training.
        d = self.hidden_channels
        with torch.no_grad():
            for k in range(self.num_directions):
                for g in range(self.num_gates):
                    block = torch.empty(2 * d, d)
                    nn.init.orthogonal_(block)
                    self.weight_h[k, :, g * d : (g + 1) * d] = block[:d]
                    self.weight_v[k, :, g * d : (g + 1) * d] = block[d:]

    def extra_repr(self) -> str:
        return f'num_directions={self.num_directions}, hidden_channels={self.hidden_channels}'


class SimpleRecurrentCell2d(RecurrentCell2d):
    r"""Simple recurrent unit of HSRN.

    .. math::
        h_p = \phi(a_p + W_h h_{p_h} + W_v h_{p_v})

    Args:
        num_directions (int): K, each direction has its own weights.
        hidden_channels (int): D, the hidden size of one direction.
        nonlinearity (str): :math:`\phi`, ``'relu'`` or ``'tanh'``.
    """

    def __init__(self, num_directions: int, hidden_channels: int, nonlinearity: str) -> None:
        self.nonlinearity = nonlinearity
        super().__init__(num_directions, hidden_channels)

    def init_weights(self) -> None:
        if self.nonlinearity == 'relu':
            # Scaled identity (IRNN). Each region has two predecessors, so
            # 0.5 * I on each keeps h the average of its predecessors rather
            # than their sum, which would grow with the number of paths.
            eye = 0.5 * torch.eye(self.hidden_channels)
            with torch.no_grad():
                self.weight_h.copy_(eye.expand_as(self.weight_h))
                self.weight_v.copy_(eye.expand_as(self.weight_v))
        else:
            self._init_orthogonal()

    def forward(self, pre_activation: Tensor, left: States | None, above: States | None) -> States:
        if left is not None:
            pre_activation = self.recurrent_term(pre_activation, left, above)
        if self.nonlinearity == 'relu':
            return (F.relu(pre_activation),)
        return (torch.tanh(pre_activation),)

    def extra_repr(self) -> str:
        return f'{super().extra_repr()}, nonlinearity={self.nonlinearity!r}'


class LSTMCell2d(RecurrentCell2d):
    r"""LSTM unit of HLSTM: one forget gate per predecessor.

    .. math::
        \begin{array}{ll}
        [i, f_h, f_v, o, g] = a_p + W_h h_{p_h} + W_v h_{p_v} \\
        c_p = \sigma(f_h) \odot c_{p_h} + \sigma(f_v) \odot c_{p_v}
              + \sigma(i) \odot \tanh(g) \\
        h_p = \sigma(o) \odot \tanh(c_p)
        \end{array}

    The cell state is kept in at least float32, also under autocast: it sums
    over many paths and would lose precision (or overflow in fp16) otherwise.

    Args:
        num_directions (int): K, each direction has its own weights.
        hidden_channels (int): D, the hidden size of one direction.
    """

    num_gates = 5
    num_states = 2

    def init_weights(self) -> None:
        self._init_orthogonal()

    def input_bias(self) -> Tensor:
        # Forget gates f_h, f_v (gates 1 and 2) start at +1, so the cell keeps
        # what it carries until it learns to drop it.
        d = self.hidden_channels
        bias = torch.zeros(self.num_gates * d)
        bias[d : 3 * d] = 1.0
        return bias

    def forward(self, pre_activation: Tensor, left: States | None, above: States | None) -> States:
        d = self.hidden_channels
        if left is not None:
            pre_activation = self.recurrent_term(pre_activation, left, above)
        gates = torch.sigmoid(pre_activation[..., : 4 * d])
        candidate = torch.tanh(pre_activation[..., 4 * d :])
        input_gate, forget_h, forget_v, output_gate = gates.split(d, dim=-1)
        cell_dtype = torch.promote_types(candidate.dtype, torch.float32)
        cell = (input_gate * candidate).to(cell_dtype)
        if left is not None:
            cell = cell + forget_h * left[1] + forget_v * above[1]
        hidden = output_gate * torch.tanh(cell)
        return hidden, cell


def build_cell(
    unit: str, num_directions: int, hidden_channels: int, nonlinearity: str | None
) -> RecurrentCell2d:
    """Build the cell of ``unit`` (``'srn'`` or ``'lstm'``)."""
    if unit == 'srn':
        return SimpleRecurrentCell2d(num_directions, hidden_channels, nonlinearity)
    if unit == 'lstm':
        return LSTMCell2d(num_directions, hidden_channels)
    raise ValueError(f"unit must be 'srn' or 'lstm', got {unit!r}")
