# HLSTM neck with the first release's cell: two forget gates, one per predecessor
# (cell_merge='sum'), kept to compare with the default convex cell of hlstm.py.
# hlstm.py with only cell_merge changed.
_base_ = ['./hlstm.py']

model = dict(neck=dict(cell_merge='sum'))
