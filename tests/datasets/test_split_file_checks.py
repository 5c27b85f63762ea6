"""Split-file problems every official dataset reports, naming the file and the line."""

import importlib.util
import logging
import os
import unicodedata
from pathlib import Path
from unittest import mock

import pytest

from chrnn_plugin.datasets import (
    MIT67,
    DuplicateLinesError,
    Places205Official,
    SplitFileError,
    SUN397Official,
    _split_files,
)

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


# --- invisible characters: one check, in _split_files, for every reader --------------------


def test_byte_order_mark_names_file_line_and_character(layout):
    root, build, path, lines = layout
    with open(path, 'wb') as f:  # what "UTF-8 with BOM" editors save
        f.write(b'\xef\xbb\xbf' + '\n'.join(lines).encode('utf-8') + b'\n')
    with pytest.raises(SplitFileError, match='byte order mark') as info:
        build(root)
    message = str(info.value)
    assert message.startswith(f'{path}, line 1:')
    assert 'U+FEFF ZERO WIDTH NO-BREAK SPACE at column 1' in message


def test_byte_order_mark_in_sun397_class_file(sun397_root):
    path = os.path.join(sun397_root, 'Partitions', 'ClassName.txt')
    with open(path, 'rb') as f:
        content = f.read()
    with open(path, 'wb') as f:
        f.write(b'\xef\xbb\xbf' + content)
    with pytest.raises(SplitFileError, match=r'line 1: byte order mark U\+FEFF'):
        SUN397Official(data_root=sun397_root)


# In the file name, where each reader accepted them before: the path looked clean but was not.
@pytest.mark.parametrize(
    'char', ['\u200b', '\ufeff', '\u202e', '\u00ad', '\u2066'], ids=lambda c: f'U+{ord(c):04X}'
)
def test_format_character_names_file_line_and_character(layout, char):
    root, build, path, lines = layout
    lines[1] = lines[1].replace('.jpg', char + '.jpg')
    write_lines(path, lines)
    with pytest.raises(SplitFileError) as info:
        build(root)
    message = str(info.value)
    assert message.startswith(f'{path}, line 2:')
    assert f'U+{ord(char):04X} {unicodedata.name(char)} at column' in message
    assert info.value.lineno == 2


# str.strip() used to drop these silently at the end of a line (they count as white space).
@pytest.mark.parametrize('char', ['\x1c', '\x85', '\x0b'], ids=['FS', 'NEL', 'VT'])
def test_trailing_control_character_is_reported(layout, char):
    root, build, path, lines = layout
    lines[1] += char
    write_lines(path, lines)
    with pytest.raises(SplitFileError, match=rf'control character U\+{ord(char):04X} <control>'):
        build(root)


# --- duplicates: the same sample written two ways -------------------------------------------


def _nfc_nfd(line: str) -> tuple[str, str]:
    """``line`` with an 'é' in its file name, precomposed (NFC) and decomposed (NFD)."""
    return line.replace('.jpg', '\u00e9.jpg'), line.replace('.jpg', 'e\u0301.jpg')


def test_nfc_and_nfd_of_one_path_are_duplicates(layout):
    root, build, path, lines = layout
    composed, decomposed = _nfc_nfd(lines[0])
    write_lines(path, lines + [composed, decomposed])
    with pytest.raises(DuplicateLinesError) as info:
        build(root)
    n = len(lines)
    assert f'line {n + 2} repeats line {n + 1}' in str(info.value)
    assert [r[:2] for r in info.value.repeats] == [(n + 2, n + 1)]


PLACES205_LINE = 'a/abbey/train00000.jpg 0'  # line 1 of the fake train split


@pytest.mark.parametrize(
    'variant',
    [
        'a/abbey/train00000.jpg  0',
        'a/abbey/train00000.jpg\t0',
        '/a/abbey/train00000.jpg 0',
        '//a/abbey/train00000.jpg 0',
        'a/abbey/train00000.jpg 00',
        '  a/abbey/train00000.jpg 0 ',
    ],
    ids=['two-spaces', 'tab', 'leading-slash', 'two-leading-slashes', 'label-00', 'outer-spaces'],
)
def test_places205_duplicate_written_another_way(places205_root, variant):
    path = os.path.join(places205_root, 'trainvalsplit_places205', 'train_places205.csv')
    lines = places205_split('train')
    assert lines[0] == PLACES205_LINE
    write_lines(path, lines + [variant])
    with pytest.raises(DuplicateLinesError) as info:
        Places205Official(data_root=places205_root, num_classes=3)
    n = len(lines)
    # Both line numbers and both lines as written (repr: white space shows).
    assert f'line {n + 1} repeats line 1 (line {n + 1} is {variant!r}' in str(info.value)
    assert f'line 1 is {PLACES205_LINE!r})' in str(info.value)
    assert info.value.repeats == [(n + 1, 1, variant)]


