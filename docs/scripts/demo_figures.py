"""Draw the Demo page's figures from trained demo work dirs.

Three figures per image size, written to ``--out`` (by default
``docs/_static/demo``) with the size in the name:

* ``samples_<N>px.png``: one test image per class of ``SpatialRelations``,
  drawn from the dataset the demo trained on (the config saved in a neck's
  work dir), with the A and B boxes;
* ``val_accuracy_<N>px.png``: val top-1 per epoch of every neck in the work
  dirs' ``results.json``, drawn by ``tools/demo.py``'s own plotting function;
* ``context_<N>px.png``: ``tools/visualize_context.py --compare`` on test
  sample 0, HSRN beside GAP (only when both were trained).

After ``python tools/demo.py --necks all``::

    python docs/scripts/demo_figures.py work_dirs/demo

A demo split over several processes (one ``--necks`` key each, each with its
own ``--work-dir``) is drawn by passing every work dir; their results are
merged. All work dirs must hold the same image size. A neck trained in more
than one work dir is taken from the last one given (the script says so).
"""

import argparse
import importlib.util
import json
from pathlib import Path
from types import ModuleType

REPO_ROOT = Path(__file__).resolve().parents[2]
TOOLS = REPO_ROOT / 'tools'
DEFAULT_OUT = REPO_ROOT / 'docs' / '_static' / 'demo'


def _tool(name: str) -> ModuleType:
    """Import ``tools/<name>.py`` (the tools folder is not a package)."""
    spec = importlib.util.spec_from_file_location(f'chrnn_tools_{name}', TOOLS / f'{name}.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


demo = _tool('demo')
visualize_context = _tool('visualize_context')

import matplotlib.patches as mpatches  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402


def merge_results(work_dirs: list[Path]) -> dict[str, dict]:
    """The work dirs' ``results.json`` merged, in the demo's neck order."""
    merged: dict[str, dict] = {}
    for work_dir in work_dirs:
        path = work_dir / 'results.json'
        if not path.is_file():
            raise FileNotFoundError(
                f'work dir {str(work_dir)!r}: expected a results.json written by tools/demo.py, '
                'found none'
            )
        for neck, result in json.loads(path.read_text()).items():
            if neck in merged:
                print(f'{neck}: taken from {work_dir} (also in {merged[neck]["work_dir"]})')
            merged[neck] = result
    sizes = {r.get('image_size', demo.BASE_IMAGE_SIZE) for r in merged.values()}
    if len(sizes) != 1:
        raise ValueError(
            f'work dirs: expected results at one image size, got sizes {sorted(sizes)}; '
            'draw each size with its own command'
        )
    order = [n for n in demo.NECKS if n in merged] + [n for n in merged if n not in demo.NECKS]
    return {n: merged[n] for n in order}


def trained_config(result: dict, neck: str) -> Path:
    """The config a neck trained with, as the runner saved it in its work dir."""
    path = Path(result['work_dir']) / f'{neck}.py'
    if not path.is_file():
        raise FileNotFoundError(
            f'{neck}: expected the trained config at {path} (the runner saves it there), found none'
        )
    return path


def first_sample_per_class(config: Path) -> tuple[dict[int, tuple], tuple[str, ...]]:
    """``{label: (index, BGR image, info)}`` for the first test sample of each class."""
    cfg = visualize_context.cli.load_config(str(config))
    first: dict[int, tuple] = {}
    index = 0
    # Balanced splits cycle through the classes, so the loop ends after a
    # few samples; the bound only guards a split that lacks a class.
    while index < 1000:
        img, info = visualize_context.load_sample(cfg, index, 'test')
        first.setdefault(int(info['gt_label']), (index, img, info))
        if len(first) == len(info['classes']):
            return first, tuple(info['classes'])
        index += 1
    raise ValueError(
        f'{config}: expected every class among the first 1000 test samples, '
        f'found labels {sorted(first)}'
    )


def draw_samples(config: Path, out: Path) -> Path:
    """The first test image of each class, with A and B outlined."""
    first, classes = first_sample_per_class(config)
    fig, axes = plt.subplots(1, len(classes), figsize=(2.2 * len(classes), 2.5))
    for ax, label in zip(axes, sorted(first)):
        index, img, info = first[label]
        ax.imshow(img[..., ::-1], interpolation='nearest')
        for obj in info['objects']:
            if obj['role'] in ('A', 'B'):
                y, x, h, w = obj['box']
                ax.add_patch(
                    mpatches.Rectangle(
                        (x - 1.5, y - 1.5), w + 2, h + 2, fill=False, edgecolor='white', lw=0.8
                    )
                )
                ax.text(x, y - 2, obj['role'], color='white', fontsize=8, va='bottom')
        ax.set_title(f'{classes[label]} (test #{index})', fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    size = img.shape[0]
    fig.suptitle(
        f'SpatialRelations, {size} px: the class is where A (red) lies relative to B (blue)',
        fontsize=9,
    )
    fig.tight_layout(rect=(0, 0, 1, 0.92))
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out


def draw_all(work_dirs: list[Path], out_dir: Path) -> list[Path]:
    """Every figure the work dirs allow; returns the files written."""
    results = merge_results(work_dirs)
    size = next(iter(results.values())).get('image_size', demo.BASE_IMAGE_SIZE)
    first_neck = next(iter(results))
    written = [
        draw_samples(
            trained_config(results[first_neck], first_neck), out_dir / f'samples_{size}px.png'
        )
    ]
    accuracy = out_dir / f'val_accuracy_{size}px.png'
    demo.plot_curves(results, accuracy)
    written.append(accuracy)
    if 'hsrn' in results and 'gap' in results:
        context = out_dir / f'context_{size}px.png'
        visualize_context.main(
            [str(trained_config(results['hsrn'], 'hsrn')), results['hsrn']['checkpoint']]
            + ['--sample', '0', '--compare', str(trained_config(results['gap'], 'gap'))]
            + [results['gap']['checkpoint'], '--out', str(context)]
        )
        written.append(context)
    else:
        print('context map skipped: it needs both hsrn and gap in the work dirs')
    return written


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description="Draw the Demo page's figures.")
    parser.add_argument('work_dirs', nargs='+', type=Path, help='demo work dirs (--work-dir)')
    parser.add_argument('--out', type=Path, default=DEFAULT_OUT, help='folder for the PNGs')
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> list[Path]:
    """Draw the figures; return their paths."""
    args = parse_args(argv)
    written = draw_all(args.work_dirs, args.out)
    for path in written:
        print(f'Saved {path} ({path.stat().st_size / 1024:.0f} KB)')
    return written


if __name__ == '__main__':
    main()
