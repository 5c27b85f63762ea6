"""Reading the split files of the official dataset releases, loudly.

Every problem raises an error that names the file and, for a bad entry, the
1-based line number and the line itself. Nothing is skipped except lines that
are empty (or only whitespace), which hold no sample. Checked for every file:

- it exists and holds at least one entry;
- every line is UTF-8 without control characters (NUL, escape, ...; a tab is
  allowed as white space) or invisible format characters (a byte order mark,
  zero-width spaces, bidirectional overrides, ...), reported as ``U+XXXX`` and
  the character's Unicode name;
- no sample is listed twice, even written two ways (:func:`normal_form`);
  ``allow_duplicates=True`` turns this into a warning.
"""

import logging
import os.path as osp
import posixpath
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


# U+FEFF at the start of a file is a byte order mark, which "UTF-8 with BOM"
# editors write; anywhere else it is a zero-width no-break space.
BOM = '\ufeff'


def _check_characters(path: str, lineno: int, text: str) -> None:
    """Raise :class:`SplitFileError` for a control or format character in ``text``.

    Control characters (Unicode category Cc, but the tab, which is white
    space) and format characters (Cf: the byte order mark, zero-width spaces
    and joiners, bidirectional overrides such as U+202E, ...) are invisible or
    reorder what is shown, so a path holding one looks like another path (or
    like a clean one) in an editor and in every message.

    Args:
        path (str): The split file, for the error.
        lineno (int): The 1-based line number, for the error.
        text (str): The line, without its line ending but otherwise as read
            (a control character that ``str.strip`` would drop is reported too).
    """
    if text.isascii() and text.isprintable():
        return  # the common case, fast: printable ASCII holds no Cc and no Cf character
    for column, char in enumerate(text, start=1):
        category = unicodedata.category(char)
        if category not in ('Cc', 'Cf') or char == '\t':
            continue
        if char == BOM:
            kind = 'byte order mark'
            hint = '; save the file as UTF-8 without a BOM'
        elif category == 'Cc':
            kind, hint = 'control character', ''
        else:
            kind, hint = 'invisible format character (Unicode category Cf)', ''
        # Control characters have no Unicode name; UnicodeData.txt lists them as <control>.
        name = unicodedata.name(char, '<control>')
        raise SplitFileError(
            path, lineno, f'{kind} U+{ord(char):04X} {name} at column {column}{hint}', text
        )


def normal_form(line: str, labelled: bool = False) -> str:
    """The normal form of a split-file line: lines naming the same sample share it.

    Duplicates are found on this form, so that one sample written two ways
    is caught. The path is:

    - stripped of surrounding white space and of leading ``/`` (the
      release's paths are relative; Places205 tolerates a leading ``/``);
    - normalised with ``posixpath.normpath`` (a leading ``./``, repeated
      slashes, ``.`` components, a trailing ``/``). ``normpath`` also folds
      ``x/..``, which names another file when ``x`` is a symbolic link; the
      readers reject ``.``, ``..`` and empty components before a duplicate is
      reported, so that never merges two lines a reader accepts;
    - in Unicode NFC, so that a precomposed letter (``'é'``) and the letter
      followed by a combining mark (``'e\u0301'``) compare equal: canonically
      equivalent, they show the same and macOS stores them as one name. Not
      NFKC, which would also merge distinct file names (``'ﬁ'`` and ``'fi'``,
      ``'²'`` and ``'2'``).

    White space inside the path and letter case are kept: ``'a b.jpg'``,
    ``'a  b.jpg'`` and ``'A b.jpg'`` are different files.

    Args:
        line (str): The line.
        labelled (bool): The line is ``<path> <label>``, separated by white
            space (Places205). The label is compared as an integer (``'00'``
            is ``'0'``) when written in ASCII digits, else as written.

    Returns:
        str: The normalised path, followed for a labelled line by a space and
        the label (unambiguous: such a path holds no white space). A labelled
        line that is not two fields is returned stripped; the reader rejects it.
    """
    text = line.strip()
    suffix = ''
    if labelled:
        fields = text.split()
        if len(fields) != 2:
            return text
        text, label = fields
        # int() would also read other scripts' digits ('١'); the readers reject those.
        suffix = f' {int(label)}' if label.isascii() and label.isdigit() else f' {label}'
    # normpath drops leading './' (and './/', '././') but keeps a leading '/': strip that first.
    return unicodedata.normalize('NFC', posixpath.normpath(text.lstrip('/'))) + suffix


