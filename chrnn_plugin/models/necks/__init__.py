from .hrnn_neck import HLSTMNeck, HRNNNeck, HSRNNeck

__all__ = ['HLSTMNeck', 'HRNNNeck', 'HSRNNeck']
