"""The demo configs: differ only in the neck; the receptive-field claim holds."""

import inspect
from pathlib import Path

import pytest
import torch
from mmengine.config import Config
from mmpretrain.registry import MODELS

import chrnn_plugin  # noqa: F401
from chrnn_plugin.datasets import SpatialRelations

CONFIG_DIR = Path(__file__).resolve().parents[2] / 'configs' / 'demo'
NECKS = ('gap', 'hsrn', 'hlstm', 'hlstm_sum', 'attention', 'renet')


def _load(neck: str) -> Config:
    return Config.fromfile(str(CONFIG_DIR / f'{neck}.py'))


def _dataset_default(name: str):
    return inspect.signature(SpatialRelations.__init__).parameters[name].default


def test_demo_inherits_the_shared_runtime_and_changes_only_what_a_cpu_run_needs():
    runtime = Config.fromfile(str(CONFIG_DIR.parent / '_base_' / 'default_runtime.py'))
    demo = _load('gap')
    assert "_base_ = ['../_base_/default_runtime.py']" in (CONFIG_DIR / 'base.py').read_text()
    for key in ('default_scope', 'custom_imports', 'visualizer', 'log_level', 'load_from'):
        assert demo[key] == runtime[key], key
    hooks = demo.default_hooks
    for name in ('timer', 'param_scheduler', 'sampler_seed', 'visualization'):
        assert hooks[name] == runtime.default_hooks[name], name
    # The CPU-run differences: frequent logs, one kept checkpoint, gloo, a fixed seed.
    assert hooks.logger == dict(type='LoggerHook', interval=10)
    assert hooks.checkpoint == dict(type='CheckpointHook', interval=1, max_keep_ckpts=1)
    assert demo.log_processor.window_size == 10
    assert demo.env_cfg.dist_cfg == dict(backend='gloo')
    assert demo.env_cfg.mp_cfg == runtime.env_cfg.mp_cfg
    assert demo.randomness == dict(seed=0, deterministic=False)


def test_configs_differ_only_in_the_neck():
    base = _load('gap').to_dict()
    for neck in NECKS[1:]:
        cfg = _load(neck).to_dict()
        assert set(cfg) == set(base)
        for key in base:
            if key != 'model':
                assert cfg[key] == base[key], key
        for key in base['model']:
            if key not in ('neck', 'head'):
                assert cfg['model'][key] == base['model'][key], key
        head = dict(cfg['model']['head'], in_channels=None)
        assert head == dict(base['model']['head'], in_channels=None)


def test_demo_configs_are_self_contained_and_quiet():
    for neck in NECKS:
        text = (CONFIG_DIR / f'{neck}.py').read_text()
        assert 'mmpretrain::' not in text
    cfg = _load('gap')
    assert cfg.default_scope == 'mmpretrain'
    assert cfg.custom_imports == dict(imports=['chrnn_plugin'], allow_failed_imports=False)
    for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        assert cfg[loader].num_workers == 0 and cfg[loader].persistent_workers is False


@pytest.mark.parametrize('neck', NECKS)
def test_head_in_channels_is_the_neck_output_width(neck):
    model = MODELS.build(_load(neck).model)
    x = torch.zeros(2, 3, 56, 56)
    with torch.no_grad():
        feats = model.neck(model.backbone(x))
    assert feats[-1].shape == (2, model.head.fc.in_features)
    if hasattr(model.neck, 'output_width'):
        assert model.neck.output_width == model.head.fc.in_features


def _support(grad: torch.Tensor) -> tuple[int, int]:
    rows = grad.abs().sum(dim=(0, 1, 3)).nonzero().flatten()
    return int(rows.min()), int(rows.max())


def test_backbone_receptive_field_matches_the_task():
    """Cells see 12 px, border cells 8 px into the image: the config comment's numbers.

    The dataset keeps A and B at least that far apart and objects that far
    from the border, which is what makes GAP fail by construction.
    """
    torch.manual_seed(0)
    backbone = MODELS.build(_load('gap').model.backbone)
    backbone.eval()  # ConvMixer.train() returns None, so no chaining
    size = _dataset_default('img_size')
    x = torch.randn(1, 3, size, size, requires_grad=True)
    out = backbone(x)[-1]
    grid = out.shape[-1]
    assert grid == size // 4

    def cell_support(i: int) -> tuple[int, int]:
        x.grad = None
        backbone(x)[-1][0, :, i, grid // 2].sum().backward()
        return _support(x.grad)

    first, last = cell_support(grid // 2)
    receptive_field = last - first + 1
    assert receptive_field == 12
    assert _dataset_default('min_gap') >= receptive_field
    # Border cells see the zero padding and this many rows of the image.
    top_reach = cell_support(0)[1] + 1
    bottom_reach = size - cell_support(grid - 1)[0]
    assert top_reach == bottom_reach == 8
    assert _dataset_default('margin') >= top_reach


def test_hlstm_configs_differ_only_in_the_cell():
    convex, summed = _load('hlstm').model.neck, _load('hlstm_sum').model.neck
    assert convex.get('cell_merge', 'convex') == 'convex' and summed.cell_merge == 'sum'
    assert {k: v for k, v in convex.items() if k != 'cell_merge'} == {
        k: v for k, v in summed.items() if k != 'cell_merge'
    }


def test_peer_necks_have_about_the_hrnn_necks_parameter_count():
    """Between HSRN's and HLSTM's neck parameters, so accuracy is not bought with size."""

    def neck_params(neck: str) -> int:
        return sum(p.numel() for p in MODELS.build(_load(neck).model.neck).parameters())

    low, high = neck_params('hsrn'), neck_params('hlstm')
    for neck in ('attention', 'renet'):
        assert low <= neck_params(neck) <= high, neck
