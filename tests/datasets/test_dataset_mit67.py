import os
import re

import pytest
from mmpretrain.registry import DATASETS

from chrnn_plugin.datasets import MIT67, SplitFileError
from chrnn_plugin.datasets.mit67 import MIT67_CATEGORIES

from .fake_layouts import MIT67_CLASSES, MIT67_TEST, MIT67_TRAIN, write_lines


def test_official_categories():
    assert len(MIT67_CATEGORIES) == 67
    assert list(MIT67_CATEGORIES) == sorted(MIT67_CATEGORIES)
    assert DATASETS.get('MIT67') is MIT67


@pytest.mark.parametrize(('split', 'lines'), [('train', MIT67_TRAIN), ('test', MIT67_TEST)])
def test_reads_split(mit67_root, split, lines):
    dataset = MIT67(data_root=mit67_root, split=split)
    assert len(dataset) == len(lines)
    assert dataset.CLASSES == MIT67_CATEGORIES
    assert dataset.test_mode == (split == 'test')
    for i, line in enumerate(lines):
        info = dataset.get_data_info(i)
        assert info['img_path'] == os.path.join(mit67_root, 'Images', line)
        assert os.path.isfile(info['img_path'])
        assert dataset.CLASSES[info['gt_label']] == line.split('/')[0]
    labels = sorted({int(x) for x in dataset.get_gt_labels()})
    assert labels == [4, 37, 66]


def test_classes_can_be_narrowed(mit67_root):
    dataset = MIT67(data_root=mit67_root, split='train', classes=MIT67_CLASSES)
    assert dataset.CLASSES == MIT67_CLASSES
    assert dataset.get_gt_labels().tolist() == [0, 0, 1, 1, 2, 2]


def test_blank_lines_are_not_samples(mit67_root):
    write_lines(os.path.join(mit67_root, 'TestImages.txt'), ['', MIT67_TEST[0], '   ', ''])
    assert len(MIT67(data_root=mit67_root, split='test')) == 1


def test_missing_root(tmp_path):
    root = str(tmp_path / 'nowhere')
    with pytest.raises(FileNotFoundError, match=re.escape(root)):
        MIT67(data_root=root)


def test_missing_split_file(mit67_root):
    os.remove(os.path.join(mit67_root, 'TestImages.txt'))
    with pytest.raises(FileNotFoundError, match=r'TestImages\.txt'):
        MIT67(data_root=mit67_root, split='test')


def test_bad_split_argument(mit67_root):
    with pytest.raises(ValueError, match="split must be one of .*got 'val'"):
        MIT67(data_root=mit67_root, split='val')


@pytest.mark.parametrize(
    'bad', ['kitchen', 'kitchen/', '/kitchen/a.jpg', 'kitchen//a.jpg', '../x.jpg']
)
def test_malformed_line(mit67_root, bad):
    path = os.path.join(mit67_root, 'TestImages.txt')
    write_lines(path, [MIT67_TEST[0], MIT67_TEST[1], bad])
    with pytest.raises(SplitFileError, match='malformed line') as info:
        MIT67(data_root=mit67_root, split='test')
    assert str(info.value).startswith(f'{path}, line 3:')
    assert (info.value.path, info.value.lineno) == (path, 3)


def test_unknown_class(mit67_root):
    path = os.path.join(mit67_root, 'TrainImages.txt')
    write_lines(path, [MIT67_TRAIN[0], 'spaceship/a.jpg'])
    with pytest.raises(SplitFileError, match=r"line 2: unknown class 'spaceship'") as info:
        MIT67(data_root=mit67_root, split='train')
    assert path in str(info.value)


def test_unknown_class_when_narrowed(mit67_root):
    path = os.path.join(mit67_root, 'TrainImages.txt')
    with pytest.raises(SplitFileError, match=r"line 3: unknown class 'kitchen'") as info:
        MIT67(data_root=mit67_root, split='train', classes=['bar'])
    assert path in str(info.value)


def test_non_utf8_line(mit67_root):
    path = os.path.join(mit67_root, 'TestImages.txt')
    with open(path, 'wb') as f:
        f.write(b'bar/a.jpg\nbar/\xff.jpg\n')
    with pytest.raises(SplitFileError, match='line 2: not UTF-8'):
        MIT67(data_root=mit67_root, split='test')
