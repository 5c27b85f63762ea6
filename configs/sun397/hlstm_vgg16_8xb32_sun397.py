# VGG-16 + the HLSTM neck (LSTM units) + linear classifier on SUN397, 8 GPUs x 32 images.
# Model, data, schedule and runtime come from the bases; this file sets only what is
# specific to SUN397. The neck lives in the model base.
_base_ = [
    '../_base_/models/hlstm_vgg16.py',
    '../_base_/datasets/sun397.py',
    '../_base_/schedules/finetune_sgd_bs256_50e.py',
    '../_base_/default_runtime.py',
]

# Fine-tuned from ImageNet weights, read from a local file; nothing is downloaded.
# Put MMPretrain's ImageNet VGG-16 checkpoint at the path below (see
# docs/prepare_datasets.md), or give another file with
#   --cfg-options model.backbone.init_cfg.checkpoint=/path/to/weights.pth
model = dict(
    backbone=dict(
        init_cfg=dict(
            type='Pretrained',
            checkpoint='checkpoints/vgg16_batch256_imagenet_20210208-db26f1a5.pth',
            prefix='backbone',
        )
    ),
    head=dict(num_classes=397),
)
