"""Bad configuration fails at build time, bad input on the first forward."""

import re

import pytest
import torch

from chrnn_plugin.models import HLSTMNeck, HSRNNeck
from chrnn_plugin.models.necks.recurrent_cells import (
    ConvexLSTMCell2d,
    SimpleRecurrentCell2d,
    SumLSTMCell2d,
)

NECKS = [HSRNNeck, HLSTMNeck]


def _raises(error, *words):
    """pytest.raises matching every word, in order, in the message."""
    return pytest.raises(error, match='.*'.join(re.escape(w) for w in words))


@pytest.mark.parametrize('cls', NECKS)
class TestConfigErrors:
    def test_unknown_direction(self, cls):
        with _raises(ValueError, 'direction', "'left_top'", 'top_left'):
            cls(in_channels=8, directions=('top_left', 'left_top'))

    def test_empty_directions(self, cls):
        with _raises(ValueError, 'directions', 'empty'):
            cls(in_channels=8, directions=())

    def test_repeated_direction(self, cls):
        with _raises(ValueError, 'directions must not repeat'):
            cls(in_channels=8, directions=('top_left', 'top_left'))

    def test_bad_global_pool(self, cls):
        with _raises(ValueError, 'global_pool', "'mean'"):
            cls(in_channels=8, global_pool='mean')

    def test_bad_out_levels(self, cls):
        with _raises(ValueError, 'out_levels', "'first'"):
            cls(in_channels=8, out_levels='first')

    @pytest.mark.parametrize('hidden', [0, -4, 2.5])
    def test_bad_hidden_channels(self, cls, hidden):
        with _raises(ValueError, 'hidden_channels must be a positive int', repr(hidden)):
            cls(in_channels=8, hidden_channels=hidden)

    def test_bad_out_channels(self, cls):
        with _raises(ValueError, 'out_channels must be a positive int', '0'):
            cls(in_channels=8, out_channels=0)

    def test_negative_extra_levels(self, cls):
        with _raises(ValueError, 'extra_levels', '-1'):
            cls(in_channels=8, extra_levels=-1)

    @pytest.mark.parametrize('channels', [(), (8, 0), (8, -2)])
    def test_bad_in_channels(self, cls, channels):
        with _raises(ValueError, 'in_channels'):
            cls(in_channels=channels)

    def test_in_channels_of_wrong_type(self, cls):
        with _raises(TypeError, 'in_channels'):
            cls(in_channels='1024')

    def test_bad_dropout(self, cls):
        with _raises(ValueError, 'dropout', '1.5'):
            cls(in_channels=8, dropout=1.5)

    def test_bad_cross_scale(self, cls):
        with _raises(TypeError, 'cross_scale', "'yes'"):
            cls(in_channels=8, cross_scale='yes')


def test_bad_nonlinearity():
    with _raises(ValueError, 'HSRNNeck', 'nonlinearity', "'sigmoid'"):
        HSRNNeck(in_channels=8, nonlinearity='sigmoid')


def test_nonlinearity_given_to_hlstm():
    with _raises(ValueError, 'HLSTMNeck takes no nonlinearity', "'relu'", 'HSRNNeck'):
        HLSTMNeck(in_channels=8, nonlinearity='relu')


@pytest.mark.parametrize('value', ['leaky', None, 'Convex'])
def test_bad_cell_merge(value):
    with _raises(ValueError, 'HLSTMNeck', 'cell_merge', "('convex', 'sum')", repr(value)):
        HLSTMNeck(in_channels=8, cell_merge=value)


def test_cell_merge_given_to_hsrn():
    with _raises(ValueError, 'HSRNNeck takes no cell_merge', "'sum'", 'HLSTMNeck'):
        HSRNNeck(in_channels=8, cell_merge='sum')


@pytest.mark.parametrize('cls', NECKS)
class TestInputErrors:
    def test_wrong_number_of_levels(self, cls):
        neck = cls(in_channels=(8, 16), hidden_channels=4)
        with _raises(
            ValueError, '2 input levels with channels (8, 16), got 1 levels with channels (8,)'
        ):
            neck((torch.randn(2, 8, 4, 4),))

    def test_wrong_channels(self, cls):
        neck = cls(in_channels=(1024, 2048), hidden_channels=4)
        message = (
            f'{cls.__name__} expects 2 input levels with channels (1024, 2048), '
            'got 2 levels with channels (512, 1024)'
        )
        with _raises(ValueError, message):
            neck((torch.randn(2, 512, 2, 2), torch.randn(2, 1024, 1, 1)))

    @pytest.mark.parametrize('shape', [(2, 8, 4), (2, 8, 4, 4, 1)])
    def test_not_four_dimensional(self, cls, shape):
        neck = cls(in_channels=8, hidden_channels=4)
        with _raises(ValueError, '4-D', 'level 0', str(shape)):
            neck(torch.randn(shape))

    @pytest.mark.parametrize('shape', [(2, 8, 0, 4), (0, 8, 3, 3)])
    def test_zero_size_map(self, cls, shape):
        neck = cls(in_channels=8, hidden_channels=4)
        with _raises(ValueError, 'non-empty', str(shape)):
            neck(torch.randn(shape))

    def test_batch_sizes_differ(self, cls):
        neck = cls(in_channels=(8, 8), hidden_channels=4)
        with _raises(ValueError, 'same batch size', '(2, 3)'):
            neck((torch.randn(2, 8, 4, 4), torch.randn(3, 8, 2, 2)))

    def test_not_a_tensor(self, cls):
        neck = cls(in_channels=8, hidden_channels=4)
        with _raises(TypeError, 'tensor', 'list'):
            neck([[1.0, 2.0]])


class TestCellErrors:
    def test_bad_nonlinearity(self):
        with _raises(
            ValueError, 'SimpleRecurrentCell2d', 'nonlinearity', "('relu', 'tanh')", "'gelu'"
        ):
            SimpleRecurrentCell2d(1, 3, 'gelu')

    @pytest.mark.parametrize('cls', [SimpleRecurrentCell2d, ConvexLSTMCell2d, SumLSTMCell2d])
    @pytest.mark.parametrize('name', ['num_directions', 'hidden_channels'])
    @pytest.mark.parametrize('value', [0, -1, 2.0, True])
    def test_bad_sizes(self, cls, name, value):
        kwargs = dict(num_directions=2, hidden_channels=3)
        kwargs[name] = value
        with _raises(ValueError, cls.__name__, f'{name} must be a positive int', repr(value)):
            cls(**kwargs)
