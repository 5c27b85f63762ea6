# GAP baseline: the base config as is (ConvMixer, 14x14 grid -> GlobalAveragePooling -> linear).
# Expected: near chance (25 %), see the receptive-field argument in base.py.
_base_ = ['./base.py']
