"""Datasets registered in ``mmpretrain.registry.DATASETS``.

Each reads an official release as published and checks its split files when
built; see ``docs/prepare_datasets.md``. ImageNet-1k uses MMPretrain's own
``ImageNet``.
"""

from ._split_files import SplitFileError
from .mit67 import MIT67
from .places205 import Places205Official
from .sun397 import SUN397Official

__all__ = ['MIT67', 'Places205Official', 'SUN397Official', 'SplitFileError']
