# HLSTM (LSTM units) on VGG-16, SUN397: the baseline with the neck swapped.
# Only the neck, the backbone levels it reads and the head's input width change.
_base_ = ['./gap_vgg16_8xb32_sun397.py']

model = dict(
    # the last two stages: pool4, 512x14x14, and pool5, 512x7x7 at 224 px
    backbone=dict(out_indices=(3, 4)),
    neck=dict(
        _delete_=True,
        type='HLSTMNeck',
        in_channels=(512, 512),
        hidden_channels=256,
        out_channels=512,
    ),
    # out_channels x levels = 512 x 2
    head=dict(in_channels=1024),
)
