"""One training step of the OFFICIAL FarSLIP code (github.com/NJU-LHRS/FarSLIP), stage 1 and stage 2, CPU fp32.

    .venv/bin/python benchmarks/official/farslip_train_step.py --farslip-repo $OFFICIAL/FarSLIP \
        [--stages 1,2] [--batch 2] [--crops 4] [--repeats 3] [--long-clip disable|load_from_clip]

Each stage runs in its own child process with the checkout first on ``sys.path`` (its vendored
``open_clip/`` and ``open_clip_train/``). The child drives the official
``open_clip_train.train.train_one_epoch`` on a one-batch loader, so one call is exactly one official
training step (forward, loss, backward, AdamW step, logit-scale clamp, the master-rank log line):

* arguments: the official ``open_clip_train/config.py`` ``arg_dict`` (what ``python -m
  open_clip_train.main`` prepends), then the stage's README command line (stage 1: ``--method farslip1
  --use-imagecrop-aug --local-method randomcrops --loss-type global_itc distill --distill-align
  roi2pooled ...``; stage 2: ``--method farslip2 --loss-type global_itc local_itc --local-itc-align cls
  ...``), then this machine's overrides: ``--device cpu --precision fp32 --pretrained '' --batch-size B
  --max-boxes K --long-clip ...``; parsed by the official ``parse_args``;
* model: official ``create_model_and_transforms('ViT-B-16', ...)`` with the args main.py passes
  (random weights), ``load_from_pretrained_short_pe(keep_len=20)`` for ``--long-clip load_from_clip``;
  optimizer: AdamW with main.py's two parameter groups; loss: official ``create_loss(args)`` and, with
  the config's ``--mpcl-loss``, ``MultiPosConLossMM`` as main.py builds it; scheduler: official
  ``cosine_lr``;
* batch in the official collated format: stage 1 ``(list of {"global", "locals", "bboxes"}, captions)``
  (what ``DataAugmentationMulticrop`` + webdataset batching yield), stage 2 the ``JsonDataset`` dict
  (``global_image``, ``global_text``, ``boxes``, ``local_images``, ``local_texts``, ``local_categories``,
  ``--local-method objects``); random images, tokenized captions, all crops valid.

Prints one JSON line per stage: ``{"what": "official_farslip_stage1_step", "seconds": median,
"repeats": n, "peak_rss_mb": ..., ...}`` (after one untimed warm-up step; ``peak_rss_mb`` is the child's
peak resident memory, ``rss_before_steps_mb`` the peak before the first step, as
``benchmarks/train_throughput.py`` reports ours). See benchmarks/official/README.md.
"""
from __future__ import annotations

import argparse
import copy
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _isolate  # noqa: E402

# The stage command lines of the official README ("Training"), minus data paths and torchrun.
README_ARGS = {
    1: ["--train-dataset-name", "RS5M", "--train-dataset-type", "webdataset", "--method", "farslip1",
        "--use-imagecrop-aug", "--local-method", "randomcrops", "--warmup", "1000", "--lr", "1e-6", "--wd", "1.0",
        "--epochs", "1", "--model", "ViT-B-16", "--loss-type", "global_itc", "distill", "--distill-align",
        "roi2pooled"],
    2: ["--train-dataset-name", "MGRS", "--train-dataset-type", "json", "--method", "farslip2", "--warmup", "250",
        "--lr", "4e-9", "--wd", "1.0", "--epochs", "10", "--model", "ViT-B-16", "--loss-type", "global_itc",
        "local_itc", "--local-itc-align", "cls"],
}
CAPTIONS = ["a satellite image of farmland crossed by a river, with a road and a few buildings",
            "an aerial view of a dense residential area with trees and parking lots"]
CATEGORIES = ["building", "road", "tree", "water", "farmland", "car"]


