# VGG-16 + the HSRN neck (simple recurrent units) + linear classifier on Places205, 8 GPUs x 32 images.
# Model, data, schedule and runtime come from the bases; this file sets only what is
# specific to Places205 and VGG-16. The neck lives in the model base.
_base_ = [
    '../_base_/models/hsrn_vgg16.py',
    '../_base_/datasets/places205.py',
    '../_base_/schedules/sgd_steplr_bs256_100e.py',
    '../_base_/default_runtime.py',
]

# Trained from scratch.
model = dict(head=dict(num_classes=205))

# VGG-16 (no batch norm) at lr 0.01, as in MMPretrain's own VGG-16 ImageNet recipe.
optim_wrapper = dict(optimizer=dict(lr=0.01))
