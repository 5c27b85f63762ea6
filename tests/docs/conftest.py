"""The site, built once for every test of this folder that reads the pages."""

import importlib.util
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import pytest

from .doc_commands import DOCS


def load_docs_script(name: str) -> ModuleType:
    """Import ``docs/scripts/<name>.py`` (the folder is not a package)."""
    spec = importlib.util.spec_from_file_location(name, DOCS / 'scripts' / f'{name}.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@dataclass
class BuiltSite:
    returncode: int
    log: str  # the end of stdout and stderr, for failure messages
    html: Path

    def page(self, name: str) -> str:
        return (self.html / f'{name}.html').read_text()


@pytest.fixture(scope='session')
def built_site(tmp_path_factory) -> BuiltSite:
    """``sphinx -W --keep-going -b html`` of docs/ into a fresh folder (about 15 s)."""
    html = tmp_path_factory.mktemp('site') / 'html'
    result = subprocess.run(
        [sys.executable, '-m', 'sphinx', '-W', '--keep-going', '-q', '-b', 'html']
        + [str(DOCS), str(html)],
        capture_output=True,
        text=True,
    )
    return BuiltSite(result.returncode, result.stdout[-3000:] + result.stderr[-6000:], html)
