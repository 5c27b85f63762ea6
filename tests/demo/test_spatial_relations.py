"""SpatialRelations: deterministic, disjoint splits, labels match the geometry."""

import hashlib

import numpy as np
import pytest
from mmpretrain.registry import DATASETS

import chrnn_plugin  # noqa: F401  (registers the dataset)
from chrnn_plugin.datasets.spatial_relations import (
    CLASSES,
    SHAPES,
    TASK_CLASSES,
    SpatialRelations,
    generate_sample,
    sample_rng,
)


def _digests(dataset: SpatialRelations) -> list[str]:
    return [
        hashlib.sha1(dataset.get_data_info(i)['img'].tobytes()).hexdigest()
        for i in range(len(dataset))
    ]


def test_same_seed_same_images():
    a = SpatialRelations(split='train', num_samples=16, seed=3)
    b = SpatialRelations(split='train', num_samples=16, seed=3)
    assert _digests(a) == _digests(b)
    assert [a.get_data_info(i)['gt_label'] for i in range(16)] == [
        b.get_data_info(i)['gt_label'] for i in range(16)
    ]


def test_sample_does_not_depend_on_split_size():
    # visualize_context.py --sample N builds only N + 1 samples.
    small = SpatialRelations(split='val', num_samples=4, seed=0)
    large = SpatialRelations(split='val', num_samples=12, seed=0)
    assert _digests(small) == _digests(large)[:4]


def test_different_seeds_and_splits_differ():
    digests = {
        (seed, split): _digests(SpatialRelations(split=split, num_samples=32, seed=seed))
        for seed in (0, 1)
        for split in ('train', 'val', 'test')
    }
    for key, values in digests.items():
        assert len(set(values)) == len(values), f'repeated image within {key}'
    keys = list(digests)
    for i, first in enumerate(keys):
        for second in keys[i + 1 :]:
            assert not set(digests[first]) & set(digests[second]), f'{first} and {second} overlap'


def test_labels_match_geometry_and_layout_rules():
    size, margin, min_gap = 56, 8, 12
    counts = np.zeros(len(CLASSES), int)
    for index in range(200):
        img, label, objects = generate_sample(sample_rng(0, 'train', index))
        counts[label] += 1
        assert img.shape == (size, size, 3) and img.dtype == np.uint8
        roles = [o['role'] for o in objects]
        assert roles[:2] == ['A', 'B'] and set(roles[2:]) <= {'distractor'}
        assert 1 <= len(roles) - 2 <= 3
        for obj in objects:
            y, x, h, w = obj['box']
            assert margin <= y and y + h <= size - margin
            assert margin <= x and x + w <= size - margin
        (ay, ax, ah, aw), (by, bx, bh, bw) = objects[0]['box'], objects[1]['box']
        relation = CLASSES[label]
        if relation == 'above':
            gap = by - (ay + ah)
        elif relation == 'below':
            gap = ay - (by + bh)
        elif relation == 'left_of':
            gap = bx - (ax + aw)
        else:
            gap = ax - (bx + bw)
        # Apart along the relation's axis by at least the backbone's receptive field.
        assert gap >= min_gap, (index, relation, objects[:2])
    # generate_sample draws labels at random: every class occurs.
    assert (counts > 20).all()


def test_balanced_splits_cycle_through_classes():
    dataset = SpatialRelations(split='test', num_samples=8, seed=0)
    assert [dataset.get_data_info(i)['gt_label'] for i in range(8)] == [0, 1, 2, 3] * 2
    assert dataset.metainfo['classes'] == CLASSES


def test_tasks_label_the_same_images_by_content_and_arrangement():
    by_task = {task: SpatialRelations(num_samples=12, seed=3, task=task) for task in TASK_CLASSES}
    assert _digests(by_task['shape']) == _digests(by_task['relation'])
    for i in range(12):
        info = by_task['relation'].get_data_info(i)
        shape = SHAPES.index(info['objects'][0]['shape'])
        assert info['objects'][0]['role'] == 'A'
        assert by_task['shape'].get_data_info(i)['gt_label'] == shape
        both = by_task['shape_relation'].get_data_info(i)['gt_label']
        assert both == shape * len(CLASSES) + info['gt_label']
    assert by_task['shape_relation'].metainfo['classes'][5] == 'disc_below'
    assert by_task['shape'].metainfo['classes'] == SHAPES


def test_registered_and_runs_the_stock_pipeline():
    dataset = DATASETS.build(
        dict(
            type='SpatialRelations',
            split='val',
            num_samples=4,
            seed=0,
            pipeline=[dict(type='PackInputs')],
        )
    )
    item = dataset[1]
    assert tuple(item['inputs'].shape) == (3, 56, 56)
    assert int(item['data_samples'].gt_label) == 1


@pytest.mark.parametrize(
    ('kwargs', 'match'),
    [
        (dict(split='training'), 'split must be one of'),
        (dict(num_samples=0), 'num_samples must be a positive int'),
        (dict(img_size=36), 'img_size=36 leaves 20 px'),
        (dict(task='colour'), 'task must be one of'),
    ],
)
def test_bad_arguments_are_named(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SpatialRelations(**dict(dict(num_samples=2), **kwargs))
