"""tools/infer.py: the top-k it prints is what the model computes, for files and folders.

The checkpoints are saved from a freshly built tiny model (the ResNet_CIFAR config of
``conftest.py``); the reference scores come from MMPretrain's own
``ImageClassificationInferencer`` on the same config and checkpoint, in process.
"""

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from mmpretrain.apis import ImageClassificationInferencer
from PIL import Image

from chrnn_plugin.engine import cli

from .conftest import TOOLS

REPO_ROOT = TOOLS.parent
CLASSES = ('cat', 'dog')  # not the folder names: these can only come from the checkpoint


@pytest.fixture(scope='module')
def infer():
    spec = importlib.util.spec_from_file_location('chrnn_tool_infer', TOOLS / 'infer.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope='module')
def checkpoints(tiny_project, tmp_path_factory):
    """Checkpoints of the tiny model: with class names, without, and of another model."""
    # The config imports the project's pause_hook module.
    sys.path.insert(0, str(tiny_project.root))
    try:
        cfg = cli.load_config(str(tiny_project.config))
        other = cli.load_config(str(tiny_project.config), {'model.head.num_classes': 3})
        torch.manual_seed(0)
        model, other_model = cli.build_model(cfg), cli.build_model(other)
    finally:
        sys.path.remove(str(tiny_project.root))
    out = tmp_path_factory.mktemp('checkpoints')
    paths = dict(named=out / 'named.pth', plain=out / 'plain.pth', other=out / 'other.pth')
    meta = dict(dataset_meta=dict(classes=CLASSES))
    torch.save(dict(state_dict=model.state_dict(), meta=meta), paths['named'])
    torch.save(dict(state_dict=model.state_dict()), paths['plain'])
    torch.save(dict(state_dict=other_model.state_dict()), paths['other'])
    return paths


def _images(tiny_project) -> list[Path]:
    return sorted((tiny_project.root / 'data').rglob('*.png'))


def _printed(stdout: str) -> dict[str, list[tuple[float, str]]]:
    """``{image: [(score, class), ...]}`` from the tool's output."""
    found: dict = {}
    image = None
    for line in stdout.splitlines():
        if line.startswith('  ') and image is not None:
            _rank, score, name = line.split(maxsplit=2)
            found[image].append((float(score), name))
        elif line.endswith('.png') and not line.startswith(('[', 'Loads')):
            image = line
            found[image] = []
    return found


def _reference(tiny_project, checkpoint, images) -> list[np.ndarray]:
    sys.path.insert(0, str(tiny_project.root))
    try:
        inferencer = ImageClassificationInferencer(
            str(tiny_project.config), pretrained=str(checkpoint), device='cpu'
        )
        return [r['pred_scores'] for r in inferencer([str(i) for i in images])]
    finally:
        sys.path.remove(str(tiny_project.root))


def _run(tiny_project, *args, check=True):
    return tiny_project.run([sys.executable, TOOLS / 'infer.py', *map(str, args)], check=check)


@pytest.mark.slow
def test_printed_topk_is_what_the_model_computes(tiny_project, checkpoints):
    images = _images(tiny_project)[:2]
    result = _run(tiny_project, tiny_project.config, checkpoints['named'], *images)
    printed = _printed(result.stdout)
    assert list(printed) == [str(i) for i in images]
    for image, scores in zip(images, _reference(tiny_project, checkpoints['named'], images)):
        # --topk 5 of 2 classes: both, best first
        order = np.argsort(-scores)
        assert [name for _score, name in printed[str(image)]] == [CLASSES[k] for k in order]
        assert [score for score, _name in printed[str(image)]] == pytest.approx(
            scores[order], abs=1e-4
        )
    assert '[1/2]' in result.stderr  # not a terminal: plain progress lines


@pytest.mark.slow
def test_a_folder_gives_every_image_in_the_json_and_the_drawings(
    tiny_project, checkpoints, tmp_path
):
    out, drawn = tmp_path / 'results.json', tmp_path / 'drawn'
    result = _run(
        tiny_project,
        tiny_project.config,
        checkpoints['plain'],
        tiny_project.root / 'data',
        '--topk',
        '1',
        '--out',
        out,
        '--show-dir',
        drawn,
    )
    images = _images(tiny_project)
    results = json.loads(out.read_text())
    assert [p['image'] for p in results['predictions']] == [str(i) for i in images]
    assert results['errors'] == [] and results['classes_from'] == 'none found: class indices'
    printed = _printed(result.stdout)
    for prediction in results['predictions']:
        (top,) = prediction['topk']
        assert top['class'] is None and top['label'] in (0, 1)
        ((score, name),) = printed[prediction['image']]
        assert name == str(top['label']) and score == pytest.approx(top['score'], abs=1e-4)
    # Drawn under the names relative to the folder, enlarged from 32 px to be legible.
    for image in images:
        relative = image.relative_to(tiny_project.root / 'data').with_suffix('.png')
        drawing = Image.open(drawn / relative)
        assert min(drawing.size) == 224
    assert f'[{len(images)}/{len(images)}]' in result.stderr


@pytest.mark.slow
def test_a_checkpoint_of_another_model_is_refused(tiny_project, checkpoints):
    image = _images(tiny_project)[0]
    refused = _run(tiny_project, tiny_project.config, checkpoints['other'], image, check=False)
    assert refused.returncode == 1
    assert 'Refusing to load checkpoint' in refused.stderr
    assert 'head.fc.weight: checkpoint [3, 16], model [2, 16]' in refused.stderr
    assert '--no-strict' in refused.stderr
    assert _printed(refused.stdout) == {}
    loaded = _run(tiny_project, tiny_project.config, checkpoints['other'], image, '--no-strict')
    assert len(_printed(loaded.stdout)[str(image)]) == 2


# --- In process ------------------------------------------------------------------------------


def test_missing_inputs_and_empty_folders_stop_before_the_model(infer, tmp_path, capsys):
    (tmp_path / 'empty' / 'sub').mkdir(parents=True)
    (tmp_path / 'empty' / 'notes.txt').write_text('not an image')
    for inputs, message in (
        ([tmp_path / 'missing.jpg'], 'no such image or folder: '),
        ([tmp_path / 'empty'], 'has no images (searched recursively for .jpg'),
    ):
        with pytest.raises(SystemExit) as exit_:
            infer.main(['no_such_config.py', 'no_such.pth', *map(str, inputs)])
        assert exit_.value.code == infer.EXIT_BAD_INPUT
        assert message in capsys.readouterr().err
    image = tmp_path / 'x.png'
    Image.fromarray(np.zeros((4, 4, 3), dtype=np.uint8)).save(image)
    with pytest.raises(SystemExit):
        infer.main(['hsrn_resnet50_8xb32_mit6', 'no_such.pth', str(image)])
    assert 'did you mean hsrn_resnet50_8xb32_mit67' in capsys.readouterr().err


def test_an_unreadable_image_is_reported_after_the_others(
    infer, tiny_project, checkpoints, tmp_path, capsys, monkeypatch
):
    monkeypatch.syspath_prepend(str(tiny_project.root))
    bad = tmp_path / 'broken.png'
    bad.write_text('not a PNG')
    good = _images(tiny_project)[0]
    with pytest.raises(SystemExit) as exit_:
        infer.main([str(tiny_project.config), str(checkpoints['named']), str(bad), str(good)])
    assert exit_.value.code == f'error: 1 of 2 images could not be read: {bad}'
    captured = capsys.readouterr()
    assert f'error: cannot read image {bad}' in captured.err
    assert [name for _score, name in _printed(captured.out)[str(good)]] in (
        list(CLASSES),
        list(CLASSES[::-1]),
    )


def test_a_pipeline_without_a_loader_gets_one(infer, tmp_path, capsys):
    # The demo's test pipeline is [PackInputs]: its dataset makes images in memory.
    config = str(REPO_ROOT / 'configs' / 'demo' / 'hsrn.py')
    model = cli.build_model(cli.load_config(config))
    checkpoint = tmp_path / 'demo.pth'
    torch.save(dict(state_dict=model.state_dict()), checkpoint)
    image = tmp_path / 'scene.png'
    Image.fromarray(np.zeros((56, 56, 3), dtype=np.uint8)).save(image)
    results = infer.main(['hsrn', str(checkpoint), str(image), '--topk', '2'])
    captured = capsys.readouterr()
    assert 'has no LoadImageFromFile' in captured.err
    # No names in the checkpoint: the dataset class's METAINFO gives them.
    assert results['classes_from'] == 'SpatialRelations.METAINFO'
    (prediction,) = results['predictions']
    assert {t['class'] for t in prediction['topk']} <= {'above', 'below', 'left_of', 'right_of'}
    assert results['config'] == config


def test_images_with_the_same_name_get_distinct_drawings(infer, tmp_path):
    for folder in ('a', 'b'):
        (tmp_path / folder).mkdir()
        Image.fromarray(np.zeros((4, 4, 3), dtype=np.uint8)).save(tmp_path / folder / 'x.png')
    found = infer.collect_images([str(tmp_path / 'a' / 'x.png'), str(tmp_path / 'b' / 'x.png')])
    assert [name for _image, name in found] == [Path('x'), Path('x-2')]
    found = infer.collect_images([str(tmp_path)])
    assert [name for _image, name in found] == [Path('a/x'), Path('b/x')]


class _NotData:
    """A class a checkpoint may not name: the safe loader refuses to build it."""


def test_an_unsafe_checkpoint_is_refused(infer, tmp_path, capsys):
    checkpoint = tmp_path / 'unsafe.pth'
    torch.save(dict(state_dict={}, meta=_NotData()), checkpoint)
    image = tmp_path / 'x.png'
    Image.fromarray(np.zeros((56, 56, 3), dtype=np.uint8)).save(image)
    with pytest.raises(SystemExit) as exit_:
        infer.main(['gap', str(checkpoint), str(image)])
    assert str(exit_.value.code).startswith('error: ')
    assert '_NotData' in str(exit_.value.code) and '--trust-checkpoint' in str(exit_.value.code)
    assert '  1. ' not in capsys.readouterr().out
