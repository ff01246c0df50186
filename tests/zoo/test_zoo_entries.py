"""Every zoo entry's metadata against the architecture open_clip builds for it, and every row of the three
published tables either reproduced by a zoo model or listed with the reason it cannot be."""
from __future__ import annotations

import re

import open_clip
import pytest

import farslip_ext
from farslip_ext.catalogue import CATALOGUE, load_pretrained_manifest
from farslip_ext.evaluation.zoo import TASK_FAMILIES, parse_model_spec, paper_rows, zoo
from farslip_ext.published import TASK_TABLES, iter_rows, load_published_results, rows_without_weights

ZOO = zoo()
MANIFEST = load_pretrained_manifest()
ENTRIES = [(a, t) for a, tags in MANIFEST.items() for t in tags]

# vision tower of each backbone label (patch size, width), as the CLIP papers define them
BACKBONES = {"B/32": (32, 768), "B/16": (16, 768), "L/14": (14, 1024), "H/14": (14, 1280)}


def _cfg(arch):
    cfg = open_clip.get_model_config(arch)
    assert cfg is not None, f"{arch} is not an open_clip architecture"
    return cfg


@pytest.mark.parametrize("arch,tag", ENTRIES)
def test_catalogue_entry_matches_its_architecture(arch, tag):
    e = CATALOGUE.entry(arch, tag)
    cfg = _cfg(arch)
    assert bool(cfg.get("quick_gelu", False)) == e.quick_gelu, "QuickGELU of the entry and the architecture differ"
    if e.context_length is not None:
        assert cfg["text_cfg"].get("context_length", 77) == e.context_length
    pcfg = open_clip.get_pretrained_cfg(arch, tag)  # the tag is known to stock open_clip
    assert pcfg and pcfg["quick_gelu"] == e.quick_gelu
    assert e.license and e.license != "unknown"
    if e.sha256 is not None:
        assert re.fullmatch(r"[0-9a-f]{64}", e.sha256)
    if e.kind == "hf":
        assert re.fullmatch(r"[\w.-]+/[\w.-]+", e.hf_hub_id) and e.hf_hub_filename.endswith(".pt")
        assert e.revision == "main" or re.fullmatch(r"[0-9a-f]{40}", e.revision)
    elif e.kind == "url":
        assert e.url.startswith("https://")
        if e.archive_member:
            assert e.url.endswith(".zip") and ".." not in e.archive_member.split("/")
            assert not e.archive_member.startswith("/")
    elif e.kind == "manual":
        assert "https://" in e.manual  # says where to ask
    if e.kind in ("hf", "url", "manual"):
        assert e.source.startswith("https://") and e.paper.startswith("arXiv:")


@pytest.mark.parametrize("alias", sorted(ZOO))
def test_zoo_alias_metadata(alias):
    m = ZOO[alias]
    cfg = _cfg(m.arch)
    assert bool(cfg.get("quick_gelu", False)) == m.quick_gelu
    assert cfg["text_cfg"].get("context_length", 77) == m.context_length
    v = cfg["vision_cfg"]
    assert (v["patch_size"], v["width"]) == BACKBONES[m.backbone], "backbone label and vision tower differ"
    assert m.tag in open_clip.list_pretrained_tags_by_model(m.arch)
    assert m.license and m.source.startswith("https://")
    if m.stock:  # open_clip's own tag; its cfg says QuickGELU as the zoo does
        assert open_clip.get_pretrained_cfg(m.arch, m.tag)["quick_gelu"] is True
        assert CATALOGUE.find(m.arch, m.tag) is None  # not shadowed by a catalogue entry
    data = load_published_results()
    for task in TASK_FAMILIES:
        if m.paper[task]:
            assert m.paper[task] in data[TASK_TABLES[task]][m.backbone], (task, m.paper[task])
    assert parse_model_spec(alias).alias == alias


