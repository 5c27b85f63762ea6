# VGG-16 with the HSRN (simple recurrent units) neck and a linear classifier: the
# VGG-16 baseline (gap_vgg16.py) with the neck swapped. Every dataset config of this
# neck and backbone inherits it, so an edit here changes them all.
_base_ = ['./gap_vgg16.py']

model = dict(
    # the last two stages: pool4, 512x14x14, and pool5, 512x7x7 at 224 px
    backbone=dict(out_indices=(3, 4)),
    neck=dict(
        _delete_=True,  # replace the baseline's neck, don't merge into it
        type='HSRNNeck',
        in_channels=(512, 512),  # one entry per level, finest first
        hidden_channels=256,  # per sweep direction
        out_channels=512,  # per level, after merging the directions
    ),
    # out_channels x levels = 512 x 2
    head=dict(in_channels=1024),
)
