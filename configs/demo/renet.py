# Baseline: ReNet-style neck, a bidirectional nn.LSTM over the rows of the ConvMixer map,
# then one over its columns. Same as gap.py except the neck and the head's in_channels.
# hidden_channels=32 gives 54 k neck parameters, between HSRN's 25 k and HLSTM's 91 k.
_base_ = ['./base.py']

model = dict(
    neck=dict(
        _delete_=True,
        type='ReNetNeck',
        in_channels=64,
        hidden_channels=32,
        out_channels=64,
        global_pool='avg',
    ),
    # = ReNetNeck.output_width: out_channels x 1 level
    head=dict(in_channels=64),
)
