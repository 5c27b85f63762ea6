# ResNet-50 + the HSRN neck (simple recurrent units) + linear classifier on SUN397, 8 GPUs x 32 images.
# Model, data, schedule and runtime come from the bases; this file sets only what is
# specific to SUN397. The neck lives in the model base.
_base_ = [
    '../_base_/models/hsrn_resnet50.py',
    '../_base_/datasets/sun397.py',
    '../_base_/schedules/finetune_sgd_bs256_50e.py',
    '../_base_/default_runtime.py',
]

# Fine-tuned from ImageNet weights, read from a local file; nothing is downloaded.
# Put MMPretrain's ImageNet ResNet-50 checkpoint at the path below (see
# docs/prepare_datasets.md), or give another file with
#   --cfg-options model.backbone.init_cfg.checkpoint=/path/to/weights.pth
model = dict(
    backbone=dict(
        init_cfg=dict(
            type='Pretrained',
            checkpoint='checkpoints/resnet50_8xb32_in1k_20210831-ea4938fc.pth',
            prefix='backbone',
        )
    ),
    head=dict(num_classes=397),
)
