"""The evaluators encode text trimmed to the real prompt lengths: the results equal open_clip's padded
encoding within 1e-5 (77- and 248-token towers), the trimming really happens, and the text progress bar
shows only on a terminal."""
from __future__ import annotations

import sys

import open_clip
import pytest
import torch
import torch.nn.functional as F

import farslip_ext
import farslip_ext.evaluation as ev
from farslip_ext.evaluation.zeroshot import text_progress
from tests.helpers.checkpoints import random_state_dict

CLASSES = ["dense residential area", "river", "baseball field", "parking lot", "bare land"]
LONG = ("a satellite image of a dense residential block next to a winding river with two bridges, a baseball field, "
        "a large parking lot full of cars, farmland to the north and a railway line crossing the scene from east to "
        "west, with scattered trees and a small lake near a school and several industrial buildings")


def _model(arch: str, seed: int):
    lm = farslip_ext.load(arch)
    lm.model.load_state_dict(random_state_dict(arch, seed=seed))
    return lm


def _seen_lengths(model):
    lengths = []
    model.transformer.register_forward_pre_hook(lambda m, args, kw: lengths.append(args[0].shape[1]), with_kwargs=True)
    return lengths


@pytest.mark.parametrize("arch", ["farslip-test-tiny", "farslip-test-tiny-long"])
@pytest.mark.parametrize("templates", ["farslip", "openai"])
def test_classifier_equals_open_clip_padded(arch, templates):
    lm = _model(arch, seed=3)
    tset = ev.build_templates(templates).for_dataset("aid")
    with torch.no_grad():
        padded = open_clip.build_zero_shot_classifier(lm.model, lm.tokenizer, CLASSES, tset, num_classes_per_batch=2,
                                                      use_tqdm=False)
    lengths = _seen_lengths(lm.model)
    trimmed = ev.build_classifier(lm.model, lm.tokenizer, CLASSES, tset, batch_size=64, progress=False)
    assert trimmed.shape == padded.shape
    assert (trimmed - padded).abs().max() < 1e-5
    assert lengths and max(lengths) < lm.context_length // 2  # the padded path runs the full context


@pytest.mark.parametrize("arch", ["farslip-test-tiny", "farslip-test-tiny-long"])
def test_retrieval_text_embeddings_equal_padded(arch):
    lm = _model(arch, seed=4)
    captions = ["a satellite image. " + c for c in CLASSES] + [LONG, "river", LONG + ", seen again from the south: " + LONG]
    with torch.no_grad():
        padded = torch.cat([F.normalize(lm.model.encode_text(lm.tokenizer([c])), dim=-1) for c in captions])
    lengths = _seen_lengths(lm.model)
    trimmed = ev.retrieval.encode_texts(lm.model, lm.tokenizer, captions, "cpu", batch_size=3, progress=False)
    assert (trimmed - padded).abs().max() < 1e-5
    real = [(lm.tokenizer([c])[0] != 0).sum().item() for c in captions]
    assert sorted(lengths, reverse=True)[0] == min(max(real), lm.context_length)  # longest chunk first, cut to it
    if lm.context_length == 248:
        assert max(real) > 77  # the long caption really uses the LongCLIP positions


def test_progress_bar_only_on_a_terminal(monkeypatch):
    monkeypatch.setattr(sys.stderr, "isatty", lambda: False)
    assert text_progress(None, "x").keywords["disable"] is True
    assert text_progress(True, "x").keywords["disable"] is True
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    assert text_progress(None, "x").keywords["disable"] is False
    assert text_progress(False, "x").keywords["disable"] is True
    bar = text_progress(None, "aid class prompts")(range(3), total=3)
    assert list(bar) == [0, 1, 2] and bar.desc == "aid class prompts"
