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

from chrnn_plugin._checks import check_choice, check_positive_int

from .reach_init import chrono_time_scales, logit, mix_spread

States = tuple[Tensor, ...]

#: The choices of :math:`\phi` in :class:`SimpleRecurrentCell2d`.
NONLINEARITIES = ('relu', 'tanh')


class RecurrentCell2d(nn.Module):
    """Recurrent weights ``W_h``, ``W_v`` of ``K`` directions, ``G`` gates each.

    Args:
        num_directions (int): K, each direction has its own weights.
        hidden_channels (int): D, the hidden size of one direction.
    """

    num_gates: int = 1
    num_states: int = 1
    #: The cell's kind in the fused op (``chrnn::wavefront_scan``), or None
    #: for a cell only the plain path can run.
    fused_kind: str | None = None

    def __init__(self, num_directions: int, hidden_channels: int) -> None:
        super().__init__()
        owner = type(self).__name__
        self.num_directions = check_positive_int(owner, 'num_directions', num_directions)
        self.hidden_channels = check_positive_int(owner, 'hidden_channels', hidden_channels)
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
        """:math:`a_p + W_h h_{p_h} + W_v h_{p_v}`, one batched matmul per predecessor."""
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
            Defaults to ``'relu'``, as :class:`~.hrnn_neck.HSRNNeck`.

    Inputs: pre_activation, left, above
        * **pre_activation**: ``(K, M, D)``, :math:`a_p` of ``M`` regions.
        * **left**, **above**: ``(h,)`` of the horizontal and vertical
          predecessors, each ``(K, M, D)``, or None for the sweep's origin.

    Outputs: h
        * **h**: ``(K, M, D)``, the new hidden state, in a 1-tuple.

    Examples::

        >>> cell = SimpleRecurrentCell2d(num_directions=4, hidden_channels=8)
        >>> (h,) = cell(torch.randn(4, 3, 8), None, None)
        >>> (h,) = cell(torch.randn(4, 3, 8), (h,), (h,))
        >>> h.shape, bool((h >= 0).all())
        (torch.Size([4, 3, 8]), True)
    """

    def __init__(
        self, num_directions: int, hidden_channels: int, nonlinearity: str = 'relu'
    ) -> None:
        # Checked before the base __init__, whose init_weights reads it.
        self.nonlinearity = check_choice(
            type(self).__name__, 'nonlinearity', nonlinearity, NONLINEARITIES
        )
        super().__init__(num_directions, hidden_channels)

    @property
    def fused_kind(self) -> str:
        return self.nonlinearity

    def init_weights(self) -> None:
        if self.nonlinearity == 'relu':
            # Identity split by axis (IRNN with a spread of mixes): unit j
            # keeps lambda_j of its left and 1 - lambda_j of its upper
            # predecessor. The weights add up to 1, so h stays a weighted
            # average of its predecessors rather than their sum, and the
            # spread carries signals along every slope (see reach_init).
            mix = mix_spread(self.hidden_channels).to(self.weight_h.dtype)
            with torch.no_grad():
                self.weight_h.copy_(torch.diag(mix).expand_as(self.weight_h))
                self.weight_v.copy_(torch.diag(1 - mix).expand_as(self.weight_v))
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
    r"""LSTM unit of HLSTM: what its two cell-merge rules share.

    Both rules compute five gate pre-activations per region,

    .. math::
        [i, q_1, q_2, o, g] = a_p + W_h h_{p_h} + W_v h_{p_v},

    carry the predecessors' cell states :math:`c_{p_h}, c_{p_v}` over with the
    two gates :math:`q_1, q_2` (see :class:`ConvexLSTMCell2d` and
    :class:`SumLSTMCell2d`), and then

    .. math::
        \begin{array}{ll}
        c_p = \mathrm{carry}(q_1, q_2, c_{p_h}, c_{p_v}) + \sigma(i) \odot \tanh(g) \\
        h_p = \sigma(o) \odot \tanh(c_p)
        \end{array}

    So both have the same parameters (``weight_h``, ``weight_v`` and a
    ``5 * D`` input bias per direction), the same cost and the same
    ``state_dict``.

    Cell-state dtype: the parameters' dtype, also under autocast, where the
    gates come out in the autocast dtype (a float32 model keeps a float32
    cell state); a ``model.half()`` or ``model.bfloat16()`` keeps it in that
    dtype.

    Args:
        num_directions (int): K, each direction has its own weights.
        hidden_channels (int): D, the hidden size of one direction.
    """

    num_gates = 5
    num_states = 2
    #: Name of the merge rule, the ``cell_merge`` argument of the neck.
    cell_merge: str = ''

    def init_weights(self) -> None:
        self._init_orthogonal()

    def carry(self, gate_1: Tensor, gate_2: Tensor, left_cell: Tensor, above_cell: Tensor):
        """What region ``p`` keeps of its predecessors' cell states."""
        raise NotImplementedError

    def forward(self, pre_activation: Tensor, left: States | None, above: States | None) -> States:
        d = self.hidden_channels
        if left is not None:
            pre_activation = self.recurrent_term(pre_activation, left, above)
        gates, candidate = pre_activation.split([4 * d, d], dim=-1)
        gates = torch.sigmoid(gates)
        candidate = torch.tanh(candidate)
        input_gate, gate_1, gate_2, output_gate = gates.split(d, dim=-1)
        # Under autocast the gates are bfloat16/float16 while the weights stay
        # float32; the state adds up many gate products, so it keeps the
        # weights' precision.
        cell_dtype = torch.promote_types(candidate.dtype, self.weight_h.dtype)
        cell = (input_gate * candidate).to(cell_dtype)
        if left is not None:
            cell = cell + self.carry(gate_1, gate_2, left[1], above[1])
        hidden = output_gate * torch.tanh(cell)
        return hidden, cell

    def extra_repr(self) -> str:
        return f'{super().extra_repr()}, cell_merge={self.cell_merge!r}'


