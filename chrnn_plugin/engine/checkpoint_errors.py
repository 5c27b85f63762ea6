"""The errors a checkpoint load raises; each names the file and the reason."""

import pickle

from .trust import TRUST_ENV_VAR

__all__ = [
    'CHECKPOINT_ERRORS',
    'CheckpointDeviceError',
    'CorruptCheckpointError',
    'IncompleteCheckpointError',
    'NotACheckpointError',
    'UnsafeCheckpointError',
]

# The tools that take --trust-checkpoint, for the refusal message.
_TRUSTING_TOOLS = 'train.py, test.py, pytorch2onnx.py, visualize_context.py'


class UnsafeCheckpointError(pickle.UnpicklingError):
    """A checkpoint asks to build something other than data (a call, a class, a global).

    Nothing the file built up to that point is returned or kept, and no
    object that the loader did not create was touched.
    """

    def __init__(self, name: str, reason: str):
        self.name = name
        self.reason = reason
        super().__init__(
            f'Refusing to load checkpoint {name}: {reason}. A checkpoint may hold only '
            f'tensors, numpy arrays, MMEngine log buffers and plain containers, so nothing '
            f'from the file was kept. If you trust this file (e.g. a legacy checkpoint from '
            f'a known source), set {TRUST_ENV_VAR}=1 or pass --trust-checkpoint to the tool '
            f'that loads it ({_TRUSTING_TOOLS}).'
        )


class IncompleteCheckpointError(EOFError):
    """A checkpoint file ends early or is empty (an interrupted write or download)."""

    def __init__(self, name: str, detail: str):
        self.name = name
        super().__init__(
            f'Checkpoint {name} is incomplete: {detail}. It was probably cut short by an '
            f'interrupted write or download; use another checkpoint or fetch this one again.'
        )


class NotACheckpointError(ValueError):
    """A file that ``torch.save`` did not write (or in a format that cannot be checked)."""

    def __init__(self, name: str, detail: str):
        self.name = name
        super().__init__(f'{name} is not a checkpoint written by torch.save: {detail}')


class CorruptCheckpointError(ValueError):
    """A checkpoint whose bytes are damaged or inconsistent (bad CRC, bad pickle, bad sizes)."""

    def __init__(self, name: str, detail: str):
        self.name = name
        super().__init__(
            f'Checkpoint {name} is corrupt: {detail}. Nothing from it was loaded; use another '
            f'copy of the file.'
        )


class CheckpointDeviceError(RuntimeError):
    """A storage cannot be placed where the checkpoint or ``map_location`` says."""


# Every error of the safe loader is one of these (each names the file).
CHECKPOINT_ERRORS = (
    UnsafeCheckpointError,
    IncompleteCheckpointError,
    NotACheckpointError,
    CorruptCheckpointError,
    CheckpointDeviceError,
)
