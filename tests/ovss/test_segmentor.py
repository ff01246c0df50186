"""FarSLIPSeg / the OVSS core's maths against independent computations (docs/reference/ovss-evaluation.md §1.5, §1.6, §2.2).

The expected values come from explicit loops: the docs/reference/ovss-evaluation.md §1.6 window formula written out, per-window
``dense_forward`` calls (the #3 backbone, tested in test_dense.py), numpy bilinear resizes, a numpy
softmax and per-class loops for the synonym max-merge, the threshold and the background index.
"""
from __future__ import annotations

import numpy as np
import open_clip
import pytest
import torch

import farslip_ext

from farslip_ext.models import dense_forward
from tests.helpers.ovss_fixtures import blocky_image, np_resize_bilinear, tiny_checkpoint

MEAN = np.array([122.771, 116.746, 104.094])  # RS-OVSS's constants (docs/reference/ovss-evaluation.md §2.2)
STD = np.array([68.501, 66.632, 70.323])
LINES = ["grass,lawn", "road", "building,roof,house", "water"]


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    return tiny_checkpoint(tmp_path_factory.mktemp("ovss-ckpt") / "tiny.pt", seed=3)


@pytest.fixture(scope="module")
def ref_model(ckpt):
    """An independently built copy of the checkpoint's model and tokenizer (not via farslip_ext.segmentation)."""
    m = open_clip.create_model("farslip-test-tiny")
    m.load_state_dict(torch.load(ckpt, weights_only=True))
    return m.eval(), open_clip.get_tokenizer("farslip-test-tiny")


def _seg(ckpt, **kw):
    from farslip_ext.segmentation import FarSLIPSeg

    args = dict(clip=str(ckpt), class_names=LINES, slide_crop=64, slide_stride=32, device="cpu")
    args.update(kw)
    return FarSLIPSeg(**args)


def _image(h, w, seed):
    rgb = blocky_image(h, w, np.random.default_rng(seed)).astype(np.float64)
    return torch.from_numpy(((rgb - MEAN) / STD).transpose(2, 0, 1)).float()


_TEXT = {}


def _text(ref_model, names):
    key = (id(ref_model[0]), tuple(names))
    if key not in _TEXT:
        _TEXT[key] = _text_uncached(ref_model, names)
    return _TEXT[key]


def _text_uncached(ref_model, names, templates=open_clip.OPENAI_IMAGENET_TEMPLATES):
    """Per name: the mean of the unit prompt embeddings, renormalised (templates: callables or '{c}' strings)."""
    model, tok = ref_model
    rows = []
    with torch.no_grad():
        for n in names:
            e = model.encode_text(tok([t(n) if callable(t) else t.replace("{c}", n) for t in templates])).double()
            e = e / e.norm(dim=-1, keepdim=True)
            m = e.mean(0)
            rows.append((m / m.norm()).numpy())
    return np.stack(rows)


def _expected(ref_model, img, *, lam=0.0, thd=0.0, bg=0, ori=None, mode="resize", crop=64, stride=32, scale=50.0):
    """The docs/reference/ovss-evaluation.md §1.1 pipeline with loops: windows, per-window logits, canvas/count, resize, softmax, merge, threshold."""
    names, owner = [], []
    for ci, line in enumerate(LINES):
        for n in line.split(","):
            names.append(n.strip())
            owner.append(ci)
    T = _text(ref_model, names)
    model = ref_model[0]
    _, H, W = img.shape
    Q = len(names)
    canvas, count = np.zeros((Q, H, W)), np.zeros((H, W))
    hg = max(H - crop + stride - 1, 0) // stride + 1
    wg = max(W - crop + stride - 1, 0) // stride + 1
    for i in range(hg):
        for j in range(wg):
            y1, x1 = i * stride, j * stride
            y2, x2 = min(y1 + crop, H), min(x1 + crop, W)
            y1, x1 = max(y2 - crop, 0), max(x2 - crop, 0)
            win = img[:, y1:y2, x1:x2].numpy().astype(np.float64)
            h, w = win.shape[1:]
            ph, pw = (16 - h % 16) % 16, (16 - w % 16) % 16
            t, l = ph // 2, pw // 2
            padded = np.zeros((3, h + ph, w + pw))
            padded[:, t:t + h, l:l + w] = win
            run = np_resize_bilinear(padded, 64, 64) if mode == "resize" else padded
            with torch.no_grad():
                out = dense_forward(model, torch.from_numpy(run[None]).float(), "SegEarth", return_image_embed=False)
            P = out.patch_tokens[0].double().numpy()
            P = P / np.linalg.norm(P, axis=1, keepdims=True)
            c = out.cls_token[0].double().numpy()
            c = c / np.linalg.norm(c)
            logits = P @ T.T + lam * (c @ T.T)[None, :]
            gh, gw = run.shape[1] // 16, run.shape[2] // 16
            grid = logits.T.reshape(Q, gh, gw)
            up = np_resize_bilinear(grid, padded.shape[1], padded.shape[2])[:, t:t + h, l:l + w]
            canvas[:, y1:y2, x1:x2] += up
            count[y1:y2, x1:x2] += 1
    avg = canvas / count[None]
    ori = ori or (H, W)
    res = np_resize_bilinear(avg, *ori)
    z = res * scale
    z = np.exp(z - z.max(axis=0, keepdims=True))
    probs = z / z.sum(axis=0, keepdims=True)
    merged = np.zeros((len(LINES),) + ori)
    for cidx in range(len(LINES)):
        merged[cidx] = np.max(np.stack([probs[q] for q in range(Q) if owner[q] == cidx]), axis=0)
    pred = merged.argmax(axis=0)
    top = merged.max(axis=0)
    pred = np.where(top < thd, bg, pred)
    return merged, pred


