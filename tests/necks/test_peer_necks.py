"""The baseline context necks: RegionSelfAttentionNeck and ReNetNeck.

They share the HRNN necks' interface (maps in, ``(vec,)`` or maps out,
``output_width``), so a config can swap one for another.
"""

import pytest
import torch
from mmpretrain.registry import MODELS
from mmpretrain.structures import DataSample

from chrnn_plugin.models import RegionSelfAttentionNeck, ReNetNeck
from chrnn_plugin.models.necks.reach_init import chrono_time_scales
from chrnn_plugin.models.necks.region_attention import sinusoidal_position_2d

NECKS = (RegionSelfAttentionNeck, ReNetNeck)


def _maps(shapes, batch=2, dtype=torch.float32, device='cpu', requires_grad=False):
    generator = torch.Generator().manual_seed(1)
    return tuple(
        torch.randn(batch, *shape, generator=generator, dtype=dtype)
        .to(device)
        .requires_grad_(requires_grad)
        for shape in shapes
    )


@pytest.mark.parametrize('cls', NECKS)
@pytest.mark.parametrize(
    'kwargs, expected',
    [
        (dict(), [(2, 24)]),
        (dict(global_pool='max'), [(2, 24)]),
        (dict(out_levels='last'), [(2, 12)]),
        (dict(global_pool=None), [(2, 12, 6, 5), (2, 12, 3, 3)]),
        (dict(global_pool=None, out_levels='last'), [(2, 12, 3, 3)]),
    ],
)
def test_output_shapes_and_width(cls, kwargs, expected, device):
    neck = cls(in_channels=(8, 16), hidden_channels=8, out_channels=12, **kwargs).to(device)
    outputs = neck(_maps([(8, 6, 5), (16, 3, 3)], device=device))
    assert isinstance(outputs, tuple)
    assert [tuple(y.shape) for y in outputs] == expected
    assert outputs[0].shape[1] == neck.output_width


@pytest.mark.parametrize('cls', NECKS)
def test_single_tensor_input_and_default_out_channels(cls, device):
    neck = cls(in_channels=8, hidden_channels=12).to(device)
    (vec,) = neck(_maps([(8, 1, 1)], device=device)[0])
    assert vec.shape == (2, 12) and neck.output_width == 12


@pytest.mark.parametrize('cls', NECKS)
def test_every_output_region_depends_on_every_input_region(cls, device):
    torch.manual_seed(0)
    neck = cls(in_channels=4, hidden_channels=8, out_channels=4, global_pool=None)
    neck = neck.to(device=device, dtype=torch.float64)
    (x,) = _maps([(4, 4, 5)], dtype=torch.float64, device=device, requires_grad=True)
    (y,) = neck(x)
    for i in range(4):
        for j in range(5):
            (grad,) = torch.autograd.grad(y[:, :, i, j].sum(), x, retain_graph=True)
            reach = grad.abs().sum(dim=(0, 1))
            assert (reach > 0).all(), f'output ({i}, {j}) misses inputs {(reach == 0).nonzero()}'


@pytest.mark.parametrize('cls', NECKS)
def test_batch_elements_stay_separate(cls, device):
    neck = cls(in_channels=4, hidden_channels=8, global_pool=None).to(device)
    (x,) = _maps([(4, 3, 3)], batch=3, device=device, requires_grad=True)
    (y,) = neck(x)
    (grad,) = torch.autograd.grad(y[1].sum(), x)
    assert grad[0].abs().sum() == 0 and grad[2].abs().sum() == 0
    assert grad[1].abs().sum() > 0


@pytest.mark.parametrize('cls', NECKS)
def test_dropout_only_in_training_and_eval_is_deterministic(cls, device):
    torch.manual_seed(0)
    neck = cls(in_channels=8, hidden_channels=8, dropout=0.5).to(device)
    (x,) = _maps([(8, 4, 4)], device=device)
    neck.train()
    assert not torch.equal(neck(x)[0], neck(x)[0])
    neck.eval()
    with torch.no_grad():
        assert torch.equal(neck(x)[0], neck(x)[0])


