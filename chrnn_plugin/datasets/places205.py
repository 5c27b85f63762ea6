"""Places205 (Zhou et al., NeurIPS 2014), read from the official release."""

import os.path as osp

from mmpretrain.registry import DATASETS

from ._split_files import (
    OfficialSplitDataset,
    SplitFileError,
    check_choice,
    check_root,
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
    of its image).

    Args:
        data_root (str): The folder that holds ``img_dir`` and ``split_dir``.
        split (str): ``'train'`` or ``'val'``. Defaults to ``'train'``.
        img_dir (str): The image folder, relative to ``data_root`` or absolute.
            Defaults to ``'images256'``.
        split_dir (str): The split folder, relative to ``data_root``.
            Defaults to ``'trainvalsplit_places205'``.
        num_classes (int): The number of classes. Defaults to 205.
        allow_duplicates (bool): Keep lines that occur more than once in the
            split file, with a warning, instead of raising. Defaults to False.
        **kwargs: Other arguments of :class:`mmpretrain.datasets.BaseDataset`
            (``pipeline``, ``indices``, ...). The class names always come from
            the split file; passing ``classes`` is an error.
    """

    SPLIT_FILES = {'train': 'train_places205.csv', 'val': 'val_places205.csv'}

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
        name = type(self).__name__
        check_choice(name, 'split', split, self.SPLIT_FILES)
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
            raise ValueError(f'{name}: num_classes must be a positive integer, got {num_classes!r}')
        check_root(name, data_root, 'the folder holding images256/ and trainvalsplit_places205/')
        if kwargs.get('classes') is not None or 'classes' in (kwargs.get('metainfo') or {}):
            raise ValueError(
                f'{name}: the class names come from the split file; do not pass classes'
            )
        self.split = split
        self.num_classes = num_classes
        self.allow_duplicates = allow_duplicates
        kwargs.setdefault('test_mode', split == 'val')
        super().__init__(
            ann_file=osp.join(split_dir, self.SPLIT_FILES[split]),
            data_root=data_root,
            data_prefix=img_dir,
            **kwargs,
        )

    def load_data_list(self) -> list[dict]:
        path = self.ann_file
        names: dict[int, tuple[str, int]] = {}  # label -> (class name, first line)
        labels: dict[str, tuple[int, int]] = {}  # class name -> (label, first line)
        data_list = []
        for lineno, line in iter_split_file(type(self).__name__, path, self.allow_duplicates):
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
            data_list.append(
                dict(img_path=osp.join(self.img_prefix, '/'.join(parts)), gt_label=label)
            )
        missing = sorted(set(range(self.num_classes)) - set(names))
        if missing:
            shown = ', '.join(map(str, missing[:10])) + (', ...' if len(missing) > 10 else '')
            raise ValueError(
                f'{type(self).__name__}: {path} has no image of label(s) {shown} '
                f'({len(missing)} of num_classes={self.num_classes} missing)'
            )
        self._metainfo['classes'] = tuple(names[k][0] for k in range(self.num_classes))
        return data_list
