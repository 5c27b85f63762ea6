"""The model index lists every config, and MMPretrain finds each one by name.

``model-index.yml`` and the metafiles are read as MMPretrain reads them
(``modelindex``); the models are built through MMPretrain's own ``get_model``.
The registration hook is checked on ``ModelHub`` subclasses with their own
tables, so those tests neither depend on nor change what the real hub holds.
"""

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from mmengine.analysis import parameter_count
from mmpretrain import ImageClassificationInferencer, get_model, list_models
from mmpretrain.apis.model import ModelHub

from chrnn_plugin import model_zoo

REPO_ROOT = Path(__file__).resolve().parents[2]
CONFIGS = REPO_ROOT / 'configs'
# Inherited by the other demo configs; the same model as gap.py, so it has no entry.
BASE_FILES = {CONFIGS / 'demo' / 'base.py'}
FAMILIES = ('mit67', 'sun397', 'places205', 'imagenet', 'demo', 'custom')
INDEX = model_zoo.load_index(REPO_ROOT / 'model-index.yml')
MODELS = {model.name: model for model in INDEX.models}


def _is_demo(name: str) -> bool:
    return MODELS[name].config.startswith('configs/demo/')


def _get_flops():
    path = REPO_ROOT / 'tools' / 'analysis_tools' / 'get_flops.py'
    spec = importlib.util.spec_from_file_location('chrnn_tool_get_flops', path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_config_is_listed_and_every_entry_exists():
    configs = {
        p
        for p in CONFIGS.rglob('*.py')
        if '_base_' not in p.relative_to(CONFIGS).parts and p not in BASE_FILES
    }
    listed = [REPO_ROOT / model.config for model in INDEX.models]
    assert len(listed) == len(set(listed)), 'a config is listed twice'
    assert set(listed) == configs
    for model in INDEX.models:
        assert model.name == Path(model.config).stem
        assert model.weights is None, f'{model.name}: no trained weights are published yet'
        # The task is what MMPretrain's inferencers select models by.
        assert [r.task for r in model.results] == ['Image Classification'], model.name
    imported = (REPO_ROOT / 'model-index.yml').read_text()
    for family in FAMILIES:
        assert f'configs/{family}/metafile.yml' in imported


def test_only_the_demo_has_metrics():
    # Nothing else was trained: the benchmark and custom entries name no number.
    for name, model in MODELS.items():
        (result,) = model.results
        if _is_demo(name):
            assert 25 <= result.metrics['Top 1 Accuracy'] <= 100, name
        else:
            assert result.metrics is None, name


def test_names_resolve_to_configs_and_near_misses_are_suggested():
    assert model_zoo.config_path('HSRN') == CONFIGS / 'demo' / 'hsrn.py'
    with pytest.raises(model_zoo.ModelIndexError, match='did you mean hsrn_resnet50_8xb32_mit67'):
        model_zoo.config_path('hsrn_resnet50_8xb32_mit6')


def test_index_errors_name_the_entry(tmp_path):
    (tmp_path / 'configs').mkdir()
    (tmp_path / 'model-index.yml').write_text('Import:\n  - configs/metafile.yml\n')
    (tmp_path / 'configs' / 'metafile.yml').write_text(
        'Models:\n  - Name: gone\n    Config: configs/gone.py\n'
    )
    with pytest.raises(model_zoo.ModelIndexError, match='gone: its Config configs/gone.py'):
        model_zoo.load_index(tmp_path / 'model-index.yml')


def test_mmpretrain_lists_and_finds_every_model_by_name():
    names = sorted(MODELS)
    assert set(names) <= set(list_models())
    assert list_models('*hlstm*') == sorted(n for n in names if 'hlstm' in n)
    assert set(ImageClassificationInferencer.list_models('*hsrn*')) == {
        n for n in names if 'hsrn' in n
    }
    for name in names:
        config = ModelHub.get(name).config
        assert Path(config.filename) == REPO_ROOT / MODELS[name].config


def test_every_model_builds_by_name_with_the_listed_parameters():
    for name, entry in MODELS.items():
        model = get_model(name)
        assert parameter_count(model)[''] == entry.metadata.parameters, name
        if _is_demo(name):
            with torch.no_grad():
                scores = model(torch.rand(1, 3, 56, 56), mode='tensor')
            assert scores.shape == (1, 4), name
            assert model._dataset_meta['classes'] == ('above', 'below', 'left_of', 'right_of')
        del model


def test_listed_flops_are_what_get_flops_counts():
    get_flops = _get_flops()
    # The FLOPs of one family differ from another's only in the head's width, so one
    # family and the custom template cover every backbone and neck.
    checked = [n for n in MODELS if MODELS[n].config.startswith(('configs/mit67/', 'configs/cus'))]
    assert len(checked) == 7
    for name in checked:
        model = get_model(name)
        analyzer = get_flops.flop_analyzer(model, (torch.rand(1, 3, 224, 224),))
        assert analyzer.total() == MODELS[name].metadata.flops, name
    for name in MODELS:
        # Left out where get_flops.py cannot count every op (see configs/demo/metafile.yml).
        assert (MODELS[name].metadata.flops is None) == _is_demo(name), name


class _Hub(ModelHub):
    """A ModelHub with its own table, whose MMPretrain index is empty."""

    _models_dict: dict = {}
    mmpretrain_registrations = 0

    @classmethod
    def _register_mmpretrain_models(cls) -> None:
        cls.mmpretrain_registrations += 1


def _fresh_hub(**attributes) -> type:
    return type('Hub', (_Hub,), {'_models_dict': {}, **attributes})


def test_the_hook_registers_on_the_first_lookup_and_once():
    hub = _fresh_hub()
    model_zoo.install_lazy_registration(hub)
    model_zoo.install_lazy_registration(hub)  # a second install changes nothing
    assert hub._models_dict == {}
    metainfo = hub.get('hlstm_vgg16_8xb32_sun397')
    assert hub.mmpretrain_registrations == 1  # MMPretrain's own index, then ours
    assert Path(metainfo.config.filename) == CONFIGS / 'sun397' / 'hlstm_vgg16_8xb32_sun397.py'
    assert set(hub._models_dict) == set(MODELS)
    hub.get('gap')  # no "name is conflict" on the second lookup
    assert model_zoo.register_models(hub) == [n.lower() for n in MODELS]


def test_a_name_taken_by_another_index_is_reported():
    hub = _fresh_hub()
    hub._models_dict['hsrn'] = SimpleNamespace(config=None, filepath='/elsewhere/metafile.yml')
    model_zoo.install_lazy_registration(hub)
    with pytest.warns(UserWarning, match=r"another index: \['hsrn \(/elsewhere"):
        with pytest.raises(model_zoo.ModelIndexError, match='registered none of its models'):
            hub.get('hsrn_vgg16_8xb32_in1k')
    assert 'hsrn_vgg16_8xb32_in1k' not in hub._models_dict


def test_without_the_index_mmpretrain_names_still_work(monkeypatch):
    monkeypatch.setattr(model_zoo, 'INDEX_CANDIDATES', (Path('/nowhere/model-index.yml'),))
    hub = _fresh_hub()
    theirs = SimpleNamespace(config=None, filepath='/mmpretrain/metafile.yml')
    hub._models_dict['resnet18_8xb16_cifar10'] = theirs
    model_zoo.install_lazy_registration(hub)
    with pytest.warns(UserWarning, match='has no model index'):
        assert hub.get('resnet18_8xb16_cifar10').filepath == theirs.filepath
    with pytest.raises(model_zoo.ModelIndexError, match='Failed to find model "hsrn".* no model'):
        hub.get('hsrn')


def test_a_hub_without_the_api_fails_only_on_lookups():
    class OldHub:
        @classmethod
        def get(cls, model_name: str) -> None:
            raise ValueError(f'Failed to find model "{model_name}".')

    model_zoo.install_lazy_registration(OldHub)  # no error at import time
    with pytest.raises(model_zoo.ModelIndexError, match='config file') as error:
        OldHub.get('hsrn_vgg16_8xb32_in1k')
    assert 'has no _register_mmpretrain_models' in str(error.value)
    # Still a ValueError, as MMPretrain's own.
    with pytest.raises(ValueError, match='Failed to find model "resnet18"'):
        OldHub.get('resnet18')
    with pytest.raises(model_zoo.ModelIndexError, match='register_model_index'):
        model_zoo.register_models(OldHub)


def _python(code: str, cwd: Path, pythonpath: Path | None = None) -> dict:
    """Run ``code`` in a fresh interpreter; return the JSON its last line prints."""
    env = dict(os.environ, OMP_NUM_THREADS='1')
    if pythonpath is not None:
        env['PYTHONPATH'] = str(pythonpath)
    result = subprocess.run(
        [sys.executable, '-c', code], capture_output=True, text=True, env=env, cwd=cwd
    )
    assert result.returncode == 0, result.stderr[-4000:]
    return json.loads(result.stdout.splitlines()[-1])


LOOKUP = """
import json
import chrnn_plugin
from mmpretrain.apis.model import ModelHub
from mmpretrain import get_model, list_models
before = len(ModelHub._models_dict)
model = get_model('hsrn')
print(json.dumps(dict(before=before, hsrn=list_models('hsrn'),
                      config=model._config.filename, package=chrnn_plugin.__file__)))
"""


@pytest.mark.slow
def test_import_reads_no_index():
    found = _python(LOOKUP, cwd=REPO_ROOT)
    assert found['before'] == 0
    assert found['hsrn'][0] == 'hsrn'
    assert Path(found['config']) == CONFIGS / 'demo' / 'hsrn.py'


@pytest.mark.slow
def test_a_wheel_ships_the_index_and_the_configs(tmp_path):
    source = tmp_path / 'source'
    # A copy, so that the build leaves nothing in the checkout.
    shutil.copytree(
        REPO_ROOT,
        source,
        ignore=shutil.ignore_patterns(
            '.git', '.venv*', 'work_dirs', '_build', 'build', '*.egg-info'
        ),
    )
    build = subprocess.run(
        [sys.executable, '-m', 'pip', 'wheel', '--no-deps', '--no-build-isolation', '-q']
        + ['-w', str(tmp_path / 'dist'), str(source)],
        capture_output=True,
        text=True,
    )
    assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-3000:]
    (wheel,) = (tmp_path / 'dist').glob('chrnn_plugin-*.whl')
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        archive.extractall(tmp_path / 'site')
    assert 'chrnn_plugin/.mim/model-index.yml' in names
    # The CPU kernels are compiled from their source on first use.
    assert 'chrnn_plugin/models/necks/csrc/wavefront_scan_cpu.cpp' in names
    for model in INDEX.models:
        assert f'chrnn_plugin/.mim/{model.config}' in names
    # Imported from the unpacked wheel: the index and configs come from the package.
    found = _python(LOOKUP, cwd=tmp_path, pythonpath=tmp_path / 'site')
    package = tmp_path / 'site' / 'chrnn_plugin'
    assert Path(found['package']).parent == package
    assert Path(found['config']) == package / '.mim' / 'configs' / 'demo' / 'hsrn.py'
