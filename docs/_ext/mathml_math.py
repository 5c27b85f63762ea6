"""Render the documentation's formulas as MathML when the pages are built.

Browsers draw MathML themselves, so the pages show their formulas with no
script and no network. Every ``math`` and ``math_block`` node (MyST's
``$...$``, ``$$...$$`` and ``amsmath`` environments, and ``.. math::`` in
docstrings) is converted with ``latex2mathml``. A formula that does not
convert, or converts only in part (a TeX command left as text), is reported as
a Sphinx warning at its source line, so ``sphinx -W`` fails the build, and its
TeX is shown as code instead.
"""

from __future__ import annotations

import re
from typing import Any

from docutils import nodes
from latex2mathml.converter import convert
from sphinx.application import Sphinx
from sphinx.util import logging
from sphinx.util.math import get_node_equation_number
from sphinx.writers.html5 import HTML5Translator

logger = logging.getLogger(__name__)

# latex2mathml keeps a command it does not know as text, e.g. <mi>\foo</mi>,
# and an alignment tab outside a table as a bare '&'.
_UNCONVERTED = re.compile(r'>[^<]*(\\[A-Za-z]+|&(?!#?\w+;))[^<]*<')
# Environments that latex2mathml lays out as a table with one equation per row.
_ALIGNED = re.compile(r'\\begin\{(aligned|split|gathered)\}')


class FormulaError(ValueError):
    """A formula that latex2mathml cannot turn into MathML."""


def latex_to_mathml(latex: str, display: bool) -> str:
    """Return ``<math>`` markup for one formula.

    Args:
        latex (str): The TeX of the formula, without ``$`` or ``\\[``.
        display (bool): Whether the formula stands on its own line.

    Raises:
        FormulaError: If the TeX does not convert, or a command of it is left
            unconverted.
    """
    source = latex.strip()
    if display:
        # Multi-line blocks: align* lays the rows out as a table and numbers none of them.
        source = _ALIGNED.sub(r'\\begin{align*}', source)
        source = re.sub(r'\\end\{(aligned|split|gathered)\}', r'\\end{align*}', source)
        if r'\\' in source and r'\begin' not in source:
            source = r'\begin{align*}' + source + r'\end{align*}'
        # latex2mathml would read a '[' right after \begin{align*} as an optional argument.
        source = re.sub(r'(\\begin\{align\*\})\s*\[', r'\1{}[', source)
    try:
        markup = convert(source, display='block' if display else 'inline')
    except Exception as error:  # latex2mathml raises several unrelated types
        raise FormulaError(f'{type(error).__name__}: {error}') from error
    leftover = _UNCONVERTED.search(markup)
    if leftover:
        raise FormulaError(f'{leftover.group(1)} is left unconverted')
    return markup


def _render(translator: HTML5Translator, node: nodes.Element, display: bool) -> str:
    latex = node.astext()
    try:
        return latex_to_mathml(latex, display)
    except FormulaError as error:
        logger.warning(
            'formula does not convert to MathML (%s): %s',
            error,
            latex.strip(),
            location=node,
            type='mathml',
        )
        tag = 'pre' if display else 'code'
        return f'<{tag} class="math-tex">{translator.encode(latex)}</{tag}>'


def visit_inline_math(translator: HTML5Translator, node: nodes.math) -> None:
    translator.body.append(translator.starttag(node, 'span', '', CLASS='math'))
    translator.body.append(_render(translator, node, display=False))
    translator.body.append('</span>')
    raise nodes.SkipNode


def visit_block_math(translator: HTML5Translator, node: nodes.math_block) -> None:
    translator.body.append(translator.starttag(node, 'div', CLASS='math'))
    if node.get('number'):
        number = get_node_equation_number(translator, node)
        translator.body.append(f'<span class="eqno">({number})')
        translator.add_permalink_ref(node, 'Link to this equation')
        translator.body.append('</span>')
    # Sphinx's convention: blank lines separate equations of one block.
    for part in (p for p in node.astext().split('\n\n') if p.strip()):
        part_node = nodes.math_block(part, part)
        part_node.source, part_node.line = node.source, node.line
        translator.body.append(_render(translator, part_node, display=True))
    translator.body.append('</div>\n')
    raise nodes.SkipNode


def setup(app: Sphinx) -> dict[str, Any]:
    app.add_html_math_renderer('mathml', (visit_inline_math, None), (visit_block_math, None))
    app.config.html_math_renderer = 'mathml'
    return {'version': '1.0', 'parallel_read_safe': True, 'parallel_write_safe': True}
