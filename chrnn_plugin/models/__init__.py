"""Models registered in ``mmpretrain.registry.MODELS``."""

from .necks import HLSTMNeck, HSRNNeck

__all__ = ['HLSTMNeck', 'HSRNNeck']
