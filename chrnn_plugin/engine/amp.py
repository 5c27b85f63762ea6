"""What ``--amp`` means on each device, for ``tools/train.py`` and ``tools/test.py``.

With CUDA (or another accelerator MMEngine's ``AmpOptimWrapper`` supports:
NPU, MLU, MUSA) it is MMEngine's mixed precision, unchanged: float16 autocast,
with a dynamic loss scale when training. Without one, the run is on the CPU,
where PyTorch's autocast computes in bfloat16 only, and there ``--amp`` means
bfloat16 autocast:

* testing: ``test_cfg.fp16 = True`` already gives it, as MMEngine's
  ``autocast`` picks bfloat16 on the CPU;
* training: MMEngine's ``AmpOptimWrapper`` refuses to be built without an
  accelerator (its loss scaler is CUDA's), so :class:`BFloat16OptimWrapper`
  is used instead: the same autocast, without a loss scale, which bfloat16
  does not need (it has float32's exponent range, so gradients do not
  underflow).

Whichever it is, the tool logs the precision before the runner is built. On
MPS, where MMEngine's ``autocast`` raises, ``--amp`` is refused up front.
"""

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from mmengine.config import Config
from mmengine.device import get_device
from mmengine.logging import print_log
from mmengine.optim import OptimWrapper
from mmengine.runner.amp import autocast
from mmpretrain.registry import OPTIM_WRAPPERS
from torch import nn

AMP_FLAG = '--amp'
# Devices where MMEngine's AmpOptimWrapper and float16 autocast work.
_MMENGINE_AMP_DEVICES = ('cuda', 'npu', 'mlu', 'musa')
# Arguments of AmpOptimWrapper that OptimWrapper does not take.
_LOSS_SCALE_ARGUMENTS = ('loss_scale', 'use_fsdp')
_STOCK_WRAPPERS = ('OptimWrapper', 'AmpOptimWrapper')


class AmpUnavailableError(ValueError):
    """``--amp`` cannot be honoured on this device or with this config."""


@OPTIM_WRAPPERS.register_module()
class BFloat16OptimWrapper(OptimWrapper):
    """``OptimWrapper`` whose forward passes run under bfloat16 autocast, unscaled.

    What ``tools/train.py --amp`` uses on the CPU, where MMEngine's
    ``AmpOptimWrapper`` cannot be built. Parameters, gradients and the
    optimizer state stay float32; only autocast-eligible ops (convolutions,
    matrix products) compute in bfloat16. No loss scaling: bfloat16 has
    float32's exponent range.

    Args:
        device_type (str | None): The autocast device; by default MMEngine's
            (the one the runner puts the model on), so that a config saved
            by a CPU run still autocasts on the device of a later run.
        **kwargs: Passed to ``OptimWrapper``.
    """

    def __init__(self, device_type: str | None = None, **kwargs) -> None:
        super().__init__(**kwargs)
        self.device_type = device_type

    @contextmanager
    def optim_context(self, model: nn.Module) -> Iterator[None]:
        """``OptimWrapper``'s context (gradient accumulation) and bfloat16 autocast.

        Args:
            model (nn.Module): The training model.
        """
        with (
            super().optim_context(model),
            autocast(device_type=self.device_type, dtype=torch.bfloat16),
        ):
            yield


@dataclass(frozen=True)
class AmpPlan:
    """What ``--amp`` does on one device.

    Attributes:
        device (str): The device the runner will use (``'cuda'``, ``'cpu'``...).
        dtype (str): The autocast dtype, ``'float16'`` or ``'bfloat16'``.
        loss_scale (bool): Whether training scales the loss (dynamically).
    """

    device: str
    dtype: str
    loss_scale: bool

    def describe(self, training: bool) -> str:
        """The log line: device, dtype and, when training, the loss scaling."""
        text = f'{AMP_FLAG}: {self.dtype} autocast on {self.device}'
        if self.device == 'cpu':
            text += ' (CPU autocast computes in bfloat16 only)'
        if training:
            text += (
                ", dynamic loss scale (MMEngine's AmpOptimWrapper)"
                if self.loss_scale
                else ', no loss scale (bfloat16 has the exponent range of float32)'
            )
        return text


