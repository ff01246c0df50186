# FarSLIP stage 2 (docs/reference/method.md §0.2 "effective S2", §2): MGRS-200k, global ITC + 1.0 x region-category
# alignment (CLS of each object crop, multi-positive by category id, gathered across ranks).
# Run:  farslip train stage2 --cfg-options data.train.json_path=<mgrs>/text_info.json \
#           data.train.image_root=<mgrs>/global_imgs model.pretrained=work_dirs/farslip_stage1/checkpoints/final.pt
# Reference quirks kept as the default and documented (docs/reference/method.md §7.2, §7.3): the reference starts stage 2 from OpenAI
# CLIP (model.pretrained="openai") and uses lr 4e-9; pass the stage-1 checkpoint and your lr to change them.
# LongCLIP text (the FarSLIP2 ViT-B/16 checkpoint has 248 positions): model.long_clip="stretch" (from a
# 77-token model) or "scratch" (weights that already have 248 positions).
model = dict(name="ViT-B-16-quickgelu", pretrained="openai", long_clip=None)
task = dict(
    type="FarSLIPTask",
    dense_attn="SegEarth",
    region_head=dict(type="CropClsHead"),
    losses=dict(
        global_itc=dict(type="GlobalITCLoss", weight=1.0),
        region=dict(type="RegionCategoryLoss", weight=1.0),
    ),
)
data = dict(
    train=dict(
        type="MGRSJsonDataset",
        json_path="data/mgrs/text_info.json",
        image_root="data/mgrs/global_imgs",
        max_boxes=4,
        min_size=64,
        max_size=1024,
    ),
    batch_size=40,
    num_workers=8,
)
optim = dict(lr=4e-9, weight_decay=1.0, betas=(0.9, 0.98), eps=1e-6)
schedule = dict(epochs=10, warmup_steps=250)
train = dict(work_dir="work_dirs/farslip_stage2", precision="amp", seed=0, save_every_steps=1000)
