# ResNet-50 + the HSRN neck + linear classifier, fine-tuned on your own folder of images with
# MMPretrain's CustomDataset, 8 GPUs x 32 images (tutorial: docs/custom_dataset.md).
#
#   data/my_images/train/<class>/*.jpg    one folder per class; its name is the class name
#   data/my_images/val/<class>/*.jpg      the same class folders
#
# Set the two lines below for your data (or copy this file), or override them from the command
# line: the number of classes at model.head.num_classes and data_preprocessor.num_classes, the
# folder at {train,val,test}_dataloader.dataset.data_root.
#
# Swap the neck with the first line of _base_: hlstm_resnet50.py (LSTM units) or
# gap_resnet50.py (the global-average-pooling baseline); *_vgg16.py for VGG-16, whose
# ImageNet checkpoint then goes in init_cfg below.
_base_ = [
    '../_base_/models/hsrn_resnet50.py',
    '../_base_/schedules/finetune_sgd_bs256_50e.py',
    '../_base_/default_runtime.py',
]

data_root = 'data/my_images'
num_classes = 2  # the number of class folders under train/

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
    head=dict(num_classes=num_classes),
)

data_preprocessor = dict(
    num_classes=num_classes,
    # RGB mean and std of ImageNet, in 0..255: the backbone was trained with them
    mean=[123.675, 116.28, 103.53],
    std=[58.395, 57.12, 57.375],
    # the images are loaded as BGR
    to_rgb=True,
)

# Decoded with Pillow, as the MIT67 and SUN397 configs are (docs/prepare_datasets.md).
train_pipeline = [
    dict(type='LoadImageFromFile', imdecode_backend='pillow'),
    dict(type='RandomResizedCrop', scale=224),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(type='PackInputs'),
]

test_pipeline = [
    dict(type='LoadImageFromFile', imdecode_backend='pillow'),
    dict(type='ResizeEdge', scale=256, edge='short'),
    dict(type='CenterCrop', crop_size=224),
    dict(type='PackInputs'),
]

# CustomDataset finds the classes from the sub-folders of data_root/data_prefix (sorted by
# name) and saves their names in every checkpoint, where tools/infer.py reads them.
train_dataloader = dict(
    batch_size=32,
    num_workers=4,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=True),
    dataset=dict(
        type='CustomDataset',
        data_root=data_root,
        data_prefix='train',
        pipeline=train_pipeline,
    ),
)

val_dataloader = dict(
    batch_size=32,
    num_workers=4,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(
        type='CustomDataset',
        data_root=data_root,
        data_prefix='val',
        pipeline=test_pipeline,
    ),
)

# Top-1 (accuracy/top1, which picks the best checkpoint) and mean per-class accuracy. Top-5
# needs at least 5 classes: add it with --cfg-options "val_evaluator.0.topk=(1,5)".
val_evaluator = [
    dict(type='Accuracy', topk=(1,)),
    dict(type='MeanPerClassAccuracy'),
]

# tools/test.py evaluates on val/; for a separate test/ folder:
#   --cfg-options test_dataloader.dataset.data_prefix=test
test_dataloader = val_dataloader
test_evaluator = val_evaluator
