"""tools/dataset_converters/check_dataset.py on fake MIT67 copies."""

import importlib.util
import os
import struct
import subprocess
import sys
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from .fake_layouts import MIT67_TEST, MIT67_TRAIN, write_lines

REPO = Path(__file__).resolve().parents[2]
CONFIG = str(REPO / 'configs' / 'mit67' / 'gap_resnet50_8xb32_mit67.py')
TOOL = REPO / 'tools' / 'dataset_converters' / 'check_dataset.py'
DEMO = str(REPO / 'configs' / 'demo' / 'hsrn.py')
PNG_SIGNATURE = b'\x89PNG\r\n\x1a\n'


@pytest.fixture(scope='module')
def check_dataset():
    spec = importlib.util.spec_from_file_location('check_dataset', TOOL)
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


# --- images too large to decode ---------------------------------------------------------------


def write_blank_png(path, width, height):
    """A valid all-black 1-bit PNG of ``width`` x ``height``, compressed one row at a time.

    14000 x 14000 takes 24 KB on disk and 2 KB of memory to write; decoded in
    colour it would take 588 MB.
    """

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data)
        return struct.pack('>I', len(data)) + kind + data + struct.pack('>I', crc)

    row = bytes(1 + (width + 7) // 8)  # filter type 0, then 8 pixels a byte
    compressor = zlib.compressobj(9)
    idat = b''.join(compressor.compress(row) for _ in range(height)) + compressor.flush()
    header = struct.pack('>IIBBBBB', width, height, 1, 0, 0, 0, 0)  # 1-bit grey
    with open(path, 'wb') as f:
        f.write(PNG_SIGNATURE + chunk(b'IHDR', header) + chunk(b'IDAT', idat) + chunk(b'IEND', b''))


@pytest.fixture
def decoded(check_dataset, monkeypatch):
    """The images the tool decodes, as the list of their contents; PNGs are not decoded.

    The fake releases' images are JPEGs, the big images of these tests PNGs:
    refusing those keeps the code under test (or an older one) from decoding
    gigabytes, should it try.
    """
    contents = []
    decode = check_dataset.mmcv.imfrombytes

    def imfrombytes(content, *args, **kwargs):
        contents.append(content)
        if content.startswith(PNG_SIGNATURE):
            raise AssertionError('the test refuses to decode a PNG')
        return decode(content, *args, **kwargs)

    monkeypatch.setattr(check_dataset.mmcv, 'imfrombytes', imfrombytes)
    return contents


def test_big_png_is_reported_from_its_header(check_dataset, mit67_root, tmp_path, decoded):
    big = os.path.join(mit67_root, 'Images', MIT67_TEST[1])
    write_blank_png(big, 14000, 14000)
    assert os.path.getsize(big) < 100_000
    out_file = tmp_path / 'bad.txt'
    pillow_limit = Image.MAX_IMAGE_PIXELS
    assert run(check_dataset, mit67_root, '--out', str(out_file)) == 2
    (row,) = [line.split('\t') for line in out_file.read_text().splitlines()]
    assert row[:3] == [big, 'val/test', '1']
    assert row[3] == (
        'too large: 14000x14000 = 196,000,000 pixels, above --max-pixels 67,108,864; not decoded'
    )
    assert len(decoded) == 8 and not any(c.startswith(PNG_SIGNATURE) for c in decoded)
    # Pillow's own limit, lifted while the tool checks, is back.
    assert Image.MAX_IMAGE_PIXELS == pillow_limit


def test_max_pixels_option(check_dataset, mit67_root, capsys, decoded):
    assert run(check_dataset, mit67_root, '--max-pixels', '255') == 2
    assert decoded == []
    out = ' '.join(capsys.readouterr().out.split())
    path = os.path.join(mit67_root, 'Images', MIT67_TRAIN[0])
    assert f'{path}: too large: 16x16 = 256 pixels, above --max-pixels 255; not decoded' in out
    assert '9 image(s) above --max-pixels 255 were not decoded.' in out
    assert run(check_dataset, mit67_root, '--max-pixels', '256') == 0


@pytest.mark.parametrize('value', ['0', '-1', 'many'])
def test_max_pixels_must_be_positive(check_dataset, value):
    with pytest.raises(SystemExit):
        check_dataset.parse_args([CONFIG, '--max-pixels', value])


def test_small_limit_reports_without_decoding(check_dataset, tmp_path, decoded):
    path = str(tmp_path / 'x.jpg')
    Image.new('RGB', (20, 20)).save(path)
    problem = check_dataset.check_image(path, 'cv2', max_pixels=100)
    assert problem == 'too large: 20x20 = 400 pixels, above --max-pixels 100; not decoded'
    assert decoded == []
    assert check_dataset.check_image(path, 'cv2', max_pixels=400) is None
    assert len(decoded) == 1


# Pillow's limit, 100 or 300 pixels here: a 20 x 20 image is above twice 100 (an error) and
# above 300 but not 600 (a warning, an error under -W error).
@pytest.mark.parametrize(
    'pillow_limit, kind', [(100, 'DecompressionBombError'), (300, 'DecompressionBombWarning')]
)
@pytest.mark.parametrize('backend', ['cv2', 'pillow'])
def test_pillow_decompression_bomb_is_a_named_finding(
    check_dataset, tmp_path, monkeypatch, pillow_limit, kind, backend
):
    path = str(tmp_path / 'x.png')
    Image.new('RGB', (20, 20)).save(path)
    monkeypatch.setattr(Image, 'MAX_IMAGE_PIXELS', pillow_limit)
    with warnings.catch_warnings():
        warnings.simplefilter('error', Image.DecompressionBombWarning)
        problem = check_dataset.check_image(path, backend, max_pixels=10**6)
    assert problem.startswith(f'too large: Pillow {kind}: Image size (400 pixels) exceeds limit')
    assert problem.endswith('; not decoded')


def test_max_pixels_replaces_pillows_limit(check_dataset, mit67_root, monkeypatch):
    # The fake images are 16 x 16 = 256 pixels, above twice this limit: Pillow would refuse them.
    monkeypatch.setattr(Image, 'MAX_IMAGE_PIXELS', 100)
    assert run(check_dataset, mit67_root, '--max-pixels', '256') == 0
    assert Image.MAX_IMAGE_PIXELS == 100


# --- datasets that hold their images in memory ------------------------------------------------

DEMO_OPTIONS = [f'{split}_dataloader.dataset.num_samples=3' for split in ('train', 'val', 'test')]


def test_demo_config_in_a_subprocess():
    # The demo dataset (SpatialRelations) generates its images: samples carry img, no img_path.
    result = subprocess.run(
        [sys.executable, str(TOOL), DEMO, '--workers', '1', '--cfg-options', *DEMO_OPTIONS],
        cwd=REPO,
        env={**os.environ, 'OMP_NUM_THREADS': '1'},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    out = ' '.join(result.stdout.split())
    for split in ('train', 'val', 'test'):
        assert f'{split}: SpatialRelations, 3 images, in memory (checked as arrays' in out
    assert 'All 9 images in memory are well-formed.' in out


def test_in_memory_images_above_the_limit(check_dataset, capsys):
    args = [DEMO, '--splits', 'val', '--max-pixels', '3000', '--cfg-options', *DEMO_OPTIONS]
    assert check_dataset.main(args) == 2
    out = ' '.join(capsys.readouterr().out.split())
    assert 'SpatialRelations[2] (in memory): too large: 56x56 = 3,136 pixels' in out
    assert '3 image(s) above --max-pixels 3,000 were not decoded' in out


@pytest.mark.parametrize(
    'img, problem',
    [
        (None, 'no image: the sample has neither img_path nor img'),
        ([[0]], 'in-memory image is a list, not a numpy array'),
        (np.zeros((4, 4, 2), np.uint8), 'in-memory image of shape (4, 4, 2), not (H, W)'),
        (np.zeros(4, np.uint8), 'in-memory image of shape (4,), not (H, W)'),
        (np.zeros((0, 4, 3), np.uint8), 'empty in-memory image, shape (0, 4, 3)'),
        (np.zeros((4, 5, 3), np.uint8), 'too large: 5x4 = 20 pixels, above --max-pixels 19'),
    ],
)
def test_check_array_problems(check_dataset, img, problem):
    assert check_dataset.check_array(img, max_pixels=19).startswith(problem)


@pytest.mark.parametrize('shape', [(4, 5), (4, 5, 1), (4, 5, 3), (4, 5, 4)])
def test_check_array_good(check_dataset, shape):
    assert check_dataset.check_array(np.zeros(shape, np.uint8), max_pixels=20) is None
