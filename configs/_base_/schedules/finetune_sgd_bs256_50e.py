# Fine-tuning from ImageNet weights (MIT67, SUN397), for a total batch of 256.
# The pretrained backbone learns 10x slower than the new neck and head.
optim_wrapper = dict(
    optimizer=dict(type='SGD', lr=0.01, momentum=0.9, weight_decay=1e-4),
    paramwise_cfg=dict(custom_keys={'backbone': dict(lr_mult=0.1)}),
)

param_scheduler = [
    # one epoch of linear warm-up, updated every iteration
    dict(
        type='LinearLR',
        start_factor=0.01,
        by_epoch=True,
        begin=0,
        end=1,
        convert_to_iter_based=True,
    ),
    dict(type='CosineAnnealingLR', T_max=49, by_epoch=True, begin=1, end=50),
]

train_cfg = dict(by_epoch=True, max_epochs=50, val_interval=1)
val_cfg = dict()
test_cfg = dict()

# `--auto-scale-lr` scales the learning rate for another total batch size.
auto_scale_lr = dict(base_batch_size=256)
