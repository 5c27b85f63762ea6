# VGG-16 (no batch norm, convolutional part only), global average pooling of
# its last stage (pool5: 512 channels, 7x7 at 224 px) and a linear classifier.
# VGG stage i ends with its max pooling; at 224 px stages 0..4 give
# 64x112x112, 128x56x56, 256x28x28, 512x14x14 and 512x7x7.
model = dict(
    type='ImageClassifier',
    backbone=dict(type='VGG', depth=16, num_classes=-1, out_indices=(4,)),
    neck=dict(type='GlobalAveragePooling'),
    head=dict(
        type='LinearClsHead',
        num_classes=1000,
        in_channels=512,
        loss=dict(type='CrossEntropyLoss', loss_weight=1.0),
        topk=(1, 5),
    ),
)
