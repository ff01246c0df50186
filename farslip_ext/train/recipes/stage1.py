# FarSLIP stage 1 (docs/reference/method.md §0.2 "effective S1", §1): RS5M, global ITC + 0.1 x patch-to-patch
# distillation (roi2pooled, SegEarth dense block, active teacher), 4 random crops per image.
# Run:  farslip train stage1 --cfg-options data.train.urls='<rs5m>/{pub11,rs3}-train-{0000..0031}.tar'
# Reference hardware: 4 GPUs x 40 = global batch 160; 5,070,186 pairs -> 31,696 steps.
model = dict(name="ViT-B-16-quickgelu", pretrained="openai", long_clip=None)
task = dict(
    type="FarSLIPTask",
    dense_attn="SegEarth",
    ignore_residual=None,  # each variant's training-fork rule: SegEarth without residual/MLP, MaskCLIP with both
    teacher=dict(type="ActiveTeacher"),
    losses=dict(
        global_itc=dict(type="GlobalITCLoss", weight=1.0),
        distill=dict(type="PatchDistillLoss", align="roi2pooled", weight=0.1),
    ),
)
data = dict(
    train=dict(
        type="RS5MWebDataset",
        urls="data/rs5m/{pub11,rs3}-train-{0000..0031}.tar",
        transform=dict(type="MultiCropTransform", image_size=224, num_crops=4, scale=(0.3, 0.7),
                       ratio=(3 / 4, 4 / 3)),
        shuffle_buffer=5000,
        shuffle_initial=1000,
    ),
    batch_size=40,
    num_workers=8,
)
optim = dict(lr=1e-6, weight_decay=1.0, betas=(0.9, 0.98), eps=1e-6)
schedule = dict(epochs=1, warmup_steps=1000, steps_per_epoch=31696)
train = dict(work_dir="work_dirs/farslip_stage1", precision="amp", seed=0, save_every_steps=1000)
