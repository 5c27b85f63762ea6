"""Distributed launch on machines without CUDA.

MMEngine's ``init_dist`` calls ``torch.cuda.set_device`` and defaults to NCCL,
and its ``Runner`` wraps the model in ``MMDistributedDataParallel`` with
``device_ids=[LOCAL_RANK]``; all three fail on a CPU-only machine. When CUDA is
unavailable, :func:`setup_distributed` initialises the process group itself with
gloo (the Runner then skips ``init_dist``) and sets ``model_wrapper_cfg`` so DDP
is built without device ids. With CUDA it changes nothing.
"""

import datetime
import os
import subprocess

import torch
import torch.distributed as torch_dist
from mmengine.config import Config
from mmengine.logging import print_log

DEFAULT_PORT = '29500'


def _env_from_slurm() -> None:
    """Set the torch.distributed variables from Slurm's, as MMEngine does for GPUs."""
    os.environ['RANK'] = os.environ['SLURM_PROCID']
    os.environ['WORLD_SIZE'] = os.environ['SLURM_NTASKS']
    os.environ['LOCAL_RANK'] = os.environ.get('SLURM_LOCALID', '0')
    os.environ.setdefault('MASTER_PORT', DEFAULT_PORT)
    if 'MASTER_ADDR' not in os.environ:
        node_list = os.environ['SLURM_NODELIST']
        os.environ['MASTER_ADDR'] = subprocess.getoutput(
            f'scontrol show hostname {node_list} | head -n1'
        )


def _env_from_mpi() -> None:
    os.environ['RANK'] = os.environ['OMPI_COMM_WORLD_RANK']
    os.environ['WORLD_SIZE'] = os.environ['OMPI_COMM_WORLD_SIZE']
    os.environ['LOCAL_RANK'] = os.environ['OMPI_COMM_WORLD_LOCAL_RANK']
    os.environ.setdefault('MASTER_PORT', DEFAULT_PORT)
    if 'MASTER_ADDR' not in os.environ:
        raise KeyError('The environment variable MASTER_ADDR is not set')


def init_cpu_process_group(launcher: str, timeout_s: float | None = None) -> None:
    """Initialise a gloo process group for ``launcher`` without touching CUDA."""
    if launcher == 'slurm':
        _env_from_slurm()
    elif launcher == 'mpi':
        _env_from_mpi()
    elif launcher != 'pytorch':
        raise ValueError(f"launcher must be 'pytorch', 'slurm' or 'mpi', got {launcher!r}")
    kwargs = {}
    if timeout_s is not None:
        kwargs['timeout'] = datetime.timedelta(seconds=timeout_s)
    torch_dist.init_process_group(
        backend='gloo',
        init_method='env://',
        rank=int(os.environ['RANK']),
        world_size=int(os.environ['WORLD_SIZE']),
        **kwargs,
    )


def setup_distributed(cfg: Config) -> None:
    """Prepare ``cfg`` (and the process group) for ``cfg.launcher`` on this machine.

    Call before building the Runner. A no-op for ``launcher='none'`` or when
    CUDA is available (MMEngine's own path then applies).
    """
    launcher = cfg.get('launcher', 'none')
    if launcher == 'none' or torch.cuda.is_available():
        return

    env_cfg = cfg.setdefault('env_cfg', {})
    dist_cfg = env_cfg.setdefault('dist_cfg', {})
    if dist_cfg.get('backend', 'nccl') != 'gloo':
        print_log(
            f'No CUDA device: using the gloo backend instead of {dist_cfg.get("backend", "nccl")}',
            logger='current',
        )
    dist_cfg['backend'] = 'gloo'
    if not torch_dist.is_initialized():
        init_cpu_process_group(launcher, dist_cfg.get('timeout'))

    # The Runner passes device_ids=[LOCAL_RANK] as a default argument; an
    # explicit device_ids=None in the wrapper config overrides it, which is
    # what DDP wants for CPU modules.
    wrapper_cfg = cfg.get('model_wrapper_cfg')
    if wrapper_cfg is None:
        cfg.model_wrapper_cfg = dict(
            type='MMDistributedDataParallel',
            device_ids=None,
            broadcast_buffers=False,
            find_unused_parameters=cfg.get('find_unused_parameters', False),
        )
    elif wrapper_cfg.get('type', 'MMDistributedDataParallel') in (
        'MMDistributedDataParallel',
        'mmengine.MMDistributedDataParallel',
    ):
        wrapper_cfg.setdefault('device_ids', None)


def teardown_distributed() -> None:
    """Destroy the default process group, if any, once a tool's work is done.

    Left to the interpreter's shutdown, a live gloo group can abort a rank
    after its work is finished ('terminate called without an active
    exception'), which turns a successful run into a failed torchrun job. The
    barrier first lets every rank finish its last collective.
    """
    if torch_dist.is_available() and torch_dist.is_initialized():
        torch_dist.barrier()
        torch_dist.destroy_process_group()
