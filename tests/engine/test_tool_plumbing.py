"""chrnn_plugin.engine.cli in process: config loading, building, checkpoints, runner config."""

import argparse
import functools
import http.server
import importlib.util
import os
import threading
from pathlib import Path

import pytest
import torch
from mmengine.config import Config

import chrnn_plugin  # noqa: F401  (the safe loader behind load_weights)
from chrnn_plugin.engine import UnsafeCheckpointError
from chrnn_plugin.engine.cli import (
    DATALOADER_FIELDS,
    apply_runner_arguments,
    build_dataset,
    build_model,
    fix_persistent_workers,
    load_config,
    load_weights,
)

TOOLS = Path(__file__).resolve().parents[2] / 'tools'

TINY_MODEL = """
default_scope = 'mmpretrain'
model = dict(
    type='ImageClassifier',
    backbone=dict(type='ResNet_CIFAR', depth=18, stem_channels=8, base_channels=8,
                  out_indices=(3,)),
    neck=dict(type='HSRNNeck', in_channels=64, hidden_channels=4, out_channels=4),
    head=dict(type='LinearClsHead', num_classes=2, in_channels=4),
)
"""


def _write(path: Path, text: str) -> str:
    path.write_text(text)
    return str(path)


def _runner_args(**overrides) -> argparse.Namespace:
    values = dict(
        launcher='none',
        work_dir=None,
        config='configs/x/my_config.py',
        no_pin_memory=False,
        cfg_options=None,
    )
    values.update(overrides)
    return argparse.Namespace(**values)


class _Reduces:
    def __init__(self, func, *args) -> None:
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


# --- load_config / build_model / build_dataset ---------------------------------------------


def test_load_config_merges_options_then_imports_what_they_add(tmp_path, monkeypatch):
    module = tmp_path / 'plumbing_probe_module.py'
    module.write_text('import os\nos.environ["PLUMBING_PROBE_IMPORTED"] = "yes"\n')
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delenv('PLUMBING_PROBE_IMPORTED', raising=False)
    config = _write(tmp_path / 'cfg.py', 'a = 1\nb = dict(c=2)\n')

    cfg = load_config(config, {'b.c': 3, 'custom_imports': dict(imports=['plumbing_probe_module'])})
    assert (cfg.a, cfg.b.c) == (1, 3)
    assert os.environ.get('PLUMBING_PROBE_IMPORTED') == 'yes'


def test_load_config_names_a_missing_file(tmp_path):
    missing = tmp_path / 'nope.py'
    with pytest.raises(FileNotFoundError, match='nope.py'):
        load_config(str(missing))


def test_build_model_in_the_config_scope(tmp_path):
    cfg = load_config(_write(tmp_path / 'cfg.py', TINY_MODEL))
    model = build_model(cfg)
    assert type(model.neck).__name__ == 'HSRNNeck'


def test_build_model_names_the_missing_entry(tmp_path):
    cfg = load_config(_write(tmp_path / 'empty.py', 'a = 1\n'))
    with pytest.raises(ValueError, match=r'empty.py: expected a `model` entry.*got none'):
        build_model(cfg)


def test_build_dataset(tmp_path):
    cfg = load_config(_write(tmp_path / 'cfg.py', "default_scope = 'mmpretrain'\n"))
    dataset = build_dataset(
        cfg, dict(type='SpatialRelations', num_samples=3, split='test', pipeline=[])
    )
    assert len(dataset) == 3


# --- load_weights: MMEngine's CheckpointLoader, so the safe loader's policy --------------


@pytest.fixture
def tiny_model_and_checkpoints(tmp_path):
    cfg = load_config(_write(tmp_path / 'cfg.py', TINY_MODEL))
    torch.manual_seed(0)
    source = build_model(cfg)
    good = tmp_path / 'good.pth'
    torch.save({'meta': {'epoch': 1}, 'state_dict': source.state_dict()}, good)
    marker = tmp_path / 'pwned'
    evil = tmp_path / 'evil.pth'
    payload = _Reduces(os.system, f'touch {marker}')
    torch.save({'state_dict': source.state_dict(), 'meta': {'x': payload}}, evil)
    torch.manual_seed(1)
    return dict(cfg=cfg, source=source, target=build_model(cfg), marker=marker, root=tmp_path)


def _assert_same_weights(a: torch.nn.Module, b: torch.nn.Module) -> None:
    for (name, x), y in zip(a.state_dict().items(), b.state_dict().values()):
        torch.testing.assert_close(x, y, rtol=0, atol=0, msg=name)


def test_load_weights_from_a_file_and_refuses_a_hostile_one(tiny_model_and_checkpoints):
    t = tiny_model_and_checkpoints
    checkpoint = load_weights(t['target'], str(t['root'] / 'good.pth'))
    assert checkpoint['meta'] == {'epoch': 1}
    _assert_same_weights(t['target'], t['source'])

    refused = r'Refusing to load checkpoint .*evil\.pth'
    with pytest.raises(UnsafeCheckpointError, match=refused) as e:
        load_weights(build_model(t['cfg']), str(t['root'] / 'evil.pth'))
    assert f'{os.system.__module__}.system' in str(e.value)
    assert not t['marker'].exists()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