def _compare(ds, merged, pred, thd=None):
    probs = ds.seg_logits.data.numpy()
    got = ds.pred_sem_seg.data[0].numpy()
    np.testing.assert_allclose(probs, merged, atol=2e-4)
    srt = np.sort(merged, axis=0)
    clear = (srt[-1] - srt[-2]) > 1e-3
    if thd is not None:
        clear &= np.abs(srt[-1] - thd) > 1e-3
    assert clear.mean() > 0.9
    assert np.array_equal(got[clear], pred[clear])
    return got


@pytest.mark.parametrize("mode", ["resize", "native"])
def test_predict_matches_independent_loop(ckpt, ref_model, mode):
    """Two images of different sizes in one batch (list input): 72x96 (4 full windows) and 40x88 (two
    40x64 windows, zero-padded to 48 rows; resized to 64x64 in 'resize' mode), each resized back to its
    own ori_shape."""
    from mmseg.structures import SegDataSample

    seg = _seg(ckpt, window_mode=mode)
    a, b = _image(72, 96, 0), _image(40, 88, 1)
    samples = [SegDataSample(metainfo=dict(ori_shape=(50, 70), img_shape=(72, 96))),
               SegDataSample(metainfo=dict(ori_shape=(40, 88), img_shape=(40, 88)))]
    out = seg.predict([a.clone(), b.clone()], samples)
    for ds, img, ori in zip(out, (a, b), ((50, 70), (40, 88))):
        merged, pred = _expected(ref_model, img, ori=ori, mode=mode)
        assert tuple(ds.pred_sem_seg.data.shape) == (1,) + ori
        got = _compare(ds, merged, pred)
    assert len(np.unique(got)) > 1  # the tiny model gives spatially varying output


def test_cls_bias_threshold_and_background(ckpt, ref_model):
    img = _image(72, 96, 2)
    merged0, _ = _expected(ref_model, img, lam=-0.3)
    thd = float(np.median(merged0.max(axis=0)))  # half the pixels fall below: background must show up
    seg = _seg(ckpt, cls_token_lambda=-0.3, prob_thd=thd, bg_idx=3)
    merged, pred = _expected(ref_model, img, lam=-0.3, thd=thd, bg=3)
    ds = seg.predict(img[None].clone())[0]
    got = _compare(ds, merged, pred, thd=thd)
    assert (got == 3).mean() > 0.3
    # the CLS term is a per-window constant shift per name: it changes the result
    plain = _seg(ckpt).predict(img[None].clone())[0].seg_logits.data.numpy()
    assert not np.allclose(plain, merged, atol=1e-3)


