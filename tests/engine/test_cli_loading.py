"""Checked checkpoint loading in process: what a mismatch names, get_model, the trust flag."""

import argparse
import os
import re
from collections import OrderedDict

import numpy as np
import pytest
import torch
from mmengine.registry import init_default_scope
from mmpretrain.apis import ImageClassificationInferencer
from mmpretrain.apis import get_model as mmpretrain_get_model
from mmpretrain.models import AverageClsScoreTTA
from torch import nn

import chrnn_plugin  # noqa: F401  (registers the necks; the safe loader)
from chrnn_plugin.engine import TRUST_ENV_VAR
from chrnn_plugin.engine.cli import apply_trust_checkpoint, load_weights
from chrnn_plugin.engine.strict_loading import (
    CheckpointMismatchError,
    ShapeMismatch,
    get_model,
    load_checkpoint_into,
    load_state_dict_checked,
)

TINY_CONFIG = """
default_scope = 'mmpretrain'
model = dict(
    type='ImageClassifier',
    backbone=dict(type='ResNet_CIFAR', depth=18, stem_channels=8, base_channels=8,
                  out_indices=(3,)),
    neck=dict(type={neck!r}, in_channels=64, hidden_channels=4, out_channels=4),
    head=dict(type='LinearClsHead', num_classes=2, in_channels=4),
)
data_preprocessor = dict(num_classes=2, mean=[127.5] * 3, std=[127.5] * 3, to_rgb=False)
test_dataloader = dict(
    dataset=dict(type='CustomDataset', pipeline=[dict(type='LoadImageFromFile'),
                                                 dict(type='PackInputs')]),
)
"""


def _linears(n: int, out_features: int = 2) -> nn.ModuleList:
    return nn.ModuleList(nn.Linear(2, out_features) for _ in range(n))


def _differing() -> tuple[nn.Module, OrderedDict]:
    """A model, and a state dict with 6 missing keys, 6 unexpected and 6 shape mismatches."""
    model = nn.Module()
    model.kept = _linears(3)
    model.dropped = _linears(3)
    state_dict = OrderedDict()
    for i, linear in enumerate(_linears(3, out_features=3)):  # other shapes
        state_dict.update({f'kept.{i}.{k}': v for k, v in linear.state_dict().items()})
    for i, linear in enumerate(_linears(3)):  # keys the model lacks
        state_dict.update({f'extra.{i}.{k}': v for k, v in linear.state_dict().items()})
    return model, state_dict


def test_strict_refusal_names_the_checkpoint_and_the_first_five_of_each():
    model, state_dict = _differing()
    with pytest.raises(CheckpointMismatchError) as info:
        load_state_dict_checked(model, state_dict, 'some/dir/other.pth')
    message = str(info.value)
    assert message.startswith('Refusing to load checkpoint some/dir/other.pth')
    missing = [f'dropped.{i}.{k}' for i in range(3) for k in ('weight', 'bias')]
    unexpected = [f'extra.{i}.{k}' for i in range(3) for k in ('weight', 'bias')]
    assert f'missing keys (6): {"; ".join(missing[:5])}; ... (1 more)' in message
    assert f'unexpected keys (6): {"; ".join(unexpected[:5])}; ... (1 more)' in message
    assert 'shape mismatches (6): kept.0.weight: checkpoint [3, 2], model [2, 2]; ' in message
    assert 'kept.0.bias: checkpoint [3], model [2]' in message
    assert 'use strict=False' in message
    assert info.value.mismatch.shape_mismatches[0] == ShapeMismatch('kept.0.weight', (3, 2), (2, 2))


def test_non_strict_loads_what_matches_and_returns_the_rest():
    model, state_dict = _differing()
    state_dict['kept.0.weight'] = torch.full((2, 2), 7.0)
    mismatch = load_state_dict_checked(model, state_dict, 'other.pth', strict=False)
    assert (len(mismatch.missing_keys), len(mismatch.unexpected_keys)) == (6, 6)
    assert [m.key for m in mismatch.shape_mismatches] == [
        'kept.0.bias',
        *(f'kept.{i}.{k}' for i in (1, 2) for k in ('weight', 'bias')),
    ]
    torch.testing.assert_close(model.kept[0].weight, torch.full((2, 2), 7.0))


class _RenamesLegacyKeys(nn.Module):
    """A module whose load hook converts an old key name, as many backbones do."""

    def __init__(self) -> None:
        super().__init__()
        self.new = nn.Linear(2, 2)
        self._register_load_state_dict_pre_hook(self._rename)

    @staticmethod
    def _rename(state_dict, prefix, *args) -> None:
        for name in [k for k in state_dict if k.startswith(f'{prefix}old.')]:
            state_dict[name.replace(f'{prefix}old.', f'{prefix}new.')] = state_dict.pop(name)


