# ResNet-50 + global average pooling + linear classifier on ImageNet-1k, 8 GPUs x 32 images.
# Model, data, schedule and runtime come from the bases; this file sets only what is
# specific to ImageNet-1k. The neck lives in the model base.
_base_ = [
    '../_base_/models/gap_resnet50.py',
    '../_base_/datasets/imagenet.py',
    '../_base_/schedules/sgd_steplr_bs256_100e.py',
    '../_base_/default_runtime.py',
]

# Trained from scratch.
model = dict(head=dict(num_classes=1000))
