"""The dataset settings of the benchmark configs, built on fake official layouts."""

from pathlib import Path

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import init_default_scope
from mmpretrain.registry import DATASETS

from .fake_layouts import make_mit67, make_places205, make_sun397

CONFIGS = Path(__file__).resolve().parents[2] / 'configs'


def build_split(cfg, split, root, **overrides):
    dataset_cfg = cfg[f'{split}_dataloader']['dataset']
    dataset_cfg.update(data_root=root, **overrides)
    return DATASETS.build(dataset_cfg)


@pytest.mark.parametrize(
    ('config', 'make', 'extra'),
    [
        ('mit67/hlstm_vgg16_8xb32_mit67.py', make_mit67, {}),
        ('sun397/hsrn_resnet50_8xb32_sun397.py', make_sun397, {}),
        ('places205/gap_vgg16_8xb32_places205.py', make_places205, {'num_classes': 3}),
    ],
)
def test_config_datasets_load_images(tmp_path, config, make, extra):
    init_default_scope('mmpretrain')
    root = make(tmp_path / 'data')
    cfg = Config.fromfile(str(CONFIGS / config))
    for split in ('train', 'val', 'test'):
        dataset = build_split(cfg, split, root, **extra)
        sample = dataset[0]  # runs the config's pipeline on a real (tiny) image
        assert sample['inputs'].shape == (3, 224, 224)
        assert sample['inputs'].dtype == torch.uint8
        assert sample['data_samples'].gt_label.tolist() == [dataset.get_data_info(0)['gt_label']]


def test_sun397_partition_from_environment(tmp_path, monkeypatch):
    init_default_scope('mmpretrain')
    root = make_sun397(tmp_path / 'data', partitions=(1, 4))
    config = str(CONFIGS / 'sun397/gap_vgg16_8xb32_sun397.py')
    assert Config.fromfile(config).train_dataloader.dataset.partition == '1'
    monkeypatch.setenv('SUN397_PARTITION', '4')
    cfg = Config.fromfile(config)
    for split in ('train', 'val', 'test'):
        dataset = build_split(cfg, split, root)
        assert dataset.partition == 4
        assert '_04.txt' in dataset.ann_file
