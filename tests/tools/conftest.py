"""A tiny project for running the tools as a user does: images, configs, a runner helper."""

import os
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

REPO_ROOT = Path(__file__).resolve().parents[2]
TOOLS = REPO_ROOT / 'tools'
PAUSE_ENV_VAR = 'CHRNN_TEST_PAUSE_FILE'

# Registered by the test config. When PAUSE_ENV_VAR is set, training stops after
# the first iteration of epoch 2 (runner.epoch == 1): it writes the marker file
# and sleeps until the test kills it. Without the variable it does nothing, so
# the same config serves the uninterrupted reference run.
PAUSE_HOOK_SOURCE = f"""
import os
import time

from mmengine.hooks import Hook
from mmpretrain.registry import HOOKS


@HOOKS.register_module()
class PauseForKillHook(Hook):
    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        marker = os.environ.get({PAUSE_ENV_VAR!r})
        if marker and runner.epoch == 1:
            with open(marker, 'w') as f:
                f.write('paused')
            while True:
                time.sleep(1)
"""

CONFIG_TEMPLATE = """
default_scope = 'mmpretrain'
custom_imports = dict(imports=['chrnn_plugin', 'pause_hook'], allow_failed_imports=False)

model = dict(
    type='ImageClassifier',
    backbone=dict(
        type='ResNet_CIFAR', depth=18, stem_channels=8, base_channels=8, out_indices=(3,)
    ),
    neck=dict(type='HSRNNeck', in_channels=64, hidden_channels=8, out_channels=8,
              extra_levels=1),
    head=dict(type='LinearClsHead', num_classes=2, in_channels=16,
              loss=dict(type='CrossEntropyLoss')),
)
data_preprocessor = dict(num_classes=2, mean=[127.5] * 3, std=[127.5] * 3, to_rgb=False)

# No random transforms: resuming must reproduce the uninterrupted run exactly.
pipeline = [dict(type='LoadImageFromFile'), dict(type='PackInputs')]
train_dataloader = dict(
    batch_size=4,
    num_workers=0,
    dataset=dict(type='CustomDataset', data_root={data_root!r}, pipeline=pipeline),
    sampler=dict(type='DefaultSampler', shuffle=True),
)
val_dataloader = dict(
    batch_size=4,
    num_workers=0,
    dataset=dict(type='CustomDataset', data_root={data_root!r}, pipeline=pipeline),
    sampler=dict(type='DefaultSampler', shuffle=False),
)
test_dataloader = val_dataloader
val_evaluator = dict(type='Accuracy', topk=(1,))
test_evaluator = val_evaluator

optim_wrapper = dict(optimizer=dict(type='SGD', lr=0.05, momentum=0.9, weight_decay=1e-4))
param_scheduler = dict(type='MultiStepLR', by_epoch=True, milestones=[1], gamma=0.5)
train_cfg = dict(by_epoch=True, max_epochs=2, val_interval=1)
val_cfg = dict()
test_cfg = dict()
auto_scale_lr = dict(base_batch_size=4)

default_hooks = dict(
    timer=dict(type='IterTimerHook'),
    logger=dict(type='LoggerHook', interval=1),
    param_scheduler=dict(type='ParamSchedulerHook'),
    checkpoint=dict(type='CheckpointHook', interval=1),
    sampler_seed=dict(type='DistSamplerSeedHook'),
    visualization=dict(type='VisualizationHook', enable=False),
)
custom_hooks = [dict(type='PauseForKillHook')]
env_cfg = dict(
    cudnn_benchmark=False,
    mp_cfg=dict(mp_start_method='fork', opencv_num_threads=0),
    dist_cfg=dict(backend='nccl'),
)
visualizer = dict(type='UniversalVisualizer', vis_backends=[dict(type='LocalVisBackend')])
log_level = 'INFO'
load_from = None
resume = False
randomness = dict(seed=0, deterministic=True)
"""


@dataclass
class TinyProject:
    """Paths of the generated project."""

    root: Path
    config: Path
    device: str = 'cpu'
    tools: Path = TOOLS
    pause_env_var: str = PAUSE_ENV_VAR

    def env(self, extra: dict | None = None) -> dict:
        """The environment the tools run in (see :func:`tool_env`)."""
        return tool_env(self.root, extra, self.device)

    @staticmethod
    def free_port() -> int:
        """A TCP port that is free right now (for torchrun's rendezvous)."""
        return free_port()

    def run(
        self, args: list, env: dict | None = None, check: bool = True
    ) -> subprocess.CompletedProcess:
        """Run ``args`` (a tool and its arguments) in ``root``; fail with its output."""
        result = subprocess.run(
            [str(a) for a in args],
            cwd=self.root,
            env=tool_env(self.root, env, self.device),
            capture_output=True,
            text=True,
        )
        if check and result.returncode != 0:
            pytest.fail(
                f'{args} exited with {result.returncode}\n'
                f'--- stdout\n{result.stdout[-4000:]}\n--- stderr\n{result.stderr[-6000:]}'
            )
        return result


def tool_env(root: Path, extra: dict | None = None, device: str = 'cpu') -> dict:
    """The environment a user would have: repo and pause hook importable, one thread each.

    The tools run on the GPU whenever they see one, so the test device is
    passed on as the GPUs they may see: none for ``cpu``, the one named for
    ``cuda[:i]``.
    """
    env = dict(os.environ)
    env['PYTHONPATH'] = os.pathsep.join(
        p for p in (str(REPO_ROOT), str(root), env.get('PYTHONPATH', '')) if p
    )
    env['PYTHON'] = sys.executable  # used by the shell scripts
    env['OMP_NUM_THREADS'] = '1'
    env.pop('CHRNN_TRUST_CHECKPOINTS', None)
    env.pop(PAUSE_ENV_VAR, None)
    torch_device = torch.device(device)
    env['CUDA_VISIBLE_DEVICES'] = '' if torch_device.type == 'cpu' else str(torch_device.index or 0)
    env.update(extra or {})
    return env


def free_port() -> int:
    """A TCP port that is free right now (for torchrun's rendezvous)."""
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


@pytest.fixture(scope='session')
def tiny_project(tmp_path_factory, device) -> TinyProject:
    """8 random 32x32 PNGs in two classes, the pause hook module and a config."""
    root = tmp_path_factory.mktemp('tiny_project')
    rng = np.random.default_rng(0)
    for label in range(2):
        class_dir = root / 'data' / f'class{label}'
        class_dir.mkdir(parents=True)
        for index in range(4):
            pixels = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(class_dir / f'{index}.png')
    (root / 'pause_hook.py').write_text(PAUSE_HOOK_SOURCE)
    config = root / 'tiny_config.py'
    config.write_text(CONFIG_TEMPLATE.format(data_root=str(root / 'data')))
    return TinyProject(root=root, config=config, device=str(device))


@pytest.fixture(scope='session')
def one_epoch_checkpoint(tiny_project, tmp_path_factory) -> Path:
    """``epoch_1.pth`` of one epoch of ``tools/train.py`` on the tiny project.

    Trained once for every test module that builds files from a real checkpoint; read it,
    never write to its folder.
    """
    work_dir = tmp_path_factory.mktemp('one_epoch') / 'work'
    tiny_project.run(
        [sys.executable, TOOLS / 'train.py', tiny_project.config, '--work-dir', work_dir]
        + ['--cfg-options', 'train_cfg.max_epochs=1']
    )
    return work_dir / 'epoch_1.pth'