def test_window_logits_cls_term(ckpt, ref_model):
    seg = _seg(ckpt, cls_token_lambda=0.7)
    x = _image(64, 64, 4)[None]
    got = seg.ovss.window_logits(x)[0].numpy()
    T = _text(ref_model, [n for line in LINES for n in line.split(",")])
    with torch.no_grad():
        out = dense_forward(ref_model[0], x, "SegEarth", return_image_embed=False)
    P = out.patch_tokens[0].double().numpy()
    c = out.cls_token[0].double().numpy()
    exp = (P / np.linalg.norm(P, axis=1, keepdims=True)) @ T.T + 0.7 * (c / np.linalg.norm(c)) @ T.T
    np.testing.assert_allclose(got, exp.T.reshape(-1, 4, 4), atol=1e-5)
    np.testing.assert_allclose(seg.query_features.numpy(), T, atol=1e-5)


def test_postprocess_synonym_merge_threshold_by_hand(ckpt):
    seg = _seg(ckpt, prob_thd=0.5, bg_idx=1, logit_scale=1.0)
    # queries: grass, lawn | road | building, roof, house | water  (query_idx 0 0 1 2 2 2 3)
    assert seg.query_idx.tolist() == [0, 0, 1, 2, 2, 2, 3]
    logits = torch.zeros(7, 1, 3)
    logits[:, 0, 0] = torch.tensor([0.0, 3.0, 0, 0, 0, 0, 0])  # lawn dominates -> class 0, p = e^3/(e^3+6)
    logits[:, 0, 1] = torch.tensor([0.0, 0, 0, 1.0, 1.0, 1.0, 0])  # three equal building synonyms: max, not sum
    probs, pred = seg.postprocess_logits(logits)
    e3 = np.exp(3.0)
    assert probs[0, 0, 0].item() == pytest.approx(e3 / (e3 + 6))
    e1 = np.e
    assert probs[2, 0, 1].item() == pytest.approx(e1 / (3 * e1 + 4))  # < 0.5 -> background (1)
    assert probs[0, 0, 2].item() == pytest.approx(1 / 7)  # all equal -> every class 1/7 -> background
    assert pred[0, 0].tolist() == [0, 1, 1]
    # random logits against explicit per-class loops
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(7, 5, 6, generator=g)
    probs, pred = seg.postprocess_logits(logits)
    z = np.exp(logits.double().numpy())
    p = z / z.sum(0, keepdims=True)
    for c, qs in enumerate([[0, 1], [2], [3, 4, 5], [6]]):
        np.testing.assert_allclose(probs[c].numpy(), np.max(p[qs], axis=0), atol=1e-6)
    m = np.stack([np.max(p[qs], axis=0) for qs in [[0, 1], [2], [3, 4, 5], [6]]])
    exp = np.where(m.max(0) < 0.5, 1, m.argmax(0))
    assert np.array_equal(pred[0].numpy(), exp)


def test_windows_formula_and_batching(ckpt, monkeypatch):
    from farslip_ext.ovss import predictor as P
    from farslip_ext.ovss import windows as S

    # hand-worked: 72x96, crop 64, stride 32 -> 2x2 windows, the second row snapped to rows 8..72
    assert S.slide_windows(72, 96, 64, 32) == [(0, 64, 0, 64), (0, 64, 32, 96), (8, 72, 0, 64), (8, 72, 32, 96)]
    assert S.slide_windows(40, 88, 64, 32) == [(0, 40, 0, 64), (0, 40, 24, 88)]
    assert S.slide_windows(448, 448, 224, 112) == [(y, y + 224, x, x + 224) for y in (0, 112, 224) for x in (0, 112, 224)]
    calls = []
    real = P.dense_forward

    def spy(model, images, *a, **k):
        calls.append(tuple(images.shape))
        return real(model, images, *a, **k)

    monkeypatch.setattr(P, "dense_forward", spy)
    a, b = _image(72, 96, 0), _image(40, 88, 1)
    seg = _seg(ckpt)
    joint = seg.predict([a, b])
    assert calls == [(6, 3, 64, 64)]  # all six windows of both images in one forward
    calls.clear()
    single = [seg.predict(a[None])[0], seg.predict(b[None])[0]]
    for j, s in zip(joint, single):
        torch.testing.assert_close(j.seg_logits.data, s.seg_logits.data, atol=1e-5, rtol=0)
    calls.clear()
    _seg(ckpt, window_batch_size=4).predict([a, b])
    assert calls == [(4, 3, 64, 64), (2, 3, 64, 64)]  # an image's windows stay together
    calls.clear()
    _seg(ckpt, window_mode="native").predict([a, b])
    assert sorted(calls) == [(2, 3, 48, 64), (4, 3, 64, 64)]  # grouped by window size


