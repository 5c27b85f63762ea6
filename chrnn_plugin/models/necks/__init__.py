from .hrnn_neck import HLSTMNeck, HRNNNeck, HSRNNeck
from .region_attention import RegionSelfAttentionNeck
from .renet import ReNetNeck

__all__ = ['HLSTMNeck', 'HRNNNeck', 'HSRNNeck', 'ReNetNeck', 'RegionSelfAttentionNeck']
