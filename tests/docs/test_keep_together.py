"""Figures in tables and short inline code are kept on one line (docs/_ext/keep_together.py)."""

import importlib.util
import re

import pytest

from .doc_commands import DOCS


def _load_extension():
    spec = importlib.util.spec_from_file_location(
        'keep_together', DOCS / '_ext' / 'keep_together.py'
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


keep_together = _load_extension()


@pytest.mark.parametrize(
    'text', ['100.0 %', '1791 s', '9 k', '12.1x', '1024x14x14', '0.127', '-', '2.01x', '~3 ms']
)
def test_one_figure_is_kept_whole(text):
    assert keep_together.is_figure(text)


@pytest.mark.parametrize('text', ['87 / 243', '0.0068 / 0.0099', '20.3 / 27.0'])
def test_several_figures_may_break_between_them(text):
    assert not keep_together.is_figure(text)


@pytest.mark.parametrize(
    'text',
    ['HSRN', 'time share / FLOP share', 'ReNet, PyTorch’s default LSTM initialisation', '3 epochs',
     'forward+backward, ms', ''],
)  # fmt: skip
def test_prose(text):
    assert not keep_together.is_figure(text)


def test_built_pages_mark_figure_cells_and_short_code(built_site):
    demo = built_site.page('demo')
    # the demo's accuracy table: every percentage cell is kept whole
    assert re.search(r'<td class="figure-cell"><p>99\.9 %</p></td>', demo), 'no figure cells'
    assert not re.search(r'<td><p>[\d.]+ %</p></td>', demo), 'a percentage cell is not marked'
    tools = built_site.page('tools')
    assert re.search(r'<code class="[^"]*short-literal[^"]*"><span class="pre">--tta</span>', tools)
    css = (built_site.html / '_static' / 'chrnn.css').read_text()
    for rule in ('td.figure-cell', 'code.short-literal', 'code.literal span.pre'):
        assert rule in css, rule
    assert re.search(r'div\.highlight pre \{[^}]*white-space: pre;[^}]*overflow-x: auto', css)
