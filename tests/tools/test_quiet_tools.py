"""The tools print none of the known third-party warnings; the library filters none."""

import logging
import re
import stat
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch

from chrnn_plugin.engine import cli, quiet

REPO_ROOT = Path(__file__).resolve().parents[2]
TOOLS = REPO_ROOT / 'tools'
PY = sys.executable
PYTHON_TOOLS = sorted(str(p.relative_to(REPO_ROOT)) for p in TOOLS.rglob('*.py'))
MSDA_MODULE = 'mmcv.cnn.bricks.transformer'
# Also silenced, where the ONNX export checks parity (chrnn_plugin.deployment).
ADVANCED_INDEX_WARNING = 'Exporting aten::index operator of advanced indexing'


def known_warnings_in(text: str) -> list[str]:
    """The known third-party warnings (:mod:`chrnn_plugin.engine.quiet`) that ``text`` shows."""
    patterns = [message for message, _, _ in quiet.KNOWN_WARNINGS]
    patterns += [re.escape(message) for message in quiet.KNOWN_LOG_MESSAGES]
    patterns.append(re.escape(ADVANCED_INDEX_WARNING))
    return [pattern for pattern in patterns if re.search(pattern, text)]


def _msda_warning(module: str) -> list[warnings.WarningMessage]:
    """The mmcv-lite warning as if raised in ``module``: what is recorded of it."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        quiet.silence_known_warnings()
        warnings.warn_explicit(
            'Fail to import ``MultiScaleDeformableAttention`` from '
            '``mmcv.ops.multi_scale_deform_attn``, You should install ``mmcv`` rather than '
            '``mmcv-lite`` if you need this module. ',
            UserWarning,
            filename='transformer.py',
            lineno=33,
            module=module,
        )
    return caught


def test_the_mmcv_lite_warning_is_ignored_from_mmcv_only():
    assert _msda_warning(MSDA_MODULE) == []
    # The same text from anywhere else is not what the filter is about.
    assert len(_msda_warning('my_project.models')) == 1


def test_silencing_twice_adds_no_filter():
    with warnings.catch_warnings():
        quiet.silence_known_warnings()
        count = len(warnings.filters)
        quiet.silence_known_warnings()
        assert len(warnings.filters) == count


def _logged(messages: list[tuple[int, str]]) -> list[str]:
    logger = logging.Logger('quiet_test')
    records = []
    handler = logging.Handler()
    handler.emit = records.append
    logger.addHandler(handler)
    quiet.quiet_logger(logger)
    quiet.quiet_logger(logger)
    assert len(logger.filters) == 1
    for level, message in messages:
        logger.log(level, message)
    return [record.getMessage() for record in records]


def test_the_runner_logger_drops_only_mmengines_deprecation_warnings():
    file_client = (
        '"FileClient" will be deprecated in future. Please use io functions in '
        'https://mmengine.readthedocs.io/en/latest/api/fileio.html#file-io'
    )
    hard_disk = (
        '"HardDiskBackend" is the alias of "LocalBackend" and the former will be deprecated '
        'in future.'
    )
    kept = [
        (logging.WARNING, 'The model and loaded state dict do not match exactly'),
        (logging.INFO, file_client),
    ]
    assert _logged([(logging.WARNING, file_client), (logging.WARNING, hard_disk), *kept]) == [
        message for _, message in kept
    ]


@pytest.mark.slow
def test_quiet_imports_nothing_but_the_standard_library():
    # Loaded from its file: `import chrnn_plugin.engine.quiet` runs the package's
    # __init__, which imports MMPretrain.
    code = (
        'import importlib.util, sys\n'
        f'spec = importlib.util.spec_from_file_location("quiet", {str(quiet.__file__)!r})\n'
        'spec.loader.exec_module(importlib.util.module_from_spec(spec))\n'
        'print(sorted(n for n in ("torch", "mmcv", "mmengine", "mmpretrain", "chrnn_plugin")'
        ' if n in sys.modules))\n'
    )
    result = subprocess.run([PY, '-c', code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == '[]'


@pytest.mark.slow
def test_importing_the_library_filters_nothing():
    code = 'import chrnn_plugin\nimport mmcv.cnn.bricks.transformer\n'
    result = subprocess.run([PY, '-c', code], capture_output=True, text=True, cwd=REPO_ROOT)
    assert result.returncode == 0, result.stderr
    assert 'Fail to import ``MultiScaleDeformableAttention``' in result.stderr


@pytest.mark.slow
@pytest.mark.parametrize('tool', PYTHON_TOOLS)
def test_help_prints_no_known_warning(tiny_project, tool):
    result = tiny_project.run([PY, REPO_ROOT / tool, '--help'])
    assert result.stdout.startswith('usage:')
    assert result.stderr == ''
    assert known_warnings_in(result.stdout) == []


@pytest.mark.slow
def test_get_flops_builds_the_model_quietly(tiny_project):
    result = tiny_project.run(
        [PY, TOOLS / 'analysis_tools/get_flops.py', tiny_project.config, '--shape', 32, 32]
    )
    assert 'FLOPs by operator' in result.stdout
    assert known_warnings_in(result.stdout + result.stderr) == []


@pytest.mark.slow
def test_visualize_context_on_a_file_dataset_quietly(tiny_project, tmp_path, monkeypatch):
    # The config imports the project's pause hook.
    monkeypatch.syspath_prepend(str(tiny_project.root))
    model = cli.build_model(cli.load_config(str(tiny_project.config)))
    checkpoint = tmp_path / 'epoch_1.pth'
    torch.save({'meta': {}, 'state_dict': model.state_dict()}, checkpoint)
    out = tmp_path / 'context.png'
    # --sample of a dataset of image files: its pipeline is dropped, so the tool reads the file.
    result = tiny_project.run(
        ['bash', '-c', 'umask 022 && exec "$0" "$@"', PY, TOOLS / 'visualize_context.py']
        + [tiny_project.config, checkpoint, '--sample', 0, '--out', out]
    )
    assert f'Saved {out}' in result.stdout
    assert stat.S_IMODE(out.stat().st_mode) == 0o644
    assert known_warnings_in(result.stdout + result.stderr) == []