def test_whole_image_mode_forward_modes_and_loss(ckpt):
    seg = _seg(ckpt, slide_crop=0)
    x = _image(48, 80, 5)[None]
    logits = seg._forward(x)
    assert logits.shape == (1, 7, 48, 80)
    torch.testing.assert_close(logits, seg.encode_decode(x), atol=1e-5, rtol=0)  # one window = the image
    native = _seg(ckpt, slide_crop=0, window_mode="native")
    assert native.encode_decode(x).shape == (1, 7, 48, 80)
    feats, cls = seg.extract_feat(x)
    assert feats.shape == (1, 32, 3, 5) and cls.shape == (1, 32)
    torch.testing.assert_close(feats.norm(dim=1), torch.ones(1, 3, 5))
    with pytest.raises(NotImplementedError, match="training-free"):
        seg.loss(x, [])


def test_in_model_resize_follows_mmcv(ckpt):
    import mmcv

    from farslip_ext.ovss.windows import rescale_long_side as _rescale_long_side

    for h, w in [(48, 64), (50, 70), (1080, 1280), (300, 300)]:
        nw, nh = mmcv.rescale_size((w, h), (448, 448))
        assert _rescale_long_side(h, w, 448) == (nh, nw)
    seg = _seg(ckpt, resize_long_side=96)
    ds = seg.predict(_image(48, 64, 6)[None])[0]
    assert tuple(ds.pred_sem_seg.data.shape) == (1, 48, 64)  # back at the input's original size


def test_preprocessor_mixed_sizes_and_stats(ckpt):
    from mmseg.structures import SegDataSample

    seg = _seg(ckpt)
    pp = seg.data_preprocessor
    a = torch.randint(0, 256, (3, 8, 10), dtype=torch.uint8)  # BGR, as cv2 loads it
    b = torch.randint(0, 256, (3, 6, 10), dtype=torch.uint8)
    out = pp(dict(inputs=[a, b], data_samples=[SegDataSample(), SegDataSample()]), False)
    assert isinstance(out["inputs"], list) and [t.shape[-2] for t in out["inputs"]] == [8, 6]
    exp = (a.flip(0).double() - torch.tensor(MEAN)[:, None, None]) / torch.tensor(STD)[:, None, None]
    torch.testing.assert_close(out["inputs"][0].double(), exp, atol=1e-5, rtol=0)
    # bit for bit what the reference's SegDataPreProcessor(mean=[122.771, ...], std=[68.501, ...]) computes
    from mmseg.models.data_preprocessor import SegDataPreProcessor

    ref = SegDataPreProcessor(mean=MEAN.tolist(), std=STD.tolist(), bgr_to_rgb=True)
    want = ref(dict(inputs=[a], data_samples=[SegDataSample()]), False)["inputs"][0]
    assert torch.equal(out["inputs"][0], want)
    out = pp(dict(inputs=[a, a.clone()], data_samples=[SegDataSample(), SegDataSample()]), False)
    assert out["inputs"].shape == (2, 3, 8, 10)


def test_text_embeddings_cached_in_memory_and_on_disk(ckpt, ref_model, farslip_cache, monkeypatch):
    from farslip_ext.ovss import text as text_cache

    text_cache.clear_memory_cache()
    lm = farslip_ext.load(str(ckpt))  # one model shared explicitly by the segmentors below
    seg = _seg(ckpt, clip=lm, class_names=["pond,lake", "forest"])
    files = list((farslip_cache / "text_embeddings").glob("*.pt"))
    assert len(files) == 1
    np.testing.assert_allclose(seg.query_features.numpy(), _text(ref_model, ["pond", "lake", "forest"]), atol=1e-5)

    def boom(*a, **k):
        raise AssertionError("text tower must not run on a cache hit")

    text_cache.clear_memory_cache()  # a new process: only the disk cache is left
    monkeypatch.setattr(text_cache, "compute_text_embeddings", boom)
    again = _seg(ckpt, clip=lm, class_names=["pond,lake", "forest"])
    torch.testing.assert_close(again.query_features, seg.query_features)
    # different weights -> different key -> recomputed (and here: the spy fires)
    w = seg.clip.token_embedding.weight
    orig = w.detach().clone()
    try:
        with torch.no_grad():
            w.add_(0.1)
        with pytest.raises(AssertionError, match="must not run"):
            _seg(ckpt, clip=lm, class_names=["pond,lake", "forest"])
    finally:
        with torch.no_grad():
            w.copy_(orig)


