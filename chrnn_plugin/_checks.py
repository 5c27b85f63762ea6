"""Argument checks shared by the necks, cells, datasets and metrics.

Every check takes ``owner`` (the class or dataset the argument belongs to)
and ``name`` (the argument), returns the value in its canonical form, and
raises an error of the form ``'<owner>: <name> must be <expected>, got
<value>'``. ``bool`` is never accepted where an int or a float is expected.
"""

from collections.abc import Collection, Sequence


def is_int(value) -> bool:
    """Whether ``value`` is an int (a ``bool`` is not)."""
    return isinstance(value, int) and not isinstance(value, bool)


def check_positive_int(owner: str, name: str, value) -> int:
    """``value`` if it is an int > 0, else ``ValueError``."""
    if not is_int(value) or value <= 0:
        raise ValueError(f'{owner}: {name} must be a positive int, got {value!r}')
    return value


def check_non_negative_int(owner: str, name: str, value) -> int:
    """``value`` if it is an int >= 0, else ``ValueError``."""
    if not is_int(value) or value < 0:
        raise ValueError(f'{owner}: {name} must be an int >= 0, got {value!r}')
    return value


def check_choice(owner: str, name: str, value, choices: Collection):
    """``value`` if it is one of ``choices`` (a tuple, or a dict's keys), else ``ValueError``."""
    if value not in choices:
        raise ValueError(f'{owner}: {name} must be one of {tuple(choices)!r}, got {value!r}')
    return value


def check_bool(owner: str, name: str, value) -> bool:
    """``value`` if it is ``True`` or ``False``, else ``TypeError``."""
    if not isinstance(value, bool):
        raise TypeError(f'{owner}: {name} must be True or False, got {value!r}')
    return value


def check_probability(owner: str, name: str, value) -> float:
    """``value`` as a float in ``[0, 1)`` (a dropout rate), else a ``TypeError``/``ValueError``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f'{owner}: {name} must be a float in [0, 1), got {value!r}')
    if not 0 <= value < 1:
        raise ValueError(f'{owner}: {name} must be in [0, 1), got {value!r}')
    return float(value)


def check_channels(owner: str, name: str, value) -> tuple[int, ...]:
    """One positive int per input level, finest first, as a tuple; an int means one level."""
    if is_int(value):
        value = (value,)
    if not isinstance(value, Sequence) or isinstance(value, str):
        raise TypeError(
            f'{owner}: {name} must be an int or a sequence of ints (one per input '
            f'level, finest first), got {value!r}'
        )
    if len(value) == 0 or not all(is_int(c) and c > 0 for c in value):
        raise ValueError(
            f'{owner}: {name} must hold one positive int per input level, got {tuple(value)!r}'
        )
    return tuple(value)
