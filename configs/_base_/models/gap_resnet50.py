# ResNet-50, global average pooling of its last stage (2048 channels) and a
# linear classifier. The HRNN configs replace the neck, set the backbone's
# out_indices and the head's in_channels; the benchmark configs set num_classes.
model = dict(
    type='ImageClassifier',
    backbone=dict(type='ResNet', depth=50, num_stages=4, out_indices=(3,), style='pytorch'),
    neck=dict(type='GlobalAveragePooling'),
    head=dict(
        type='LinearClsHead',
        num_classes=1000,
        in_channels=2048,
        loss=dict(type='CrossEntropyLoss', loss_weight=1.0),
        topk=(1, 5),
    ),
)
