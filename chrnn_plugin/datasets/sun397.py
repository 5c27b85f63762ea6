"""SUN397 (Xiao et al., CVPR 2010), read from the official release and partitions."""

import os.path as osp

from mmpretrain.registry import DATASETS

from ._split_files import (
    OfficialSplitDataset,
    SplitFileError,
    iter_split_file,
    path_parts,
)


def parse_partition(value) -> int:
    """The partition number, 1 to 10, from an int or a string of digits.

    A string is accepted because configs may fill it in from an environment
    variable (``'{{$SUN397_PARTITION:1}}'``).
    """
    number = value
    if isinstance(value, str) and value.strip().isascii() and value.strip().isdigit():
        number = int(value)
    if isinstance(number, bool) or not isinstance(number, int) or not 1 <= number <= 10:
        raise ValueError(
            f'SUN397Official: partition must be an integer from 1 to 10 (the official '
            f'Training_NN.txt / Testing_NN.txt pairs), got {value!r}'
        )
    return number


@DATASETS.register_module()
class SUN397Official(OfficialSplitDataset):
    """SUN397 with the ten official train/test partitions.

    From https://vision.princeton.edu/projects/2010/SUN/: ``SUN397.tar.gz``
    (the images) and ``Partitions.zip`` (the splits), unpacked side by side::

        data_root/
        ├── SUN397/                      (img_dir)
        │   ├── a/abbey/sun_aaalbzqrimafwbiv.jpg
        │   ├── a/apartment_building/outdoor/...
        │   └── ...
        └── Partitions/                  (partition_dir)
            ├── ClassName.txt            397 lines such as '/a/abbey'
            ├── Training_01.txt          lines such as '/a/abbey/sun_aaalbzqrimafwbiv.jpg'
            ├── Testing_01.txt
            └── ... up to Training_10.txt, Testing_10.txt  (50 train + 50 test images
                                                          per class in each partition)

    ``ClassName.txt`` gives the classes, in its order (the label is the line
    index). A class ``/a/apartment_building/outdoor`` is named
    ``'apartment_building/outdoor'`` (the letter folder dropped). An image line
    belongs to the class of its folder, which must be listed in
    ``ClassName.txt``.

    Some images of the release are not JPEG although named ``.jpg``; load
    them with ``dict(type='LoadImageFromFile', imdecode_backend='pillow')``.

    Building the dataset reads ``ClassName.txt`` and the split file and raises
    ``FileNotFoundError`` for a missing ``data_root`` or file, and
    :class:`SplitFileError` (a ``ValueError``) naming the file and line for a
    malformed line, a repeated class or an unknown class.

    Args:
        data_root (str): The folder that holds ``img_dir`` and ``partition_dir``.
        split (str): ``'train'`` or ``'test'``. Defaults to ``'train'``.
        partition (int | str): Which official partition, 1 to 10. A string of
            digits is accepted. Defaults to 1.
        img_dir (str): The image folder, relative to ``data_root``.
            Defaults to ``'SUN397'``.
        partition_dir (str): The partitions folder, relative to ``data_root``.
            Defaults to ``'Partitions'``.
        allow_duplicates (bool): Keep image lines that repeat a sample of the
            split file (even written another way, see ``normal_form`` in
            ``_split_files``), with a warning, instead of raising (a repeated
            class in ``ClassName.txt`` is always an error). Defaults to False.
        **kwargs: Other arguments of :class:`mmpretrain.datasets.BaseDataset`
            (``pipeline``, ``indices``, ...). The classes always come from
            ``ClassName.txt``; passing ``classes`` is an error.
    """

    SPLIT_FILES = {'train': 'Training_{partition:02d}.txt', 'test': 'Testing_{partition:02d}.txt'}
    EVAL_SPLIT = 'test'
    ROOT_HINT = 'the folder holding SUN397/ and Partitions/'
    classes_source = 'ClassName.txt'

    def __init__(
        self,
        data_root: str,
        split: str = 'train',
        partition: int | str = 1,
        img_dir: str = 'SUN397',
        partition_dir: str = 'Partitions',
        allow_duplicates: bool = False,
        **kwargs,
    ):
        self.partition = parse_partition(partition)
        self.partition_dir = partition_dir
        super().__init__(data_root, split, img_dir, allow_duplicates, **kwargs)

    def split_file(self, split: str) -> str:
        """``<partition_dir>/Training_<NN>.txt`` or ``Testing_<NN>.txt``, for the partition."""
        return osp.join(
            self.partition_dir, self.SPLIT_FILES[split].format(partition=self.partition)
        )

    def read_classes(self, data_root: str) -> tuple[str, ...]:
        """The class names of ``ClassName.txt`` (``'abbey'``, ...), in its order."""
        self.class_file = osp.join(data_root, self.partition_dir, 'ClassName.txt')
        class_keys = self._read_class_file()
        self._class_key_to_idx = {key: i for i, key in enumerate(class_keys)}
        return tuple(key.split('/', 2)[2] for key in class_keys)

    def _read_class_file(self) -> list[str]:
        """The class keys of ``ClassName.txt`` ('/a/abbey', ...), in order."""
        keys: dict[str, int] = {}
        for lineno, line in iter_split_file(type(self).__name__, self.class_file):
            parts = path_parts(line[1:], min_parts=2) if line.startswith('/') else None
            if parts is None:
                raise SplitFileError(
                    self.class_file,
                    lineno,
                    "malformed line, expected '/<letter>/<class>' such as '/a/abbey'",
                    line,
                )
            if line in keys:
                raise SplitFileError(
                    self.class_file,
                    lineno,
                    f'class {line!r} is listed twice (first at line {keys[line]})',
                    line,
                )
            keys[line] = lineno
        if not keys:
            raise ValueError(f'{type(self).__name__}: {self.class_file} lists no class')
        return list(keys)

    def load_data_list(self) -> list[dict]:
        data_list = []
        for lineno, line in iter_split_file(
            type(self).__name__, self.ann_file, self.allow_duplicates
        ):
            parts = path_parts(line[1:], min_parts=3) if line.startswith('/') else None
            if parts is None:
                raise SplitFileError(
                    self.ann_file,
                    lineno,
                    "malformed line, expected '/<letter>/<class>/<image file>' "
                    "such as '/a/abbey/sun_aaalbzqrimafwbiv.jpg'",
                    line,
                )
            class_key = '/' + '/'.join(parts[:-1])
            label = self._class_key_to_idx.get(class_key)
            if label is None:
                raise SplitFileError(
                    self.ann_file,
                    lineno,
                    f'unknown class {class_key!r} (not listed in {self.class_file})',
                    line,
                )
            data_list.append(dict(img_path=osp.join(self.img_prefix, line[1:]), gt_label=label))
        return data_list

    def extra_repr(self) -> list[str]:
        return super().extra_repr() + [f'Partition: \t{self.partition}']
