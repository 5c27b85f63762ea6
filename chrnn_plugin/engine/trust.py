"""The one opt-in to load a trusted checkpoint unsafely, and what switched it on.

The opt-in lives in the environment so that it reaches every process of a
distributed run: ``CHRNN_TRUST_CHECKPOINTS=1`` set by the user, or the value
:data:`TRUST_FLAG` that a tool's ``--trust-checkpoint`` flag writes, so that
warnings can name what the user actually did.
"""

import os

__all__ = ['TRUST_ENV_VAR', 'TRUST_FLAG', 'trust_source', 'trusted_checkpoints_enabled']

TRUST_ENV_VAR = 'CHRNN_TRUST_CHECKPOINTS'
TRUST_FLAG = '--trust-checkpoint'
_TRUE_VALUES = ('1', 'true', 'yes', 'on')


def trusted_checkpoints_enabled() -> bool:
    """Whether the user opted in to load trusted legacy checkpoints unsafely."""
    value = os.environ.get(TRUST_ENV_VAR, '').strip()
    return value == TRUST_FLAG or value.lower() in _TRUE_VALUES


def trust_source() -> str:
    """What enabled the opt-in, as a warning should say it (e.g. ``'--trust-checkpoint'``)."""
    value = os.environ.get(TRUST_ENV_VAR, '').strip()
    if value == TRUST_FLAG:
        return f'{TRUST_FLAG} was given'
    return f'{TRUST_ENV_VAR}={value} is set in the environment'
