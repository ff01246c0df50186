# FarSLIP-OVSS base config for mmseg (docs/reference/ovss-evaluation.md#23-test-pipeline-and-config-skeleton).
# The one place the segmentor's defaults are written: FarSLIPSeg, farslip_ext.ovss.OVSSPredictor and
# run_ovss fill every setting they are not given from `model` below. These values are the `farslip`
# preset, the RS-OVSS protocol of the published FarSLIP numbers (docs/reference/ovss-evaluation.md#17): SegEarth
# last-layer attention, no upsampler, cls_token_lambda=0, prob_thd=0, logit scale 50, long side 448
# (cv2 bilinear), 224/112 windows, mean/std rounded like the reference's constants.
# Use a dataset file (e.g. loveda.py), or `_base_` this file from your own config. Choose the CLIP with
#   --cfg-options model.clip.model=farslip-vitb32 model.clip.pretrained=s1
default_scope = 'mmseg'
custom_imports = dict(imports=['farslip_ext.segmentation'], allow_failed_imports=False)

model = dict(
    type='FarSLIPSeg',
    clip=dict(model='farslip-vitb16', pretrained='s2'),  # any farslip_ext.load source; never mmseg's `pretrained`
    class_names=None,  # set by each dataset file: 'classnames:cls_<dataset>.txt', a path or 'a,b;c'
    templates='openai',  # the 80 OpenAI ImageNet prompts
    attn='SegEarth',
    ignore_residual=True,
    cls_token_lambda=0.0,
    prob_thd=0.0,
    bg_idx=0,
    logit_scale=50.0,
    slide_crop=224,
    slide_stride=112,
    window_mode='resize',  # windows that are not the model's input size are resized to it (RS-OVSS)
    window_size=None,  # None: the model's input size
    resize_long_side=None,  # in-model resize, only for arrays without an mmseg pipeline (the pipeline resizes)
    window_batch_size=128,
    norm_decimals=3,  # model mean/std x255 rounded to 3 decimals: RS-OVSS's 122.771, ... / 68.501, ...
    precision='auto',  # fp16 weights on CUDA (the reference), fp32 on a CPU
    device='auto',
    text_cache=True,
    text_batch_size=256,
    check_labels=True,
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
    num_workers=4,  # `farslip ovss` lowers it to what the machine has
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
    visualization=dict(type='SegVisualizationHook', draw=False),  # mmseg's test tool turns it on for --show-dir
)
custom_hooks = [dict(type='OVSSCheckHook')]
