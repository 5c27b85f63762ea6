"""Config source inside a checkpoint is never executed: resume, auto-resume, inferencers.

MMEngine's ``Runner.resume`` runs ``Config.fromstring(checkpoint['meta']['config'])``
and ``BaseInferencer`` without a config runs ``message_hub['runtime_info']['cfg']``
or ``meta['cfg']``: a checkpoint whose config strings hold code ran that code.
Each poisoned string here creates its own marker file when executed.
"""

import shutil
import sys
import zipfile
from pathlib import Path

import pytest
import torch
from mmengine.infer import BaseInferencer

import chrnn_plugin  # noqa: F401  (the allow-list; the safe loader)
from chrnn_plugin.engine import load_checkpoint_safely

pytestmark = pytest.mark.slow

PY = sys.executable
TOOLS = Path(__file__).resolve().parents[2] / 'tools'
# (path to the dict, key) of every config string MMEngine executes.
CONFIG_STRINGS = {
    'meta_config': (('meta',), 'config'),
    'meta_cfg': (('meta',), 'cfg'),
    'runtime_info_cfg': (('message_hub', 'runtime_info'), 'cfg'),
}


def _payload(marker: Path) -> str:
    return f"__import__('pathlib').Path({str(marker)!r}).touch()\n"


def _pickled(path: Path) -> bytes:
    """The pickle inside a ``torch.save`` file: what it holds, without unpickling it."""
    with zipfile.ZipFile(path) as archive:
        (name,) = [n for n in archive.namelist() if n.endswith('/data.pkl')]
        return archive.read(name)


@pytest.fixture(scope='module')
def poisoned(one_epoch_checkpoint, tmp_path_factory):
    """A real checkpoint of one epoch whose three config strings create marker files."""
    root = tmp_path_factory.mktemp('config_exec')
    checkpoint = load_checkpoint_safely(one_epoch_checkpoint, map_location='cpu')
    markers = root / 'markers'
    markers.mkdir()
    for name, (path, key) in CONFIG_STRINGS.items():
        node = checkpoint
        for step in path:
            node = node[step]
        node[key] = _payload(markers / name)
    path = root / 'poisoned.pth'
    torch.save(checkpoint, path)
    # The file itself holds the strings (only the tools' loading removes them).
    for name in CONFIG_STRINGS:
        assert _payload(markers / name).encode() in _pickled(path)
    return dict(checkpoint=path, markers=markers, root=root)


@pytest.fixture(autouse=True)
def no_markers_yet(poisoned):
    """Each test starts without markers, so that it sees only what it executed."""
    for marker in poisoned['markers'].iterdir():
        marker.unlink()


def _assert_nothing_executed(poisoned: dict) -> None:
    assert sorted(p.name for p in poisoned['markers'].iterdir()) == []


def _assert_resumed(result, work_dir: Path, poisoned: dict) -> None:
    _assert_nothing_executed(poisoned)
    log = result.stdout + result.stderr
    assert 'resumed epoch: 1' in log
    assert 'Epoch(train) [2]' in log
    assert load_checkpoint_safely(work_dir / 'epoch_2.pth')['meta']['epoch'] == 2
    # The new checkpoint carries the runner's own config, not the payload.
    assert str(poisoned['markers']).encode() not in _pickled(work_dir / 'epoch_2.pth')


def test_resume_from_path_never_executes_config_strings(tiny_project, poisoned):
    work_dir = poisoned['root'] / 'w_resume'
    result = tiny_project.run(
        [PY, TOOLS / 'train.py', tiny_project.config, '--work-dir', work_dir]
        + ['--resume', poisoned['checkpoint']]
    )
    _assert_resumed(result, work_dir, poisoned)


def test_auto_resume_never_executes_config_strings(tiny_project, poisoned):
    work_dir = poisoned['root'] / 'w_auto'
    work_dir.mkdir()
    latest = work_dir / 'epoch_1.pth'
    shutil.copy(poisoned['checkpoint'], latest)
    (work_dir / 'last_checkpoint').write_text(str(latest))
    result = tiny_project.run(
        [PY, TOOLS / 'train.py', tiny_project.config, '--work-dir', work_dir, '--resume']
    )
    assert f'Auto resumed from the latest checkpoint {latest}' in result.stdout + result.stderr
    _assert_resumed(result, work_dir, poisoned)


class _ConfigFromWeights(BaseInferencer):
    """The smallest inferencer: everything but the model from MMEngine's base class."""

    def _init_pipeline(self, cfg):
        return lambda data: data

    def visualize(self, inputs, preds, **kwargs):
        return None

    def postprocess(self, preds, visualization, return_datasamples=False, **kwargs):
        return preds


def test_inferencer_without_config_never_executes_config_strings(poisoned):
    # model=None: MMEngine takes the config from the weights, which hold none now.
    with pytest.raises(ValueError, match='Cannot find the config in the checkpoint'):
        _ConfigFromWeights(model=None, weights=str(poisoned['checkpoint']), scope='mmpretrain')
    _assert_nothing_executed(poisoned)


def test_mmpretrain_apis_never_execute_config_strings(tiny_project, poisoned, monkeypatch):
    from mmpretrain.apis import ImageClassificationInferencer, get_model

    monkeypatch.syspath_prepend(str(tiny_project.root))  # the config's pause_hook import
    reference = load_checkpoint_safely(poisoned['checkpoint'], map_location='cpu')['state_dict']
    model = get_model(str(tiny_project.config), pretrained=str(poisoned['checkpoint']))
    for name, value in model.state_dict().items():
        torch.testing.assert_close(value, reference[name], rtol=0, atol=0, msg=name)
    inferencer = ImageClassificationInferencer(
        str(tiny_project.config), pretrained=str(poisoned['checkpoint']), device='cpu'
    )
    image = next((tiny_project.root / 'data' / 'class0').glob('*.png'))
    (result,) = inferencer(str(image))
    assert result['pred_label'] in (0, 1)
    _assert_nothing_executed(poisoned)
