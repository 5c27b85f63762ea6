"""Predict the classes of images with a checkpoint: the top-k classes and scores of each image.

Examples::

    python tools/infer.py CONFIG CHECKPOINT IMAGE_OR_FOLDER... [--topk 5] [--device cpu] \\
        [--show] [--show-dir DIR] [--out results.json] [--cfg-options KEY=VALUE ...]
    python tools/infer.py configs/custom/hsrn_resnet50_custom_folder.py \\
        work_dirs/hsrn_resnet50_custom_folder/epoch_50.pth data/my_images/val

CONFIG is a config file or a model name of the model index (``mmpretrain.list_models()``).
Each image goes through the config's test pipeline, as ``tools/test.py`` feeds it, one at a
time; a folder is searched recursively for the extensions MMPretrain's ``CustomDataset``
reads. A test pipeline without ``LoadImageFromFile`` (a dataset generated in memory, as the
demo's) gets one inserted in front, and the tool says so.

Class names come from the checkpoint (``meta['dataset_meta']``, which the runner saves), else
from the config's test dataset (its ``metainfo``/``classes``, else its class's
``METAINFO``), else the class indices are printed.

The checkpoint is loaded strictly: one whose state_dict does not match the model (keys or
shapes) is refused with exit status 1 and the first differences; ``--no-strict`` loads the
weights that match and logs the rest. A missing image or folder, or a folder with no images,
stops the tool before the model is built (exit status 2); an image that cannot be read is
reported and skipped, and the tool ends with exit status 1 after the others.
"""

import argparse
import copy
import inspect
import json
import os
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

# Huge pages for torch's large CPU buffers (docs: Benchmark, "Huge pages"); torch reads it
# at its first allocation, so before it is imported. THP_MEM_ALLOC_ENABLE=0 opts out.
os.environ.setdefault('THP_MEM_ALLOC_ENABLE', '1')

REPO_ROOT = Path(__file__).resolve().parents[1]
try:
    import chrnn_plugin  # noqa: F401  (registers our modules and the data-only checkpoint loader)
except ImportError:  # run from a checkout without `pip install -e .`
    sys.path.insert(0, str(REPO_ROOT))

from chrnn_plugin.engine import quiet  # noqa: E402

quiet.silence_known_warnings()

import mmcv  # noqa: E402
import torch  # noqa: E402
from mmengine.config import Config  # noqa: E402
from mmengine.dataset import Compose, pseudo_collate  # noqa: E402
from mmengine.fileio import list_from_file  # noqa: E402
from mmengine.runner.checkpoint import _load_checkpoint  # noqa: E402
from mmpretrain.datasets import CustomDataset  # noqa: E402
from mmpretrain.registry import DATASETS, TRANSFORMS  # noqa: E402
from mmpretrain.structures import DataSample  # noqa: E402
from torch import nn  # noqa: E402

from chrnn_plugin import model_zoo  # noqa: E402
from chrnn_plugin.engine import CHECKPOINT_ERRORS, CheckpointMismatchError, cli  # noqa: E402
from chrnn_plugin.engine.host_memory import keep_freed_memory  # noqa: E402
from chrnn_plugin.engine.strict_loading import (  # noqa: E402
    _checkpoint_dataset_meta,
    load_checkpoint_into,
)

# The files a folder is searched for: those CustomDataset reads, so that a folder that
# trains also predicts.
IMAGE_EXTENSIONS = tuple(inspect.signature(CustomDataset.__init__).parameters['extensions'].default)
# Images with a shorter edge are drawn enlarged to it for --show/--show-dir: the text
# MMPretrain's visualiser writes scales with the image and is unreadable on a thumbnail.
MIN_DRAWN_EDGE = 224
LOADER = 'LoadImageFromFile'
EXIT_BAD_INPUT = 2  # as argparse exits for a bad command line


class InputError(ValueError):
    """An image or folder on the command line does not exist, or a folder has no images."""


