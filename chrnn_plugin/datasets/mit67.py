"""MIT Indoor 67 (Quattoni and Torralba, CVPR 2009), read from the official release."""

import os.path as osp

from mmpretrain.registry import DATASETS

from ._split_files import (
    OfficialSplitDataset,
    SplitFileError,
    iter_split_file,
    path_parts,
)

# The 67 folder names of the official ``Images/`` folder, sorted; labels are
# indices into this tuple (the spellings, e.g. 'stairscase', are the release's).
MIT67_CATEGORIES = (
    'airport_inside', 'artstudio', 'auditorium', 'bakery', 'bar', 'bathroom',
    'bedroom', 'bookstore', 'bowling', 'buffet', 'casino', 'children_room',
    'church_inside', 'classroom', 'cloister', 'closet', 'clothingstore',
    'computerroom', 'concert_hall', 'corridor', 'deli', 'dentaloffice',
    'dining_room', 'elevator', 'fastfood_restaurant', 'florist', 'gameroom',
    'garage', 'greenhouse', 'grocerystore', 'gym', 'hairsalon', 'hospitalroom',
    'inside_bus', 'inside_subway', 'jewelleryshop', 'kindergarden', 'kitchen',
    'laboratorywet', 'laundromat', 'library', 'livingroom', 'lobby',
    'locker_room', 'mall', 'meeting_room', 'movietheater', 'museum', 'nursery',
    'office', 'operating_room', 'pantry', 'poolinside', 'prisoncell',
    'restaurant', 'restaurant_kitchen', 'shoeshop', 'stairscase', 'studiomusic',
    'subway', 'toystore', 'trainstation', 'tv_studio', 'videostore',
    'waitingroom', 'warehouse', 'winecellar',
)  # fmt: skip


@DATASETS.register_module()
class MIT67(OfficialSplitDataset):
    """MIT Indoor 67, as published at https://web.mit.edu/torralba/www/indoor.html.

    Expected layout (``indoorCVPR_09.tar`` unpacked, the two split files
    beside it)::

        data_root/
        ├── Images/
        │   ├── airport_inside/airport_inside_0001.jpg
        │   └── ...                                    (67 class folders)
        ├── TrainImages.txt                            (5,360 lines)
        └── TestImages.txt                             (1,340 lines)

    Each line of a split file is ``<class folder>/<image file>``, relative to
    ``Images/``, for example ``kitchen/int474.jpg``. The class is the first
    path component and must be one of the classes (by default the 67 official
    folder names, :data:`MIT67_CATEGORIES`; the label is its index there).

    Building the dataset reads the split file and raises
    ``FileNotFoundError`` for a missing ``data_root`` or split file and
    :class:`SplitFileError` (a ``ValueError``) naming the file and line for a
    malformed line or an unknown class. It does not open the images; use
    ``tools/dataset_converters/check_dataset.py`` for that.

    Args:
        data_root (str): The folder that holds ``Images/`` and the split files.
        split (str): ``'train'`` (``TrainImages.txt``) or ``'test'``
            (``TestImages.txt``). Defaults to ``'train'``.
        img_dir (str): The image folder, relative to ``data_root``.
            Defaults to ``'Images'``.
        allow_duplicates (bool): Keep lines that repeat a sample of the split
            file (even written another way, see ``normal_form`` in
            ``_split_files``), with a warning, instead of raising. Defaults to False.
        **kwargs: Other arguments of :class:`mmpretrain.datasets.BaseDataset`
            (``pipeline``, ``classes``, ``indices``, ...).
    """

    METAINFO = {'classes': MIT67_CATEGORIES}
    SPLIT_FILES = {'train': 'TrainImages.txt', 'test': 'TestImages.txt'}
    EVAL_SPLIT = 'test'
    ROOT_HINT = 'the folder holding Images/, TrainImages.txt and TestImages.txt'

    def __init__(
        self,
        data_root: str,
        split: str = 'train',
        img_dir: str = 'Images',
        allow_duplicates: bool = False,
        **kwargs,
    ):
        super().__init__(data_root, split, img_dir, allow_duplicates, **kwargs)

    def load_data_list(self) -> list[dict]:
        name = type(self).__name__
        class_to_idx = self.class_to_idx
        data_list = []
        for lineno, line in iter_split_file(name, self.ann_file, self.allow_duplicates):
            parts = path_parts(line, min_parts=2)
            if parts is None:
                raise SplitFileError(
                    self.ann_file, lineno, "malformed line, expected '<class>/<image file>'", line
                )
            label = class_to_idx.get(parts[0])
            if label is None:
                raise SplitFileError(
                    self.ann_file,
                    lineno,
                    f'unknown class {parts[0]!r} (not one of the {len(class_to_idx)} classes)',
                    line,
                )
            data_list.append(dict(img_path=osp.join(self.img_prefix, line), gt_label=label))
        return data_list
