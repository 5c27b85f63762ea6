"""Formulas become MathML at build time; a formula that does not convert is an error."""

import importlib.util
import re

import pytest

from .doc_commands import DOCS


def _load_extension():
    spec = importlib.util.spec_from_file_location('mathml_math', DOCS / '_ext' / 'mathml_math.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


mathml = _load_extension()


def test_inline_formula():
    markup = mathml.latex_to_mathml(r'h_{p_h} \odot \sigma(f)', display=False)
    assert markup.startswith('<math') and 'display="inline"' in markup
    assert '<msub>' in markup and '&#x02299;' in markup  # the subscript and the odot
    assert '\\' not in markup


def test_multiline_block_is_one_table_row_per_line():
    latex = '[i, f] &= a_p + W h\\\\\nc_p &= \\sigma(f) \\odot c\\\\\nh_p &= \\tanh(c_p)'
    markup = mathml.latex_to_mathml(latex, display=True)
    assert 'display="block"' in markup
    assert markup.count('<mtr>') == 3
    # the leading '[' stays in the formula, not eaten as an optional argument
    assert re.search(r'<mo[^>]*>\[</mo>', markup)
    assert '(1)' not in markup  # align* numbers no line


def test_aligned_environment_is_laid_out_as_a_table():
    markup = mathml.latex_to_mathml(r'\begin{aligned} a &= b \\ c &= d \end{aligned}', True)
    assert markup.count('<mtr>') == 2
    assert '<mi>&</mi>' not in markup


@pytest.mark.parametrize(
    ('latex', 'display', 'problem'),
    [
        (r'\notacommand x', False, 'notacommand is left unconverted'),
        (r'a & b', False, 'left unconverted'),
        (r'\frac{1}{', True, 'Error'),
    ],
)
def test_a_formula_that_does_not_convert_is_an_error(latex, display, problem):
    with pytest.raises(mathml.FormulaError, match=problem):
        mathml.latex_to_mathml(latex, display)
