"""The site builds with warnings as errors, and its figure matches the code.

Sphinx, MyST and the theme come with the ``docs`` extra, which CI installs; a
missing one fails here rather than skipping.
"""

import importlib.util
import re

import torch
from matplotlib import image

from chrnn_plugin.models.necks.wavefront import DIRECTION_FLIPS, sweep_order

from .doc_commands import DOCS, REPO_ROOT

NECK_ORDER = ('HSRNNeck', 'HLSTMNeck', 'HRNNNeck')


def _draw_sweeps():
    script = DOCS / 'scripts' / 'draw_sweeps.py'
    spec = importlib.util.spec_from_file_location('draw_sweeps', script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_docs_requirements_installed():
    for name in ('sphinx', 'myst_parser', 'furo', 'latex2mathml'):
        assert importlib.util.find_spec(name), f"{name} is missing: pip install -e '.[docs]'"


def test_figure_matches_the_wavefront_schedule():
    draw = _draw_sweeps()
    assert draw.DIRECTION_FLIPS == DIRECTION_FLIPS
    size = draw.GRID
    directions = tuple(DIRECTION_FLIPS)
    order = sweep_order(size, size, directions, torch.device('cpu'))
    for k, direction in enumerate(directions):
        steps = [draw.sweep_step(direction, int(i) // size, int(i) % size, size) for i in order[k]]
        assert steps == sorted(steps), f'{direction}: the figure numbers a different sweep order'
        for row in range(size):
            for col in range(size):
                for pr, pc in draw.predecessors(direction, row, col, size):
                    assert draw.sweep_step(direction, pr, pc, size) + 1 == draw.sweep_step(
                        direction, row, col, size
                    )


def test_site_builds_without_warnings(built_site):
    assert built_site.returncode == 0, built_site.log
    html = built_site.page('concepts')
    assert 'sweeps.png' in html
    assert (built_site.html / '_images' / 'sweeps.png').is_file()
    api = built_site.page('api')
    for name in ('HSRNNeck', 'HLSTMNeck', 'LSTMCell2d', 'wavefront_sweep', 'MIT67'):
        assert name in api, f'{name} missing from the API reference'
    # registered necks first, then their unregistered base; no parent "should be overridden" text
    order = [api.index(f'id="chrnn_plugin.models.necks.hrnn_neck.{n}"') for n in NECK_ORDER]
    assert order == sorted(order), 'the API page should list HSRNNeck, HLSTMNeck, then HRNNNeck'
    assert 'overridden' not in api and 'must override' not in api

    # Formulas are MathML written at build time: no script, no network, no TeX left in the page.
    for page in sorted(built_site.html.glob('*.html')):
        text = page.read_text()
        assert not re.search(r'<script[^>]+src="(https?:)?//', text), f'{page.name} loads a script'
        assert 'math-tex' not in text, f'{page.name} has a formula that did not convert'
    for page, at_least in (('concepts.html', 30), ('api.html', 5)):
        text = (built_site.html / page).read_text()
        assert text.count('<math ') >= at_least, page
        assert '\\[' not in text and '$$' not in text, f'{page} shows raw TeX'


def test_committed_figure_is_the_generated_one(tmp_path):
    """The README shows docs/_static/sweeps.png; it must still be what the script draws."""
    committed = image.imread(REPO_ROOT / 'docs' / '_static' / 'sweeps.png')
    fresh = image.imread(_draw_sweeps().draw(tmp_path / 'sweeps.png'))
    # matplotlib draws with its own bundled FreeType, so the pixels repeat across machines.
    assert committed.shape == fresh.shape and (committed == fresh).all(), (
        'docs/_static/sweeps.png is out of date: python docs/scripts/draw_sweeps.py '
        'docs/_static/sweeps.png'
    )