def _argv_from_dict(arg_dict) -> list:
    """The config's flags as a command line (None = a bare flag, list = nargs)."""
    out = []
    for k, v in arg_dict.items():
        if v is None:
            out.append(k)
        elif isinstance(v, list):
            out += [k, *map(str, v)]
        else:
            out.append(f"{k}={v}")
    return out


class _OneBatchLoader:
    """What train_one_epoch reads from ``data['train'].dataloader``: iteration + three counters."""

    def __init__(self, batch, batch_size: int) -> None:
        self.batch, self.batch_size, self.num_batches, self.num_samples = batch, batch_size, 1, batch_size

    def __iter__(self):
        yield self.batch


class _DataInfo:
    def __init__(self, loader) -> None:
        self.dataloader = loader

    def set_epoch(self, epoch: int) -> None:
        pass


def _boxes(g, n: int):
    """``n`` normalised boxes covering 30-70 % of the image (the official RandomResizedCrop scale), valid."""
    import torch

    side = torch.empty(n).uniform_(0.3, 0.7, generator=g).sqrt()
    x1 = torch.rand(n, generator=g) * (1 - side)
    y1 = torch.rand(n, generator=g) * (1 - side)
    return torch.stack([x1, y1, x1 + side, y1 + side, torch.ones(n)], dim=1)


