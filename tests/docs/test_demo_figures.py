"""The Demo page's committed figures, and the script that draws them from demo work dirs."""

import importlib.util
import json
import re

import pytest
import torch
from mmengine.config import Config

from .doc_commands import DOCS, REPO_ROOT

FIGURES = DOCS / '_static' / 'demo'
MAX_BYTES = 250 * 1024


@pytest.fixture(scope='module')
def demo_figures():
    script = DOCS / 'scripts' / 'demo_figures.py'
    spec = importlib.util.spec_from_file_location('demo_figures', script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_demo_page_shows_every_committed_figure_and_each_is_small():
    page = (DOCS / 'demo.md').read_text()
    referenced = set(re.findall(r'_static/demo/([\w.-]+\.png)', page))
    committed = {p.name for p in FIGURES.glob('*.png')}
    assert referenced == committed, (
        f'demo.md shows {sorted(referenced)}, docs/_static/demo has {sorted(committed)}'
    )
    for kind in ('samples', 'val_accuracy', 'context'):
        assert f'{kind}_56px.png' in committed, f'the demo page lacks {kind}_56px.png'
    for name in committed:
        data = (FIGURES / name).read_bytes()
        assert data[:8] == b'\x89PNG\r\n\x1a\n', f'{name} is not a PNG'
        assert len(data) < MAX_BYTES, f'{name}: {len(data)} bytes, expected < {MAX_BYTES}'


def _results(work_dir, necks, image_size=56):
    work_dir.mkdir(parents=True, exist_ok=True)
    results = {
        neck: dict(
            val_top1=[30.0 + i, 40.0 + i],
            image_size=image_size,
            work_dir=str(work_dir / neck),
            checkpoint=str(work_dir / neck / 'epoch_1.pth'),
        )
        for i, neck in enumerate(necks)
    }
    (work_dir / 'results.json').write_text(json.dumps(results))
    return results


def test_merge_follows_the_demo_order_and_the_last_work_dir_wins(demo_figures, tmp_path):
    _results(tmp_path / 'a', ['renet', 'gap'])
    late = _results(tmp_path / 'b', ['renet', 'hsrn'])
    merged = demo_figures.merge_results([tmp_path / 'a', tmp_path / 'b'])
    assert list(merged) == ['gap', 'hsrn', 'renet']
    assert merged['renet'] == late['renet']


def test_merge_errors_name_the_problem(demo_figures, tmp_path):
    _results(tmp_path / 'small', ['gap'], image_size=56)
    _results(tmp_path / 'large', ['hsrn'], image_size=112)
    with pytest.raises(ValueError, match=r'one image size, got sizes \[56, 112\]'):
        demo_figures.merge_results([tmp_path / 'small', tmp_path / 'large'])
    (tmp_path / 'empty').mkdir()
    with pytest.raises(FileNotFoundError, match='expected a results.json'):
        demo_figures.merge_results([tmp_path / 'empty'])


def test_one_sample_per_class(demo_figures):
    first, classes = demo_figures.first_sample_per_class(REPO_ROOT / 'configs/demo/gap.py')
    assert sorted(first) == list(range(len(classes))) and len(classes) == 4
    for label, (_index, img, info) in first.items():
        assert int(info['gt_label']) == label
        assert img.shape == (56, 56, 3)


@pytest.fixture
def closed_figures(monkeypatch):
    """Every matplotlib figure closed during the test, for checking its layout after saving."""
    import matplotlib.pyplot as plt

    figures = []
    monkeypatch.setattr(plt, 'close', figures.append)
    return figures


def test_accuracy_legend_is_outside_the_axes(demo_figures, tmp_path, closed_figures):
    """Inside, the legend hid the last epochs' points, where the curves end (near 100 %)."""
    results = {
        neck: dict(val_top1=[25.0 + 25 * i, 99.0, 100.0, 100.0], image_size=56)
        for i, neck in enumerate(demo_figures.demo.NECKS)
    }
    demo_figures.demo.plot_curves(results, tmp_path / 'val_accuracy.png')
    (fig,) = closed_figures
    (ax,) = fig.axes
    legend, plot, page = ax.get_legend().get_window_extent(), ax.get_window_extent(), fig.bbox
    assert not legend.overlaps(plot), f'the legend {legend} covers the plot {plot}'
    assert page.x0 <= legend.x0 and legend.x1 <= page.x1, 'the legend is cut off the figure'


def test_script_draws_all_three_figures_from_a_work_dir(demo_figures, tmp_path, closed_figures):
    """End to end on untrained weights: a work dir laid out as tools/demo.py leaves it."""
    from mmpretrain.registry import MODELS

    work_dir = tmp_path / 'demo'
    results = _results(work_dir, ['gap', 'hsrn'])
    for neck, result in results.items():
        cfg = Config.fromfile(str(REPO_ROOT / 'configs' / 'demo' / f'{neck}.py'))
        (work_dir / neck).mkdir()
        cfg.dump(str(work_dir / neck / f'{neck}.py'))
        torch.manual_seed(0)
        model = MODELS.build(cfg.model)
        torch.save({'state_dict': model.state_dict()}, result['checkpoint'])
    out = tmp_path / 'figures'
    written = demo_figures.main([str(work_dir), '--out', str(out)])
    names = sorted(p.name for p in written)
    assert names == ['context_56px.png', 'samples_56px.png', 'val_accuracy_56px.png']
    for path in written:
        assert path.read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'
    # samples, accuracy, influence maps: the maps share one colour bar, beside the two models
    context = closed_figures[-1]
    bars = [ax for ax in context.axes if getattr(ax, '_colorbar', None) is not None]
    assert len(bars) == 1, 'the influence maps have no colour bar'
    assert len(context.axes) == 4  # input, HSRN, GAP, colour bar
    labels = [t.get_text() for t in bars[0].get_yticklabels()]
    assert labels[0] == '≤0.001' and labels[-1] == '1', labels
