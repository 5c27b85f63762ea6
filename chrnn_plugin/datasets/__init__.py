"""Datasets registered in ``mmpretrain.registry.DATASETS``.

The benchmark datasets read an official release as published and check their
split files when built; see ``docs/prepare_datasets.md``. ImageNet-1k uses
MMPretrain's own ``ImageNet``. ``SpatialRelations`` is generated in memory for
the demo.
"""

from ._split_files import DuplicateLinesError, EmptySplitFileError, SplitFileError
from .mit67 import MIT67
from .places205 import Places205Official
from .spatial_relations import SpatialRelations
from .sun397 import SUN397Official

__all__ = [
    'MIT67',
    'DuplicateLinesError',
    'EmptySplitFileError',
    'Places205Official',
    'SUN397Official',
    'SpatialRelations',
    'SplitFileError',
]