class ConvexLSTMCell2d(LSTMCell2d):
    r"""Stable LSTM unit: one forget gate after a convex mix of the predecessors.

    .. math::
        \begin{array}{ll}
        [i, f, l, o, g] = a_p + W_h h_{p_h} + W_v h_{p_v} \\
        \lambda = \sigma(l) \\
        c_p = \sigma(f) \odot (\lambda \odot c_{p_h} + (1 - \lambda) \odot c_{p_v})
              + \sigma(i) \odot \tanh(g) \\
        h_p = \sigma(o) \odot \tanh(c_p)
        \end{array}

    The mix is never larger than the larger predecessor, so with
    :math:`|\sigma(i) \tanh(g)| < 1`:

    .. math::
        |c_p| \le \sigma(f_p) \max(|c_{p_h}|, |c_{p_v}|) + 1

    and by induction along the sweep, for any weights and inputs:

    * :math:`|c_p| \le n_p \le H + W - 1`, with :math:`n_p` the number of
      regions on a longest path from the sweep's origin to ``p`` (``i + j + 1``
      for ``'top_left'``): linear in the map size, where the two-forget-gate
      cell (:class:`SumLSTMCell2d`) grows exponentially;
    * if :math:`\sigma(f) \le s < 1` on the whole map,
      :math:`|c_p| \le (1 - s^{n_p}) / (1 - s) < 1 / (1 - s)`, whatever the map size.

    At initialisation (chrono gates, see
    :mod:`~chrnn_plugin.models.necks.reach_init`) unit ``j`` has forget bias
    :math:`\log(T_j - 1)` and input bias :math:`-\frac12 \log(T_j - 1)`, so
    with its gates at rest :math:`\sigma(f) = 1 - 1/T_j`,
    :math:`\sigma(i) = 1 / (1 + \sqrt{T_j - 1})` and, sharper than the second
    bound, :math:`|c| \le \sigma(i) / (1 - \sigma(f)) = T_j / (1 + \sqrt{T_j - 1})`:
    at most 10.4 for the longest time scale, 128. The tests check both bounds,
    and :math:`|c| \le 10.4` at initialisation, on maps from 7x7 to 128x128.

    Args:
        num_directions (int): K, each direction has its own weights.
        hidden_channels (int): D, the hidden size of one direction.

    Inputs: pre_activation, left, above
        * **pre_activation**: ``(K, M, 5 * D)``, :math:`a_p` of ``M`` regions.
        * **left**, **above**: ``(h, c)`` of the horizontal and vertical
          predecessors, each ``(K, M, D)``, or None for the sweep's origin.

    Outputs: h, c
        * **h**, **c**: ``(K, M, D)``, the new hidden and cell states.

    Examples::

        >>> cell = ConvexLSTMCell2d(num_directions=4, hidden_channels=8)
        >>> h, c = cell(torch.randn(4, 3, 40), None, None)
        >>> h, c = cell(torch.randn(4, 3, 40), (h, c), (h, c))
        >>> h.shape, bool(c.abs().max() <= 2)
        (torch.Size([4, 3, 8]), True)
    """

    cell_merge = 'convex'
    fused_kind = 'convex'

    def input_bias(self) -> Tensor:
        # Chrono forget gates (f = log(T_j - 1)), input gates at half the
        # chrono value (i = -f / 2) and mixes spread over (0, 1): unit j
        # carries a signal about T_j regions along the slope lambda_j points
        # to, with |c| about sqrt(T_j) at rest (see reach_init). Output and
        # candidate biases start at 0.
        d = self.hidden_channels
        forget = torch.log(chrono_time_scales(d) - 1)
        bias = torch.zeros(self.num_gates, d, dtype=torch.float64)
        bias[0], bias[1], bias[2] = -0.5 * forget, forget, logit(mix_spread(d))
        return bias.flatten().float()

    def carry(self, gate_1: Tensor, gate_2: Tensor, left_cell: Tensor, above_cell: Tensor):
        forget, mix = gate_1, gate_2
        return forget * (above_cell + mix * (left_cell - above_cell))


