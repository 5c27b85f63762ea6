"""tools/dataset_converters/check_dataset.py on fake MIT67 copies."""

import importlib.util
import os
from pathlib import Path

import pytest

from .fake_layouts import MIT67_TEST, MIT67_TRAIN, write_lines

REPO = Path(__file__).resolve().parents[2]
CONFIG = str(REPO / 'configs' / 'mit67' / 'gap_resnet50_8xb32_mit67.py')


@pytest.fixture(scope='module')
def check_dataset():
    path = REPO / 'tools' / 'dataset_converters' / 'check_dataset.py'
    spec = importlib.util.spec_from_file_location('check_dataset', path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run(check_dataset, root, *extra):
    options = [f'{split}_dataloader.dataset.data_root={root}' for split in ('train', 'val', 'test')]
    return check_dataset.main([CONFIG, '--workers', '2', '--cfg-options', *options, *extra])


def test_all_good(check_dataset, mit67_root, capsys):
    assert run(check_dataset, mit67_root) == 0
    out = capsys.readouterr().out
    assert f'train: MIT67, {len(MIT67_TRAIN)} images' in out
    # the val and test loaders read the same dataset: checked once
    assert f'val/test: MIT67, {len(MIT67_TEST)} images' in out
    assert f'All {len(MIT67_TRAIN) + len(MIT67_TEST)} images exist and decode.' in out


def test_reports_bad_images(check_dataset, mit67_root, tmp_path, capsys):
    images = os.path.join(mit67_root, 'Images')
    os.remove(os.path.join(images, MIT67_TRAIN[1]))
    with open(os.path.join(images, MIT67_TEST[2]), 'wb') as f:
        f.write(b'not an image at all')
    open(os.path.join(images, MIT67_TEST[0]), 'wb').close()
    out_file = tmp_path / 'bad.txt'
    assert run(check_dataset, mit67_root, '--out', str(out_file)) == 1
    rows = [line.split('\t') for line in out_file.read_text().splitlines()]
    assert [(r[0], r[1], r[3].split(' (')[0]) for r in rows] == [
        (os.path.join(images, MIT67_TRAIN[1]), 'train', 'missing'),
        (os.path.join(images, MIT67_TEST[0]), 'val/test', 'empty file'),
        (os.path.join(images, MIT67_TEST[2]), 'val/test', 'cannot decode'),
    ]
    assert '3 bad image(s) of 9' in capsys.readouterr().out


def test_bad_split_file_is_reported(check_dataset, mit67_root, capsys):
    write_lines(os.path.join(mit67_root, 'TrainImages.txt'), ['bar/x.jpg', 'nope'])
    assert run(check_dataset, mit67_root, '--splits', 'train') == 2
    out = ' '.join(capsys.readouterr().out.split())
    assert 'Cannot build the train dataset' in out
    assert 'TrainImages.txt, line 2: malformed line' in out
