"""The necks slot between registered backbones and heads of ImageClassifier."""

import pytest
import torch
from mmpretrain.registry import MODELS
from mmpretrain.structures import DataSample

import chrnn_plugin  # noqa: F401  (registers the necks)

NUM_CLASSES = 3

# backbone config, channels of its two out_indices at a 64x64 input
BACKBONES = {
    'resnet18': (dict(type='ResNet', depth=18, out_indices=(2, 3)), (256, 512)),
    'vgg11': (dict(type='VGG', depth=11, out_indices=(3, 4)), (512, 512)),
    'convnext_atto': (
        dict(type='ConvNeXt', arch='atto', out_indices=(2, 3), gap_before_final_norm=False),
        (160, 320),
    ),
    'mobilenet_v2': (dict(type='MobileNetV2', widen_factor=0.5, out_indices=(4, 7)), (48, 1280)),
    'swin_tiny': (
        dict(
            type='SwinTransformer',
            arch='tiny',
            img_size=64,
            window_size=4,
            pad_small_map=True,
            out_indices=(2, 3),
        ),
        (384, 768),
    ),
}


def _classifier(backbone: dict, neck, head_in_channels: int):
    return MODELS.build(
        dict(
            type='ImageClassifier',
            backbone=backbone,
            neck=neck,
            head=dict(
                type='LinearClsHead',
                num_classes=NUM_CLASSES,
                in_channels=head_in_channels,
                loss=dict(type='CrossEntropyLoss'),
            ),
            data_preprocessor=dict(type='ClsDataPreprocessor', num_classes=NUM_CLASSES),
        )
    )


def _loss_and_predict(model, device):
    model.init_weights()
    model.to(device).train()
    images = torch.randn(2, 3, 64, 64, device=device)
    samples = [DataSample().set_gt_label(label) for label in (0, 2)]
    losses = model(images, samples, mode='loss')
    loss = sum(v for v in losses.values())
    assert torch.isfinite(loss)
    loss.backward()
    assert all(p.grad is not None for p in model.neck.parameters())
    model.eval()
    with torch.no_grad():
        predictions = model(images, [DataSample(), DataSample()], mode='predict')
    assert [p.pred_score.shape for p in predictions] == [(NUM_CLASSES,)] * 2


@pytest.mark.parametrize('neck_type', ['HSRNNeck', 'HLSTMNeck'])
@pytest.mark.parametrize('backbone', list(BACKBONES))
def test_image_classifier_loss_and_predict(backbone, neck_type, device):
    backbone_cfg, channels = BACKBONES[backbone]
    neck_cfg = dict(type=neck_type, in_channels=channels, hidden_channels=8, out_channels=16)
    model = _classifier(backbone_cfg, neck_cfg, head_in_channels=2 * 16)
    assert model.neck.output_width == 32
    _loss_and_predict(model, device)


def test_chain_with_global_average_pooling(device):
    backbone_cfg, channels = BACKBONES['resnet18']
    necks = [
        dict(
            type='HLSTMNeck',
            in_channels=channels,
            hidden_channels=8,
            out_channels=16,
            global_pool=None,
        ),
        dict(type='GlobalAveragePooling'),
    ]
    model = _classifier(backbone_cfg, necks, head_in_channels=16)
    _loss_and_predict(model, device)