@dataclass
class Prediction:
    """The top-k classes of one image, best first."""

    image: str
    labels: list[int]
    scores: list[float]
    classes: list[str] | None

    def lines(self) -> list[str]:
        """The image, then one ``  rank. score  class`` line per class."""
        names = self.classes or [str(label) for label in self.labels]
        rows = [
            f'  {rank}. {score:.4f}  {name}'
            for rank, (score, name) in enumerate(zip(self.scores, names), start=1)
        ]
        return [self.image, *rows]

    def to_json(self) -> dict:
        """``{'image': ..., 'topk': [{'label', 'class', 'score'}, ...]}``."""
        names = self.classes or [None] * len(self.labels)
        return dict(
            image=self.image,
            topk=[
                {'label': label, 'class': name, 'score': score}
                for label, name, score in zip(self.labels, names, self.scores)
            ],
        )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse the command line (no file is looked at here)."""
    parser = cli.checkpoint_tool_parser(
        'Predict the top-k classes of images (files or folders) with a checkpoint.'
    )
    parser.add_argument('config', help='config file, or a model name of the model index')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument(
        'inputs',
        nargs='+',
        metavar='IMAGE_OR_FOLDER',
        help=f'image files, or folders searched recursively for {", ".join(IMAGE_EXTENSIONS)}',
    )
    parser.add_argument(
        '--topk', type=int, default=5, help='classes shown per image (default 5; at most all)'
    )
    parser.add_argument(
        '--device', help='torch device, e.g. cpu or cuda:0 (default: cuda if available)'
    )
    parser.add_argument('--show', action='store_true', help='show each prediction in a window')
    parser.add_argument(
        '--wait-time', type=float, default=2, help='seconds to show each window (with --show)'
    )
    parser.add_argument(
        '--show-dir', help='save each image with its prediction drawn on it, as PNG, in this folder'
    )
    parser.add_argument('--out', help='write the predictions to this JSON file')
    cli.add_strict_argument(parser)
    cli.add_cfg_options_argument(parser)
    cli.add_trust_checkpoint_argument(parser)
    args = parser.parse_args(argv)
    if args.topk < 1:
        parser.error(f'--topk must be at least 1, got {args.topk}')
    return args


# --- Inputs ---------------------------------------------------------------------------------


def collect_images(inputs: Sequence[str]) -> list[tuple[Path, Path]]:
    """The images named on the command line, each with the relative name its drawing gets.

    A folder gives its images (recursively, sorted) named relative to it; a
    file is named by its file name. A name taken twice gets ``-2``, ``-3``...

    Args:
        inputs: Image files and folders.

    Returns:
        list[tuple[Path, Path]]: ``(image, name)`` pairs.

    Raises:
        InputError: A path does not exist, or a folder has no images.
    """
    found = []
    for item in map(Path, inputs):
        if item.is_dir():
            images = sorted(
                p for p in item.rglob('*') if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS
            )
            if not images:
                raise InputError(
                    f'folder {item} has no images (searched recursively for '
                    f'{", ".join(IMAGE_EXTENSIONS)})'
                )
            found += [(image, image.relative_to(item)) for image in images]
        elif item.is_file():
            found.append((item, Path(item.name)))
        else:
            raise InputError(f'no such image or folder: {item}')
    return _unique_names(found)


def _unique_names(found: list[tuple[Path, Path]]) -> list[tuple[Path, Path]]:
    taken: set[Path] = set()
    unique = []
    for image, name in found:
        stem, candidate, count = name.with_suffix(''), name.with_suffix(''), 1
        while candidate in taken:
            count += 1
            candidate = stem.with_name(f'{stem.name}-{count}')
        taken.add(candidate)
        unique.append((image, candidate))
    return unique


def resolve_config(config: str) -> str:
    """``config`` if it is a file, else the config of the model of that name.

    Raises:
        InputError: Neither a file nor a model name.
    """
    if Path(config).is_file():
        return config
    if config.endswith('.py'):
        raise InputError(f'no such config file: {config}')
    try:
        return str(model_zoo.config_path(config))
    except model_zoo.ModelIndexError as error:
        raise InputError(f'{config} is neither a config file nor a model name: {error}') from None


# --- Model, pipeline, class names ------------------------------------------------------------


def load_model(
    cfg: Config, checkpoint: str, *, strict: bool = True, device: str = 'cpu'
) -> tuple[nn.Module, dict]:
    """Build the config's model and load the checkpoint into it, in eval mode on ``device``.

    Args:
        cfg: The config (``--cfg-options`` merged).
        checkpoint: Any source MMEngine's ``CheckpointLoader`` reads, through the safe loader.
        strict: Refuse a checkpoint that does not match the model (the message names
            ``--no-strict``); otherwise load what matches and log the rest.
        device: Where the model runs.

    Returns:
        tuple[nn.Module, dict]: The model and the checkpoint (for its ``meta``).

    Raises:
        CheckpointMismatchError: ``strict`` and the checkpoint does not fit.
    """
    model = cli.build_model(cfg)
    # As cli.load_weights, with the opt-out named as this tool's flag.
    loaded = _load_checkpoint(checkpoint, map_location='cpu')
    load_checkpoint_into(model, loaded, checkpoint, strict=strict, opt_out=cli.NO_STRICT_FLAG)
    return model.to(device).eval(), loaded


def _is_loader(step: dict) -> bool:
    kind = step.get('type')
    name = kind if isinstance(kind, str) else getattr(kind, '__name__', '')
    return name.rsplit('.', 1)[-1] == LOADER


def split_test_pipeline(cfg: Config) -> tuple[dict, list[dict], bool]:
    """The test pipeline's image loader and the steps after it.

    Returns:
        tuple[dict, list[dict], bool]: The loader's config, the other steps,
        and whether the loader was inserted because the pipeline had none.
    """
    steps = copy.deepcopy(list(cfg.test_dataloader.dataset.pipeline))
    for index, step in enumerate(steps):
        if _is_loader(step):
            return steps.pop(index), steps, False
    return dict(type=LOADER), steps, True


def class_names(checkpoint: dict, cfg: Config, num_classes: int | None) -> tuple[list | None, str]:
    """The class names, and where they come from.

    In order: the checkpoint's ``meta['dataset_meta']``; the config's test
    dataset (its ``metainfo['classes']`` or ``classes``, a list or a file of
    names); its dataset class's ``METAINFO``. A list whose length is not the
    model's number of classes is passed over.

    Args:
        checkpoint: The loaded checkpoint.
        cfg: The config.
        num_classes: The model's number of classes, if known.

    Returns:
        tuple[list | None, str]: The names (None: print indices) and their source.
    """
    dataset = cfg.get('test_dataloader', {}).get('dataset', {})
    candidates = [('the checkpoint', _checkpoint_dataset_meta(checkpoint).get('classes'))]
    candidates.append(('the config', (dataset.get('metainfo') or {}).get('classes')))
    candidates.append(('the config', dataset.get('classes')))
    kind = dataset.get('type')
    dataset_class = DATASETS.get(kind) if isinstance(kind, str) else kind
    candidates.append((f'{kind}.METAINFO', getattr(dataset_class, 'METAINFO', {}).get('classes')))
    for source, names in candidates:
        if isinstance(names, str) and Path(names).is_file():
            names = list_from_file(names)
        if isinstance(names, Sequence) and not isinstance(names, str) and names:
            if num_classes is None or len(names) == num_classes:
                return [str(n) for n in names], source
    return None, 'none found: class indices'


# --- Prediction ------------------------------------------------------------------------------


def predict(model: nn.Module, pipeline: Compose, image: dict, topk: int) -> DataSample:
    """Run the model on one loaded image (``image`` as ``LoadImageFromFile`` returns it).

    Returns:
        DataSample: The model's prediction, ``pred_label`` set to the top-k labels.
    """
    batch = pseudo_collate([pipeline(image)])
    with torch.no_grad():
        (sample,) = model.test_step(batch)
    scores = sample.pred_score
    top = scores.topk(min(topk, scores.numel()))
    return sample.set_pred_label(top.indices)


def to_prediction(sample: DataSample, image: str, names: list | None) -> Prediction:
    """The top-k of ``sample`` (labels in ``pred_label``, best first) with their names."""
    labels = sample.pred_label.tolist()
    return Prediction(
        image=image,
        labels=labels,
        scores=[float(sample.pred_score[label]) for label in labels],
        classes=[names[label] for label in labels] if names else None,
    )


def draw(
    visualizer: object,
    path: Path,
    sample: DataSample,
    names: list | None,
    *,
    out_file: Path | None,
    show: bool,
    wait_time: float,
) -> None:
    """Draw the top-k of ``sample`` on the image at ``path``; save it and/or show it."""
    image = mmcv.imread(str(path), channel_order='rgb')
    short_edge = min(image.shape[:2])
    visualizer.visualize_cls(
        image,
        sample,
        classes=names,
        draw_gt=False,
        resize=MIN_DRAWN_EDGE if short_edge < MIN_DRAWN_EDGE else None,
        show=show,
        wait_time=wait_time,
        out_file=None if out_file is None else str(out_file),
        name=path.name,
    )


def progress(images: Sequence[tuple[Path, Path]], enabled: bool) -> Iterator[tuple[Path, Path]]:
    """Yield ``images``; a progress bar on a terminal, else ``[i/n] image`` lines on stderr.

    On a terminal the bar stays below what is printed meanwhile (rich moves the
    prints above it); a log or a pipe gets one plain line per image instead.
    """
    if not enabled:
        yield from images
    elif sys.stdout.isatty():
        from rich.progress import track

        yield from track(images, description='Predicting', transient=True)
    else:
        for index, item in enumerate(images, start=1):
            print(f'[{index}/{len(images)}] {item[0]}', file=sys.stderr, flush=True)
            yield item


def run(args: argparse.Namespace, config: str, images: Sequence[tuple[Path, Path]]) -> dict:
    """Predict every image; print and draw each; return what ``--out`` holds.

    Args:
        args: The command line.
        config: The config file (CONFIG resolved).
        images: ``(image, name)`` pairs, as :func:`collect_images` returns them.

    Returns:
        dict: The config, the checkpoint, where the class names came from, the
        predictions and the images that could not be read.
    """
    cfg = cli.load_config(config, args.cfg_options)
    device = args.device or ('cuda' if torch.cuda.is_available() else 'cpu')
    model, checkpoint = load_model(cfg, args.checkpoint, strict=args.strict, device=device)

    loader_cfg, steps, inserted = split_test_pipeline(cfg)
    if inserted:
        print(
            f'note: the test pipeline of {config} has no {LOADER} (its dataset makes images '
            f'in memory); inserted dict(type={LOADER!r}) in front to read the image files',
            file=sys.stderr,
        )
    loader = TRANSFORMS.build(loader_cfg)
    pipeline = Compose(steps)
    names, names_from = class_names(
        checkpoint, cfg, getattr(getattr(model, 'head', None), 'num_classes', None)
    )
    visualizer = None
    if args.show or args.show_dir:
        from mmpretrain.visualization import UniversalVisualizer

        visualizer = UniversalVisualizer()

    predictions, errors = [], []
    for path, name in progress(images, enabled=len(images) > 1):
        try:
            loaded = loader(dict(img_path=str(path)))
        except Exception as error:  # any decoder's failure: report it, go on with the others
            loaded, reason = None, str(error) or type(error).__name__
        else:
            reason = 'the loader returned nothing'
        if loaded is None:
            errors.append(dict(image=str(path), error=reason))
            print(f'error: cannot read image {path}: {reason}', file=sys.stderr, flush=True)
            continue
        sample = predict(model, pipeline, loaded, args.topk)
        prediction = to_prediction(sample, str(path), names)
        print('\n'.join(prediction.lines()), flush=True)
        predictions.append(prediction)
        if visualizer is not None:
            out_file = None if args.show_dir is None else Path(args.show_dir) / f'{name}.png'
            draw(
                visualizer,
                path,
                sample,
                names,
                out_file=out_file,
                show=args.show,
                wait_time=args.wait_time,
            )
    return dict(
        config=config,
        checkpoint=args.checkpoint,
        classes_from=names_from,
        predictions=[p.to_json() for p in predictions],
        errors=errors,
    )


def main(argv: list[str] | None = None) -> dict:
    """Predict the images given on the command line; return what ``--out`` holds."""
    args = parse_args(argv)
    try:
        # Before anything heavy, so that a typo fails at once.
        images = collect_images(args.inputs)
        config = resolve_config(args.config)
    except InputError as error:
        print(f'error: {error}', file=sys.stderr)
        sys.exit(EXIT_BAD_INPUT)
    cli.apply_trust_checkpoint(args)
    try:
        results = run(args, config, images)
    except (CheckpointMismatchError, FileNotFoundError, *CHECKPOINT_ERRORS) as error:
        sys.exit(f'error: {error}')
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(results, indent=2) + '\n')
        print(f'Saved {len(results["predictions"])} predictions to {out}', file=sys.stderr)
    if args.show_dir:
        print(f'Saved the drawn predictions in {args.show_dir}', file=sys.stderr)
    if results['errors']:
        unread = [e['image'] for e in results['errors']]
        sys.exit(
            f'error: {len(unread)} of {len(images)} images could not be read: {", ".join(unread)}'
        )
    return results


if __name__ == '__main__':
    # Freed CPU buffers are reused, not page-faulted in again (docs: Benchmark).
    keep_freed_memory()
    main()
