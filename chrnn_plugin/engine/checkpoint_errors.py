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
_TRUSTING_TOOLS = 'train.py, test.py, infer.py, pytorch2onnx.py, visualize_context.py'


class _NamesTheFile:
    """Mixin: the message is ``template`` filled with the file's name and the detail."""

    template = '{name}: {detail}'

    def __init__(self, name: str, detail: str):
        self.name = name
        self.detail = detail
        super().__init__(self.template.format(name=name, detail=detail))


class UnsafeCheckpointError(_NamesTheFile, pickle.UnpicklingError):
    """A checkpoint asks to build something other than data (a call, a class, a global).

    Nothing the file built up to that point is returned or kept, and no
    object that the loader did not create was touched.
    """

    template = (
        'Refusing to load checkpoint {name}: {detail}. A checkpoint may hold only tensors, '
        'numpy arrays, MMEngine log buffers and plain containers, so nothing from the file '
        f'was kept. If you trust this file (e.g. a legacy checkpoint from a known source), set '
        f'{TRUST_ENV_VAR}=1 or pass --trust-checkpoint to the tool that loads it '
        f'({_TRUSTING_TOOLS}).'
    )

    @property
    def reason(self) -> str:
        return self.detail


class IncompleteCheckpointError(_NamesTheFile, EOFError):
    """A checkpoint file ends early or is empty (an interrupted write or download)."""

    template = (
        'Checkpoint {name} is incomplete: {detail}. It was probably cut short by an '
        'interrupted write or download; use another checkpoint or fetch this one again.'
    )


class NotACheckpointError(_NamesTheFile, ValueError):
    """A file that ``torch.save`` did not write (or in a format that cannot be checked)."""

    template = '{name} is not a checkpoint written by torch.save: {detail}'


class CorruptCheckpointError(_NamesTheFile, ValueError):
    """A checkpoint whose bytes are damaged or inconsistent (bad CRC, bad pickle, bad sizes)."""

    template = (
        'Checkpoint {name} is corrupt: {detail}. Nothing from it was loaded; use another copy '
        'of the file.'
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