def test_load_weights_from_a_url_goes_through_the_policy(
    tiny_model_and_checkpoints, tmp_path, monkeypatch
):
    t = tiny_model_and_checkpoints
    monkeypatch.setenv('TORCH_HOME', str(tmp_path / 'torch_home'))
    server = http.server.ThreadingHTTPServer(
        ('127.0.0.1', 0), functools.partial(_QuietHandler, directory=str(t['root']))
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f'http://127.0.0.1:{server.server_address[1]}'
    try:
        load_weights(t['target'], f'{url}/good.pth')
        _assert_same_weights(t['target'], t['source'])
        with pytest.raises(UnsafeCheckpointError, match=f'Refusing to load checkpoint {url}/evil'):
            load_weights(build_model(t['cfg']), f'{url}/evil.pth')
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=30)
    assert not t['marker'].exists()


# --- persistent_workers: decided in fix_persistent_workers only ---------------------------


def test_persistent_workers_default_applies_only_with_workers():
    cfg = Config(
        dict(
            train_dataloader=dict(num_workers=2),
            val_dataloader=dict(num_workers=0),
            test_dataloader=dict(num_workers=2, persistent_workers=False),
        )
    )
    assert fix_persistent_workers(cfg, default=True) == ['val_dataloader']
    assert cfg.train_dataloader.persistent_workers is True
    assert cfg.val_dataloader.persistent_workers is False
    assert cfg.test_dataloader.persistent_workers is False  # the config's choice stands


def test_persistent_workers_without_default_leaves_unset_loaders_alone():
    cfg = Config(dict(train_dataloader=dict(num_workers=2), val_dataloader=dict(num_workers=0)))
    assert fix_persistent_workers(cfg) == []
    assert 'persistent_workers' not in cfg.train_dataloader
    assert 'persistent_workers' not in cfg.val_dataloader


# --- apply_runner_arguments: the part of merge_args train.py and test.py share ------------


def _loaders_cfg() -> Config:
    return Config(
        dict(
            train_dataloader=dict(batch_size=2, num_workers=2),
            val_dataloader=dict(batch_size=2, num_workers=0),
            test_dataloader=dict(batch_size=2, num_workers=2),
        )
    )


def test_runner_arguments_as_train_py_applies_them():
    cfg = apply_runner_arguments(
        _loaders_cfg(), _runner_args(), loaders=DATALOADER_FIELDS, persistent_workers=True
    )
    assert cfg.launcher == 'none'
    assert cfg.work_dir == os.path.join('./work_dirs', 'my_config')
    for field in DATALOADER_FIELDS:
        assert cfg[field].collate_fn == dict(type='default_collate')
        assert cfg[field].pin_memory is torch.cuda.is_available()
    assert cfg.train_dataloader.persistent_workers is True
    assert cfg.val_dataloader.persistent_workers is False  # num_workers=0


def test_runner_arguments_as_test_py_applies_them():
    cfg = apply_runner_arguments(
        _loaders_cfg(),
        _runner_args(work_dir='wd', no_pin_memory=True),
        loaders=['test_dataloader'],
        persistent_workers=False,
    )
    assert cfg.work_dir == 'wd'
    assert cfg.test_dataloader.pin_memory is False
    assert 'persistent_workers' not in cfg.test_dataloader
    assert 'collate_fn' not in cfg.train_dataloader  # only the test loader gets defaults


def test_runner_flags_then_cfg_options_which_win():
    args = _runner_args(
        no_persistent_workers=True,
        no_pin_memory=True,
        cfg_options={'val_dataloader.pin_memory': True, 'work_dir': 'from_options'},
    )
    cfg = apply_runner_arguments(
        _loaders_cfg(), args, loaders=DATALOADER_FIELDS, persistent_workers=True
    )
    assert cfg.train_dataloader.persistent_workers is False
    assert cfg.train_dataloader.pin_memory is False
    assert cfg.val_dataloader.pin_memory is True
    assert cfg.work_dir == 'from_options'


def test_cfg_options_setting_num_workers_to_zero_turn_persistent_workers_off():
    args = _runner_args(cfg_options={'train_dataloader.num_workers': 0})
    cfg = apply_runner_arguments(
        _loaders_cfg(), args, loaders=DATALOADER_FIELDS, persistent_workers=True
    )
    assert cfg.train_dataloader.persistent_workers is False
    assert cfg.test_dataloader.persistent_workers is True


# --- every tool takes the shared flags ------------------------------------------------------


def _tool(relative: str):
    path = TOOLS / relative
    spec = importlib.util.spec_from_file_location(f'chrnn_tool_{path.stem}', path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


CONFIG_TOOLS = {
    'train.py': ['c.py'],
    'test.py': ['c.py', 'ck.pth'],
    'analysis_tools/get_flops.py': ['c.py'],
    'misc/print_config.py': ['c.py'],
    'dataset_converters/check_dataset.py': ['c.py'],
    'visualize_context.py': ['c.py', 'ck.pth', '--sample', '0'],
    'deployment/pytorch2onnx.py': ['c.py', 'ck.pth', '--shape', '8', '8'],
    'infer.py': ['c.py', 'ck.pth', 'img.png'],
}
CHECKPOINT_TOOLS = [
    'train.py',
    'test.py',
    'infer.py',
    'visualize_context.py',
    'deployment/pytorch2onnx.py',
]


@pytest.mark.parametrize('tool', sorted(CONFIG_TOOLS))
def test_every_config_tool_takes_cfg_options(tool):
    args = _tool(tool).parse_args([*CONFIG_TOOLS[tool], '--cfg-options', 'a.b=1', 'c=x'])
    assert args.cfg_options == {'a.b': 1, 'c': 'x'}


@pytest.mark.parametrize('tool', CHECKPOINT_TOOLS)
def test_every_checkpoint_tool_takes_trust_checkpoint(tool):
    assert _tool(tool).parse_args([*CONFIG_TOOLS[tool], '--trust-checkpoint']).trust_checkpoint
