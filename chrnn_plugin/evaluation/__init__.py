"""Metrics registered in ``mmpretrain.registry.METRICS``."""
