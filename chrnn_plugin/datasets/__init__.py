"""Datasets registered in ``mmpretrain.registry.DATASETS``."""

from .spatial_relations import SpatialRelations  # noqa: F401
