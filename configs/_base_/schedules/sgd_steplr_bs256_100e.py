# Training from scratch (ImageNet-1k, Places205): the usual step schedule,
# SGD with lr 0.1 for a total batch of 256, divided by 10 at epochs 30, 60, 90.
optim_wrapper = dict(optimizer=dict(type='SGD', lr=0.1, momentum=0.9, weight_decay=1e-4))

param_scheduler = dict(type='MultiStepLR', by_epoch=True, milestones=[30, 60, 90], gamma=0.1)

train_cfg = dict(by_epoch=True, max_epochs=100, val_interval=1)
val_cfg = dict()
test_cfg = dict()

# `--auto-scale-lr` scales the learning rate for another total batch size.
auto_scale_lr = dict(base_batch_size=256)