def test_text_cache_keeps_autocast_regimes_apart(ref_model, tmp_path):
    """A bf16-autocast embedding must never be served to an fp32 call (nor the reverse)."""
    from farslip_ext.ovss import text as text_cache

    model, tok = ref_model
    names, templates = ["pond", "forest"], ["a photo of {c}."]
    cache = text_cache.TextEmbeddingCache(cache_dir=tmp_path)
    text_cache.clear_memory_cache()
    fp32 = cache.get(model, tok, names, templates)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low = cache.get(model, tok, names, templates)
        key_low = cache.key(model, tok, names, templates)
    assert key_low != cache.key(model, tok, names, templates)
    assert len(list(tmp_path.glob("*.pt"))) == 2  # two entries, one per regime
    # the bf16 entry holds what bf16 autocast computes, the fp32 entry the fp32 result: they differ
    assert not torch.equal(low, fp32)
    np.testing.assert_allclose(fp32.numpy(), _text_uncached(ref_model, names, templates), atol=1e-5)
    text_cache.clear_memory_cache()
    torch.testing.assert_close(cache.get(model, tok, names, templates), fp32, rtol=0, atol=0)


def test_bf16_autocast_segmentor_encodes_text_in_fp32(ckpt, ref_model, farslip_cache):
    """``precision='amp_bf16'`` (bf16 autocast) changes the image side only: the text is the fp32 text."""
    from farslip_ext.ovss import text as text_cache

    text_cache.clear_memory_cache()
    seg = _seg(ckpt, class_names=["pond,lake", "forest"], precision="amp_bf16")
    np.testing.assert_allclose(seg.query_features.numpy(), _text(ref_model, ["pond", "lake", "forest"]), atol=1e-5)


def test_settings_errors(ckpt):
    with pytest.raises(ValueError, match="precision='fp8' is not a precision; accepted"):
        _seg(ckpt, precision="fp8")
    with pytest.raises(ValueError, match="window_mode='pad'"):
        _seg(ckpt, window_mode="pad")
    with pytest.raises(ValueError, match="slide_stride=96 must be positive and at most slide_crop=64"):
        _seg(ckpt, slide_stride=96)
    with pytest.raises(ValueError, match="bg_idx=4 is not a class index"):
        _seg(ckpt, bg_idx=4)
    with pytest.raises(ValueError, match="unknown OpenCLIP model 'farslip-vitb61'.*did you mean"):
        _seg(ckpt, clip=dict(model="farslip-vitb61", pretrained="s2"))
    with pytest.raises(ValueError, match="pass class_names or name_path"):
        _seg(ckpt, name_path=["a"])
    with pytest.raises(KeyError, match="unknown prompt templates 'imagenet80'"):
        _seg(ckpt, templates="imagenet80")


def test_explicit_device_is_kept_and_model_is_shared(ckpt):
    seg = _seg(ckpt)
    assert seg.to(torch.device("cuda", 0)) is seg  # Runner-style move: an explicit device='cpu' wins
    assert seg.device.type == "cpu" and next(seg.clip.parameters()).device.type == "cpu"
    lm = farslip_ext.load(str(ckpt))
    assert _seg(ckpt, clip=lm).clip is _seg(ckpt, clip=lm).clip is lm.model  # shared explicitly
    assert _seg(ckpt).clip is not seg.clip  # no hidden cache: a string source loads its own model
    assert _seg(ckpt, templates=["a photo of {}.", "an aerial image of {c}"]).templates[0]("x") == "a photo of x."


def test_local_dir_model_and_low_precision(ckpt, ref_model, tmp_path):
    """A stock-open_clip ``local-dir:`` folder gives the same segmentation as the checkpoint file; fp16
    weights (the reference's precision, here on a CPU) stay close to fp32."""
    from farslip_ext import export_hub_folder

    folder = export_hub_folder(ref_model[0], tmp_path / "hub", arch="farslip-test-tiny")
    x = _image(72, 96, 8)[None]
    few = dict(templates=["a satellite photo of {c}."])
    ref = _seg(ckpt, **few).predict(x.clone())[0]
    via_dir = _seg(ckpt, clip=f"local-dir:{folder}", **few).predict(x.clone())[0]
    torch.testing.assert_close(via_dir.seg_logits.data, ref.seg_logits.data, atol=1e-5, rtol=0)
    half = _seg(ckpt, precision="fp16", **few)
    assert half.clip.visual.conv1.weight.dtype == torch.float16
    low = half.predict(x.clone())[0]
    assert (low.seg_logits.data - ref.seg_logits.data).abs().max() < 0.1
    assert (low.pred_sem_seg.data == ref.pred_sem_seg.data).float().mean() > 0.9


