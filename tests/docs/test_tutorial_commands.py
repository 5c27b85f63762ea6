"""The docs cannot drift from the code.

* Every ``python tools/...`` / ``bash tools/...`` command in a ``bash`` block of
  any page names a tool that exists, configs that exist, and arguments that
  the tool's own parser accepts (the launch scripts' arguments are mapped to
  ``tools/train.py`` / ``tools/test.py``).
* Every block marked ``% cpu-test`` is run, in page order, in a fresh user
  project (``tools`` and ``configs`` linked in, fake MIT67, SUN397 and
  Places205 releases under ``data/``). Training and testing commands get
  ``--cfg-options`` that shrink the model, the images and the schedule (and
  Places205 commands the fake release's class count); the commands
  themselves are the pages' own.
"""

import importlib.util
import os
import shlex
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.datasets import fake_layouts

from .doc_commands import (
    REPO_ROOT,
    SHELL_LANGS,
    blocks,
    config_paths,
    pages,
    python_tool_argv,
    tool_calls,
)

ALL_BLOCKS = [b for page in pages() for b in blocks(page)]
ALL_CALLS = [c for b in ALL_BLOCKS if b.lang in SHELL_LANGS for c in tool_calls(b)]
MARKED_PAGES = sorted({b.page for b in ALL_BLOCKS if b.marked})

# Applied to every train/test command of a marked block: ResNet-18 with 8 base
# channels instead of ResNet-50 (stages 3 and 4 have 32 and 64 channels), a
# small neck, 64 px images, batch 2, one epoch, no pretrained weights.
TINY_NECK = [
    'model.neck.in_channels=(32,64)',
    'model.neck.hidden_channels=8',
    'model.neck.out_channels=8',
    'model.head.in_channels=16',  # 8 channels x 2 levels
]
TINY_MODEL = {'hsrn': TINY_NECK, 'hlstm': TINY_NECK, 'gap': ['model.head.in_channels=64']}
TINY_COMMON = (
    [
        'model.backbone.depth=18',
        'model.backbone.stem_channels=8',
        'model.backbone.base_channels=8',
        'model.backbone.init_cfg=None',
        'train_cfg.max_epochs=1',
        'default_hooks.logger.interval=1',
        'train_dataloader.dataset.pipeline.1.scale=64',
    ]
    + [
        option
        for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader')
        for option in (f'{loader}.batch_size=2', f'{loader}.num_workers=0')
    ]
    + [
        option
        for loader in ('val_dataloader', 'test_dataloader')
        for option in (
            f'{loader}.dataset.pipeline.1.scale=72',
            f'{loader}.dataset.pipeline.2.crop_size=64',
        )
    ]
)
RUNS_A_MODEL = ('train.py', 'test.py', 'dist_train.sh', 'dist_test.sh')


def _load_tool(path: str):
    spec = importlib.util.spec_from_file_location(f'doc_tool_{Path(path).stem}', REPO_ROOT / path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_TOOLS: dict = {}


def _parse(tool: str, argv: list[str]) -> None:
    if tool not in _TOOLS:
        _TOOLS[tool] = _load_tool(tool)
    saved = sys.argv
    sys.argv = [tool, *argv]
    try:
        _TOOLS[tool].parse_args()
    finally:
        sys.argv = saved


def test_docs_have_commands_and_marked_blocks():
    assert len(ALL_CALLS) >= 20, 'the tool commands were not found in the docs'
    assert {p.name for p in MARKED_PAGES} >= {
        'get_started.md',
        'train_mit67.md',
        'distributed.md',
        'swap_necks.md',
        'prepare_datasets.md',
        'custom_backbone.md',
    }


@pytest.mark.parametrize('call', ALL_CALLS, ids=lambda c: f'{c.where}:{c.tool}')
def test_tool_command_parses(call, capsys):
    assert (REPO_ROOT / call.tool).is_file(), f'{call.where}: {call.tool} does not exist'
    tool, argv = python_tool_argv(call)
    for config in config_paths(argv):
        assert (REPO_ROOT / config).is_file(), f'{call.where}: {config} does not exist'
    try:
        _parse(tool, argv)
    except SystemExit as exit_:
        pytest.fail(
            f'{call.where}: `{call.command}` does not parse ({tool} {argv}):\n'
            f'{capsys.readouterr().err}'
        )
        raise AssertionError from exit_


# The fake Places205 has 3 classes; the config expects the release's 205.
FAKE_DATA = {
    'places205': [
        f'{loader}.dataset.num_classes=3'
        for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader')
    ]
}


def _tiny_options(command: str) -> str:
    """Insert the shrinking --cfg-options into a command that runs a tool on a config."""
    tokens = shlex.split(command)
    configs = [Path(t) for t in tokens if t.startswith('configs/') and t.endswith('.py')]
    if not configs:
        return command
    chosen = list(FAKE_DATA.get(configs[0].parent.name, []))
    if any(t.endswith(RUNS_A_MODEL) for t in tokens):
        chosen += TINY_COMMON + TINY_MODEL[configs[0].name.split('_')[0]]
    if not chosen:
        return command
    options = ' '.join(shlex.quote(o) for o in chosen)
    # Edit the text, not the tokens: globs and variables stay for bash to expand.
    if ' --cfg-options ' in command:
        # the page's own options come after ours and win
        return command.replace(' --cfg-options ', f' --cfg-options {options} ', 1)
    return f'{command.rstrip()} --cfg-options {options}'


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


def _user_project(root: Path) -> dict:
    (root / 'tools').symlink_to(REPO_ROOT / 'tools')
    (root / 'configs').symlink_to(REPO_ROOT / 'configs')
    fake_layouts.make_mit67(str(root / 'data' / 'mit67'))
    fake_layouts.make_sun397(str(root / 'data' / 'sun397'))
    fake_layouts.make_places205(str(root / 'data' / 'places205'))
    env = dict(os.environ)
    env['PATH'] = os.pathsep.join([str(Path(sys.executable).parent), env.get('PATH', '')])
    env['PYTHONPATH'] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get('PYTHONPATH')) if p)
    env['PYTHON'] = sys.executable
    env['OMP_NUM_THREADS'] = '1'
    env['PORT'] = str(_free_port())
    env.pop('CHRNN_TRUST_CHECKPOINTS', None)
    return env


def _run(block, script: list[str], root: Path, env: dict) -> None:
    result = subprocess.run(script, cwd=root, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        pytest.fail(
            f'{block.where}: exited with {result.returncode}\n--- ran\n{script[-1]}\n'
            f'--- stdout\n{result.stdout[-3000:]}\n--- stderr\n{result.stderr[-5000:]}'
        )


@pytest.mark.parametrize('page', MARKED_PAGES, ids=lambda p: p.name)
def test_marked_blocks_run(page, tmp_path):
    env = _user_project(tmp_path)
    for block in blocks(page):
        if not block.marked:
            continue
        if block.lang == 'python':
            _run(block, [sys.executable, '-c', block.text], tmp_path, env)
        elif block.lang in SHELL_LANGS:
            lines = block.text.replace('\\\n', ' ').splitlines()
            script = '\n'.join(_tiny_options(line) if line.strip() else line for line in lines)
            _run(block, ['bash', '-euo', 'pipefail', '-c', script], tmp_path, env)
        else:
            pytest.fail(f'{block.where}: cannot run a marked {block.lang!r} block')