def test_the_issue_list_of_baselines_is_covered_with_the_right_text_context():
    want = {  # alias: (arch, tag, context, quick_gelu), from the projects' READMEs / model configs
        "clip-vitb32": ("ViT-B-32-quickgelu", "openai", 77, True),
        "clip-vitb16": ("ViT-B-16-quickgelu", "openai", 77, True),
        "metaclip-vitb32": ("ViT-B-32-quickgelu", "metaclip_fullcc", 77, True),
        "metaclip-vitb16": ("ViT-B-16-quickgelu", "metaclip_fullcc", 77, True),
        "remoteclip-vitb32": ("ViT-B-32", "remoteclip", 77, False),
        "remoteclip-vitl14": ("ViT-L-14", "remoteclip", 77, False),
        "georsclip-vitb32": ("ViT-B-32", "georsclip", 77, False),
        "georsclip-vitl14": ("ViT-L-14", "georsclip", 77, False),
        "georsclip-vith14": ("ViT-H-14", "georsclip", 77, False),
        "skyclip-vitb32": ("ViT-B-32", "skyclip_top50pct", 77, False),
        "skyclip-vitl14": ("ViT-L-14-quickgelu", "skyclip_top50pct", 77, True),
        "lrsclip-vitb16": ("farslip-vitb16-longclip", "lrsclip", 248, True),
        "farslip1-vitb32": ("farslip-vitb32", "s1", 77, True),
        "farslip2-vitb32": ("farslip-vitb32-ctx248", "s2", 248, True),
        "farslip1-vitb16": ("farslip-vitb16-ctx77", "s1", 77, True),
        "farslip2-vitb16": ("farslip-vitb16", "s2", 248, True),
        "farslip2vc-vitb32": ("farslip-vitb32-vc", "s2", 77, True),
        "farslip2vc-vitb16": ("farslip-vitb16-vc", "s2", 77, True),
    }
    got = {a: (m.arch, m.tag, m.context_length, m.quick_gelu) for a, m in ZOO.items()}
    assert got == want
    assert {a: ZOO[a].kind for a in ("remoteclip-vitb32", "skyclip-vitb32", "farslip2vc-vitb16", "clip-vitb16")} == \
        {"remoteclip-vitb32": "hf", "skyclip-vitb32": "url", "farslip2vc-vitb16": "manual", "clip-vitb16": "stock"}
    # the RemoteCLIP files are pinned to the Hub revision whose LFS oids are their sha256
    e = CATALOGUE.entry("ViT-B-32", "remoteclip")
    assert e.revision == "bf1d8a3ccf2ddbf7c875705e46373bfe542bce38"
    assert e.sha256 == "60014e395d930a3f2963d1d89c8522bf4ad56775571e4356e866864789af85c4"
    assert CATALOGUE.entry("ViT-B-32", "georsclip").hf_hub_filename == "ckpt/RS5M_ViT-B-32.pt"


def test_every_published_row_is_reproduced_or_explained():
    covered = {(TASK_TABLES[t], m.backbone, m.paper[t]) for m in ZOO.values() for t in TASK_FAMILIES if m.paper[t]}
    missing = rows_without_weights()
    for row, numbers in iter_rows():
        key = f"{row.backbone}:{row.method}"
        assert (row.table, row.backbone, row.method) in covered or key in missing, (row, "no model and no reason")
        assert numbers, row
    for key in missing:  # the explanations name real rows, and no row is both
        bb, method = key.split(":", 1)
        assert any(r.backbone == bb and r.method == method for r, _ in iter_rows())
        assert not any((t, bb, method) in covered for t in TASK_TABLES.values())


def test_specs_find_their_paper_rows():
    rows = paper_rows(parse_model_spec("farslip-vitb16:s2"))  # ARCH:TAG of a zoo model
    assert {t: r.label for t, r in rows.items()} == {"ovss": "FarSLIP2 B/16", "zeroshot": "FarSLIP-s2 B/16",
                                                     "retrieval": "FarSLIP-s2 B/16"}
    rows = paper_rows(parse_model_spec("metaclip-vitb32"))  # MetaCLIP is in the OVSS table only
    assert rows["ovss"].label == "MetaCLIP B/32" and rows["zeroshot"] is None and rows["retrieval"] is None
    spec = parse_model_spec("mine=remoteclip-vitb32")
    assert spec.name == "mine" and spec.model == "ViT-B-32" and spec.pretrained == "remoteclip"
    with pytest.raises(farslip_ext.ConfigError, match=r"(?i)did you mean .remoteclip-vitb32."):
        parse_model_spec("remoteclip-vit32")
    with pytest.raises(farslip_ext.ConfigError, match=r"unknown architecture 'ViT-B-33'"):
        parse_model_spec("ViT-B-33:openai")
