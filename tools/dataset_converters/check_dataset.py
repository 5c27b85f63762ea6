"""Check that every image a config's datasets list exists and decodes.

    python tools/dataset_converters/check_dataset.py CONFIG [--splits train val test]
        [--cfg-options KEY=VALUE ...] [--workers 8] [--max-pixels N] [--out bad_images.txt]

Builds the train, val and test datasets of CONFIG (which also checks their
split files), then checks every listed image. An image file's size is read
from its header first: one above ``--max-pixels`` is reported and never
decoded (a small file can expand to gigabytes); the others are opened and
decoded with the decoder of the config's ``LoadImageFromFile``
(``imdecode_backend``, OpenCV by default). An image the dataset holds in
memory (``img`` instead of ``img_path``, e.g. the generated demo dataset) is
checked as an array: its shape and its size. Shows a progress bar, lists the
bad images and exits with status 1 if there is a missing, empty or
undecodable one, 2 if a dataset cannot be built (every such dataset is
reported, with the file and line its split file error names) or an image is
above the pixel limit (it was not checked), 0 otherwise.
"""

import argparse
import io
import os
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

from chrnn_plugin.engine import quiet

quiet.silence_known_warnings()

import mmcv  # noqa: E402
import numpy as np  # noqa: E402
from mmengine.config import Config  # noqa: E402
from PIL import Image  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.markup import escape  # noqa: E402
from rich.progress import (  # noqa: E402
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
)

from chrnn_plugin.engine import cli  # noqa: E402

SPLITS = ('train', 'val', 'test')

# Images above this many pixels are reported, not decoded: 64 Mi pixels (8192 x 8192), whose
# decoded colour image takes 192 MiB, and the decoder may hold a second copy, in each of the
# --workers threads. Classification inputs are resized to a few hundred pixels, so a genuine
# photo is far smaller; a larger image is most likely corrupt or a decompression bomb (a
# 190 KB PNG can declare 14000 x 14000 pixels). Below Pillow's own warning limit
# (Image.MAX_IMAGE_PIXELS, about 89 million pixels), which the tool lifts while it checks
# (see pillow_limit_replaced), so the default is at least as safe as Pillow's.
MAX_PIXELS = 8192 * 8192
# Every problem of an image above the limit starts with this: main exits with status 2 for it.
TOO_LARGE = 'too large'


def positive_int(text: str) -> int:
    """``text`` as an int of at least 1, for argparse."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f'must be at least 1, got {value}')
    return value


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line: the config, ``--splits``, ``--cfg-options`` and the checking options."""
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('config', help='the config whose datasets to check')
    parser.add_argument(
        '--splits',
        nargs='+',
        choices=SPLITS,
        default=list(SPLITS),
        help='which dataloaders of the config to check (default: all three)',
    )
    cli.add_cfg_options_argument(parser)
    parser.add_argument(
        '--workers', type=int, default=8, help='threads reading images (default: 8)'
    )
    parser.add_argument(
        '--max-pixels',
        type=positive_int,
        default=MAX_PIXELS,
        help=f'report images of more pixels (width x height) without decoding them '
        f'(default: {MAX_PIXELS}, 8192 x 8192)',
    )
    parser.add_argument('--out', help='also write the bad images to this file, one a line')
    parser.add_argument(
        '--show', type=int, default=50, help='how many bad images to print (default: 50)'
    )
    return parser.parse_args(argv)


def decode_backend(pipeline: list | None) -> str:
    """The ``imdecode_backend`` of the pipeline's ``LoadImageFromFile``."""
    for step in pipeline or ():
        if isinstance(step, dict) and step.get('type') == 'LoadImageFromFile':
            return step.get('imdecode_backend', 'cv2')
    return 'cv2'


def too_large(width: int, height: int, max_pixels: int) -> str | None:
    """Why an image of ``width`` x ``height`` pixels is refused, or ``None`` if it is not.

    Args:
        width (int): The image width in pixels.
        height (int): The image height in pixels.
        max_pixels (int): The most pixels an image may have.

    Returns:
        str | None: A problem starting with :data:`TOO_LARGE`, naming the size.
    """
    pixels = width * height
    if pixels <= max_pixels:
        return None
    return f'{TOO_LARGE}: {width}x{height} = {pixels:,} pixels, above --max-pixels {max_pixels:,}'


