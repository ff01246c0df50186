"""OFFICIAL RS-OVSS segmentation (github.com/NJU-LHRS/RS-OVSS, ``CustomizedSegmentation``) on one image, CPU fp32.

    .venv/bin/python benchmarks/official/rsovss_segment.py --rsovss-repo $OFFICIAL/RS-OVSS \
        [--method FarSLIP2] [--vit ViT-B-16] [--size 448] [--classes 6] [--repeats 3] [--cold-repeats 2]

The child process (the checkout first on ``sys.path``) builds the segmentor the way
``eval_customized.py`` configures it for ``--method FarSLIP2 --vit-type ViT-B-16``:
``MODELS.build(dict(type='CustomizedSegmentation', model_name=..., vit_type=..., name_path=...,
model_type='SegEarth', pretrained=None, long_clip='disable', fqg=False))`` (the method's entry in
``MODEL_CONFIG`` switches on LongCLIP, 248 tokens, and QuickGELU), with the defaults of the class:
224 crop, 112 stride (9 windows on 448×448), SegEarth last block, 80 OpenAI templates per name.
It then runs mmengine's ``test_step`` (data preprocessor + ``predict``) on one random 448×448 image,
as ``Runner.test()`` does per image.

* ``cold``: build the segmentor (model creation, checkpoint load, text features of ``classes`` × 80
  prompts, computed in ``__init__``) + segment the image. ``text_seconds`` is the part spent in
  ``model.encode_text`` (measured by wrapping that method).
* ``warm``: segment the image again with the same segmentor (text features cached in the object).

Two deviations, both outside their files (benchmarks/official/README.md): (1) ``open_clip.create_model``
is wrapped to force ``precision='fp32'`` (they hard-code fp16, which is a GPU setting) and
``is_half`` is set to False after construction; (2) the checkpoint ``checkpoints/<method>_<vit>.pt``
(``MODEL_PATHS``, relative to the working directory) is a plain state dict of random weights of their
own model, written to a temporary working directory (the uninitialised LongCLIP tables, created with
``torch.empty``, are filled with N(0, 0.01) like open_clip's positional init).
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _isolate  # noqa: E402

CLASSES = ["road", "building", "low vegetation", "tree", "car", "clutter"]  # Potsdam, one name per class
MODEL_CONFIG_KEYS = {"long_clip": "disable", "force_quick_gelu": False}


def child(opts) -> None:
    repo = _isolate.enter_checkout(opts.rsovss_repo)
    import torch

    import open_clip
    import customized_segmentor  # registers CustomizedSegmentation in mmseg's MODELS
    from mmseg.registry import MODELS
    from mmseg.structures import SegDataSample

    work = tempfile.mkdtemp(prefix="rsovss-bench-")
    os.chdir(work)  # MODEL_PATHS are relative to the working directory
    names = CLASSES[:opts.classes] if opts.classes <= len(CLASSES) else [f"class {i}" for i in range(opts.classes)]
    name_path = os.path.join(work, "classes.txt")
    with open(name_path, "w") as f:
        f.write("\n".join(names))

    # --- random weights in the place and format the official code loads -----------------------
    cfg = {**MODEL_CONFIG_KEYS, **customized_segmentor.MODEL_CONFIG.get(opts.method, {})}
    ckpt = customized_segmentor.MODEL_PATHS[opts.method][opts.vit]
    os.makedirs(os.path.dirname(ckpt) or ".", exist_ok=True)
    torch.manual_seed(0)
    rnd = open_clip.create_model(opts.vit, pretrained=None, precision="fp32", long_clip=cfg["long_clip"],
                                 force_quick_gelu=cfg["force_quick_gelu"])
    with torch.no_grad():
        for name in ("positional_embedding", "positional_embedding_res"):
            if hasattr(rnd, name):
                torch.nn.init.normal_(getattr(rnd, name), std=0.01)
    torch.save(rnd.state_dict(), ckpt)
    del rnd

    # --- deviation (1): fp32 on CPU; time the text encoder calls made in __init__ --------------
    text_calls: list = []
    create_model = open_clip.create_model

    def create_model_fp32(*args, **kwargs):
        kwargs["precision"] = "fp32"
        model = create_model(*args, **kwargs)
        encode = model.encode_text

        def timed_encode_text(*a, **kw):
            t0 = time.perf_counter()
            out = encode(*a, **kw)
            text_calls.append((time.perf_counter() - t0, tuple(a[0].shape)))
            return out

        model.encode_text = timed_encode_text
        return model

    open_clip.create_model = create_model_fp32

    seg_cfg = dict(type="CustomizedSegmentation", model_name=opts.method, vit_type=opts.vit, name_path=name_path,
                   model_type="SegEarth", pretrained=None, long_clip="disable", fqg=False)

    def build():
        seg = MODELS.build(seg_cfg)
        seg.is_half = False  # deviation (1)
        return seg.eval()

    g = torch.Generator().manual_seed(0)
    image = torch.randint(0, 256, (3, opts.size, opts.size), dtype=torch.uint8, generator=g)
    shape = (opts.size, opts.size)

    def segment(seg):
        data = {"inputs": [image], "data_samples": [SegDataSample(metainfo=dict(
            ori_shape=shape, img_shape=shape, pad_shape=shape, scale_factor=(1.0, 1.0), img_path="random.png"))]}
        with torch.no_grad():
            return seg.test_step(data)

    windows = []
    cold, text, seg = [], [], None
    for _ in range(opts.cold_repeats):
        del seg
        text_calls.clear()
        t0 = time.perf_counter()
        seg = build()
        out = segment(seg)
        cold.append(time.perf_counter() - t0)
        text.append(sum(t for t, _ in text_calls))
    prompts = sum(s[0] for _, s in text_calls)
    context = text_calls[0][1][1]
    forward_feature = seg.forward_feature
    seg.forward_feature = lambda *a, **kw: windows.append(1) or forward_feature(*a, **kw)
    warm = _isolate.timed(lambda: segment(seg), opts.repeats, warmup=0)
    n_windows = len(windows) // max(opts.repeats, 1)
    pred = out[0].pred_sem_seg.data
    common = dict(method=opts.method, vit=opts.vit, image=list(shape), windows=n_windows,
                  crop=seg.slide_crop, stride=seg.slide_stride, model_type=seg.model_type, classes=len(names),
                  templates=prompts // len(names), prompts=prompts, text_context=context, precision="fp32",
                  pred_shape=list(pred.shape), commit=_isolate.checkout_commit(repo),
                  open_clip_file=open_clip.__file__, machine=_isolate.machine())
    _isolate.emit(_isolate.record("official_rsovss_segment_cold", cold,
                                  text_seconds=round(sorted(text)[len(text) // 2], 4), **common))
    _isolate.emit(_isolate.record("official_rsovss_segment_warm", warm, **common))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rsovss-repo", required=True, help="path of an official RS-OVSS checkout")
    p.add_argument("--method", default="FarSLIP2", help="a key of MODEL_PATHS in customized_segmentor.py")
    p.add_argument("--vit", default="ViT-B-16")
    p.add_argument("--size", type=int, default=448, help="image side (448 = the protocol: 9 windows of 224/112)")
    p.add_argument("--classes", type=int, default=6)
    p.add_argument("--repeats", type=int, default=3, help="warm repeats")
    p.add_argument("--cold-repeats", type=int, default=2)
    is_child = _isolate.CHILD_FLAG in sys.argv
    opts = p.parse_args([a for a in sys.argv[1:] if a != _isolate.CHILD_FLAG])
    if is_child:
        return child(opts)
    sys.exit(_isolate.spawn(__file__, sys.argv[1:]))


if __name__ == "__main__":
    main()
