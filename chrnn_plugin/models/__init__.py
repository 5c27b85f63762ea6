"""Models registered in ``mmpretrain.registry.MODELS``."""

from .necks import HLSTMNeck, HSRNNeck, RegionSelfAttentionNeck, ReNetNeck

__all__ = ['HLSTMNeck', 'HSRNNeck', 'ReNetNeck', 'RegionSelfAttentionNeck']
