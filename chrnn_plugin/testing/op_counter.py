"""Count the torch operators a call dispatches."""

from collections import Counter
from collections.abc import Callable

from torch.utils._python_dispatch import TorchDispatchMode

#: Most a neck's forward+backward op count may grow from a 14x14 to a 28x28
#: map. O(H + W) sequential steps give about 2x; O(H * W) would give 4x.
OP_GROWTH_LIMIT = 2.3


class _CountingMode(TorchDispatchMode):
    def __init__(self) -> None:
        super().__init__()
        self.counts: Counter = Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.counts[str(func.overloadpacket)] += 1
        return func(*args, **(kwargs or {}))


def count_dispatched_ops(fn: Callable[[], object]) -> Counter:
    """Run ``fn()`` and return how often each aten operator was dispatched.

    The total is the number of kernel launches an eager run pays for, which
    is what the wavefront keeps at O(H + W) per map.
    """
    mode = _CountingMode()
    with mode:
        fn()
    return mode.counts