def _line_text(raw: bytes) -> str:
    """``raw`` decoded as UTF-8, without its line ending (LF or CRLF)."""
    return raw.decode('utf-8').rstrip('\r\n')


def _raw_lines(path: str, wanted: set[int]) -> dict[int, str]:
    """The lines of ``path`` numbered ``wanted``, by line number, read again.

    Used for the few lines a duplicate message shows: keeping every line as
    read while reading would double the memory a 2.4-million-line split file
    (Places205's) takes.
    """
    found = {}
    with open(path, 'rb') as f:
        for lineno, raw in enumerate(f, start=1):
            if lineno in wanted:
                found[lineno] = _line_text(raw)
                if len(found) == len(wanted):
                    break
    return found


def iter_split_file(
    dataset: str, path: str, allow_duplicates: bool = False, labelled: bool = False
) -> Iterator[tuple[int, str]]:
    """Yield ``(line number, stripped line)`` for each non-blank line of ``path``.

    Two lines name the same sample when their :func:`normal_form` is the
    same; each such repeat is reported after the last line (or, with
    ``allow_duplicates``, yielded and listed in a warning).

    Args:
        dataset (str): The dataset's name, for the errors.
        path (str): The split file.
        allow_duplicates (bool): Warn about repeated lines instead of raising.
        labelled (bool): The lines are ``<path> <label>``; see :func:`normal_form`.

    Yields:
        tuple[int, str]: The 1-based line number and the line, stripped.

    Raises:
        FileNotFoundError: ``path`` is missing (the error names it).
        EmptySplitFileError: ``path`` has no entry.
        SplitFileError: a line is not UTF-8 or holds a control or format
            character (:func:`_check_characters`).
        DuplicateLinesError: after the last line, when lines repeat; it lists
            the first few with both line numbers and both lines as written.
    """
    if not osp.isfile(path):
        raise FileNotFoundError(f'{dataset}: split file {path!r} does not exist')
    first_seen: dict[str, int] = {}  # normal form -> first line number
    repeats: list[tuple[int, int, str]] = []  # (line number, first line number, line as read)
    with open(path, 'rb') as f:
        for lineno, raw in enumerate(f, start=1):
            try:
                text = _line_text(raw)
            except UnicodeDecodeError as e:
                raise SplitFileError(path, lineno, f'not UTF-8 text ({e.reason})', repr(raw)) from e
            _check_characters(path, lineno, text)
            line = text.strip()
            if not line:
                continue
            first = first_seen.setdefault(normal_form(line, labelled), lineno)
            if first != lineno:
                repeats.append((lineno, first, text))
            yield lineno, line
    if not first_seen:
        raise EmptySplitFileError(dataset, path)
    if repeats:
        shown = repeats[:SHOWN_DUPLICATES]
        firsts = _raw_lines(path, {first for _, first, _ in shown})
        listed = '; '.join(
            f'line {lineno} repeats line {first} '
            f'(line {lineno} is {text!r}, line {first} is {firsts.get(first, "?")!r})'
            for lineno, first, text in shown
        )
        more = (
            f'; and {len(repeats) - SHOWN_DUPLICATES} more'
            if len(repeats) > SHOWN_DUPLICATES
            else ''
        )
        message = (
            f'{dataset}: split file {path} has {len(repeats)} repeated line(s), naming the '
            f'sample of an earlier line (compared after normalising white space, a leading '
            f"'/' or './', repeated slashes, Unicode (NFC) and the label's leading zeros): "
            f'{listed}{more}'
        )
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
        repeats (list): ``(line number, first line number, line as read)`` per
            repeat, the line without its line ending.
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
        allow_duplicates (bool): Keep lines that repeat a sample of the split
            file (even written another way, see ``normal_form`` in
            ``_split_files``), with a warning, instead of raising. Defaults to False.
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
