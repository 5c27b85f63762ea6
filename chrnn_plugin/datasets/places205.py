"""Places205 (Zhou et al., NeurIPS 2014), read from the official release."""

import os.path as osp

from mmpretrain.registry import DATASETS

from chrnn_plugin._checks import check_positive_int

from ._split_files import (
    OfficialSplitDataset,
    SplitFileError,
    iter_split_file,
    parse_label,
    path_parts,
)


@DATASETS.register_module()
class Places205Official(OfficialSplitDataset):
    """Places205 with the official train/val split.

    From http://places.csail.mit.edu/downloadData.html: the 256x256 images
    (``imagesPlaces205_resize.tar.gz``) and the split
    (``trainvalsplit_places205.tar.gz``)::

        data_root/
        ├── images256/                   (img_dir; the tarball unpacks it as
        │   ├── a/abbey/00000001.jpg      data/vision/torralba/deeplearning/images256,
        │   └── ...                       move it or set img_dir to that path)
        └── trainvalsplit_places205/     (split_dir)
            ├── train_places205.csv
            └── val_places205.csv

    Despite the ``.csv`` name, each line is ``<image path> <label>``,
    separated by white space, for example ``a/abbey/00000001.jpg 0``; the path
    is relative to ``images256/`` (a leading ``/`` is tolerated) and the label
    is an integer from 0 to ``num_classes - 1``, in ASCII digits.

    The class names come from the split file itself: label ``k`` is named
    after the folder of its images with the letter folder dropped
    (``a/apartment_building/outdoor/x.jpg`` -> ``'apartment_building/outdoor'``).
    Every label must keep one folder and every folder one label throughout
    the file, and every label from 0 to ``num_classes - 1`` must occur.

    Building the dataset reads the split file and raises ``FileNotFoundError``
    for a missing ``data_root`` or split file and :class:`SplitFileError` (a
    ``ValueError``) naming the file and line for a malformed line or an
    unknown class (a label out of range, or one that disagrees with the folder
    of its image). The split file is read once, when the dataset is built,
    even with ``lazy_init=True``: the class names in ``metainfo`` come from it.

    Args:
        data_root (str): The folder that holds ``img_dir`` and ``split_dir``.
        split (str): ``'train'`` or ``'val'``. Defaults to ``'train'``.
        img_dir (str): The image folder, relative to ``data_root`` or absolute.
            Defaults to ``'images256'``.
        split_dir (str): The split folder, relative to ``data_root``.
            Defaults to ``'trainvalsplit_places205'``.
        num_classes (int): The number of classes. Defaults to 205.
        allow_duplicates (bool): Keep lines that repeat a sample of the split
            file (even written another way, see ``normal_form`` in
            ``_split_files``), with a warning, instead of raising. Defaults to False.
        **kwargs: Other arguments of :class:`mmpretrain.datasets.BaseDataset`
            (``pipeline``, ``indices``, ...). The class names always come from
            the split file; passing ``classes`` is an error.
    """

    SPLIT_FILES = {'train': 'train_places205.csv', 'val': 'val_places205.csv'}
    EVAL_SPLIT = 'val'
    ROOT_HINT = 'the folder holding images256/ and trainvalsplit_places205/'
    classes_source = 'the split file'

    def __init__(
        self,
        data_root: str,
        split: str = 'train',
        img_dir: str = 'images256',
        split_dir: str = 'trainvalsplit_places205',
        num_classes: int = 205,
        allow_duplicates: bool = False,
        **kwargs,
    ):
        self.num_classes = check_positive_int(type(self).__name__, 'num_classes', num_classes)
        self.split_dir = split_dir
        # (image path relative to img_dir, label) per line, read with the class
        # names before the dataset is built and handed to load_data_list once.
        self._samples: list[tuple[str, int]] | None = None
        super().__init__(data_root, split, img_dir, allow_duplicates, **kwargs)

    def split_file(self, split: str) -> str:
        """``<split_dir>/train_places205.csv`` or ``val_places205.csv``."""
        return osp.join(self.split_dir, self.SPLIT_FILES[split])

    def read_classes(self, data_root: str) -> tuple[str, ...]:
        """The class names, read from the split file (which is read once, here)."""
        self._samples, classes = self._read_split_file(
            osp.join(data_root, self.split_file(self.split))
        )
        return classes

    def load_data_list(self) -> list[dict]:
        samples, self._samples = self._samples, None
        if samples is None:
            samples, _ = self._read_split_file(self.ann_file)
        return [
            dict(img_path=osp.join(self.img_prefix, rel_path), gt_label=label)
            for rel_path, label in samples
        ]

    def _read_split_file(self, path: str) -> tuple[list[tuple[str, int]], tuple[str, ...]]:
        """``(samples, class names)`` of the split file at ``path``, or an error naming the line."""
        names: dict[int, tuple[str, int]] = {}  # label -> (class name, first line)
        labels: dict[str, tuple[int, int]] = {}  # class name -> (label, first line)
        samples = []
        for lineno, line in iter_split_file(
            type(self).__name__, path, self.allow_duplicates, labelled=True
        ):
            fields = line.split()
            parts = path_parts(fields[0].lstrip('/'), min_parts=3) if len(fields) == 2 else None
            if parts is None or not fields[1].isdigit():
                raise SplitFileError(
                    path,
                    lineno,
                    "malformed line, expected '<letter>/<class>/<image file> <label>' "
                    "such as 'a/abbey/00000001.jpg 0'",
                    line,
                )
            label = parse_label(path, lineno, fields[1], line)
            class_name = '/'.join(parts[1:-1])
            if label >= self.num_classes:
                raise SplitFileError(
                    path,
                    lineno,
                    f'unknown class: label {label} is not in 0..{self.num_classes - 1}',
                    line,
                )
            seen_name, seen_line = names.setdefault(label, (class_name, lineno))
            if seen_name != class_name:
                raise SplitFileError(
                    path,
                    lineno,
                    f'unknown class: label {label} is {seen_name!r} at line {seen_line}, '
                    f'but here the image is in {class_name!r}',
                    line,
                )
            seen_label, seen_line = labels.setdefault(class_name, (label, lineno))
            if seen_label != label:
                raise SplitFileError(
                    path,
                    lineno,
                    f'unknown class: {class_name!r} has label {seen_label} at line '
                    f'{seen_line}, but label {label} here',
                    line,
                )
            samples.append(('/'.join(parts), label))
        missing = sorted(set(range(self.num_classes)) - set(names))
        if missing:
            shown = ', '.join(map(str, missing[:10])) + (', ...' if len(missing) > 10 else '')
            raise ValueError(
                f'{type(self).__name__}: {path} has no image of label(s) {shown} '
                f'({len(missing)} of num_classes={self.num_classes} missing)'
            )
        return samples, tuple(names[k][0] for k in range(self.num_classes))
