import os
import re

import pytest
from mmpretrain.registry import DATASETS

from chrnn_plugin.datasets import Places205Official, SplitFileError

from .fake_layouts import places205_split, write_lines

NAMES = ('abbey', 'apartment_building/outdoor', 'bakery/shop')


@pytest.mark.parametrize('split', ['train', 'val'])
def test_reads_split(places205_root, split):
    dataset = Places205Official(data_root=places205_root, split=split, num_classes=3)
    lines = places205_split(split)
    assert len(dataset) == len(lines)
    assert dataset.CLASSES == NAMES
    assert dataset.test_mode == (split == 'val')
    for i, line in enumerate(lines):
        rel, label = line.split()
        info = dataset.get_data_info(i)
        assert info['img_path'] == os.path.join(places205_root, 'images256', rel)
        assert os.path.isfile(info['img_path'])
        assert info['gt_label'] == int(label)


def test_registered_and_leading_slash(places205_root):
    assert DATASETS.get('Places205Official') is Places205Official
    path = os.path.join(places205_root, 'trainvalsplit_places205', 'val_places205.csv')
    write_lines(path, ['/' + line for line in places205_split('val')])
    dataset = Places205Official(data_root=places205_root, split='val', num_classes=3)
    assert dataset.get_data_info(0)['img_path'].endswith('images256/a/abbey/val00000.jpg')


def test_missing_root(tmp_path):
    root = str(tmp_path / 'nowhere')
    with pytest.raises(FileNotFoundError, match=re.escape(root)):
        Places205Official(data_root=root)


def test_missing_split_file(places205_root):
    os.remove(os.path.join(places205_root, 'trainvalsplit_places205', 'val_places205.csv'))
    with pytest.raises(FileNotFoundError, match=r'trainvalsplit_places205/val_places205\.csv'):
        Places205Official(data_root=places205_root, split='val', num_classes=3)


@pytest.mark.parametrize(
    'bad', ['a/abbey/x.jpg', 'a/abbey/x.jpg zero', 'a/abbey/x.jpg -1', 'abbey.jpg 0', 'a b c']
)
def test_malformed_line(places205_root, bad):
    path = os.path.join(places205_root, 'trainvalsplit_places205', 'train_places205.csv')
    write_lines(path, places205_split('train')[:2] + [bad])
    with pytest.raises(SplitFileError, match='malformed line') as info:
        Places205Official(data_root=places205_root, num_classes=3)
    assert str(info.value).startswith(f'{path}, line 3:')


def test_label_out_of_range(places205_root):
    path = os.path.join(places205_root, 'trainvalsplit_places205', 'val_places205.csv')
    write_lines(path, places205_split('val') + ['z/zoo/x.jpg 3'])
    with pytest.raises(SplitFileError, match=r'line 4: unknown class: label 3 is not in 0\.\.2'):
        Places205Official(data_root=places205_root, split='val', num_classes=3)


def test_label_disagrees_with_folder(places205_root):
    path = os.path.join(places205_root, 'trainvalsplit_places205', 'val_places205.csv')
    write_lines(path, places205_split('val') + ['a/abbey/x.jpg 2'])
    with pytest.raises(SplitFileError, match=r"line 4: unknown class: label 2 is 'bakery/shop'"):
        Places205Official(data_root=places205_root, split='val', num_classes=3)
    write_lines(path, ['a/abbey/x.jpg 0', 'a/abbey/y.jpg 0', 'b/bakery/shop/y.jpg 0'])
    with pytest.raises(
        SplitFileError, match=r"line 3: unknown class: label 0 is 'abbey' at line 1"
    ):
        Places205Official(data_root=places205_root, split='val', num_classes=1)


def test_missing_labels(places205_root):
    with pytest.raises(ValueError, match=r'has no image of label\(s\) 3, 4 \(2 of num_classes=5'):
        Places205Official(data_root=places205_root, split='val', num_classes=5)


@pytest.mark.parametrize('lazy_init', [False, True])
def test_class_names_reach_metainfo(places205_root, lazy_init):
    dataset = Places205Official(
        data_root=places205_root, split='val', num_classes=3, lazy_init=lazy_init
    )
    # Known at construction, from the split file, before the data list is loaded.
    assert dataset.metainfo['classes'] == NAMES
    assert dataset.CLASSES == NAMES
    assert dataset.class_to_idx == {name: i for i, name in enumerate(NAMES)}
    dataset.full_init()
    assert len(dataset) == len(places205_split('val'))
    assert dataset.metainfo['classes'] == NAMES


@pytest.mark.parametrize('kwargs', [dict(classes=NAMES), dict(metainfo=dict(classes=NAMES))])
def test_classes_argument_is_refused(places205_root, kwargs):
    with pytest.raises(
        ValueError, match='Places205Official: the class names come from the split file'
    ):
        Places205Official(data_root=places205_root, split='val', num_classes=3, **kwargs)


def test_other_metainfo_is_kept(places205_root):
    dataset = Places205Official(
        data_root=places205_root, split='val', num_classes=3, metainfo=dict(source='test')
    )
    assert dataset.metainfo['source'] == 'test'
    assert dataset.metainfo['classes'] == NAMES


@pytest.mark.parametrize('num_classes', [0, -1, 2.0, True])
def test_bad_num_classes(places205_root, num_classes):
    with pytest.raises(
        ValueError,
        match=f'Places205Official: num_classes must be a positive int, got {num_classes!r}',
    ):
        Places205Official(data_root=places205_root, num_classes=num_classes)
