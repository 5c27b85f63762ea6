"""Mark what the stylesheet must keep on one line: figures in tables, short inline code.

A browser may break a table cell such as ``100.0 %`` or ``1791 s`` between the number and its
unit when the column is narrow. CSS cannot select a cell by its content, so this extension
gives every table cell whose text is one measurement (a number with its unit, e.g.
``25.8 %``, ``1791 s``, ``12.1x``, ``1024x14x14``, or ``-`` for none) the class
``figure-cell``. A cell of several figures (``0.0068 / 0.0099``) may still break between them,
never inside one, so that a wide table keeps fitting its column. Likewise an inline literal
of a few words (``--region I J``, ``pip install -e '.[lite]'``) gets ``short-literal``, so
that it is not split over two lines; a longer one may still break between its words (never
inside one: see ``docs/_static/chrnn.css``). Every page gets both, with no change to the
pages.
"""

from __future__ import annotations

import re
from typing import Any

from docutils import nodes
from sphinx.application import Sphinx

CELL_CLASS = 'figure-cell'
LITERAL_CLASS = 'short-literal'
# Longer inline code may break between words, or it would overflow a narrow column.
MAX_LITERAL_CHARS = 24
# Longer cells are prose, even if they start with a number; a figure cell is short.
MAX_CHARS = 24
# A number: an optional sign or comparison, digits with separators, and an optional
# multiplier or unit glued to it (12.1x, 4.12G, 1024x14x14, 2e-3).
_NUMBER = re.compile(r'[~≈<>≤≥±+\-−]?\d[\d.,]*(e-?\d+)?([x×]\d[\d.,]*)*[A-Za-z%]{0,3}')
# What may stand between or after numbers: a unit, a separator or a dash for "none".
_UNIT_OR_SEPARATOR = re.compile(r'[A-Za-z%]{1,3}|[/±×x~()\-–—:]')


def is_figure(text: str) -> bool:
    """Whether a cell's text is one measurement, which should not be broken across lines.

    Args:
        text (str): The cell's text.
    """
    tokens = text.split()
    if not tokens or len(text) > MAX_CHARS:
        return False
    numbers = sum(bool(_NUMBER.fullmatch(t)) for t in tokens)
    if numbers == 0:
        return text.strip() in ('-', '–', '—')
    return numbers == 1 and all(
        _NUMBER.fullmatch(t) or _UNIT_OR_SEPARATOR.fullmatch(t) for t in tokens
    )


def mark(app: Sphinx, doctree: nodes.document) -> None:
    """Classes :data:`CELL_CLASS` on figure cells and :data:`LITERAL_CLASS` on short code."""
    for entry in doctree.findall(nodes.entry):
        if is_figure(entry.astext()):
            entry['classes'].append(CELL_CLASS)
    for literal in doctree.findall(nodes.literal):
        if len(literal.astext()) <= MAX_LITERAL_CHARS:
            literal['classes'].append(LITERAL_CLASS)


def setup(app: Sphinx) -> dict[str, Any]:
    # doctree-read sees the pages' own literals; autodoc's are in the doctree by then too
    app.connect('doctree-read', mark)
    return {'version': '1.0', 'parallel_read_safe': True, 'parallel_write_safe': True}
