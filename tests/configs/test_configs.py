"""Every benchmark config loads, builds its model and runs; neck swaps change only the neck.

The demo's configs (``configs/demo``) are checked the same way in ``tests/demo/test_configs.py``.
"""

import ast
import re
from pathlib import Path

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import init_default_scope
from mmpretrain.registry import MODELS

CONFIGS = Path(__file__).resolve().parents[2] / 'configs'
BENCHMARK_DIRS = ('mit67', 'sun397', 'places205', 'imagenet')
ALL = sorted(p for d in BENCHMARK_DIRS for p in (CONFIGS / d).glob('*.py'))
BENCHMARKS = {'mit67': 67, 'sun397': 397, 'places205': 205, 'in1k': 1000}
NAME = re.compile(r'^(gap|hsrn|hlstm)_(vgg16|resnet50)_8xb32_(mit67|sun397|places205|in1k)\.py$')
SWAPS = [p for p in ALL if not p.name.startswith('gap_')]
# What a neck swap may change, as flattened keys.
SWAP_KEYS = re.compile(r'^model\.(neck\..*|neck|head\.in_channels|backbone\.out_indices(\.\d+)?)$')


def rel(path):
    return str(path.relative_to(CONFIGS))


def flatten(value, prefix=''):
    """``{'a.b.0': leaf, ...}`` for nested dicts and lists."""
    if isinstance(value, dict):
        items = value.items()
    elif isinstance(value, (list, tuple)):
        items = enumerate(value)
    else:
        return {prefix: value}
    flat = {}
    for key, item in items:
        flat.update(flatten(item, f'{prefix}.{key}' if prefix else str(key)))
    if not flat:
        flat[prefix] = value  # keep empty containers visible
    return flat


def base_of(path):
    """The single ``_base_`` file a config names, resolved."""
    tree = ast.parse(path.read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and node.targets[0].id == '_base_':
            bases = ast.literal_eval(node.value)
            bases = [bases] if isinstance(bases, str) else bases
            assert len(bases) == 1, f'{rel(path)} should inherit from its baseline only'
            return (path.parent / bases[0]).resolve()
    raise AssertionError(f'{rel(path)} has no _base_')


def test_the_full_matrix_exists():
    names = {p.name for p in ALL}
    assert all(NAME.match(n) for n in names), sorted(n for n in names if not NAME.match(n))
    expected = {
        f'{neck}_{backbone}_8xb32_{data}.py'
        for neck in ('gap', 'hsrn', 'hlstm')
        for backbone in ('vgg16', 'resnet50')
        for data in BENCHMARKS
    }
    assert names == expected


def test_no_mmpretrain_bases_and_no_downloads():
    for path in CONFIGS.rglob('*.py'):
        text = path.read_text()
        assert 'mmpretrain::' not in text, rel(path)
        assert 'http://' not in text and 'https://' not in text, rel(path)


@pytest.fixture(scope='module', autouse=True)
def scope():
    import chrnn_plugin  # noqa: F401  (registers the necks)

    init_default_scope('mmpretrain')


@pytest.mark.parametrize('path', ALL, ids=rel)
def test_config_builds_and_runs(path):
    cfg = Config.fromfile(str(path))
    num_classes = BENCHMARKS[NAME.match(path.name).group(3)]
    assert cfg.default_scope == 'mmpretrain'
    assert cfg.custom_imports.imports == ['chrnn_plugin']
    assert cfg.default_hooks.checkpoint.save_best == 'accuracy/top1'
    assert cfg.model.head.num_classes == cfg.data_preprocessor.num_classes == num_classes
    assert [m['type'] for m in cfg.val_evaluator] == ['Accuracy', 'MeanPerClassAccuracy']
    assert tuple(cfg.val_evaluator[0]['topk']) == (1, 5)
    init = cfg.model.backbone.get('init_cfg')
    if num_classes in (67, 397):  # fine-tuned from a local ImageNet checkpoint
        assert init['type'] == 'Pretrained' and init['prefix'] == 'backbone'
        assert init['checkpoint'].startswith('checkpoints/')
    else:
        assert init is None

    model = MODELS.build(cfg.model).eval()
    # 64 px: the last two ResNet-50 stages give 4x4 and 2x2 maps, VGG-16 4x4 and 2x2
    with torch.no_grad():
        logits = model(torch.rand(2, 3, 64, 64), mode='tensor')
    assert logits.shape == (2, num_classes)
    assert torch.isfinite(logits).all()
    if not path.name.startswith('gap_'):
        neck = model.neck
        assert type(neck).__name__ == cfg.model.neck.type
        assert neck.output_width == cfg.model.head.in_channels


@pytest.mark.parametrize('path', SWAPS, ids=rel)
def test_neck_swap_changes_only_the_neck(path):
    base = base_of(path)
    assert base.name == re.sub(r'^(hsrn|hlstm)_', 'gap_', path.name)
    child = flatten(Config.fromfile(str(path)).to_dict())
    parent = flatten(Config.fromfile(str(base)).to_dict())
    changed = {
        k
        for k in child.keys() | parent.keys()
        if child.get(k, '<absent>') != parent.get(k, '<absent>')
    }
    assert changed, 'the neck swap changed nothing'
    assert {k for k in changed if not SWAP_KEYS.match(k)} == set()
    assert 'model.neck.type' in changed and 'model.head.in_channels' in changed


def test_swap_keys_reject_other_changes():
    flat = flatten({'model': {'neck': {'type': 'HSRNNeck', 'in_channels': (1, 2)}, 'head': {}}})
    assert set(flat) == {
        'model.neck.type',
        'model.neck.in_channels.0',
        'model.neck.in_channels.1',
        'model.head',
    }
    for key in (
        'model.neck.type',
        'model.neck.in_channels.1',
        'model.head.in_channels',
        'model.backbone.out_indices.0',
    ):
        assert SWAP_KEYS.match(key)
    for key in (
        'model.head.num_classes',
        'model.backbone.depth',
        'optim_wrapper.optimizer.lr',
        'model.backbone.init_cfg.checkpoint',
        'model.head.in_channels_x',
    ):
        assert not SWAP_KEYS.match(key)
