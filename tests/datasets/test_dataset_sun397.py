import os
import re

import pytest
from mmpretrain.registry import DATASETS

from chrnn_plugin.datasets import SplitFileError, SUN397Official

from .fake_layouts import SUN397_CLASS_KEYS, SUN397_CLASS_NAMES, sun397_split, write_lines


@pytest.mark.parametrize('partition', [1, 2, '2'])
@pytest.mark.parametrize('split', ['train', 'test'])
def test_reads_partition(sun397_root, split, partition):
    dataset = SUN397Official(data_root=sun397_root, split=split, partition=partition)
    lines = sun397_split(int(partition), split)
    assert dataset.partition == int(partition)
    assert dataset.CLASSES == SUN397_CLASS_NAMES
    assert len(dataset) == len(lines)
    assert dataset.test_mode == (split == 'test')
    for i, line in enumerate(lines):
        info = dataset.get_data_info(i)
        assert info['img_path'] == os.path.join(sun397_root, 'SUN397', line[1:])
        assert os.path.isfile(info['img_path'])
        assert SUN397_CLASS_KEYS[info['gt_label']] == line.rsplit('/', 1)[0]
    per_class = 2 if split == 'train' else 1
    assert dataset.get_gt_labels().tolist() == [k for k in range(3) for _ in range(per_class)]


def test_registered():
    assert DATASETS.get('SUN397Official') is SUN397Official


@pytest.mark.parametrize('partition', [0, 11, '11', 'x', 1.0, None, True])
def test_bad_partition(sun397_root, partition):
    with pytest.raises(ValueError, match=r'partition must be an integer from 1 to 10'):
        SUN397Official(data_root=sun397_root, partition=partition)


def test_missing_root(tmp_path):
    root = str(tmp_path / 'nowhere')
    with pytest.raises(FileNotFoundError, match=re.escape(root)):
        SUN397Official(data_root=root)


def test_missing_partition_file(sun397_root):
    with pytest.raises(FileNotFoundError, match=r'Partitions/Testing_03\.txt'):
        SUN397Official(data_root=sun397_root, split='test', partition=3)


def test_missing_class_file(sun397_root):
    os.remove(os.path.join(sun397_root, 'Partitions', 'ClassName.txt'))
    with pytest.raises(FileNotFoundError, match=r'Partitions/ClassName\.txt'):
        SUN397Official(data_root=sun397_root)


def test_classes_argument_is_refused(sun397_root):
    with pytest.raises(ValueError, match='ClassName.txt'):
        SUN397Official(data_root=sun397_root, classes=['abbey'])


@pytest.mark.parametrize(
    'bad', ['a/abbey/sun_x.jpg', '/abbey.jpg', '/a//sun_x.jpg', '/a/abbey/ x.jpg']
)
def test_malformed_partition_line(sun397_root, bad):
    path = os.path.join(sun397_root, 'Partitions', 'Training_01.txt')
    write_lines(path, sun397_split(1, 'train')[:2] + [bad])
    with pytest.raises(SplitFileError, match='malformed line') as info:
        SUN397Official(data_root=sun397_root)
    assert str(info.value).startswith(f'{path}, line 3:')


@pytest.mark.parametrize('bad', ['abbey', '/a', '/a/'])
def test_malformed_class_line(sun397_root, bad):
    path = os.path.join(sun397_root, 'Partitions', 'ClassName.txt')
    write_lines(path, [SUN397_CLASS_KEYS[0], bad])
    with pytest.raises(SplitFileError, match='malformed line') as info:
        SUN397Official(data_root=sun397_root)
    assert str(info.value).startswith(f'{path}, line 2:')


def test_repeated_class(sun397_root):
    path = os.path.join(sun397_root, 'Partitions', 'ClassName.txt')
    write_lines(path, list(SUN397_CLASS_KEYS) + [SUN397_CLASS_KEYS[1]])
    with pytest.raises(SplitFileError, match=r'line 4: class .* listed twice \(first at line 2\)'):
        SUN397Official(data_root=sun397_root)


def test_unknown_class(sun397_root):
    path = os.path.join(sun397_root, 'Partitions', 'Testing_02.txt')
    write_lines(path, sun397_split(2, 'test') + ['/z/zoo/sun_x.jpg'])
    with pytest.raises(SplitFileError, match=r"line 4: unknown class '/z/zoo'") as info:
        SUN397Official(data_root=sun397_root, split='test', partition=2)
    assert path in str(info.value)
