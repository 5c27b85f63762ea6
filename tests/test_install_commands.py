"""The install commands the README and the docs give still work: their extras exist and resolve."""

import ast
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from packaging.requirements import Requirement

REPO = Path(__file__).resolve().parents[1]
DOC_FILES = [REPO / 'README.md', *sorted((REPO / 'docs').glob('*.md'))]
# pip install -e '.[a,b]' (quoted or not), as the docs write it.
EDITABLE_INSTALL = re.compile(r"pip install -e ['\"]?\.\[([a-z,]+)\]['\"]?")


def _declared_extras() -> set[str]:
    tree = ast.parse((REPO / 'setup.py').read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.keyword) and node.arg == 'extras_require':
            return {key.value for key in node.value.keys}
    raise AssertionError('setup.py declares no extras_require')


def _documented_extras() -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for path in DOC_FILES:
        for match in EDITABLE_INSTALL.finditer(path.read_text()):
            found.setdefault(match.group(1), set()).add(path.name)
    return found


def test_documented_extras_exist():
    documented = _documented_extras()
    assert documented, 'no pip install command found in the README and docs'
    unknown = {
        extras: pages
        for extras, pages in documented.items()
        if set(extras.split(',')) - _declared_extras()
    }
    assert not unknown, f'extras not in setup.py: {unknown}'


@pytest.mark.parametrize('name', sorted(p.stem for p in (REPO / 'requirements').glob('*.txt')))
def test_requirement_files_parse(name):
    lines = (REPO / 'requirements' / f'{name}.txt').read_text().splitlines()
    for line in lines:
        if line.strip() and not line.startswith('#'):
            Requirement(line.strip())  # raises InvalidRequirement with the line


def test_test_environment_install_resolves_offline(tmp_path):
    # The command CI and the README run, resolved against what is installed here without
    # an index: every requirement of '.[lite,tests,docs]' is met, so pip would install
    # nothing but the package itself. A new requirement that nothing satisfies fails here.
    report = tmp_path / 'report.json'
    command = [
        sys.executable,
        '-m',
        'pip',
        'install',
        '--dry-run',
        '--no-index',
        '--no-build-isolation',
        '--quiet',
        '--report',
        str(report),
        '-e',
        f'{REPO}[lite,tests,docs]',
    ]
    result = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    installs = [item['metadata']['name'] for item in json.loads(report.read_text())['install']]
    assert installs == ['chrnn_plugin'], installs