def header_problem(content: bytes, max_pixels: int = MAX_PIXELS) -> str | None:
    """Why the image in ``content`` must not be decoded, from its header alone.

    ``Image.open`` reads the header only; the pixels are decoded on ``load``,
    which is never called here.

    Args:
        content (bytes): The image file.
        max_pixels (int): The most pixels an image may have.

    Returns:
        str | None: A problem starting with :data:`TOO_LARGE` when the image is
        above ``max_pixels`` or Pillow refuses it as a decompression bomb;
        ``None`` otherwise, also when Pillow cannot read the header (the
        decoder then reports the file).
    """
    try:
        with Image.open(io.BytesIO(content)) as image:
            width, height = image.size
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        # Pillow's own limit (the warning is raised where warnings are errors, -W error).
        return f'{TOO_LARGE}: Pillow {type(e).__name__}: {e}'
    except Exception:  # not a format Pillow reads, or a broken header: the decoder judges it
        return None
    return too_large(width, height, max_pixels)


def check_image(path: str, backend: str, max_pixels: int = MAX_PIXELS) -> str | None:
    """Why the image file at ``path`` is bad, or ``None`` if it is fine.

    Args:
        path (str): The image file.
        backend (str): The ``mmcv.imfrombytes`` backend that decodes it.
        max_pixels (int): Report larger images (:func:`header_problem`)
            instead of decoding them.

    Returns:
        str | None: The problem: missing, unreadable, empty, too large
        (starting with :data:`TOO_LARGE`) or not decodable.
    """
    try:
        with open(path, 'rb') as f:
            content = f.read()
    except FileNotFoundError:
        return 'missing'
    except (OSError, ValueError) as e:  # ValueError: e.g. a NUL byte in the path
        return f'unreadable: {e}'
    if not content:
        return 'empty file'
    problem = header_problem(content, max_pixels)
    if problem is not None:
        return f'{problem}; not decoded'
    try:
        image = mmcv.imfrombytes(content, flag='color', backend=backend)
    except Exception as e:  # any decoder failure makes a bad image
        detail = type(e).__name__
        if '<_io.' not in str(e):  # Pillow's message only names the BytesIO object
            detail += f': {e}'
        return f'cannot decode ({backend}): {detail}'
    if image is None or image.size == 0:
        return f'cannot decode ({backend})'
    return None


def check_array(img: object, max_pixels: int = MAX_PIXELS) -> str | None:
    """Why an image a dataset holds in memory is bad, or ``None`` if it is fine.

    Args:
        img (object): The sample's ``img``: an ``(H, W)`` or ``(H, W, C)``
            array with 1, 3 or 4 channels, as ``LoadImageFromFile`` gives;
            ``None`` for a sample that has neither ``img_path`` nor ``img``.
        max_pixels (int): The most pixels (``H * W``) it may have.

    Returns:
        str | None: The problem: no image, not an array, a shape that is no
        image, empty, or too large (starting with :data:`TOO_LARGE`).
    """
    if img is None:
        return 'no image: the sample has neither img_path nor img'
    if not isinstance(img, np.ndarray):
        return f'in-memory image is a {type(img).__name__}, not a numpy array'
    if img.ndim not in (2, 3) or (img.ndim == 3 and img.shape[2] not in (1, 3, 4)):
        return f'in-memory image of shape {img.shape}, not (H, W) or (H, W, 1|3|4)'
    if img.size == 0:
        return f'empty in-memory image, shape {img.shape}'
    height, width = img.shape[:2]
    return too_large(width, height, max_pixels)


@contextmanager
def pillow_limit_replaced() -> Iterator[None]:
    """Pillow's decompression-bomb limit off while ``--max-pixels`` checks every header.

    With it on, ``Image.open`` refuses an image above twice
    ``Image.MAX_IMAGE_PIXELS`` before its size can be read, so the report
    could not name the size, and ``--max-pixels`` could not go above it.
    Only images under ``--max-pixels`` are decoded, so none goes unchecked.
    """
    saved = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = None
    try:
        yield
    finally:
        Image.MAX_IMAGE_PIXELS = saved


def collect_datasets(cfg: Config, splits: list[str]) -> list[tuple[list[str], dict]]:
    """``[(names, dataset config)]``, one entry per distinct dataset."""
    found = []
    for split in splits:
        loader = cfg.get(f'{split}_dataloader')
        if not loader or not loader.get('dataset'):
            continue
        dataset_cfg = loader['dataset']
        for names, seen in found:
            if seen == dataset_cfg:
                names.append(split)
                break
        else:
            found.append(([split], dataset_cfg))
    return found


