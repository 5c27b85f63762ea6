"""Datasets registered in ``mmpretrain.registry.DATASETS``."""
