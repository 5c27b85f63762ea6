"""Every benchmark config loads, builds its model and runs; neck swaps change only the neck.

Each dataset config inherits a model base (``configs/_base_/models/{neck}_{backbone}.py``), a
dataset base, a schedule and the runtime, so a neck is defined once and an edit to its model
base reaches every dataset.

The demo's configs (``configs/demo``) are checked the same way in ``tests/demo/test_configs.py``.
"""

import ast
import re
import shutil
from pathlib import Path

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import init_default_scope
from mmpretrain.registry import MODELS

CONFIGS = Path(__file__).resolve().parents[2] / 'configs'
BENCHMARK_DIRS = ('mit67', 'sun397', 'places205', 'imagenet')
DATA_SUFFIX = {'mit67': 'mit67', 'sun397': 'sun397', 'places205': 'places205', 'imagenet': 'in1k'}
ALL = sorted(p for d in BENCHMARK_DIRS for p in (CONFIGS / d).glob('*.py'))
BENCHMARKS = {'mit67': 67, 'sun397': 397, 'places205': 205, 'in1k': 1000}
NAME = re.compile(r'^(gap|hsrn|hlstm)_(vgg16|resnet50)_8xb32_(mit67|sun397|places205|in1k)\.py$')
SWAPS = [p for p in ALL if not p.name.startswith('gap_')]
MODEL_BASES = sorted(
    CONFIGS / '_base_' / 'models' / f'{neck}_{backbone}.py'
    for neck in ('hsrn', 'hlstm')
    for backbone in ('vgg16', 'resnet50')
)
# What a neck swap may change, as flattened keys.
SWAP_KEYS = re.compile(r'^model\.(neck\..*|neck|head\.in_channels|backbone\.out_indices(\.\d+)?)$')


def rel(path):
    return str(path.relative_to(CONFIGS))


def configs_of(configs_dir, model_base):
    """The dataset configs, one per benchmark, named after a model base like ``hsrn_vgg16``."""
    return [configs_dir / d / f'{model_base}_8xb32_{DATA_SUFFIX[d]}.py' for d in BENCHMARK_DIRS]


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


def bases_of(path):
    """The ``_base_`` files a config names, resolved, in order."""
    tree = ast.parse(path.read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and node.targets[0].id == '_base_':
            bases = ast.literal_eval(node.value)
            bases = [bases] if isinstance(bases, str) else bases
            return [(path.parent / base).resolve() for base in bases]
    raise AssertionError(f'{rel(path)} has no _base_')


def baseline_of(path):
    """The GAP config with the same backbone and dataset as a neck config."""
    return path.with_name(re.sub(r'^(hsrn|hlstm)_', 'gap_', path.name))


def changed_keys(child_path, parent_path):
    child = flatten(Config.fromfile(str(child_path)).to_dict())
    parent = flatten(Config.fromfile(str(parent_path)).to_dict())
    return {
        k
        for k in child.keys() | parent.keys()
        if child.get(k, '<absent>') != parent.get(k, '<absent>')
    }


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
    changed = changed_keys(path, baseline_of(path))
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


@pytest.mark.parametrize('path', MODEL_BASES, ids=rel)
def test_model_base_swaps_only_the_neck_of_its_baseline(path):
    assert bases_of(path) == [path.with_name(re.sub(r'^(hsrn|hlstm)_', 'gap_', path.name))]
    changed = changed_keys(path, bases_of(path)[0])
    assert {k for k in changed if not SWAP_KEYS.match(k)} == set()
    assert 'model.neck.type' in changed and 'model.head.in_channels' in changed


@pytest.mark.parametrize('path', ALL, ids=rel)
def test_dataset_config_inherits_model_dataset_schedule_runtime(path):
    neck, backbone, _ = NAME.match(path.name).groups()
    model, dataset, schedule, runtime = bases_of(path)
    assert model == CONFIGS / '_base_' / 'models' / f'{neck}_{backbone}.py'
    assert dataset == CONFIGS / '_base_' / 'datasets' / f'{path.parent.name}.py'
    assert schedule.parent == CONFIGS / '_base_' / 'schedules' and schedule.is_file()
    assert runtime == CONFIGS / '_base_' / 'default_runtime.py'


@pytest.mark.parametrize('base', MODEL_BASES, ids=rel)
def test_dataset_configs_take_the_whole_neck_from_the_model_base(base):
    expected = Config.fromfile(str(base)).model
    users = configs_of(CONFIGS, base.stem)
    assert len(users) == len(BENCHMARK_DIRS)
    for path in users:
        model = Config.fromfile(str(path)).model
        assert model.neck == expected.neck, rel(path)
        assert model.backbone.out_indices == expected.backbone.out_indices, rel(path)
        assert model.head.in_channels == expected.head.in_channels, rel(path)


def test_one_edit_to_a_model_base_changes_the_neck_everywhere(tmp_path):
    configs = tmp_path / 'configs'
    shutil.copytree(CONFIGS, configs)
    base = configs / '_base_' / 'models' / 'hsrn_resnet50.py'
    text = base.read_text()
    assert text.count('hidden_channels=256') == 1
    base.write_text(text.replace('hidden_channels=256', 'hidden_channels=48'))

    edited = configs_of(configs, 'hsrn_resnet50')
    assert len(edited) == len(BENCHMARK_DIRS)
    for path in edited:
        assert Config.fromfile(str(path)).model.neck.hidden_channels == 48, path.name
    for path in configs_of(configs, 'hlstm_resnet50') + configs_of(configs, 'hsrn_vgg16'):
        assert Config.fromfile(str(path)).model.neck.hidden_channels == 256, path.name