# ------------------------------------------------------------------------------------ normalisation
def test_normalisation_constants_are_the_references_and_their_size():
    """norm_decimals=3 gives RS-OVSS's constants exactly; the unrounded stats differ by < 1.5e-5 in
    normalised units (measured over every 8-bit value)."""
    from farslip_ext.ovss import normalization_stats

    net = open_clip.create_model("farslip-test-tiny")
    mean, std = normalization_stats(net, 3)
    assert mean == tuple(MEAN) and std == tuple(STD)  # the same Python floats as the literals
    emean, estd = normalization_stats(net, None)
    np.testing.assert_allclose(emean, np.array(open_clip.OPENAI_DATASET_MEAN) * 255, rtol=0, atol=1e-9)
    x = np.arange(256.0)[:, None]
    diff = np.abs((x - np.array(emean)) / np.array(estd) - (x - MEAN) / STD).max()
    assert 1e-5 < diff < 1.5e-5


# ------------------------------------------------------------------------------------------ arrays
def test_segment_array_is_predict_and_resizes_like_mmcv(ckpt):
    """OVSSPredictor.segment on a uint8 RGB array = FarSLIPSeg.predict on the same (normalised) input; with
    resize_long_side the array is resized exactly as mmcv's Resize (cv2 bilinear on uint8) resizes it."""
    import mmcv

    from farslip_ext.ovss import build_predictor

    rgb = blocky_image(50, 70, np.random.default_rng(9))
    few = dict(templates=["a satellite photo of {c}."], text_cache=False)
    seg = _seg(ckpt, **few)
    pred = build_predictor(";".join(LINES), clip=str(ckpt), device="cpu", slide_crop=64, slide_stride=32,
                           resize_long_side=None, **few)
    res = pred.segment(rgb)
    x = torch.from_numpy(((rgb.astype(np.float64) - MEAN) / STD).transpose(2, 0, 1)).float()
    ds = seg.predict(x[None])[0]
    np.testing.assert_allclose(res.probs, ds.seg_logits.data.numpy(), atol=1e-5)
    assert np.array_equal(res.labels, ds.pred_sem_seg.data[0].numpy())
    np.testing.assert_allclose(res.top, ds.seg_logits.data.numpy().max(0), atol=1e-5)

    big = build_predictor(";".join(LINES), clip=str(ckpt), device="cpu", slide_crop=64, slide_stride=32,
                          resize_long_side=96, **few)
    from farslip_ext.ovss.predictor import _cv2_resize

    want = mmcv.imrescale(rgb, (96, 96), interpolation="bilinear")
    assert want.shape == (69, 96, 3) and np.array_equal(_cv2_resize(rgb, 69, 96, nearest=False), want)
    out = big.segment(rgb)
    xr = torch.from_numpy(((want.astype(np.float64) - MEAN) / STD).transpose(2, 0, 1)).float()
    from mmseg.structures import SegDataSample

    ds = seg.predict(xr[None], [SegDataSample(metainfo=dict(ori_shape=(50, 70), img_shape=(69, 96)))])[0]
    assert out.labels.shape == (50, 70)
    np.testing.assert_allclose(out.probs, ds.seg_logits.data.numpy(), atol=1e-5)


