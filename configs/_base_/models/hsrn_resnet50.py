# ResNet-50 with the HSRN (simple recurrent units) neck and a linear classifier: the
# ResNet-50 baseline (gap_resnet50.py) with the neck swapped. Every dataset config of this
# neck and backbone inherits it, so an edit here changes them all.
_base_ = ['./gap_resnet50.py']

model = dict(
    # the last two stages: 1024x14x14 and 2048x7x7 at 224 px
    backbone=dict(out_indices=(2, 3)),
    neck=dict(
        _delete_=True,  # replace the baseline's neck, don't merge into it
        type='HSRNNeck',
        in_channels=(1024, 2048),  # one entry per level, finest first
        hidden_channels=256,  # per sweep direction
        out_channels=512,  # per level, after merging the directions
    ),
    # out_channels x levels = 512 x 2
    head=dict(in_channels=1024),
)