def amp_device() -> str:
    """The device the runner computes on, as ``--amp`` sees it.

    ``'cuda'`` whenever CUDA is available, else MMEngine's device (``'npu'``,
    ``'mlu'``, ``'musa'``, ``'mps'`` or ``'cpu'``).
    """
    return 'cuda' if torch.cuda.is_available() else get_device()


def amp_plan(device: str) -> AmpPlan:
    """Decide what ``--amp`` means on ``device`` (see the module docstring).

    Args:
        device (str): A device type, as :func:`amp_device` returns.

    Returns:
        AmpPlan: float16 with a loss scale on MMEngine's AMP devices, bfloat16
        without one on the CPU.

    Raises:
        AmpUnavailableError: On any other device (MPS): MMEngine has no
            autocast there.
    """
    if device in _MMENGINE_AMP_DEVICES:
        return AmpPlan(device=device, dtype='float16', loss_scale=True)
    if device == 'cpu':
        return AmpPlan(device=device, dtype='bfloat16', loss_scale=False)
    raise AmpUnavailableError(
        f'{AMP_FLAG} is not supported on {device}: MMEngine runs mixed precision on CUDA '
        f'(float16) and on the CPU (bfloat16) only; run without {AMP_FLAG}'
    )


def _use_amp_optim_wrapper(cfg: Config, plan: AmpPlan) -> None:
    wrapper = cfg.optim_wrapper
    wrapper_type = wrapper.get('type', 'OptimWrapper')
    if wrapper_type not in _STOCK_WRAPPERS:
        raise AmpUnavailableError(
            f'{AMP_FLAG} replaces the optim wrapper by an AMP one, but the config uses '
            f'{wrapper_type!r}; set up mixed precision in its optim_wrapper instead'
        )
    if plan.loss_scale:
        # As MMPretrain's train.py: MMEngine's wrapper, float16 by default.
        wrapper.type = 'AmpOptimWrapper'
        wrapper.setdefault('loss_scale', 'dynamic')
        return
    dtype = wrapper.pop('dtype', None)
    if dtype not in (None, 'bfloat16', torch.bfloat16):
        raise AmpUnavailableError(
            f'{AMP_FLAG} on {plan.device}: optim_wrapper.dtype={dtype!r}, but autocast on the '
            'CPU computes in bfloat16 only; remove the dtype or run on a GPU'
        )
    for key in _LOSS_SCALE_ARGUMENTS:
        wrapper.pop(key, None)
    wrapper.type = 'mmpretrain.BFloat16OptimWrapper'


def apply_amp(cfg: Config, *, training: bool, device: str | None = None) -> AmpPlan:
    """Set ``cfg`` up for ``--amp`` on ``device`` and log what it means.

    Training: the optim wrapper becomes MMEngine's ``AmpOptimWrapper``, or on
    the CPU :class:`BFloat16OptimWrapper`. Testing: ``test_cfg.fp16 = True``,
    which MMEngine's test loop runs in float16 autocast on CUDA and in
    bfloat16 autocast on the CPU.

    Args:
        cfg (Config): The runner config (changed in place).
        training (bool): For ``tools/train.py`` (else ``tools/test.py``).
        device (str | None): The device type; by default :func:`amp_device`.

    Returns:
        AmpPlan: The precision the run will use.

    Raises:
        AmpUnavailableError: ``--amp`` is not possible here (see :func:`amp_plan`),
            or the config's optim wrapper is not MMEngine's stock one.
    """
    plan = amp_plan(amp_device() if device is None else device)
    if training:
        _use_amp_optim_wrapper(cfg, plan)
    else:
        if cfg.get('test_cfg') is None:
            cfg.test_cfg = dict()
        cfg.test_cfg.fp16 = True
    print_log(plan.describe(training), logger='current', level=logging.INFO)
    return plan
