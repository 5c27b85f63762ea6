# Baseline: one multi-head self-attention layer over the regions of the ConvMixer map
# (pre-norm transformer encoder layer, fixed 2-D sinusoidal positions).
# Same as gap.py except the neck and the head's in_channels. hidden_channels=64 gives
# 42 k neck parameters, between HSRN's 25 k and HLSTM's 91 k.
_base_ = ['./base.py']

model = dict(
    neck=dict(
        _delete_=True,
        type='RegionSelfAttentionNeck',
        in_channels=64,
        hidden_channels=64,
        out_channels=64,
        num_heads=4,
        global_pool='avg',
    ),
    # = RegionSelfAttentionNeck.output_width: out_channels x 1 level
    head=dict(in_channels=64),
)
