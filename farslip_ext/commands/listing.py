"""``farslip list``: registered architectures, pretrained tags and the components of every registry."""
from __future__ import annotations

import argparse
import json
from typing import Any, Dict, List

#: Architectures named ``farslip-test-*`` exist for the test suite (tiny, no released weights).
TEST_PREFIX = "farslip-test-"


def is_test_only(arch: str) -> bool:
    return arch.startswith(TEST_PREFIX)


def catalogue_listing() -> Dict[str, Any]:
    """Everything ``farslip list`` shows, as plain data."""
    import open_clip

    from farslip_ext.catalogue import CATALOGUE
    from farslip_ext.registry import ALL_REGISTRIES

    entries = CATALOGUE.entries()
    archs: List[Dict[str, Any]] = []
    for name in sorted(set(CATALOGUE.arch_names()) | set(entries)):
        # stock open_clip architectures that carry a zoo tag (ViT-B-32:remoteclip) have open_clip's config
        cfg = CATALOGUE.model_config(name) or open_clip.get_model_config(name) or {}
        size = cfg.get("vision_cfg", {}).get("image_size")
        archs.append({
            "name": name,
            "text_context": cfg.get("text_cfg", {}).get("context_length", 77) if cfg else None,
            "image_size": size,
            "tags": sorted(entries.get(name, {})),
            "test_only": is_test_only(name),
        })
    pretrained = [{"name": f"{a}:{t}", "arch": a, "tag": t, "location": e.location, "license": e.license,
                   "stage": e.stage, "test_only": is_test_only(a)}
                  for a, tags in sorted(entries.items()) for t, e in sorted(tags.items())]
    return {"architectures": archs, "pretrained": pretrained,
            "registries": {k: r.names() for k, r in ALL_REGISTRIES.items()}}


def _table(rows: List[List[str]]) -> List[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return ["  " + "  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]


def format_listing(data: Dict[str, Any]) -> str:
    lines = ["Architectures (use with open_clip.create_model / farslip_ext.load):"]
    rows = [["name", "text ctx", "image", "tags"]]
    for a in data["architectures"]:
        tags = ", ".join(a["tags"]) or "-"
        if a["test_only"]:
            tags += "   [test only: tiny, for the test suite]"
        rows.append([a["name"], str(a["text_context"] or "?"), str(a["image_size"] or "?"), tags])
    lines += _table(rows)
    lines += ["", "Pretrained weights (ARCH:TAG, e.g. load('farslip-vitb16', 's2')):"]
    rows = [["name", "licence", "file"]]
    for p in data["pretrained"]:
        rows.append([p["name"], p["license"], p["location"]])
    lines += _table(rows) if len(rows) > 1 else ["  (none)"]
    lines += ["", "Registries (build components with dict(type=NAME, ...)):"]
    for k, names in data["registries"].items():
        lines.append(f"  {k}: {', '.join(names) or '(empty)'}")
    return "\n".join(lines)


def _list(args: argparse.Namespace) -> int:
    data = catalogue_listing()
    print(json.dumps(data, indent=2) if args.json else format_listing(data))
    return 0


def register(sub) -> None:
    s = sub.add_parser("list", help="registered architectures, pretrained tags (and where their files live) and the "
                                    "components of every registry",
                       description="List what farslip_ext registered: architectures (with their text context and "
                                   "tags), pretrained weights (including the packaged farslip-demo-tiny:demo), and "
                                   "the components of every registry. Test-only architectures (farslip-test-*, tiny "
                                   "models for the test suite) are marked as such.")
    s.add_argument("--json", action="store_true", help="print the listing as JSON instead of tables")
    s.set_defaults(func=_list)
