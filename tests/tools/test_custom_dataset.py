"""Your own folder of images, end to end: train, test and predict as docs/custom_dataset.md does.

A tiny ImageNet-style folder (2 classes, 32x32 PNGs) is generated; the commands are the
tutorial's, with --cfg-options that shrink the backbone (ResNet-18 with 8 base channels), the
neck, the images and the schedule.
"""

import re
import sys

import numpy as np
import pytest
from PIL import Image

from .conftest import TOOLS, TinyProject

CONFIG = TOOLS.parent / 'configs' / 'custom' / 'hsrn_resnet50_custom_folder.py'
CLASSES = ('cat', 'dog')
LOADERS = ('train_dataloader', 'val_dataloader', 'test_dataloader')
TINY = [
    'model.backbone.depth=18',
    'model.backbone.stem_channels=8',
    'model.backbone.base_channels=8',
    'model.backbone.init_cfg=None',
    # stages 3 and 4 of that ResNet-18: 32 and 64 channels
    'model.neck.in_channels=(32,64)',
    'model.neck.hidden_channels=8',
    'model.neck.out_channels=8',
    'model.head.in_channels=16',
    'train_cfg.max_epochs=1',
    'default_hooks.logger.interval=1',
    'train_dataloader.dataset.pipeline.1.scale=32',
    *(f'{loader}.dataset.pipeline.1.scale=36' for loader in LOADERS[1:]),
    *(f'{loader}.dataset.pipeline.2.crop_size=32' for loader in LOADERS[1:]),
    *(f'{loader}.{key}' for loader in LOADERS for key in ('batch_size=2', 'num_workers=0')),
]


def _make_folder(root, per_class: dict) -> None:
    # Each class its own colour, so that the images differ by class as real ones do.
    rng = np.random.default_rng(0)
    for split, count in per_class.items():
        for label, name in enumerate(CLASSES):
            folder = root / split / name
            folder.mkdir(parents=True)
            for index in range(count):
                pixels = rng.integers(0, 64, (32, 32, 3), dtype=np.uint8)
                pixels[..., label] += 160
                Image.fromarray(pixels).save(folder / f'{index}.png')


@pytest.mark.slow
def test_train_test_and_predict_on_a_folder_of_images(tmp_path, device):
    data = tmp_path / 'data' / 'my_images'
    _make_folder(data, {'train': 4, 'val': 2})
    project = TinyProject(root=tmp_path, config=CONFIG, device=str(device))
    options = [
        '--cfg-options',
        *TINY,
        *(f'{loader}.dataset.data_root={data}' for loader in LOADERS),
    ]
    work_dir = tmp_path / 'work_dirs' / 'custom'

    project.run([sys.executable, TOOLS / 'train.py', CONFIG, '--work-dir', work_dir, *options])
    checkpoint = (work_dir / 'last_checkpoint').read_text().strip()
    assert checkpoint.endswith('epoch_1.pth')

    tested = project.run([sys.executable, TOOLS / 'test.py', CONFIG, checkpoint, *options])
    assert re.search(r'accuracy/top1: \d+\.\d+', tested.stdout + tested.stderr)

    # The config the run saved in its work dir has the options in it already.
    image = data / 'val' / 'dog' / '0.png'
    saved = work_dir / CONFIG.name
    predicted = project.run([sys.executable, TOOLS / 'infer.py', saved, checkpoint, image])
    lines = predicted.stdout.splitlines()
    rows = lines[lines.index(str(image)) + 1 :]
    # The class names come from the folder names, saved in the checkpoint.
    assert sorted(row.split()[-1] for row in rows) == list(CLASSES)
