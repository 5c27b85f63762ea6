"""tools/demo.py --image-size: larger images, larger maps, relations spanning more regions."""

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmpretrain.registry import DATASETS, MODELS

import chrnn_plugin  # noqa: F401  (registers the dataset and necks)
from chrnn_plugin.datasets.spatial_relations import CLASSES

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope='module')
def demo():
    spec = importlib.util.spec_from_file_location('demo', REPO_ROOT / 'tools' / 'demo.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _gap_along_relation(objects: list[dict], label: int) -> int:
    (ay, ax, ah, aw), (by, bx, bh, bw) = objects[0]['box'], objects[1]['box']
    return {
        'above': by - (ay + ah),
        'below': ay - (by + bh),
        'left_of': bx - (ax + aw),
        'right_of': ax - (bx + bw),
    }[CLASSES[label]]


@pytest.mark.parametrize('size, grid, min_gap', [(56, 14, 12), (112, 28, 24), (128, 32, 27)])
def test_image_size_sets_map_and_gap(demo, tmp_path, size, grid, min_gap):
    cfg = demo.demo_config('hsrn', tmp_path, image_size=size)
    assert demo.neck_map_size(cfg) == (grid, grid)
    assert cfg.val_dataloader.dataset.min_gap == min_gap
    dataset = DATASETS.build(dict(cfg.val_dataloader.dataset, num_samples=40))
    gaps = []
    for index in range(len(dataset)):
        info = dataset.get_data_info(index)
        assert info['img'].shape == (size, size, 3)
        gaps.append(_gap_along_relation(info['objects'], info['gt_label']))
    # The relation spans at least the scaled gap; the receptive field stays 12 px.
    assert min(gaps) >= min_gap >= 12
    if size > 56:
        assert np.mean(gaps) > 2 * 12


def test_large_config_builds_a_model_for_every_neck(demo, tmp_path):
    for neck in demo.NECKS:
        cfg = demo.demo_config(neck, tmp_path, image_size=112)
        model = MODELS.build(cfg.model)
        model.eval()
        with torch.no_grad():
            scores = model(torch.zeros(2, 3, 112, 112), mode='tensor')
        assert scores.shape == (2, len(CLASSES)), neck


def test_default_size_leaves_the_config_alone(demo, tmp_path):
    cfg = demo.demo_config('gap', tmp_path)
    plain = Config.fromfile(str(REPO_ROOT / 'configs' / 'demo' / 'gap.py'))
    assert cfg.train_dataloader.dataset.get('img_size') == plain.train_dataloader.dataset.get(
        'img_size'
    )
    assert demo.neck_map_size(cfg) == (14, 14)


@pytest.mark.parametrize('size', ['52', '114', '0'])
def test_bad_image_size_is_refused(demo, size, capsys):
    with pytest.raises(SystemExit):
        demo.parse_args(['--image-size', size])
    err = capsys.readouterr().err
    assert '--image-size must be a multiple of 4' in err and f'got {size}' in err


def test_necks_all_trains_every_config(demo):
    assert demo.parse_args(['--necks', 'all']).necks == list(demo.NECKS)
    assert demo.parse_args([]).necks == ['gap', 'hsrn', 'hlstm']
    for neck in demo.NECKS:
        assert (REPO_ROOT / 'configs' / 'demo' / f'{neck}.py').is_file()
