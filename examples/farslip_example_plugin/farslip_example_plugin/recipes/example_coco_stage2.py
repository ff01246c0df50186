# Stage 2 on a COCO-style detection set with the plugin's components (farslip train example_coco_stage2):
# global ITC + 0.5 x region-text ITC with a learnable temperature, region features from RoIAlign over the
# KK dense map through a learnable projection.
# Run:  farslip train example_coco_stage2 --cfg-options data.train.ann_file=<coco>/annotations.json
model = dict(name="farslip-example-tiny", pretrained=None)
task = dict(
    type="FarSLIPTask",
    dense_attn="KK",
    region_head=dict(type="ProjectedRoIHead", embed_dim=24),
    losses=dict(
        global_itc=dict(type="GlobalITCLoss", weight=1.0),
        region=dict(type="TemperatureRegionITCLoss", weight=0.5),
    ),
)
data = dict(
    train=dict(type="CocoDetectionDataset", ann_file="data/coco/annotations.json", max_boxes=4, min_size=8,
               image_size=64),
    batch_size=8,
    num_workers=0,
    pin_memory=False,
)
optim = dict(lr=1e-3, weight_decay=0.1, impl="foreach", component_lr=1e-2)
schedule = dict(epochs=1, warmup_steps=2)
train = dict(work_dir="work_dirs/example_coco_stage2", device="auto", precision="fp32", seed=0, log_every=1,
             progress=False)
