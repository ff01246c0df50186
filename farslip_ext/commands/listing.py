"""``farslip list``: registered architectures, pretrained tags and components."""
from __future__ import annotations

import argparse
import json


def _list(args: argparse.Namespace) -> int:
    from farslip_ext.catalogue import CATALOGUE
    from farslip_ext.registry import ALL_REGISTRIES

    print(json.dumps({
        "models": CATALOGUE.arch_names(),
        "pretrained": {f"{a}:{t}": e.location for a, tags in CATALOGUE.entries().items() for t, e in tags.items()},
        "registries": {k: r.names() for k, r in ALL_REGISTRIES.items()},
    }, indent=2))
    return 0


def register(sub) -> None:
    s = sub.add_parser("list", help="registered architectures, pretrained tags (with where their files live) and "
                                    "components of every registry")
    s.set_defaults(func=_list)
