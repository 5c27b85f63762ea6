"""``pytorch2onnx.py``: a missing package is named before any work; files follow the umask."""

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from chrnn_plugin.deployment import (
    EXPORTER_PACKAGES,
    OnnxDependencyError,
    check_export_packages,
    export_checked,
)
from tests.tools.test_quiet_tools import ADVANCED_INDEX_WARNING, known_warnings_in

REPO_ROOT = Path(__file__).resolve().parents[2]
TOOL = REPO_ROOT / 'tools/deployment/pytorch2onnx.py'
# Imported first by every interpreter that has its folder on PYTHONPATH: the
# package reads as not installed, as `import onnx` fails without it.
SITECUSTOMIZE = 'import sys\nsys.modules[{name!r}] = None\n'
CONFIG_SOURCE = """
default_scope = 'mmpretrain'
custom_imports = dict(imports=['chrnn_plugin'], allow_failed_imports=False)
model = {model!r}
"""


def run_tool(cwd: Path, *args, pythonpath: tuple[str, ...] = (), umask: int | None = None):
    """Run the tool in ``cwd``; ``pythonpath`` goes first on PYTHONPATH."""
    env = dict(os.environ)
    env['PYTHONPATH'] = os.pathsep.join(
        p for p in (*pythonpath, str(REPO_ROOT), env.get('PYTHONPATH', '')) if p
    )
    env['OMP_NUM_THREADS'] = '1'
    return subprocess.run(
        [sys.executable, str(TOOL), *map(str, args)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        preexec_fn=None if umask is None else (lambda: os.umask(umask)),
    )


def without(monkeypatch, name: str) -> None:
    """Make ``import name`` fail in this process, as when it is not installed."""
    monkeypatch.setitem(sys.modules, name, None)


# --- The check, in the library ------------------------------------------------------------


@pytest.mark.parametrize(
    'exporter, missing',
    [('torchscript', 'onnx'), ('torchscript', 'onnxruntime'), ('dynamo', 'onnxscript')],
)
def test_missing_package_is_named_with_what_to_install(monkeypatch, exporter, missing):
    without(monkeypatch, missing)
    with pytest.raises(OnnxDependencyError) as raised:
        check_export_packages(exporter)
    message = str(raised.value)
    assert f'not installed: {missing}.' in message
    assert f'pip install {" ".join(EXPORTER_PACKAGES[exporter])}' in message
    assert "pip install -e '.[tests]'" in message


def test_export_checked_checks_before_it_exports(monkeypatch, tmp_path):
    without(monkeypatch, 'onnx')
    # No model at all: the check comes first.
    with pytest.raises(OnnxDependencyError, match='pip install onnx onnxruntime'):
        export_checked(None, (3, 8, 8), str(tmp_path / 'm.onnx'), atol=1e-4)
    assert list(tmp_path.iterdir()) == []


def test_the_torchscript_exporter_needs_no_onnxscript(monkeypatch):
    without(monkeypatch, 'onnxscript')
    pytest.importorskip('onnx')
    pytest.importorskip('onnxruntime')
    check_export_packages('torchscript')


# --- The tool -----------------------------------------------------------------------------


@pytest.mark.slow
def test_tool_without_onnx_says_what_to_install_before_any_work(tmp_path):
    shim = tmp_path / 'no_onnx'
    shim.mkdir()
    (shim / 'sitecustomize.py').write_text(SITECUSTOMIZE.format(name='onnx'))
    # Neither file exists: reading either would be work done before the check.
    result = run_tool(
        tmp_path, 'missing.py', 'missing.pth', '--shape', 24, 40, pythonpath=(str(shim),)
    )
    assert result.returncode == 1
    assert 'error: the torchscript export' in result.stderr
    assert 'not installed: onnx.' in result.stderr
    assert 'pip install onnx onnxruntime' in result.stderr
    assert "pip install -e '.[tests]'" in result.stderr
    assert 'Traceback' not in result.stderr
    assert result.stdout == ''
    assert list(tmp_path.iterdir()) == [shim]


@pytest.fixture(scope='module')
def exported(tmp_path_factory):
    """The tool run once under umask 022 on a tiny two-level HSRN classifier."""
    pytest.importorskip('onnxruntime')
    import torch

    from .test_onnx_export import tiny_classifier, tiny_classifier_cfg

    root = tmp_path_factory.mktemp('export_umask')
    config = root / 'tiny.py'
    config.write_text(CONFIG_SOURCE.format(model=tiny_classifier_cfg('HSRNNeck', 1)))
    checkpoint = root / 'epoch_1.pth'
    state_dict = tiny_classifier('HSRNNeck', 1).classifier.state_dict()
    torch.save({'meta': {'epoch': 1}, 'state_dict': state_dict}, checkpoint)
    result = run_tool(root, config, checkpoint, '--shape', 24, 40, umask=0o022)
    assert result.returncode == 0, result.stderr[-3000:]
    return root, result


@pytest.mark.slow
def test_written_file_follows_the_umask(exported):
    root, _ = exported
    assert stat.S_IMODE((root / 'epoch_1.onnx').stat().st_mode) == 0o644
    # Nothing left of the temporary directory the graph was written in.
    assert sorted(p.name for p in root.iterdir()) == ['epoch_1.onnx', 'epoch_1.pth', 'tiny.py']


@pytest.mark.slow
def test_tool_prints_no_false_alarm(exported):
    _, result = exported
    output = result.stdout + result.stderr
    assert 'batch 1: max abs diff' in output
    assert ADVANCED_INDEX_WARNING not in output
    assert known_warnings_in(output) == []


def test_export_follows_another_umask(tmp_path):
    pytest.importorskip('onnxruntime')
    from .test_onnx_export import IMAGE_SHAPE, tiny_classifier

    previous = os.umask(0o027)
    try:
        export_checked(
            tiny_classifier('HSRNNeck', 0), IMAGE_SHAPE, str(tmp_path / 'm.onnx'), atol=1e-4
        )
    finally:
        os.umask(previous)
    assert stat.S_IMODE((tmp_path / 'm.onnx').stat().st_mode) == 0o640
