"""A checkpoint that does not fit the model, through the tools: test.py refuses, train.py logs."""

import sys
from pathlib import Path

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import init_default_scope
from mmpretrain.registry import MODELS

import chrnn_plugin  # noqa: F401  (registers the necks)

pytestmark = pytest.mark.slow

PY = sys.executable
TOOLS = Path(__file__).resolve().parents[2] / 'tools'
SHOWN = 5  # how many differences of each kind the tools name


def _state_dict(model_cfg: dict, seed: int) -> dict:
    init_default_scope('mmpretrain')
    torch.manual_seed(seed)
    return MODELS.build(model_cfg).state_dict()


@pytest.fixture(scope='module')
def checkpoints(tiny_project, tmp_path_factory):
    """Checkpoints of the tiny classifier with an HLSTM neck, and of its backbone alone."""
    root = tmp_path_factory.mktemp('strict_loading')
    model_cfg = Config.fromfile(tiny_project.config, import_custom_modules=False).model.to_dict()
    expected = _state_dict(model_cfg, seed=0)
    other_cfg = {**model_cfg, 'neck': {**model_cfg['neck'], 'type': 'HLSTMNeck'}}
    other = _state_dict(other_cfg, seed=0)
    paths = {'root': root, 'other_neck': root / 'hlstm_neck.pth', 'backbone': root / 'bb.pth'}
    torch.save({'meta': {'epoch': 1}, 'state_dict': other}, paths['other_neck'])
    backbone = {k: v for k, v in expected.items() if k.startswith('backbone.')}
    torch.save({'state_dict': backbone}, paths['backbone'])
    # What the tools should name, in the model's order.
    paths['shape_mismatches'] = [
        f'{k}: checkpoint {list(other[k].shape)}, model {list(v.shape)}'
        for k, v in expected.items()
        if other[k].shape != v.shape
    ]
    paths['missing_from_backbone'] = [k for k in expected if k not in backbone]
    assert len(paths['shape_mismatches']) > SHOWN and len(paths['missing_from_backbone']) > SHOWN
    assert other.keys() == expected.keys(), 'the same names: only the shapes tell them apart'
    return paths


def _test_py(tiny_project, checkpoint, work_dir, *flags):
    return tiny_project.run(
        [PY, TOOLS / 'test.py', tiny_project.config, checkpoint, '--work-dir', work_dir, *flags],
        check=False,
    )


def test_test_py_refuses_a_checkpoint_of_another_neck(tiny_project, checkpoints):
    result = _test_py(tiny_project, checkpoints['other_neck'], checkpoints['root'] / 'w_strict')
    assert result.returncode == 1, result.stderr[-3000:]
    log = result.stdout + result.stderr
    assert f'Refusing to load checkpoint {checkpoints["other_neck"]}' in result.stderr
    mismatches = checkpoints['shape_mismatches']
    assert f'shape mismatches ({len(mismatches)}): ' in result.stderr
    for line in mismatches[:SHOWN]:
        assert line in result.stderr
    assert mismatches[SHOWN] not in result.stderr
    assert '--no-strict' in result.stderr
    assert 'accuracy/top1' not in log  # refused before any evaluation


def test_test_py_no_strict_evaluates_and_names_the_mismatches(tiny_project, checkpoints):
    result = _test_py(
        tiny_project, checkpoints['other_neck'], checkpoints['root'] / 'w_no_strict', '--no-strict'
    )
    assert result.returncode == 0, result.stderr[-3000:]
    log = result.stdout + result.stderr
    assert 'accuracy/top1' in log
    assert f'Checkpoint {checkpoints["other_neck"]} does not match the model' in log
    assert checkpoints['shape_mismatches'][0] in log


def test_train_py_load_from_stays_non_strict_and_logs_the_missing_keys(tiny_project, checkpoints):
    result = tiny_project.run(
        [PY, TOOLS / 'train.py', tiny_project.config]
        + ['--work-dir', checkpoints['root'] / 'w_train']
        + ['--cfg-options', f'load_from={checkpoints["backbone"]}', 'train_cfg.max_epochs=1']
    )
    log = result.stdout + result.stderr
    assert 'Epoch(train) [1]' in log
    missing = checkpoints['missing_from_backbone']
    assert f'Checkpoint {checkpoints["backbone"]} does not match the model' in log
    assert f'missing keys ({len(missing)}): {"; ".join(missing[:SHOWN])}; ...' in log
