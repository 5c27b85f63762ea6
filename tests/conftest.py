"""One switch for the device the tests run on, as timm's tests have.

    python -m pytest tests                    # CPU, the default
    python -m pytest tests --device cuda      # or CHRNN_TEST_DEVICE=cuda

Tests that compute with tensors take the ``device`` fixture instead of
hard-coding one, so the same suite checks the CPU and the GPU paths. On the
CPU the session runs Triton in its interpreter (``TRITON_INTERPRET=1``, unless
set), so that the ``triton`` sweep path runs on CPU tensors whichever test
first imports its kernels (Triton reads the variable when a kernel is defined).
"""

import os

import pytest
import torch

DEVICE_ENV_VAR = 'CHRNN_TEST_DEVICE'


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        '--device',
        default=None,
        help=f'torch device for the tests (default: ${DEVICE_ENV_VAR} or cpu)',
    )


def requested_device(config: pytest.Config) -> torch.device:
    """The device named by ``--device``, else ``$CHRNN_TEST_DEVICE``, else the CPU."""
    name = config.getoption('--device') or os.environ.get(DEVICE_ENV_VAR) or 'cpu'
    try:
        device = torch.device(name)
    except RuntimeError as error:
        raise pytest.UsageError(f'--device: {error}') from None
    if device.type == 'cuda' and not torch.cuda.is_available():
        raise pytest.UsageError(f'--device {name}: torch.cuda.is_available() is False here')
    return device


def pytest_configure(config: pytest.Config) -> None:
    # Fail at start-up on an unusable device, not in the first test that asks.
    if requested_device(config).type == 'cpu':
        os.environ.setdefault('TRITON_INTERPRET', '1')


@pytest.fixture(scope='session')
def device(pytestconfig: pytest.Config) -> torch.device:
    """The device every tensor test runs on."""
    return requested_device(pytestconfig)