class SumLSTMCell2d(LSTMCell2d):
    r"""LSTM unit with one forget gate per predecessor (the first release's cell).

    .. math::
        \begin{array}{ll}
        [i, f_h, f_v, o, g] = a_p + W_h h_{p_h} + W_v h_{p_v} \\
        c_p = \sigma(f_h) \odot c_{p_h} + \sigma(f_v) \odot c_{p_v}
              + \sigma(i) \odot \tanh(g) \\
        h_p = \sigma(o) \odot \tanh(c_p)
        \end{array}

    Unstable on a 2-D grid: with both forget biases at +1 the predecessors'
    states are carried with weight :math:`2 \sigma(1) \approx 1.46` along
    combinatorially many paths, so :math:`|c|` grows exponentially with the map
    size (1e5 at 14x14, 1e12 at 28x28) and overflows float32 between 80x80
    and 88x88. Kept as ``cell_merge='sum'`` to
    compare with the first release and load its results.

    Args:
        num_directions (int): K, each direction has its own weights.
        hidden_channels (int): D, the hidden size of one direction.

    Inputs: pre_activation, left, above
        As :class:`ConvexLSTMCell2d`.

    Outputs: h, c
        As :class:`ConvexLSTMCell2d`.
    """

    cell_merge = 'sum'
    fused_kind = 'sum'

    def input_bias(self) -> Tensor:
        # Both forget gates f_h, f_v (gates 1 and 2) start at +1.
        d = self.hidden_channels
        bias = torch.zeros(self.num_gates * d)
        bias[d : 3 * d] = 1.0
        return bias

    def carry(self, gate_1: Tensor, gate_2: Tensor, left_cell: Tensor, above_cell: Tensor):
        return gate_1 * left_cell + gate_2 * above_cell
