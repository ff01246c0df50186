# FarSLIP-OVSS base config for mmseg (ovss-protocol.md §2.3, presets §1.7).
# The defaults reproduce the protocol of the published FarSLIP numbers: SegEarth last-layer attention,
# no upsampler, cls_token_lambda=0, prob_thd=0, logit scale 50, long side 448, 224/112 windows.
# Use a dataset file (e.g. loveda.py), not this one. Choose the model with --cfg-options, e.g.
#   model.model=farslip-vitb32 model.pretrained=s1    or    model.model=ViT-B-16 model.pretrained=openai
default_scope = 'mmseg'
custom_imports = dict(imports=['farslip_ext.segmentation'], allow_failed_imports=False)

model = dict(
    type='FarSLIPSeg',
    model='farslip-vitb16',
    pretrained='s2',
    class_names=None,  # set by each dataset file: 'catalogue:cls_<dataset>.txt'
    templates='openai',
    attn='SegEarth',
    ignore_residual=True,
    cls_token_lambda=0.0,
    prob_thd=0.0,
    bg_idx=0,
    logit_scale=50.0,
    slide_crop=224,
    slide_stride=112,
    window_mode='resize',
    window_batch_size=128,
    precision='auto',
    device='auto',
)

test_pipeline = [
    dict(type='FarSLIPLoadImageFromFile'),
    dict(type='Resize', scale=(448, 448), keep_ratio=True),
    # ground truth is loaded after Resize, so it stays at the original size
    dict(type='FarSLIPLoadAnnotations'),
    dict(type='PackSegInputs'),
]

test_dataloader = dict(
    batch_size=1,
    num_workers=4,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(pipeline=test_pipeline),  # type, data_root, data_prefix: per dataset file
)
test_evaluator = dict(type='IoUMetric', iou_metrics=['mIoU'])
test_cfg = dict(type='TestLoop')

env_cfg = dict(
    cudnn_benchmark=False,
    mp_cfg=dict(mp_start_method='fork', opencv_num_threads=0),
    dist_cfg=dict(backend='nccl'),
)
vis_backends = [dict(type='LocalVisBackend')]
visualizer = dict(type='SegLocalVisualizer', vis_backends=vis_backends)  # named after the run (unique)
log_processor = dict(by_epoch=False)
log_level = 'INFO'
load_from = None
resume = False
launcher = 'none'

default_hooks = dict(
    timer=dict(type='IterTimerHook'),
    logger=dict(type='LoggerHook', interval=50, log_metric_by_epoch=False),
    param_scheduler=dict(type='ParamSchedulerHook'),
    sampler_seed=dict(type='DistSamplerSeedHook'),
)
# To draw predictions add: default_hooks.visualization = dict(type='SegVisualizationHook', draw=True)
custom_hooks = [dict(type='OVSSCheckHook')]
