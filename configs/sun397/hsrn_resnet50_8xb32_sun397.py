# HSRN (simple recurrent units) on ResNet-50, SUN397: the baseline with the neck swapped.
# Only the neck, the backbone levels it reads and the head's input width change.
_base_ = ['./gap_resnet50_8xb32_sun397.py']

model = dict(
    # the last two stages: 1024x14x14 and 2048x7x7 at 224 px
    backbone=dict(out_indices=(2, 3)),
    neck=dict(
        _delete_=True,
        type='HSRNNeck',
        in_channels=(1024, 2048),
        hidden_channels=256,
        out_channels=512,
    ),
    # out_channels x levels = 512 x 2
    head=dict(in_channels=1024),
)
