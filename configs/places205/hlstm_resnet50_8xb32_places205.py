# ResNet-50 + the HLSTM neck (LSTM units) + linear classifier on Places205, 8 GPUs x 32 images.
# Model, data, schedule and runtime come from the bases; this file sets only what is
# specific to Places205. The neck lives in the model base.
_base_ = [
    '../_base_/models/hlstm_resnet50.py',
    '../_base_/datasets/places205.py',
    '../_base_/schedules/sgd_steplr_bs256_100e.py',
    '../_base_/default_runtime.py',
]

# Trained from scratch.
model = dict(head=dict(num_classes=205))
