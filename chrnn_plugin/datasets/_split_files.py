"""Reading the split files of the official dataset releases, loudly.

Every problem raises an error that names the file and, for a bad entry, the
1-based line number and the line itself. Nothing is skipped except lines that
are empty (or only whitespace), which hold no sample.
"""

import os.path as osp
from collections.abc import Iterator

from mmpretrain.datasets import BaseDataset


class SplitFileError(ValueError):
    """A malformed line or an unknown class in a split file.

    Attributes:
        path (str): The split file.
        lineno (int): The 1-based line number.
    """

    def __init__(self, path: str, lineno: int, problem: str, line: str):
        self.path = path
        self.lineno = lineno
        super().__init__(f'{path}, line {lineno}: {problem} (the line is {line!r})')


def check_root(dataset: str, data_root: str, hint: str) -> None:
    """Raise ``FileNotFoundError`` unless ``data_root`` is an existing folder."""
    if not data_root:
        raise FileNotFoundError(f'{dataset}: data_root is empty; set it to {hint}')
    if not osp.isdir(data_root):
        raise FileNotFoundError(
            f'{dataset}: data_root {data_root!r} does not exist or is not a folder; '
            f'set it to {hint} (see docs/prepare_datasets.md)'
        )


def iter_split_file(dataset: str, path: str) -> Iterator[tuple[int, str]]:
    """Yield ``(line number, stripped line)`` for each non-blank line of ``path``.

    Raises ``FileNotFoundError`` naming the file when it is missing, and
    :class:`SplitFileError` for a line that is not UTF-8.
    """
    if not osp.isfile(path):
        raise FileNotFoundError(f'{dataset}: split file {path!r} does not exist')
    with open(path, 'rb') as f:
        for lineno, raw in enumerate(f, start=1):
            try:
                line = raw.decode('utf-8').strip()
            except UnicodeDecodeError as e:
                raise SplitFileError(path, lineno, f'not UTF-8 text ({e.reason})', repr(raw)) from e
            if line:
                yield lineno, line


def path_parts(line: str, min_parts: int) -> list[str] | None:
    """Split a ``/``-separated relative path; ``None`` if it is not a clean one.

    A clean path has at least ``min_parts`` components, none of them empty,
    ``.`` or ``..``, and no whitespace around them.
    """
    parts = line.split('/')
    if len(parts) < min_parts:
        return None
    for part in parts:
        if part in ('', '.', '..') or part != part.strip():
            return None
    return parts


def check_choice(dataset: str, name: str, value, choices) -> None:
    if value not in choices:
        raise ValueError(f'{dataset}: {name} must be one of {tuple(choices)}, got {value!r}')


class OfficialSplitDataset(BaseDataset):
    """Base of the datasets that read an official release's split files.

    Subclasses set ``self.split_file`` (absolute) and the image folder before
    calling ``super().__init__``, and implement :meth:`load_data_list`.
    ``test_mode`` defaults to ``True`` for the evaluation split.
    """

    def extra_repr(self) -> list[str]:
        return [
            f'Root of dataset: \t{self.data_root}',
            f'Split: \t{self.split}',
            f'Split file: \t{self.ann_file}',
        ]
