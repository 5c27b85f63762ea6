# HLSTM neck (LSTM units, 4 sweep directions) on the 14x14 ConvMixer map.
# Same as gap.py except the neck and the head's in_channels.
_base_ = ['./base.py']

model = dict(
    neck=dict(
        _delete_=True,
        type='HLSTMNeck',
        in_channels=64,
        hidden_channels=32,
        out_channels=64,
        global_pool='avg',
    ),
    # = HLSTMNeck.output_width: out_channels x 1 level
    head=dict(in_channels=64),
)
