# Runtime shared by every config of chrnn_plugin (no MMPretrain base files).
default_scope = 'mmpretrain'

# Registers HSRNNeck, HLSTMNeck, the datasets and the metrics of this plugin.
custom_imports = dict(imports=['chrnn_plugin'], allow_failed_imports=False)

default_hooks = dict(
    timer=dict(type='IterTimerHook'),
    # one log line every 50 iterations
    logger=dict(type='LoggerHook', interval=50),
    param_scheduler=dict(type='ParamSchedulerHook'),
    # save every epoch, keep the last two, and keep the best by top-1 accuracy
    checkpoint=dict(
        type='CheckpointHook',
        interval=1,
        max_keep_ckpts=2,
        save_best='accuracy/top1',
        rule='greater',
    ),
    sampler_seed=dict(type='DistSamplerSeedHook'),
    visualization=dict(type='VisualizationHook', enable=False),
)

# Smoothed values over the last 50 iterations, printed with 4 significant digits.
log_processor = dict(by_epoch=True, window_size=50, num_digits=4)

env_cfg = dict(
    cudnn_benchmark=False,
    mp_cfg=dict(mp_start_method='fork', opencv_num_threads=0),
    dist_cfg=dict(backend='nccl'),
)

vis_backends = [dict(type='LocalVisBackend')]
visualizer = dict(type='UniversalVisualizer', vis_backends=vis_backends)

log_level = 'INFO'
load_from = None
resume = False
randomness = dict(seed=None, deterministic=False)
