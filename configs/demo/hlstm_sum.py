# HLSTM neck with the first release's cell: two forget gates, one per predecessor
# (cell_merge='sum'), kept to compare with the default convex cell of hlstm.py.
# Same as hlstm.py except cell_merge.
_base_ = ['./base.py']

model = dict(
    neck=dict(
        _delete_=True,
        type='HLSTMNeck',
        in_channels=64,
        hidden_channels=32,
        out_channels=64,
        cell_merge='sum',
        global_pool='avg',
    ),
    # = HLSTMNeck.output_width: out_channels x 1 level
    head=dict(in_channels=64),
)
