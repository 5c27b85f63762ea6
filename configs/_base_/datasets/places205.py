# Places205: the official release (256x256 images) and train/val split, 205 classes
# Layout and checks: docs/prepare_datasets.md. Another location:
#   --cfg-options train_dataloader.dataset.data_root=DIR val_dataloader.dataset.data_root=DIR
#                 test_dataloader.dataset.data_root=DIR
dataset_type = 'Places205Official'
data_root = 'data/places205'

data_preprocessor = dict(
    num_classes=205,
    # RGB mean and std of ImageNet, in 0..255
    mean=[123.675, 116.28, 103.53],
    std=[58.395, 57.12, 57.375],
    # the images are loaded as BGR
    to_rgb=True,
)

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='RandomResizedCrop', scale=224),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(type='PackInputs'),
]

test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='ResizeEdge', scale=256, edge='short'),
    dict(type='CenterCrop', crop_size=224),
    dict(type='PackInputs'),
]

train_dataloader = dict(
    batch_size=32,
    num_workers=4,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=True),
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        split='train',
        pipeline=train_pipeline,
    ),
)

val_dataloader = dict(
    batch_size=32,
    num_workers=4,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        split='val',
        pipeline=test_pipeline,
    ),
)

# top-1 (accuracy/top1, which picks the best checkpoint), top-5 and mean per-class accuracy
val_evaluator = [
    dict(type='Accuracy', topk=(1, 5)),
    dict(type='MeanPerClassAccuracy'),
]

test_dataloader = val_dataloader
test_evaluator = val_evaluator
