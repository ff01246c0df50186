"""Trimmed text encoding (farslip_ext.models.text) against open_clip's padded ``model.encode_text``.

Every expectation is the padded ``model.encode_text`` of the same model and tokens (or lengths computed
here from the tokens), never the code under test.
"""
from __future__ import annotations

import open_clip
import pytest
import torch
from open_clip.model import CLIP, CustomTextCLIP

import farslip_ext  # noqa: F401  (registers farslip-test-tiny / farslip-test-tiny-long)
from farslip_ext.models.longclip import enable_long_clip_training
from farslip_ext.models.text import encode_text, encode_texts_bucketed, text_lengths, trim_unsupported_reason

TINY = {"farslip-test-tiny": 77, "farslip-test-tiny-long": 248}
MIXED = ["a road", "", "x", "a satellite photo of farmland, a river, two bridges and a small town",
         "tree", "a black and white photo of the developed space."]
VISION = dict(image_size=32, layers=1, width=32, head_width=16, patch_size=16)
EOT = 49407


def _tiny(name: str, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return open_clip.create_model(name).eval()


def _tok(name: str, texts):
    return open_clip.get_tokenizer(name)(texts)


def _text_cfg(**kw):
    return dict(dict(context_length=77, width=32, heads=2, layers=2), **kw)


def _close(got: torch.Tensor, ref: torch.Tensor, rel: float = 1e-5) -> None:
    """max |got - ref| <= rel * max |ref| (and same shape/dtype)."""
    assert got.shape == ref.shape and got.dtype == ref.dtype
    scale = ref.abs().max().clamp_min(1e-12)
    assert float((got - ref).abs().max()) <= rel * float(scale), float((got - ref).abs().max() / scale)


@pytest.mark.parametrize("name", sorted(TINY))
@pytest.mark.parametrize("normalize", [False, True])
def test_mixed_lengths_equal_padded(name, normalize):
    model = _tiny(name)
    tokens = _tok(name, MIXED)
    assert tokens.shape == (len(MIXED), TINY[name]) and trim_unsupported_reason(model) is None
    with torch.no_grad():
        _close(encode_text(model, tokens, normalize=normalize), model.encode_text(tokens, normalize=normalize))


@pytest.mark.parametrize("name", sorted(TINY))
def test_one_token_prompts(name):
    model = _tiny(name)
    tokens = _tok(name, ["a", "b", ""])  # [SOT, a, EOT], [SOT, EOT]: at most 3 columns are needed
    assert int((tokens.argmax(-1) + 1).max()) == 3
    assert text_lengths(model, tokens).tolist() == [3, 3, 2]
    with torch.no_grad():
        _close(encode_text(model, tokens), model.encode_text(tokens))


@pytest.mark.parametrize("name", sorted(TINY))
def test_full_length_prompts(name):
    ctx = TINY[name]
    model = _tiny(name)
    tokens = _tok(name, [" ".join(["farmland and a river"] * 80), "a road"])  # first row truncated at ctx
    assert tokens[0, -1] == EOT and int(tokens.argmax(-1).max()) == ctx - 1  # L = ctx: nothing to trim
    with torch.no_grad():
        _close(encode_text(model, tokens), model.encode_text(tokens))


def test_trimming_really_shortens_the_sequence(monkeypatch):
    model = _tiny("farslip-test-tiny-long")
    tokens = _tok("farslip-test-tiny-long", MIXED)
    widths = []
    forward = model.transformer.forward
    monkeypatch.setattr(model.transformer, "forward", lambda x, attn_mask=None: widths.append(
        (x.shape[1], tuple(attn_mask.shape))) or forward(x, attn_mask=attn_mask))
    with torch.no_grad():
        encode_text(model, tokens)
    expected = int((tokens != 0).sum(-1).max())  # last non-pad position + 1 (pad id 0, EOT last)
    assert widths == [(expected, (expected, expected))] and expected < 248


def test_eos_pooling_and_custom_blocks_are_trimmed():
    model = CLIP(32, VISION, _text_cfg(qk_norm=True, pool_type="eos", eos_id=EOT)).eval()
    assert model.text_pool_type == "eos" and trim_unsupported_reason(model) is None
    tokens = _tok("farslip-test-tiny", MIXED)
    with torch.no_grad():
        _close(encode_text(model, tokens), model.encode_text(tokens))


def test_custom_text_clip_with_text_transformer_is_trimmed():
    torch.manual_seed(0)
    model = open_clip.create_model("farslip-test-tiny", force_custom_text=True).eval()
    assert isinstance(model, CustomTextCLIP) and trim_unsupported_reason(model) is None
    tokens = _tok("farslip-test-tiny", MIXED)
    with torch.no_grad():
        _close(encode_text(model, tokens, normalize=True), model.encode_text(tokens, normalize=True))


def _grads(model, run, tokens, weight):
    model.zero_grad(set_to_none=True)
    (run(tokens) * weight).sum().backward()
    return {n: (None if p.grad is None else p.grad.detach().clone()) for n, p in model.named_parameters()}


def _check_grads(model, tokens):
    weight = torch.randn(tokens.shape[0], model.text_projection.shape[1], generator=torch.Generator().manual_seed(3))
    ref = _grads(model, model.encode_text, tokens, weight)
    got = _grads(model, lambda t: encode_text(model, t), tokens, weight)
    assert ref.keys() == got.keys()
    checked = 0
    for name, g_ref in ref.items():
        if g_ref is None:
            assert got[name] is None, name
            continue
        _close(got[name], g_ref)
        checked += 1
    assert checked >= 10
    return ref, got


@pytest.mark.parametrize("name", sorted(TINY))
def test_gradients_equal_padded(name):
    model = _tiny(name).train()
    tokens = _tok(name, MIXED)
    ref, got = _check_grads(model, tokens)
    assert ref["positional_embedding"][int((tokens != 0).sum(-1).max()):].abs().max() == 0  # unseen rows
    assert got["token_embedding.weight"].abs().sum() > 0


@pytest.mark.parametrize("name", sorted(TINY))
def test_longclip_parametrization_forward_gradients_and_frozen_rows(name):
    model = _tiny(name).train()
    enable_long_clip_training(model)  # 77 -> stretched 248 rows, or the 248 table; rows < 20 frozen
    raw = model.parametrizations.positional_embedding.original
    with torch.no_grad():
        raw.add_(0.05 * torch.randn_like(raw))  # "trained" rows differ from the frozen copy
    frozen = model.parametrizations.positional_embedding[0].frozen.clone()
    tokens = _tok("farslip-test-tiny-long", MIXED + [" ".join(["farmland and a river"] * 8)])  # past row 20
    assert 20 < int(tokens.argmax(-1).max()) < 248
    with torch.no_grad():
        _close(encode_text(model, tokens), model.encode_text(tokens))
    ref, got = _check_grads(model, tokens)
    key = "parametrizations.positional_embedding.original"
    assert got[key][:20].abs().max() == 0 and ref[key][:20].abs().max() == 0  # frozen rows: no gradient
    assert got[key][20:].abs().sum() > 0
    opt = torch.optim.SGD(model.parameters(), lr=1.0)
    opt.step()
    assert torch.equal(model.positional_embedding.detach()[:20], frozen)


@pytest.mark.parametrize("name", sorted(TINY))
def test_bf16_autocast_matches_padded_under_the_same_autocast(name):
    model = _tiny(name)
    tokens = _tok(name, MIXED)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        ref = model.encode_text(tokens)
        got = encode_text(model, tokens)
    with torch.no_grad():
        fp32 = model.encode_text(tokens)
    assert ref.dtype == got.dtype == torch.bfloat16
    # bf16 has an 8-bit mantissa: different sequence lengths may round differently by an ulp or so.
    torch.testing.assert_close(got, ref, rtol=1.6e-2, atol=1.6e-2)
    # and trimming moves the result much less than bf16 itself does
    assert (got.float() - ref.float()).abs().mean() <= (ref.float() - fp32).abs().mean()


def test_bucketed_restores_order_and_trims_each_chunk(monkeypatch):
    name = "farslip-test-tiny-long"
    model = _tiny(name)
    texts = [t.format(c) for c in ("road", "developed space", "agricultural land") for t in
             ("a photo of a {}.", "{}", "a black and white photo of the {} seen from far above.", "itap of a {}.")]
    perm = torch.randperm(len(texts), generator=torch.Generator().manual_seed(0)).tolist()
    tokens = _tok(name, [texts[i] for i in perm])
    with torch.no_grad():
        ref = model.encode_text(tokens, normalize=True)
    widths = []
    forward = model.transformer.forward
    monkeypatch.setattr(model.transformer, "forward", lambda x, attn_mask=None: widths.append(x.shape[1])
                        or forward(x, attn_mask=attn_mask))
    seen = []
    got = encode_texts_bucketed(model, tokens, batch_size=5, normalize=True,
                                progress=lambda it, total: (seen.append(total), it)[1])
    _close(got, ref)
    lengths = sorted(((tokens != 0).sum(-1)).tolist(), reverse=True)
    assert widths == [max(lengths[i:i + 5]) for i in range(0, len(lengths), 5)]
    assert seen == [3] and not got.requires_grad


def test_bucketed_untrimmable_model_is_encoded_in_order():
    model = CLIP(32, VISION, _text_cfg(pool_type="first")).eval()
    tokens = _tok("farslip-test-tiny", MIXED)
    with torch.no_grad():
        _close(encode_texts_bucketed(model, tokens, batch_size=4), model.encode_text(tokens))


def _fallback_models():
    sub = type("MyCLIP", (CLIP,), {"encode_text": lambda self, text, normalize=False: CLIP.encode_text(
        self, text, normalize) * 2})

    class Foreign(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = torch.nn.Embedding(49408, 8)

        def encode_text(self, text, normalize=False):
            return self.lin(text).mean(1)

    odd_block = CLIP(32, VISION, _text_cfg())
    blk = odd_block.transformer.resblocks[0]
    blk.__class__ = type("MyBlock", (type(blk),), {})
    swapped_attn = CLIP(32, VISION, _text_cfg())
    attn = swapped_attn.transformer.resblocks[1].attn
    attn.__class__ = type("MyAttention", (type(attn),), {})  # could mix positions: not known
    return {
        "first_pool": CLIP(32, VISION, _text_cfg(pool_type="first")),
        "last_pool": CLIP(32, VISION, _text_cfg(pool_type="last")),
        "no_causal_mask": CLIP(32, VISION, _text_cfg(no_causal_mask=True)),
        "custom_text_last_pool": CustomTextCLIP(32, VISION, _text_cfg(pool_type="last")),
        "custom_text_cls_token": CustomTextCLIP(32, VISION, _text_cfg(embed_cls=True, context_length=76)),
        "subclass_overrides_encode_text": sub(32, VISION, _text_cfg()),
        "foreign_module": Foreign(),
        "unknown_block_class": odd_block,
        "unknown_attention": swapped_attn,
    }


@pytest.mark.parametrize("case", sorted(_fallback_models()))
def test_unsupported_towers_return_exactly_model_encode_text(case, monkeypatch):
    torch.manual_seed(0)
    model = _fallback_models()[case].eval()
    tokens = _tok("farslip-test-tiny", MIXED)
    if case == "custom_text_cls_token":
        tokens = tokens[:, :76]
    assert trim_unsupported_reason(model) is not None
    calls = []
    original = model.encode_text
    monkeypatch.setattr(model, "encode_text", lambda t, normalize=False: calls.append(t.shape) or original(
        t, normalize=normalize))
    with torch.no_grad():
        got = encode_text(model, tokens, normalize=True)
        ref = original(tokens, normalize=True)
    assert calls == [tokens.shape] and torch.equal(got, ref)


def test_trim_false_and_wrong_width_go_to_model_encode_text():
    model = _tiny("farslip-test-tiny")
    tokens = _tok("farslip-test-tiny", MIXED)
    with torch.no_grad():
        assert torch.equal(encode_text(model, tokens, trim=False), model.encode_text(tokens))
    short = tokens[:, :20]  # not what the padded path accepts: the same error, not a silent answer
    with pytest.raises(RuntimeError) as ref_err:
        model.encode_text(short)
    with pytest.raises(RuntimeError) as got_err:
        encode_text(model, short)
    assert str(got_err.value) == str(ref_err.value)