@pytest.mark.parametrize('cls', NECKS)
def test_state_dict_round_trip(cls, device):
    torch.manual_seed(0)
    source = cls(in_channels=(8, 16), hidden_channels=8).to(device).eval()
    torch.manual_seed(1)
    target = cls(in_channels=(8, 16), hidden_channels=8).to(device).eval()
    inputs = _maps([(8, 4, 4), (16, 2, 2)], device=device)
    with torch.no_grad():
        assert not torch.allclose(source(inputs)[0], target(inputs)[0])
        target.load_state_dict(source.state_dict())
        assert torch.equal(source(inputs)[0], target(inputs)[0])


@pytest.mark.parametrize('neck_type', ['RegionSelfAttentionNeck', 'ReNetNeck'])
def test_in_image_classifier_loss_and_predict(neck_type, device):
    torch.manual_seed(0)
    model = MODELS.build(
        dict(
            type='ImageClassifier',
            backbone=dict(type='ResNet', depth=18, out_indices=(2, 3)),
            neck=dict(type=neck_type, in_channels=(256, 512), hidden_channels=16),
            head=dict(
                type='LinearClsHead',
                num_classes=3,
                in_channels=32,
                loss=dict(type='CrossEntropyLoss'),
            ),
            data_preprocessor=dict(type='ClsDataPreprocessor', num_classes=3),
        )
    ).to(device)
    assert model.neck.output_width == 32
    model.init_weights()
    model.train()
    images = torch.randn(2, 3, 64, 64, device=device)
    samples = [DataSample().set_gt_label(label) for label in (0, 2)]
    loss = sum(model(images, samples, mode='loss').values())
    assert torch.isfinite(loss)
    loss.backward()
    assert model.neck.levels[0].merge.weight.grad.abs().sum() > 0
    model.eval()
    with torch.no_grad():
        predictions = model(images, mode='predict')
    assert len(predictions) == 2
    assert predictions[0].pred_score.shape == (3,)


def test_sinusoidal_position_encodes_row_and_column():
    code = sinusoidal_position_2d(3, 4, 8).view(3, 4, 8)
    # Row half constant along a row, column half constant along a column.
    assert torch.equal(code[:, :1, :4].expand(-1, 4, -1), code[..., :4])
    assert torch.equal(code[:1, :, 4:].expand(3, -1, -1), code[..., 4:])
    # Every region has its own code.
    flat = code.view(12, 8)
    assert torch.cdist(flat, flat).add(torch.eye(12)).min() > 0.1
    assert torch.allclose(code[0, 0], torch.tensor([0.0, 0, 1, 1, 0, 0, 1, 1], dtype=code.dtype))


def test_attention_position_is_used():
    """Swapping two regions' features changes the output beyond the swap: positions count."""
    torch.manual_seed(0)
    neck = RegionSelfAttentionNeck(in_channels=4, hidden_channels=8, global_pool=None).double()
    (x,) = _maps([(4, 3, 3)], dtype=torch.float64)
    swapped = x.clone()
    swapped[:, :, 0, 0], swapped[:, :, 2, 2] = x[:, :, 2, 2], x[:, :, 0, 0]
    with torch.no_grad():
        y, y_swapped = neck(x)[0], neck(swapped)[0]
    # Without positions, attention is permutation-equivariant: y_swapped would be y swapped.
    assert not torch.allclose(y_swapped[:, :, 1, 1], y[:, :, 1, 1])