def test_duplicate_error_lists_the_first_five_as_written(places205_root):
    path = os.path.join(places205_root, 'trainvalsplit_places205', 'train_places205.csv')
    lines = places205_split('train')
    variants = [f'/{line}' for line in lines[:4]] + [f'{line}0' for line in lines[:3]]
    write_lines(path, lines + variants)
    with pytest.raises(DuplicateLinesError, match='7 repeated line') as info:
        Places205Official(data_root=places205_root, num_classes=3)
    message = str(info.value)
    n = len(lines)
    for k, variant in enumerate(variants[:5]):
        lineno, first = n + k + 1, k % 4 + 1
        assert f'line {lineno} repeats line {first} (line {lineno} is {variant!r}, ' in message
        assert f'line {first} is {lines[first - 1]!r})' in message
    assert 'repeats' not in message.split('; and 2 more')[1]
    assert len(info.value.repeats) == 7


def test_allow_duplicates_warns_about_normalised_duplicates(places205_root):
    path = os.path.join(places205_root, 'trainvalsplit_places205', 'train_places205.csv')
    lines = places205_split('train')
    write_lines(path, lines + ['/' + lines[0]])
    with mock.patch('chrnn_plugin.datasets._split_files.print_log') as log:
        dataset = Places205Official(data_root=places205_root, num_classes=3, allow_duplicates=True)
    assert len(dataset) == len(lines) + 1
    (message,), kwargs = log.call_args
    assert kwargs['level'] == logging.WARNING
    assert f'line {len(lines) + 1} repeats line 1' in message and 'allow_duplicates=True' in message


@pytest.mark.parametrize('prefix', ['', './', './/', '/./', '//'])
@pytest.mark.parametrize('inner', ['/', '//', '/./'])
def test_normal_form_of_paths(prefix, inner):
    variant = f'{prefix}a{inner}abbey/train00000.jpg'
    assert _split_files.normal_form(variant) == 'a/abbey/train00000.jpg'
    assert _split_files.normal_form(f'/{variant}\t07 ', labelled=True) == 'a/abbey/train00000.jpg 7'


# Genuinely different files (or labels) keep different normal forms.
DIFFERENT = [
    ('bar/a b.jpg', 'bar/a  b.jpg'),  # white space inside a file name is part of it
    ('bar/a.jpg', 'bar/A.jpg'),  # case-sensitive file systems
    ('bar/\ufb01.jpg', 'bar/fi.jpg'),  # the ligature is NFKC-equal only
    ('bar/x\u00b2.jpg', 'bar/x2.jpg'),  # superscript two, NFKC-equal only
    ('bar/\uff41.jpg', 'bar/a.jpg'),  # full-width a, NFKC-equal only
    ('bar/x.jpg', 'bar/x.jpeg'),
    ('bar/x.jpg', 'bar/.x.jpg'),
    ('bar/..x.jpg', 'bar/x.jpg'),
]


@pytest.mark.parametrize('first, second', DIFFERENT)
def test_normal_form_keeps_different_paths_apart(first, second):
    assert _split_files.normal_form(first) != _split_files.normal_form(second)


@pytest.mark.parametrize(
    'first, second', [('a/x.jpg 1', 'a/x.jpg 10'), ('a/x.jpg 1', 'a/x.jpg \u0661')]
)
def test_normal_form_keeps_different_labels_apart(first, second):
    normal_form = _split_files.normal_form
    assert normal_form(first, labelled=True) != normal_form(second, labelled=True)


def test_different_paths_are_not_duplicates(mit67_root):
    lines = [f'bar/{name}' for name in ('a b.jpg', 'a  b.jpg', 'A b.jpg', '\ufb01.jpg', 'fi.jpg')]
    write_lines(os.path.join(mit67_root, 'TrainImages.txt'), lines)
    dataset = MIT67(data_root=mit67_root)
    assert [os.path.basename(dataset.get_data_info(i)['img_path']) for i in range(5)] == [
        line[4:] for line in lines
    ]
