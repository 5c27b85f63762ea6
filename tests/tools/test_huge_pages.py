"""The tools set up CPU memory: huge pages before torch allocates anything, freed memory kept."""

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
TOOLS = [
    'tools/train.py',
    'tools/test.py',
    'tools/demo.py',
    'tools/infer.py',
    'tools/analysis_tools/benchmark_neck.py',
]
HEAVY = ('torch', 'mmengine', 'mmpretrain', 'chrnn_plugin', 'matplotlib', 'numpy')


def _sets_the_variable(node: ast.stmt) -> bool:
    return "setdefault('THP_MEM_ALLOC_ENABLE', '1')" in ast.unparse(node)


def _imports_heavy(node: ast.stmt) -> bool:
    names = []
    for child in ast.walk(node):
        if isinstance(child, ast.Import):
            names += [alias.name for alias in child.names]
        elif isinstance(child, ast.ImportFrom) and child.module:
            names.append(child.module)
    return any(name.split('.')[0] in HEAVY for name in names)


@pytest.mark.parametrize('tool', TOOLS)
def test_the_variable_is_set_before_any_heavy_import(tool):
    # PyTorch reads THP_MEM_ALLOC_ENABLE once, at its first CPU allocation: set later, it does
    # nothing. So the tool must set it before anything that imports torch.
    body = ast.parse((REPO_ROOT / tool).read_text()).body
    setting = [i for i, node in enumerate(body) if _sets_the_variable(node)]
    heavy = [i for i, node in enumerate(body) if _imports_heavy(node)]
    assert setting, f'{tool} does not set THP_MEM_ALLOC_ENABLE'
    assert heavy and setting[0] < heavy[0], f'{tool} imports torch before setting it'


def test_a_users_setting_is_kept():
    # setdefault: THP_MEM_ALLOC_ENABLE=0 in the environment opts out.
    env = {**os.environ, 'THP_MEM_ALLOC_ENABLE': '0', 'PYTHONPATH': str(REPO_ROOT)}
    probe = (
        'import runpy, sys, os; sys.argv = ["train.py", "--help"]\n'
        'try:\n    runpy.run_path("tools/train.py", run_name="__main__")\n'
        'except SystemExit:\n    pass\n'
        'print("THP", os.environ["THP_MEM_ALLOC_ENABLE"])'
    )
    result = subprocess.run(
        [sys.executable, '-c', probe], cwd=REPO_ROOT, env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().endswith('THP 0')


@pytest.mark.parametrize('tool', TOOLS)
def test_every_tool_keeps_freed_memory_when_run(tool):
    # Called when the tool runs as a script, not when a test imports it.
    tree = ast.parse((REPO_ROOT / tool).read_text())
    main_blocks = [
        node
        for node in tree.body
        if isinstance(node, ast.If) and "__name__ == '__main__'" in ast.unparse(node.test)
    ]
    assert len(main_blocks) == 1
    first = ast.unparse(main_blocks[0].body[0])
    assert first == 'keep_freed_memory()', f'{tool}: the __main__ block starts with {first!r}'
