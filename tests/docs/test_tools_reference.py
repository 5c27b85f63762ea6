"""docs/tools.md has a section for every script under tools/, with the options it really takes.

A section is a heading that names the script (```tools/X.py```). For a Python
tool, every option of its argument parser is named in its section (the
synopsis or the text), and every option the synopsis names exists.
"""

import argparse
import importlib.util
import re
import sys
from pathlib import Path

import pytest

from .doc_commands import DOCS, REPO_ROOT

PAGE = DOCS / 'tools.md'
SCRIPTS = sorted(
    str(p.relative_to(REPO_ROOT))
    for p in (REPO_ROOT / 'tools').rglob('*')
    if p.suffix in ('.py', '.sh')
)
_HEADING = re.compile(r'^#{2,4} .*$', re.M)
_OPTION = re.compile(r'(?<![\w-])--[a-z][\w-]*')


def sections() -> dict[str, str]:
    """``{tools/X: text of the section whose heading names it}``."""
    text = PAGE.read_text()
    headings = list(_HEADING.finditer(text))
    found = {}
    for heading, following in zip(headings, headings[1:] + [None]):
        body = text[heading.start() : following.start() if following else len(text)]
        for script in re.findall(r'`(tools/[\w/.-]+)`', heading.group()):
            found[script] = body
    return found


class _Parser(Exception):
    def __init__(self, parser: argparse.ArgumentParser):
        self.parser = parser


def _capture(parser, *args, **kwargs):
    raise _Parser(parser)


def tool_parser(script: str, monkeypatch) -> argparse.ArgumentParser:
    """The tool's own parser: its parse_args() is run until it parses."""
    spec = importlib.util.spec_from_file_location(
        f'tools_ref_{Path(script).stem}', REPO_ROOT / script
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.setattr(argparse.ArgumentParser, 'parse_args', _capture)
    monkeypatch.setattr(sys, 'argv', [script])
    with pytest.raises(_Parser) as captured:
        module.parse_args()
    return captured.value.parser


def test_the_tools_were_found():
    assert {'tools/train.py', 'tools/demo.py', 'tools/analysis_tools/gpu_check.sh'} <= set(SCRIPTS)


@pytest.mark.parametrize('script', SCRIPTS)
def test_every_tool_has_a_section(script):
    assert script in sections(), (
        f'docs/tools.md has no section for {script}: add a heading that names `{script}`, '
        'its synopsis (from its --help) and what it does'
    )


PYTHON_TOOLS = [
    s for s in SCRIPTS if s.endswith('.py') and 'def parse_args' in (REPO_ROOT / s).read_text()
]


@pytest.mark.parametrize('script', PYTHON_TOOLS)
def test_section_names_the_options_the_tool_takes(script, monkeypatch):
    section = sections().get(script)
    if section is None:
        pytest.skip(f'{script} has no section (reported by test_every_tool_has_a_section)')
    parser = tool_parser(script, monkeypatch)
    taken = {
        option
        for action in parser._actions
        if not isinstance(action, argparse._HelpAction)
        for option in action.option_strings
        if option.startswith('--')
    }
    named = set(_OPTION.findall(section))
    # an action with several spellings (--local_rank, --local-rank) needs only one of them
    undocumented = [
        action.option_strings
        for action in parser._actions
        if action.option_strings
        and not isinstance(action, argparse._HelpAction)
        and not named & set(action.option_strings)
    ]
    assert not undocumented, f'docs/tools.md, {script}: options not described: {undocumented}'
    synopsis = re.search(r'```text\n(.*?)```', section, re.S)
    assert synopsis, f'docs/tools.md, {script}: no synopsis (a text block)'
    unknown = sorted(set(_OPTION.findall(synopsis.group(1))) - taken)
    assert not unknown, (
        f'docs/tools.md, {script}: the synopsis names options it does not take: {unknown}'
    )
