"""Split-file problems every official dataset reports, naming the file and the line."""

import importlib.util
import logging
import os
from pathlib import Path
from unittest import mock

import pytest

from chrnn_plugin.datasets import MIT67, Places205Official, SUN397Official

from .fake_layouts import (
    MIT67_TRAIN,
    make_mit67,
    make_places205,
    make_sun397,
    places205_split,
    sun397_split,
    write_lines,
)

REPO = Path(__file__).resolve().parents[2]


def _mit67(root, **kwargs):
    return MIT67(data_root=root, **kwargs)


def _sun397(root, **kwargs):
    return SUN397Official(data_root=root, **kwargs)


def _places205(root, **kwargs):
    return Places205Official(data_root=root, num_classes=3, **kwargs)


# (make the layout, build the train split, its split file, its good lines)
DATASETS = {
    'MIT67': (make_mit67, _mit67, 'TrainImages.txt', MIT67_TRAIN),
    'SUN397': (make_sun397, _sun397, 'Partitions/Training_01.txt', sun397_split(1, 'train')),
    'Places205': (
        make_places205,
        _places205,
        'trainvalsplit_places205/train_places205.csv',
        places205_split('train'),
    ),
}


@pytest.fixture(params=sorted(DATASETS))
def layout(request, tmp_path):
    make, build, split_file, lines = DATASETS[request.param]
    root = make(tmp_path / request.param)
    return root, build, os.path.join(root, split_file), list(lines)


def _write_raw(path, lines: list[bytes]) -> None:
    with open(path, 'wb') as f:
        f.write(b'\n'.join(lines) + b'\n')


@pytest.mark.parametrize('content', [b'', b'\n  \n\n'], ids=['empty', 'blank'])
def test_empty_split_file_names_the_file(layout, content):
    root, build, path, _ = layout
    with open(path, 'wb') as f:
        f.write(content)
    with pytest.raises(ValueError, match=rf'{path} has no entries'):
        build(root)


@pytest.mark.parametrize('char', ['\x00', '\x1b', '\x7f', '\x85'], ids=['NUL', 'ESC', 'DEL', 'NEL'])
def test_control_character_names_file_and_line(layout, char):
    root, build, path, lines = layout
    lines[1] = lines[1][:3] + char + lines[1][3:]
    _write_raw(path, [line.encode('utf-8') for line in lines])
    with pytest.raises(ValueError, match='control character') as info:
        build(root)
    assert str(info.value).startswith(f'{path}, line 2:')


def test_duplicate_lines_raise_listing_them(layout):
    root, build, path, lines = layout
    write_lines(path, lines + [lines[0], lines[1], lines[0]])
    with pytest.raises(ValueError, match='3 repeated line') as info:
        build(root)
    n = len(lines)
    message = str(info.value)
    assert path in message and 'allow_duplicates=True' in message
    assert f'line {n + 1} repeats line 1' in message
    assert f'line {n + 2} repeats line 2' in message
    assert f'line {n + 3} repeats line 1' in message


def test_allow_duplicates_keeps_them_with_a_warning(layout):
    root, build, path, lines = layout
    write_lines(path, lines + [lines[0]])
    # MMLogger's handler keeps the stream of the first test that logged: read the call.
    with mock.patch('chrnn_plugin.datasets._split_files.print_log') as log:
        dataset = build(root, allow_duplicates=True)
    assert len(dataset) == len(lines) + 1
    (message,), kwargs = log.call_args
    assert kwargs['level'] == logging.WARNING
    assert f'line {len(lines) + 1} repeats line 1' in message and path in message


@pytest.mark.parametrize(
    'label', ['\u00b9', '\u0661', '\uff11'], ids=['superscript', 'arabic', 'fullwidth']
)
def test_places205_labels_must_be_ascii_digits(places205_root, label):
    path = os.path.join(places205_root, 'trainvalsplit_places205', 'train_places205.csv')
    lines = places205_split('train')
    lines[2] = lines[2].rsplit(' ', 1)[0] + ' ' + label
    write_lines(path, lines)
    with pytest.raises(ValueError, match='ASCII digits') as info:
        Places205Official(data_root=places205_root, num_classes=3)
    assert str(info.value).startswith(f'{path}, line 3:')


