"""The package's front door: star imports work, and the repository stands on its own."""

import importlib
import pkgutil
from pathlib import Path

import pytest

import chrnn_plugin

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = sorted(
    [chrnn_plugin.__name__]
    + [
        info.name
        for info in pkgutil.walk_packages(chrnn_plugin.__path__, prefix='chrnn_plugin.')
        if info.ispkg
    ]
)
# Generated or third-party trees, not the project's own text.
SKIPPED_DIRS = {
    '.git',
    '.pytest_cache',
    '.ruff_cache',
    '.venv',
    '_build',
    '_generated',
    'checkpoints',
    'data',
    'work_dirs',
}
TEXT_SUFFIXES = {'.py', '.md', '.txt', '.toml', '.ini', '.cfg', '.yml', '.yaml', ''}


def test_every_subpackage_is_found():
    assert {
        'chrnn_plugin.datasets',
        'chrnn_plugin.engine',
        'chrnn_plugin.evaluation',
        'chrnn_plugin.models',
        'chrnn_plugin.models.necks',
        'chrnn_plugin.testing',
    } <= set(PACKAGES)


@pytest.mark.parametrize('name', PACKAGES)
def test_star_import_gives_every_name_in_all(name):
    module = importlib.import_module(name)
    exported = getattr(module, '__all__', None)
    assert isinstance(exported, list), f'{name}.__all__: expected a list, got {exported!r}'
    assert all(isinstance(item, str) for item in exported), (
        f'{name}.__all__: expected names (str), got {[type(i).__name__ for i in exported]}'
    )
    namespace: dict = {}
    exec(f'from {name} import *', namespace)  # noqa: S102  (the point of the test)
    assert set(exported) <= set(namespace), f'{name}: missing {set(exported) - set(namespace)}'


def _project_text_files():
    for path in ROOT.rglob('*'):
        if SKIPPED_DIRS.intersection(path.relative_to(ROOT).parts):
            continue
        if path.is_file() and path.suffix in TEXT_SUFFIXES:
            yield path


def test_no_reference_to_files_outside_the_repository():
    # Spelled in pieces so that this file does not match itself.
    outside = ('DESIGN' + '.md', '../' + 'shared', 'design ' + 'contract')
    hits = [
        f'{path.relative_to(ROOT)}: {word}'
        for path in _project_text_files()
        for word in outside
        if word.lower() in path.read_text(errors='replace').lower()
    ]
    assert hits == []


def test_license_is_apache_2():
    text = (ROOT / 'LICENSE').read_text()
    assert text.startswith('Copyright ') and 'The chrnn_plugin authors' in text.splitlines()[0]
    assert 'Apache License' in text and 'Version 2.0, January 2004' in text
    assert 'END OF TERMS AND CONDITIONS' in text