def test_load_hooks_run_before_the_check_and_prefixes_are_revised():
    model = nn.Sequential(_RenamesLegacyKeys())
    weights = {'weight': torch.ones(2, 2), 'bias': torch.zeros(2)}
    # As a DDP-saved legacy checkpoint: 'module.' prefix, old names.
    checkpoint = {'state_dict': {f'module.0.old.{k}': v for k, v in weights.items()}}
    assert not load_checkpoint_into(model, checkpoint, 'legacy.pth')
    torch.testing.assert_close(model[0].new.weight, torch.ones(2, 2))


@pytest.fixture
def tiny(tmp_path):
    """The tiny classifier's config; checkpoints of it, of another neck, of its backbone."""
    init_default_scope('mmpretrain')
    paths = {}
    for neck in ('HSRNNeck', 'HLSTMNeck'):
        paths[neck] = tmp_path / f'{neck}.py'
        paths[neck].write_text(TINY_CONFIG.format(neck=neck))
    torch.manual_seed(0)
    source = mmpretrain_get_model(str(paths['HSRNNeck']))
    meta = {'dataset_meta': {'classes': ('cat', 'dog')}}
    torch.save({'meta': meta, 'state_dict': source.state_dict()}, tmp_path / 'good.pth')
    other = mmpretrain_get_model(str(paths['HLSTMNeck'])).state_dict()
    torch.save({'meta': meta, 'state_dict': other}, tmp_path / 'other_neck.pth')
    backbone = {k: v for k, v in source.state_dict().items() if k.startswith('backbone.')}
    torch.save({'state_dict': backbone}, tmp_path / 'backbone.pth')
    return dict(config=str(paths['HSRNNeck']), source=source, root=tmp_path)


def _assert_same_weights(model: nn.Module, reference: dict) -> None:
    state_dict = model.state_dict()
    assert state_dict.keys() == reference.keys()
    for name, value in reference.items():
        torch.testing.assert_close(state_dict[name], value, rtol=0, atol=0, msg=name)


def test_get_model_loads_strictly_for_an_inferencer(tiny):
    model = get_model(tiny['config'], pretrained=str(tiny['root'] / 'good.pth'))
    _assert_same_weights(model, tiny['source'].state_dict())
    assert model._dataset_meta == {'classes': ('cat', 'dog')}
    assert not model.training
    inferencer = ImageClassificationInferencer(model)
    image = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    (result,) = inferencer(image)
    assert result['pred_class'] in ('cat', 'dog')


def test_get_model_refuses_another_neck_and_leaves_mmpretrain_alone(tiny):
    other = str(tiny['root'] / 'other_neck.pth')
    refused = re.escape(f'Refusing to load checkpoint {other}:')
    with pytest.raises(CheckpointMismatchError, match=refused):
        get_model(tiny['config'], pretrained=other)
    loaded = get_model(tiny['config'], pretrained=other, strict=False)
    assert type(loaded.neck).__name__ == 'HSRNNeck'
    # Nothing is patched: MMPretrain's get_model still loads non-strictly ...
    mmpretrain_get_model(tiny['config'], pretrained=other)
    # ... and init_cfg Pretrained still loads a backbone-only checkpoint into a classifier.
    pretrained = dict(type='Pretrained', checkpoint=str(tiny['root'] / 'backbone.pth'))
    classifier = mmpretrain_get_model(tiny['config'], init_cfg=pretrained)
    classifier.init_weights()
    _assert_same_weights(classifier.backbone, tiny['source'].backbone.state_dict())


def test_load_weights_unwraps_tta_models_and_refuses_another_neck(tiny):
    # tools/test.py --tta loads a classifier's checkpoint into a TTA model.
    model = AverageClsScoreTTA(module=get_model(tiny['config']))
    load_weights(model, str(tiny['root'] / 'good.pth'))
    _assert_same_weights(model.module, tiny['source'].state_dict())
    refused = r'shape mismatches \(\d+\): neck\.levels\.0\.'
    with pytest.raises(CheckpointMismatchError, match=refused):
        load_weights(model, str(tiny['root'] / 'other_neck.pth'))


def test_trust_checkpoint_flag_exports_its_own_name(monkeypatch):
    # Set, then removed through monkeypatch, so that teardown restores the original.
    monkeypatch.setenv(TRUST_ENV_VAR, 'before')
    monkeypatch.delenv(TRUST_ENV_VAR)
    apply_trust_checkpoint(argparse.Namespace(trust_checkpoint=False))
    assert TRUST_ENV_VAR not in os.environ
    apply_trust_checkpoint(argparse.Namespace(trust_checkpoint=True))
    assert os.environ[TRUST_ENV_VAR] == '--trust-checkpoint'
