# Demo base config: the SpatialRelations task (chrnn_plugin/datasets/spatial_relations.py)
# on a small ConvMixer, with global average pooling (GAP). gap.py, hsrn.py and hlstm.py
# inherit this file and change only the neck (and the head's in_channels).
#
# Task: 56x56 images; the class is where the red object A lies relative to the blue
# object B (above / below / left_of / right_of; chance 25 %), among 1-3 distractors.
# A and B are >= 12 px apart along that axis, >= 8 px from the border, anywhere else.
#
# Backbone: MMPretrain's ConvMixer with 4x4 patches, 64 channels and one layer
# (3x3 depthwise + 1x1 pointwise): a 14x14 grid of cells (stride 4).
# Receptive field of a cell:
#   patch embedding 4x4, stride 4   RF 4,  jump 4
#   depthwise 3x3 ('same' padding)  RF 4 + 2*4 = 12 px
#   pointwise 1x1                   RF 12 px
# Cell i sees rows 4i-4 .. 4i+7: 12 px < the 12 px minimum A-B distance < the 56 px
# image, so no cell sees A and B at once. Only border cells see the zero padding, and
# they see 8 px into the image = the task's object-free margin. With GAP the linear
# head gets a sum of per-cell terms, none of which depends on the arrangement: GAP
# stays near chance by construction. The arrangement can only come from a neck that
# relates cells (HSRN, HLSTM): spatial context.
#
# The runtime (scope, imports, hooks, logging) is the shared one of every config in this
# repository; this file changes only what a short CPU run needs. When changing
# train_cfg.max_epochs (e.g. with --cfg-options), also change the cosine scheduler's `end`
# below (tools/demo.py --epochs does both).

_base_ = ['../_base_/default_runtime.py']

num_classes = 4
max_epochs = 4
data_seed = 0

# ---------------------------------------------------------------- model
model = dict(
    type='ImageClassifier',
    data_preprocessor=dict(
        type='ClsDataPreprocessor',
        num_classes=num_classes,
        mean=[127.5, 127.5, 127.5],
        std=[64.0, 64.0, 64.0],
        # Samples are BGR like LoadImageFromFile's output.
        to_rgb=True,
    ),
    backbone=dict(
        type='ConvMixer',
        arch=dict(embed_dims=64, depth=1, patch_size=4, kernel_size=3),
    ),
    neck=dict(type='GlobalAveragePooling'),
    head=dict(
        type='LinearClsHead',
        num_classes=num_classes,
        in_channels=64,
        loss=dict(type='CrossEntropyLoss'),
        topk=(1,),
    ),
)

# ----------------------------------------------------------------- data
# In memory: no files. num_workers=0 and persistent_workers=False because
# generated samples need no loader processes.
dataset_type = 'SpatialRelations'
pipeline = [dict(type='PackInputs')]
# The same for an image file: the generated samples are BGR uint8 arrays, as LoadImageFromFile
# returns them, so a PNG of a sample reaches the model unchanged. No dataloader here uses it;
# it is for tools that load image files through the config's test pipeline (MMPretrain's
# vis_cam.py, see the FAQ), by inheriting this config with
# test_dataloader = dict(dataset=dict(pipeline={{_base_.test_pipeline}})).
test_pipeline = [dict(type='LoadImageFromFile'), dict(type='PackInputs')]

train_dataloader = dict(
    batch_size=32,
    num_workers=0,
    persistent_workers=False,
    sampler=dict(type='DefaultSampler', shuffle=True),
    dataset=dict(
        type=dataset_type, split='train', num_samples=3000, seed=data_seed, pipeline=pipeline
    ),
)
val_dataloader = dict(
    batch_size=128,
    num_workers=0,
    persistent_workers=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(
        type=dataset_type,
        split='val',
        num_samples=1000,
        seed=data_seed,
        pipeline=pipeline,
        test_mode=True,
    ),
)
test_dataloader = dict(
    batch_size=128,
    num_workers=0,
    persistent_workers=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(
        type=dataset_type,
        split='test',
        num_samples=1000,
        seed=data_seed,
        pipeline=pipeline,
        test_mode=True,
    ),
)
val_evaluator = dict(type='Accuracy', topk=(1,))
test_evaluator = val_evaluator

# ------------------------------------------------------------- schedule
optim_wrapper = dict(optimizer=dict(type='AdamW', lr=3e-3, weight_decay=1e-4))
param_scheduler = [
    # Warm up over the first epoch (per iteration), then cosine to zero.
    dict(
        type='LinearLR', start_factor=0.1, by_epoch=True, begin=0, end=1, convert_to_iter_based=True
    ),
    dict(
        type='CosineAnnealingLR', by_epoch=True, begin=1, end=max_epochs, convert_to_iter_based=True
    ),
]
train_cfg = dict(by_epoch=True, max_epochs=max_epochs, val_interval=1)
val_cfg = dict()
test_cfg = dict()

# -------------------------------------------------------------- runtime
# Only what differs from the shared runtime.
default_hooks = dict(
    logger=dict(interval=10),
    # Keep only the last checkpoint: tools/visualize_context.py reads it.
    checkpoint=dict(_delete_=True, type='CheckpointHook', interval=1, max_keep_ckpts=1),
)
env_cfg = dict(dist_cfg=dict(backend='gloo'))
# One log line, and one smoothing window, every 10 iterations.
log_processor = dict(window_size=10)
randomness = dict(seed=0)
