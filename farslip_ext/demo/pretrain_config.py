# Pretraining of the demo CLIP (farslip-demo-tiny) from scratch on synthetic image-caption pairs, with the
# project's own training loop (global ITC only, the clip_baseline recipe with from-scratch settings).
# Used by tools/pretrain_demo_clip.py, which writes the pairs table and fills in the paths:
#   python tools/pretrain_demo_clip.py            (regenerates farslip_ext/assets/demo_clip.safetensors)
# lr 5e-4 learns; an earlier test found that 2e-3 collapses this tiny CLIP to chance-level ITC.
model = dict(name="farslip-demo-tiny", pretrained=None, long_clip=None)
task = dict(type="FarSLIPTask", losses=dict(global_itc=dict(type="GlobalITCLoss", loss_weight=1.0)))
data = dict(
    train=dict(type="ImageTextDataset", path="pairs.csv", image_root=None, caption_key="caption",
               transform=dict(type="SquashTransform", image_size=96)),
    batch_size=64,
    num_workers=0,
    pin_memory=False,
)
optim = dict(lr=5e-4, weight_decay=0.1, betas=(0.9, 0.98), eps=1e-6)
schedule = dict(epochs=1, warmup_steps=40, max_steps=500)
train = dict(work_dir="outputs/pretrain_demo_clip/train", device="cpu", precision="fp32", seed=0, log_every=20,
             save_every_steps=100000, resume="none", progress=True)