def describe_images(files: int, arrays: int, backend: str) -> str:
    """How a dataset's images are checked, for the line that introduces it.

    Args:
        files (int): How many are image files, decoded with ``backend``.
        arrays (int): How many the dataset holds in memory, checked as arrays.
        backend (str): The decoder of the files.

    Returns:
        str: E.g. ``'decoded with cv2'`` or ``'in memory (checked as arrays, not decoded)'``.
    """
    if not arrays:
        return f'decoded with {backend}'
    if not files:
        return 'in memory (checked as arrays, not decoded)'
    return f'{files} decoded with {backend}, {arrays} in memory (checked as arrays)'


def main(argv: list[str] | None = None) -> int:
    """Check the config's datasets and images.

    Args:
        argv (list[str], optional): The arguments; ``sys.argv[1:]`` when None.

    Returns:
        int: The exit status: 0 all good, 1 a bad image, 2 a dataset that
        cannot be built or an image above ``--max-pixels``.
    """
    args = parse_args(argv)
    console = Console(highlight=False, soft_wrap=True)
    cfg = cli.load_config(args.config, args.cfg_options)
    targets = collect_datasets(cfg, args.splits)
    if not targets:
        console.print(f'[red]{escape(args.config)} has no dataloader among {args.splits}[/red]')
        return 2

    jobs = []  # (split names, index, path, backend): the image files, read in threads
    bad = []  # (split names, index, path or in-memory name, problem)
    in_memory = 0
    unbuildable = 0
    for names, dataset_cfg in targets:
        label = '/'.join(names)
        try:
            dataset = cli.build_dataset(cfg, dataset_cfg)
        except Exception as e:  # report the dataset's own message, then the others
            message = escape(f'Cannot build the {label} dataset: {type(e).__name__}: {e}')
            console.print(f'[red]{message}[/red]')
            unbuildable += 1
            continue
        backend = decode_backend(dataset_cfg.get('pipeline'))
        name = type(dataset).__name__
        arrays = 0
        for index in range(len(dataset)):
            info = dataset.get_data_info(index)
            if 'img_path' in info:
                jobs.append((label, index, info['img_path'], backend))
                continue
            # A generated sample (SpatialRelations) carries its image, as LoadImageFromFile would.
            arrays += 1
            problem = check_array(info.get('img'), args.max_pixels)
            if problem is not None:
                bad.append((label, index, f'{name}[{index}] (in memory)', problem))
        in_memory += arrays
        how = describe_images(len(dataset) - arrays, arrays, backend)
        console.print(escape(f'{label}: {name}, {len(dataset)} images, {how}'))
    if unbuildable:
        console.print(f'[red]{unbuildable} dataset(s) cannot be built; images not checked.[/red]')
        return 2

    progress = Progress(
        TextColumn('checking images'),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=console,
    )
    pool = ThreadPoolExecutor(max_workers=max(1, args.workers))
    with progress, pillow_limit_replaced(), pool:
        task = progress.add_task('check', total=len(jobs))
        results = pool.map(lambda job: check_image(job[2], job[3], args.max_pixels), jobs)
        for job, problem in zip(jobs, results):
            if problem is not None:
                bad.append((*job[:3], problem))
            progress.advance(task)

    if args.out:
        with open(args.out, 'w') as f:
            for label, index, path, problem in bad:
                f.write(f'{path}\t{label}\t{index}\t{problem}\n')

    total = len(jobs) + in_memory
    if not bad:
        if not in_memory:
            summary = 'exist and decode'
        elif not jobs:
            summary = 'in memory are well-formed'
        else:
            summary = (
                f'are good ({len(jobs)} exist and decode, {in_memory} in memory are well-formed)'
            )
        console.print(f'[green]All {total} images {summary}.[/green]')
        return 0
    console.print(f'[red]{len(bad)} bad image(s) of {total}:[/red]')
    for label, index, path, problem in bad[: args.show]:
        console.print(escape(f'  {os.fspath(path)}: {problem} ({label} #{index})'))
    if len(bad) > args.show:
        where = f' (all in {args.out})' if args.out else ''
        console.print(f'... and {len(bad) - args.show} more{where}')
    too_many_pixels = sum(problem.startswith(TOO_LARGE) for *_, problem in bad)
    if too_many_pixels:
        # Not decoded, so not checked: like a dataset that cannot be built (status 2).
        console.print(
            f'[red]{too_many_pixels} image(s) above --max-pixels {args.max_pixels:,} '
            'were not decoded.[/red]'
        )
        return 2
    return 1


if __name__ == '__main__':
    sys.exit(main())
