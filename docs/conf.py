"""Sphinx configuration of the chrnn_plugin documentation.

Build (from the repository root, after ``pip install -e '.[lite,docs]'``)::

    python -m sphinx -W --keep-going -b html docs docs/_build/html
"""

import importlib.util
import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
# Document the working tree, also when it is not installed.
sys.path.insert(0, str(ROOT))
# The project's own Sphinx extensions.
sys.path.insert(0, str(DOCS / '_ext'))

from chrnn_plugin.version import __version__  # noqa: E402

project = 'chrnn_plugin'
author = 'The chrnn_plugin authors'
copyright = 'The chrnn_plugin authors'  # noqa: A001
version = release = __version__

extensions = [
    'myst_parser',
    'sphinx.ext.autodoc',
    'sphinx.ext.napoleon',
    'sphinx.ext.viewcode',
    'mathml_math',
    'keep_together',
]

source_suffix = {'.md': 'markdown'}
root_doc = 'index'
exclude_patterns = ['_build', '_ext', '_generated/*.md', 'scripts', 'Thumbs.db', '.DS_Store']

myst_enable_extensions = ['dollarmath', 'amsmath', 'colon_fence', 'deflist']
# Anchors for '#section' links between pages, as on GitHub.
myst_heading_anchors = 3

autodoc_member_order = 'bysource'
autodoc_typehints = 'description'
autodoc_default_options = {'show-inheritance': True}
# A method without a docstring of its own (forward, load_data_list) is left out rather than
# shown with its parent's text (torch's and MMEngine's "should be overridden").
autodoc_inherit_docstrings = False
napoleon_google_docstring = True
napoleon_numpy_docstring = False

html_theme = 'furo'
html_title = f'chrnn_plugin {release}'
html_static_path = ['_static']
html_css_files = ['chrnn.css']

# Formulas are converted to MathML at build time (docs/_ext/mathml_math.py), which browsers
# draw natively: the pages load no script and reach no network. No intersphinx either, so the
# docs also build offline.


def _draw_figures(app) -> None:
    """Regenerate the figures from docs/scripts before the pages are read."""
    script = DOCS / 'scripts' / 'draw_sweeps.py'
    spec = importlib.util.spec_from_file_location('draw_sweeps', script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.draw(DOCS / '_generated' / 'sweeps.png')


def _drop_type_docstring(app, what, name, obj, options, lines) -> None:
    """Leave out the docstring of a constant's type (``str``, ``tuple``).

    A module constant without a ``#:`` comment has no docstring of its own, and autodoc shows
    its type's instead ("str(object='') -> str ..."); the page describes it in the directive.
    """
    if what in ('data', 'attribute') and not isinstance(obj, type):
        type_doc = type(obj).__doc__
        if type_doc and lines and lines[0].strip() == type_doc.strip().splitlines()[0].strip():
            lines.clear()


def setup(app):
    app.connect('builder-inited', _draw_figures)
    app.connect('autodoc-process-docstring', _drop_type_docstring)