@pytest.mark.parametrize('cls', NECKS)
class TestConfigErrors:
    @pytest.mark.parametrize('channels', [(), (8, 0), 'abc', 2.5])
    def test_bad_in_channels(self, cls, channels):
        with pytest.raises((ValueError, TypeError), match='in_channels'):
            cls(in_channels=channels, hidden_channels=8)

    @pytest.mark.parametrize('hidden', [0, -4, 2.5])
    def test_bad_hidden_channels(self, cls, hidden):
        with pytest.raises(
            ValueError, match=f'hidden_channels must be a positive int, got {hidden}'
        ):
            cls(in_channels=8, hidden_channels=hidden)

    def test_bad_out_channels(self, cls):
        with pytest.raises(ValueError, match='out_channels must be a positive int, got 0'):
            cls(in_channels=8, hidden_channels=8, out_channels=0)

    def test_bad_global_pool(self, cls):
        with pytest.raises(ValueError, match=r"global_pool must be one of .*got 'sum'"):
            cls(in_channels=8, hidden_channels=8, global_pool='sum')

    def test_bad_out_levels(self, cls):
        with pytest.raises(ValueError, match=r"out_levels must be one of .*got 'first'"):
            cls(in_channels=8, hidden_channels=8, out_levels='first')

    @pytest.mark.parametrize(
        'dropout, error', [(1.0, ValueError), (-0.1, ValueError), ('x', TypeError)]
    )
    def test_bad_dropout(self, cls, dropout, error):
        with pytest.raises(error, match='dropout must'):
            cls(in_channels=8, hidden_channels=8, dropout=dropout)


@pytest.mark.parametrize(
    'kwargs, match',
    [
        (dict(hidden_channels=10), 'hidden_channels must be a multiple of 4 .* got 10'),
        (dict(hidden_channels=12, num_heads=8), 'multiple of 4 .* and of num_heads=8, got 12'),
        (dict(num_heads=0), 'num_heads must be a positive int, got 0'),
        (dict(ffn_ratio=0), 'ffn_ratio must be a positive number, got 0'),
        (dict(ffn_ratio='2'), 'ffn_ratio must be a positive number'),
    ],
)
def test_attention_config_errors(kwargs, match):
    with pytest.raises((ValueError, TypeError), match=match):
        RegionSelfAttentionNeck(in_channels=8, **{'hidden_channels': 8, **kwargs})


@pytest.mark.parametrize('cls', NECKS)
class TestInputErrors:
    def test_wrong_channels(self, cls):
        neck = cls(in_channels=(8, 16), hidden_channels=8)
        with pytest.raises(
            ValueError,
            match=r'expects 2 input levels with channels \(8, 16\), got 2 levels '
            r'with channels \(8, 8\)',
        ):
            neck(_maps([(8, 3, 3), (8, 2, 2)]))

    def test_wrong_number_of_levels(self, cls):
        neck = cls(in_channels=(8, 16), hidden_channels=8)
        with pytest.raises(ValueError, match=r'got 1 levels with channels \(8,\)'):
            neck(_maps([(8, 3, 3)]))

    @pytest.mark.parametrize('shape', [(2, 8, 4), (2, 8, 0, 4)])
    def test_not_a_non_empty_four_dimensional_map(self, cls, shape):
        neck = cls(in_channels=8, hidden_channels=8)
        with pytest.raises(ValueError, match=r'expects non-empty 4-D input maps .* shape'):
            neck(torch.zeros(shape))

    def test_batch_sizes_differ(self, cls):
        neck = cls(in_channels=(8, 8), hidden_channels=8)
        x = (torch.zeros(2, 8, 3, 3), torch.zeros(3, 8, 2, 2))
        with pytest.raises(ValueError, match=r'same batch size at every input level, got \(2, 3\)'):
            neck(x)

    def test_not_a_tensor(self, cls):
        neck = cls(in_channels=8, hidden_channels=8)
        with pytest.raises(
            TypeError, match='expects a tensor or a tuple of tensors .* got ndarray'
        ):
            neck(torch.zeros(2, 8, 3, 3).numpy())


def test_renet_gates_are_chrono_initialised():
    """Forget bias log(T - 1), input bias half the opposite; the other gates keep PyTorch's init."""
    neck = ReNetNeck(in_channels=(8, 16), hidden_channels=6)
    forget = torch.log(chrono_time_scales(6) - 1).float()
    for layer in neck.levels:
        for lstm in (layer.row_lstm, layer.col_lstm):
            for name, bias in lstm.named_parameters():
                if name.startswith('bias_ih'):
                    assert torch.allclose(bias[6:12], forget), name
                    assert torch.allclose(bias[:6], -0.5 * forget), name
                elif name.startswith('bias_hh'):
                    assert torch.equal(bias[:12], torch.zeros(12)), name
                else:
                    continue
                assert bias[12:].abs().max() <= 1 / 6**0.5, name