def test_sun397_partition_must_be_ascii_digits(sun397_root):
    with pytest.raises(ValueError, match='partition must be an integer'):
        SUN397Official(data_root=sun397_root, partition='\u0661')


@pytest.fixture(scope='module')
def check_dataset():
    path = REPO / 'tools' / 'dataset_converters' / 'check_dataset.py'
    spec = importlib.util.spec_from_file_location('check_dataset_split_checks', path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _check(check_dataset, config, root, *options):
    splits = ('train', 'val', 'test')
    roots = [f'{split}_dataloader.dataset.data_root={root}' for split in splits]
    args = [str(REPO / 'configs' / config), '--workers', '1', '--cfg-options', *roots, *options]
    return check_dataset.main(args)


BROKEN_MIT67 = {
    'empty': (b'', 'TrainImages.txt has no entries'),
    'NUL': (b'bar/bar_0.jpg\nbar/b\x00r.jpg\n', 'TrainImages.txt, line 2: control character'),
    'duplicate': (b'bar/bar_0.jpg\nbar/bar_0.jpg\n', 'line 2 repeats line 1'),
}


@pytest.mark.parametrize('case', sorted(BROKEN_MIT67))
def test_check_dataset_reports_broken_split_files(check_dataset, tmp_path, capsys, case):
    content, expected = BROKEN_MIT67[case]
    root = make_mit67(tmp_path / 'mit67')
    with open(os.path.join(root, 'TrainImages.txt'), 'wb') as f:
        f.write(content)
    assert _check(check_dataset, 'mit67/gap_resnet50_8xb32_mit67.py', root) == 2
    out = ' '.join(capsys.readouterr().out.split())
    assert 'Cannot build the train dataset' in out and expected in out
    # the other dataset is still reported
    assert 'val/test: MIT67' in out


def test_check_dataset_reports_non_ascii_label(check_dataset, tmp_path, capsys):
    root = make_places205(tmp_path / 'places205')
    path = os.path.join(root, 'trainvalsplit_places205', 'val_places205.csv')
    lines = places205_split('val')
    lines[0] = lines[0].rsplit(' ', 1)[0] + ' \u0661'
    write_lines(path, lines)
    options = [f'{s}_dataloader.dataset.num_classes=3' for s in ('train', 'val', 'test')]
    assert _check(check_dataset, 'places205/gap_resnet50_8xb32_places205.py', root, *options) == 2
    out = ' '.join(capsys.readouterr().out.split())
    assert 'val_places205.csv, line 1: the label must be written with ASCII digits' in out


def test_check_dataset_reports_nul_in_image_path_without_crashing(check_dataset):
    assert check_dataset.check_image('/tmp/a\x00b.jpg', 'cv2').startswith('unreadable')


# Each official dataset, built on its fake release: (class, root maker, kwargs, evaluation split).
OFFICIAL = [
    (MIT67, make_mit67, {}, 'test'),
    (SUN397Official, make_sun397, {}, 'test'),
    (Places205Official, make_places205, dict(num_classes=3), 'val'),
]


@pytest.mark.parametrize('cls, make_root, kwargs, eval_split', OFFICIAL)
def test_official_datasets_follow_the_base_contract(tmp_path, cls, make_root, kwargs, eval_split):
    root = make_root(tmp_path)
    assert cls.EVAL_SPLIT == eval_split
    assert set(cls.SPLIT_FILES) == {'train', eval_split}
    for split in cls.SPLIT_FILES:
        dataset = cls(data_root=root, split=split, **kwargs)
        assert dataset.split == split
        assert dataset.test_mode == (split == eval_split)
        assert dataset.ann_file == os.path.join(root, dataset.split_file(split))
        assert len(dataset) > 0 and dataset.CLASSES
    # test_mode given explicitly wins over the split's default.
    assert cls(data_root=root, split=eval_split, test_mode=False, **kwargs).test_mode is False
    with pytest.raises(ValueError, match=rf"{cls.__name__}: split must be one of .*got 'dev'"):
        cls(data_root=root, split='dev', **kwargs)
    with pytest.raises(FileNotFoundError, match=rf'{cls.__name__}: data_root is empty'):
        cls(data_root='', **kwargs)
