"""Check that every image a config's datasets list exists and decodes.

    python tools/dataset_converters/check_dataset.py CONFIG [--splits train val test]
        [--cfg-options KEY=VALUE ...] [--workers 8] [--out bad_images.txt]

Builds the train, val and test datasets of CONFIG (which also checks their
split files), then opens and decodes every listed image with the decoder of
the config's ``LoadImageFromFile`` (``imdecode_backend``, OpenCV by default).
Shows a progress bar, lists the bad images (missing, empty or undecodable)
and exits with status 1 if there is any, 2 if a dataset cannot be built
(every such dataset is reported, with the file and line its split file
error names), 0 otherwise.
"""

import argparse
import os
import sys
from concurrent.futures import ThreadPoolExecutor

import mmcv
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from chrnn_plugin.engine import cli

SPLITS = ('train', 'val', 'test')


def parse_args(argv=None):
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
    parser.add_argument('--out', help='also write the bad images to this file, one a line')
    parser.add_argument(
        '--show', type=int, default=50, help='how many bad images to print (default: 50)'
    )
    return parser.parse_args(argv)


def decode_backend(pipeline) -> str:
    """The ``imdecode_backend`` of the pipeline's ``LoadImageFromFile``."""
    for step in pipeline or ():
        if isinstance(step, dict) and step.get('type') == 'LoadImageFromFile':
            return step.get('imdecode_backend', 'cv2')
    return 'cv2'


def check_image(path: str, backend: str) -> str | None:
    """``None`` if the image at ``path`` is fine, else why it is not."""
    try:
        with open(path, 'rb') as f:
            content = f.read()
    except FileNotFoundError:
        return 'missing'
    except (OSError, ValueError) as e:  # ValueError: e.g. a NUL byte in the path
        return f'unreadable: {e}'
    if not content:
        return 'empty file'
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


def collect_datasets(cfg, splits):
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


def main(argv=None) -> int:
    args = parse_args(argv)
    console = Console(highlight=False, soft_wrap=True)
    cfg = cli.load_config(args.config, args.cfg_options)
    targets = collect_datasets(cfg, args.splits)
    if not targets:
        console.print(f'[red]{escape(args.config)} has no dataloader among {args.splits}[/red]')
        return 2

    jobs = []  # (split names, index, path, backend)
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
        console.print(
            escape(
                f'{label}: {type(dataset).__name__}, {len(dataset)} images, decoded with {backend}'
            )
        )
        for index in range(len(dataset)):
            jobs.append((label, index, dataset.get_data_info(index)['img_path'], backend))
    if unbuildable:
        console.print(f'[red]{unbuildable} dataset(s) cannot be built; images not checked.[/red]')
        return 2

    bad = []
    progress = Progress(
        TextColumn('checking images'),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=console,
    )
    with progress, ThreadPoolExecutor(max_workers=max(1, args.workers)) as pool:
        task = progress.add_task('check', total=len(jobs))
        results = pool.map(lambda job: check_image(job[2], job[3]), jobs)
        for job, problem in zip(jobs, results):
            if problem is not None:
                bad.append((*job[:3], problem))
            progress.advance(task)

    if args.out:
        with open(args.out, 'w') as f:
            for label, index, path, problem in bad:
                f.write(f'{path}\t{label}\t{index}\t{problem}\n')

    if not bad:
        console.print(f'[green]All {len(jobs)} images exist and decode.[/green]')
        return 0
    console.print(f'[red]{len(bad)} bad image(s) of {len(jobs)}:[/red]')
    for label, index, path, problem in bad[: args.show]:
        console.print(escape(f'  {os.fspath(path)}: {problem} ({label} #{index})'))
    if len(bad) > args.show:
        where = f' (all in {args.out})' if args.out else ''
        console.print(f'... and {len(bad) - args.show} more{where}')
    return 1


if __name__ == '__main__':
    sys.exit(main())