def child(opts) -> None:
    _isolate.enter_checkout(opts.farslip_repo)
    import torch
    from torch import optim

    import open_clip
    from open_clip.loss import MultiPosConLossMM
    from open_clip_train.config import arg_dict
    from open_clip_train.distributed import init_distributed_device
    from open_clip_train.params import parse_args
    from open_clip_train.scheduler import cosine_lr
    from open_clip_train.train import train_one_epoch

    stage, b, k = opts.stage, opts.batch, opts.crops
    argv = _argv_from_dict(arg_dict) + README_ARGS[stage] + [
        "--device", "cpu", "--precision", "fp32", "--pretrained", "", "--batch-size", str(b),
        "--max-boxes", str(k), "--long-clip", opts.long_clip, "--workers", "0", "--report-to", ""]
    args = parse_args(argv)
    device = init_distributed_device(args)
    # main.py sets these before training; no logging backends here.
    args.distill = False
    args.wandb = args.tensorboard = args.save_logs = False

    torch.manual_seed(args.seed)
    model, _, _ = open_clip.create_model_and_transforms(
        args.model, args.pretrained, precision=args.precision, device=device, jit=args.torchscript,
        force_quick_gelu=args.force_quick_gelu, force_custom_text=args.force_custom_text,
        force_patch_dropout=args.force_patch_dropout, force_image_size=args.force_image_size,
        image_mean=args.image_mean, image_std=args.image_std, image_interpolation=args.image_interpolation,
        image_resize_mode=args.image_resize_mode, aug_cfg=args.aug_cfg, pretrained_image=args.pretrained_image,
        output_dict=True, cache_dir=args.cache_dir, long_clip=args.long_clip,
        use_imagecrop_aug=args.use_imagecrop_aug, max_boxes=args.max_boxes, local_method=args.local_method)
    if args.long_clip == "load_from_clip":
        model.load_from_pretrained_short_pe(keep_len=20)
    teacher = None
    if "distill" in args.loss_type and args.distill_type != "active":
        teacher = copy.deepcopy(model)
        for p in teacher.parameters():
            p.requires_grad = False

    # The parameter grouping of open_clip_train/main.py (no decay on gains, biases, logit scale).
    def no_decay(n, p):
        return p.ndim < 2 or "bn" in n or "ln" in n or "bias" in n or "logit_scale" in n

    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    optimizer = optim.AdamW([{"params": [p for n, p in named if no_decay(n, p)], "weight_decay": 0.0},
                             {"params": [p for n, p in named if not no_decay(n, p)], "weight_decay": args.wd}],
                            lr=args.lr, betas=(args.beta1, args.beta2), eps=args.eps)
    scheduler = cosine_lr(optimizer, args.lr, args.warmup, args.epochs)
    loss = open_clip.create_loss(args)
    mpcl = (MultiPosConLossMM(rank=args.rank, world_size=args.world_size, temperature=0.07, w1=1.0, w2=1.0)
            if args.mpcl_loss else None)

    ctx = model.context_length
    tokenizer = open_clip.get_tokenizer(args.model, context_length=ctx)
    size = model.visual.image_size
    size = size[0] if isinstance(size, (tuple, list)) else size
    g = torch.Generator().manual_seed(0)
    captions = tokenizer([CAPTIONS[i % len(CAPTIONS)] for i in range(b)])
    if stage == 1:
        images = [{"global": torch.randn(3, size, size, generator=g),
                   "locals": torch.randn(k, 3, size, size, generator=g), "bboxes": _boxes(g, k)} for _ in range(b)]
        batch = (images, captions)
    else:
        cats = torch.randint(0, len(CATEGORIES), (b, k), generator=g, dtype=torch.int32)
        local_texts = torch.stack([tokenizer([f"a satellite image of {CATEGORIES[c]}" for c in row.tolist()])
                                   for row in cats])
        batch = {"global_image": torch.randn(b, 3, size, size, generator=g), "global_text": captions,
                 "boxes": torch.stack([_boxes(g, k) for _ in range(b)]),
                 "local_images": torch.randn(b, k, 3, size, size, generator=g),
                 "local_texts": local_texts, "local_categories": cats}
    data = {"train": _DataInfo(_OneBatchLoader(batch, b))}

    def step():
        train_one_epoch(model, teacher, args.method, data, loss, mpcl, 0, optimizer, None, scheduler, args)

    rss_before = _isolate.peak_rss_mb()
    seconds = _isolate.timed(step, opts.repeats, warmup=1)
    n_params = sum(p.numel() for p in model.parameters())
    with_grad = sum(p.grad is not None and bool(p.grad.abs().sum() > 0) for p in model.parameters())
    _isolate.emit(_isolate.record(
        f"official_farslip_stage{stage}_step", seconds, method=args.method, loss_type=args.loss_type,
        batch=b, crops=k, image_size=size, context_length=ctx, long_clip=args.long_clip,
        distill_align=args.distill_align, local_itc_align=args.local_itc_align, mpcl_loss=args.mpcl_loss,
        last_attn_type=args.last_attn_type, quick_gelu=args.force_quick_gelu, precision=args.precision,
        params=n_params, tensors_with_nonzero_grad=with_grad, peak_rss_mb=_isolate.peak_rss_mb(),
        rss_before_steps_mb=rss_before, device=str(device), open_clip_file=open_clip.__file__,
        commit=_isolate.checkout_commit(opts.farslip_repo), machine=_isolate.machine()))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--farslip-repo", required=True, help="path of an official FarSLIP checkout")
    p.add_argument("--stages", default="1,2")
    p.add_argument("--stage", type=int, help=argparse.SUPPRESS)
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--crops", type=int, default=4, help="random crops (stage 1) / object crops (stage 2) per image")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--long-clip", default="disable", choices=["disable", "load_from_clip"],
                   help="official config.py default 'disable' (77 tokens); 'load_from_clip' = 248-token LongCLIP")
    is_child = _isolate.CHILD_FLAG in sys.argv
    opts = p.parse_args([a for a in sys.argv[1:] if a != _isolate.CHILD_FLAG])
    if is_child:
        return child(opts)
    rc = 0
    for stage in [int(s) for s in opts.stages.split(",")]:
        rc |= _isolate.spawn(__file__, ["--farslip-repo", opts.farslip_repo, "--stage", str(stage),
                                        "--batch", str(opts.batch), "--crops", str(opts.crops),
                                        "--repeats", str(opts.repeats), "--long-clip", opts.long_clip])
    sys.exit(rc)


if __name__ == "__main__":
    main()
