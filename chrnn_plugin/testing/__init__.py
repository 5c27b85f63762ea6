"""Helpers for tests and benchmarks; not used by the models themselves."""

from .op_counter import OP_GROWTH_LIMIT, count_dispatched_ops
from .reach import reach_profile
from .reference import reference_forward, reference_level

__all__ = [
    'OP_GROWTH_LIMIT',
    'count_dispatched_ops',
    'reach_profile',
    'reference_forward',
    'reference_level',
]