# ------------------------------------------------------------------------------- mmseg arguments
def test_mmseg_arguments_and_the_clip_weights_argument(ckpt, tmp_path):
    from farslip_ext.errors import ConfigError

    seg = _seg(ckpt, train_cfg=dict(), test_cfg=dict(mode="slide", crop_size=(48, 48), stride=(24, 24)),
               init_cfg=None, pretrained=None)
    assert seg.slide_crop == (48, 48) and seg.slide_stride == (24, 24)
    assert _seg(ckpt, test_cfg=dict(mode="whole")).slide_crop == (0, 0)
    with pytest.raises(ConfigError, match=r"test_cfg keys \['size_divisor'\] are not supported"):
        _seg(ckpt, test_cfg=dict(mode="slide", size_divisor=32))
    # mmseg's reserved `pretrained` is the CLIP's weights when given, and can never replace them silently
    other = tiny_checkpoint(tmp_path / "other.pt", seed=11)
    via_key = _seg(ckpt, clip=dict(model="farslip-test-tiny"), pretrained=str(other))
    sd = torch.load(other, weights_only=True)
    assert torch.equal(via_key.clip.visual.conv1.weight, sd["visual.conv1.weight"])
    with pytest.raises(ConfigError, match=r"pretrained='s1' and clip.pretrained=.*drop the top-level 'pretrained'"):
        _seg(ckpt, clip=dict(model="farslip-test-tiny", pretrained=str(other)), pretrained="s1")
    with pytest.raises(ConfigError, match=r"clip model 'farslip-test-tiny' has no weights.*pretrained='random'.*"
                                          r"init_model"):
        _seg(ckpt, clip=dict(model="farslip-test-tiny"))
    rnd = _seg(ckpt, clip=dict(model="farslip-test-tiny", pretrained="random"))  # on purpose only
    assert "random weights" in rnd.ovss.model_desc
    assert _seg(ckpt, clip=None, model=str(ckpt)).clip is not None  # the old name of clip=


def test_checkpoints_load_into_the_clip_and_refresh_the_text(ckpt, tmp_path):
    """A segmentor's own state dict, an older FarSLIPSeg's ``clip.*`` keys and a bare CLIP checkpoint in a
    training container (``module.`` prefixes, via mmengine's loader) all end up as the CLIP's weights, and
    the text embeddings follow them."""
    from mmengine.runner import load_checkpoint

    other = tiny_checkpoint(tmp_path / "other.pt", seed=11)
    a, b = _seg(ckpt), _seg(ckpt, clip=str(other))
    assert not torch.equal(a.clip.visual.conv1.weight, b.clip.visual.conv1.weight)
    x = _image(64, 64, 3)[None]
    want = a.predict(x.clone())[0].seg_logits.data
    b.load_state_dict(a.state_dict())
    assert torch.equal(b.clip.visual.conv1.weight, a.clip.visual.conv1.weight)
    torch.testing.assert_close(b.query_features, a.query_features)
    torch.testing.assert_close(b.predict(x.clone())[0].seg_logits.data, want)
    c = _seg(ckpt, clip=str(other))
    c.load_state_dict({f"clip.{k[len('ovss.clip.'):]}": v for k, v in a.state_dict().items()})
    torch.testing.assert_close(c.query_features, a.query_features)
    d = _seg(ckpt, clip=str(other))
    raw = torch.load(ckpt, weights_only=True)
    torch.save({"state_dict": {f"module.{k}": v for k, v in raw.items()}}, tmp_path / "container.pt")
    load_checkpoint(d, str(tmp_path / "container.pt"), map_location="cpu", strict=True)
    assert torch.equal(d.clip.token_embedding.weight, raw["token_embedding.weight"])
    torch.testing.assert_close(d.predict(x.clone())[0].seg_logits.data, want)


def test_predictor_reads_the_patch_size_from_the_tower_adapter_on_a_timm_tower():
    """The segmentor gets the patch size from ``towers.tower_of(visual).patch_size``: a timm trunk (which
    has no ``visual.patch_size``) is segmented without the attribute being added to it."""
    from farslip_ext.ovss import OVSSPredictor
    from tests.helpers import tiny_towers

    tiny_towers.register()
    torch.manual_seed(0)
    net = open_clip.create_model(tiny_towers.FAMILIES["timm_vit"]).eval()
    assert not hasattr(net.visual, "patch_size")
    pred = OVSSPredictor(net, "water;forest;road", tokenizer=open_clip.get_tokenizer("ViT-B-32"), slide_crop=64,
                         slide_stride=32, resize_long_side=None, precision="fp32", device="cpu", templates=["{c}"],
                         text_cache=False, text_progress=False)
    assert pred.patch_size == (16, 16) and not hasattr(net.visual, "patch_size")
    result = pred.segment(np.random.default_rng(0).integers(0, 256, (96, 80, 3), dtype=np.uint8))
    assert result.labels.shape == (96, 80) and set(np.unique(result.labels)) <= {0, 1, 2}
    assert result.probs.shape == (3, 96, 80) and 0 <= result.probs.min() and result.probs.max() <= 1 + 1e-6
