# Plain CLIP fine-tuning on image-caption pairs with the same loop (global ITC only): the baseline the
# FarSLIP stages are compared against. Any CSV/JSONL with a file path and a caption column.
# Run:  farslip train clip_baseline --cfg-options data.train.path=<pairs.csv> data.train.image_root=<images>
model = dict(name="ViT-B-16-quickgelu", pretrained="openai", long_clip=None)
task = dict(type="FarSLIPTask", losses=dict(global_itc=dict(type="GlobalITCLoss", weight=1.0)))
data = dict(
    train=dict(type="ImageTextDataset", path="data/pairs.csv", image_root="data/images"),
    batch_size=40,
    num_workers=8,
)
optim = dict(lr=1e-6, weight_decay=1.0)
schedule = dict(epochs=1, warmup_steps=500)
train = dict(work_dir="work_dirs/clip_baseline", precision="amp_bf16", seed=0)
