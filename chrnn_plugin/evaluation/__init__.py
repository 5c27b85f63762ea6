"""Metrics registered in ``mmpretrain.registry.METRICS``."""

from .mean_per_class import MeanPerClassAccuracy

__all__ = ['MeanPerClassAccuracy']
