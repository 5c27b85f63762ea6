"""Reading the split files of the official dataset releases, loudly.

Every problem raises an error that names the file and, for a bad entry, the
1-based line number and the line itself. Nothing is skipped except lines that
are empty (or only whitespace), which hold no sample. Checked for every file:

- it exists and holds at least one entry;
- every line is UTF-8 without control characters (NUL, escape, ...; a tab is
  allowed as white space);
- no line occurs twice (``allow_duplicates=True`` turns this into a warning).
"""

import logging
import os.path as osp
import unicodedata
from collections.abc import Iterator

from mmengine.logging import print_log
from mmpretrain.datasets import BaseDataset

from chrnn_plugin._checks import check_choice

# How many repeated lines a duplicate error or warning lists.
SHOWN_DUPLICATES = 5


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


class EmptySplitFileError(ValueError):
    """A split file without a single entry.

    Attributes:
        path (str): The split file.
    """

    def __init__(self, dataset: str, path: str):
        self.path = path
        super().__init__(f'{dataset}: split file {path} has no entries (it is empty or blank)')


def _control_character(line: str) -> str | None:
    for char in line:
        if char != '\t' and unicodedata.category(char) == 'Cc':
            return char
    return None


def iter_split_file(
    dataset: str, path: str, allow_duplicates: bool = False
) -> Iterator[tuple[int, str]]:
    """Yield ``(line number, stripped line)`` for each non-blank line of ``path``.

    Raises ``FileNotFoundError`` naming the file when it is missing,
    :class:`EmptySplitFileError` when it has no entry, and
    :class:`SplitFileError` for a line that is not UTF-8 or holds a control
    character, and (after the last line) for lines that occur more than once,
    listing the first few with their line numbers. With ``allow_duplicates``
    the repeated lines are yielded and a warning lists them instead.
    """
    if not osp.isfile(path):
        raise FileNotFoundError(f'{dataset}: split file {path!r} does not exist')
    first_seen: dict[str, int] = {}
    repeats: list[tuple[int, int, str]] = []  # (line number, first line number, line)
    with open(path, 'rb') as f:
        for lineno, raw in enumerate(f, start=1):
            try:
                line = raw.decode('utf-8').strip()
            except UnicodeDecodeError as e:
                raise SplitFileError(path, lineno, f'not UTF-8 text ({e.reason})', repr(raw)) from e
            if not line:
                continue
            char = _control_character(line)
            if char is not None:
                raise SplitFileError(
                    path,
                    lineno,
                    f'control character {char!r} (U+{ord(char):04X}) in the line',
                    line,
                )
            first = first_seen.setdefault(line, lineno)
            if first != lineno:
                repeats.append((lineno, first, line))
            yield lineno, line
    if not first_seen:
        raise EmptySplitFileError(dataset, path)
    if repeats:
        shown = '; '.join(
            f'line {lineno} repeats line {first} ({line!r})'
            for lineno, first, line in repeats[:SHOWN_DUPLICATES]
        )
        more = (
            f'; and {len(repeats) - SHOWN_DUPLICATES} more'
            if len(repeats) > SHOWN_DUPLICATES
            else ''
        )
        message = f'{dataset}: split file {path} has {len(repeats)} repeated line(s): {shown}{more}'
        if not allow_duplicates:
            raise DuplicateLinesError(
                path, repeats, f'{message}. Pass allow_duplicates=True to keep them.'
            )
        print_log(
            f'{message} (kept: allow_duplicates=True)', logger='current', level=logging.WARNING
        )


class DuplicateLinesError(ValueError):
    """A split file lists the same line more than once.

    Attributes:
        path (str): The split file.
        repeats (list): ``(line number, first line number, line)`` per repeat.
    """

    def __init__(self, path: str, repeats: list, message: str):
        self.path = path
        self.repeats = repeats
        super().__init__(message)


def parse_label(path: str, lineno: int, text: str, line: str) -> int:
    """The label ``text`` as an int; only ASCII digits count (``'¹'``, ``'١'`` do not)."""
    if not (text.isascii() and text.isdigit()):
        raise SplitFileError(
            path, lineno, f'the label must be written with ASCII digits 0-9, got {text!r}', line
        )
    return int(text)


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


class OfficialSplitDataset(BaseDataset):
    """Base of the datasets that read an official release's split files.

    The set-up every such dataset shares, done here, in this order:

    1. ``split`` must be a key of :attr:`SPLIT_FILES`;
    2. ``data_root`` must be an existing folder (the error says what it must
       hold, :attr:`ROOT_HINT`);
    3. :meth:`read_classes` gives the class names when the release defines
       them in a file; then passing ``classes`` (or ``metainfo['classes']``)
       is an error, and the names reach MMEngine as ``metainfo=dict(classes=...)``;
    4. ``test_mode`` defaults to ``split == EVAL_SPLIT``;
    5. ``ann_file`` is :meth:`split_file` and ``data_prefix`` is ``img_dir``,
       both relative to ``data_root``.

    A subclass sets :attr:`SPLIT_FILES`, :attr:`EVAL_SPLIT` and
    :attr:`ROOT_HINT`, sets what :meth:`split_file` or :meth:`read_classes`
    need (e.g. a partition) before calling ``super().__init__``, overrides
    those two methods where its release needs it, and implements
    :meth:`load_data_list`.

    Args:
        data_root (str): The folder of the unpacked release.
        split (str): A key of :attr:`SPLIT_FILES`.
        img_dir (str): The image folder, relative to ``data_root``.
        allow_duplicates (bool): Keep lines that occur more than once in the
            split file, with a warning, instead of raising. Defaults to False.
        **kwargs: Other arguments of :class:`mmpretrain.datasets.BaseDataset`.
    """

    #: Split name -> split file, relative to ``data_root``.
    SPLIT_FILES: dict[str, str] = {}
    #: The split evaluated on, for which ``test_mode`` defaults to True.
    EVAL_SPLIT: str = 'test'
    #: What ``data_root`` must hold, for the error when it does not exist.
    ROOT_HINT: str = 'the folder of the unpacked release'

    def __init__(
        self,
        data_root: str,
        split: str,
        img_dir: str,
        allow_duplicates: bool = False,
        **kwargs,
    ) -> None:
        name = type(self).__name__
        check_choice(name, 'split', split, self.SPLIT_FILES)
        check_root(name, data_root, self.ROOT_HINT)
        self.split = split
        self.allow_duplicates = allow_duplicates
        classes = self.read_classes(data_root)
        if classes is not None:
            if kwargs.get('classes') is not None or 'classes' in (kwargs.get('metainfo') or {}):
                raise ValueError(
                    f'{name}: the class names come from {self.classes_source}; do not pass classes'
                )
            kwargs['metainfo'] = {**(kwargs.get('metainfo') or {}), 'classes': classes}
        kwargs.setdefault('test_mode', split == self.EVAL_SPLIT)
        super().__init__(
            ann_file=self.split_file(split),
            data_root=data_root,
            data_prefix=img_dir,
            **kwargs,
        )

    #: Where :meth:`read_classes` reads the class names, for error messages.
    classes_source: str = ''

    def split_file(self, split: str) -> str:
        """The split file of ``split``, relative to ``data_root``."""
        return self.SPLIT_FILES[split]

    def read_classes(self, data_root: str) -> tuple[str, ...] | None:
        """The class names the release defines in a file, or None to use ``METAINFO``."""
        return None

    def extra_repr(self) -> list[str]:
        return [
            f'Root of dataset: \t{self.data_root}',
            f'Split: \t{self.split}',
            f'Split file: \t{self.ann_file}',
        ]
