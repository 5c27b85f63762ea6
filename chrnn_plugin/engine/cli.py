"""Command-line pieces shared by ``tools/train.py``, ``tools/test.py`` and ``print_config.py``."""

import argparse
import os
import os.path as osp

import torch
from mmengine.config import Config, DictAction
from mmengine.registry import RUNNERS
from mmengine.runner import Runner

from .safe_loading import TRUST_ENV_VAR

CHECKPOINT_EPILOG = f"""\
Checkpoints are loaded with torch.load(weights_only=True) and an allow-list of the
types MMEngine checkpoints contain; a checkpoint holding anything else is refused.
For a trusted legacy checkpoint, pass --trust-checkpoint or set {TRUST_ENV_VAR}=1.
Without CUDA, --launcher pytorch/slurm/mpi runs on CPU with the gloo backend.
"""


def add_cfg_options_argument(parser: argparse.ArgumentParser) -> None:
    """``--cfg-options key=value ...``, merged into the config."""
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override config settings, xxx=yyy pairs merged into the config; lists as '
        'key="[a,b]" or key=a,b, nested as key="[(a,b),(c,d)]" (quotes needed, no spaces)',
    )


def add_runtime_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags every runner tool takes: launcher, checkpoint trust, pin memory, local rank."""
    parser.add_argument(
        '--no-pin-memory', action='store_true', help='disable pin_memory in dataloaders'
    )
    parser.add_argument(
        '--launcher',
        choices=['none', 'pytorch', 'slurm', 'mpi'],
        default='none',
        help='job launcher',
    )
    parser.add_argument(
        '--trust-checkpoint',
        action='store_true',
        help=f'load a trusted legacy checkpoint that holds types outside the MMEngine '
        f'allow-list with weights_only=False (same as {TRUST_ENV_VAR}=1)',
    )
    # torch.distributed.launch passes --local-rank (torch >= 2.0) or --local_rank.
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)


def apply_runtime_arguments(args: argparse.Namespace) -> None:
    """Export what the runtime flags mean to the environment the runner reads.

    Called by the tools' ``main``, not by their ``parse_args``: parsing stays
    free of side effects, so parsing ``--trust-checkpoint`` (as the docs tests
    do) never switches the opt-in on for the rest of the process.
    """
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
    if args.trust_checkpoint:
        os.environ[TRUST_ENV_VAR] = '1'


def set_work_dir(cfg: Config, args: argparse.Namespace) -> None:
    """Command line, then config, then ``./work_dirs/<config name>``."""
    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir') is None:
        cfg.work_dir = osp.join('./work_dirs', osp.splitext(osp.basename(args.config))[0])


def dataloader_with_defaults(loader_cfg: dict, no_pin_memory: bool, **defaults) -> dict:
    """MMPretrain's dataloader defaults under ``loader_cfg``; pin memory only with CUDA."""
    loader = dict(
        pin_memory=torch.cuda.is_available(), collate_fn=dict(type='default_collate'), **defaults
    )
    loader.update(loader_cfg)
    if no_pin_memory:
        loader['pin_memory'] = False
    return loader


def build_runner(cfg: Config) -> Runner:
    """The stock runner, or the one the config names in ``runner_type``."""
    return Runner.from_cfg(cfg) if 'runner_type' not in cfg else RUNNERS.build(cfg)
