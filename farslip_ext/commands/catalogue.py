"""``farslip list``, ``farslip convert``, ``farslip export``: the model catalogue and weight files."""
from __future__ import annotations

import argparse
import json


def _list(args: argparse.Namespace) -> int:
    import farslip_ext
    from farslip_ext.registry import ALL_REGISTRIES

    print(json.dumps({
        "models": farslip_ext.list_models(),
        "pretrained": [f"{a}:{t}" for a, t in farslip_ext.list_pretrained()],
        "registries": {k: r.names() for k, r in ALL_REGISTRIES.items()},
    }, indent=2))
    return 0


def _convert(args: argparse.Namespace) -> int:
    from farslip_ext.convert import convert_checkpoint_file

    conv = convert_checkpoint_file(args.src, args.dst, arch=args.arch)
    print(json.dumps({"dst": args.dst, "arch": conv.arch, "context_length": conv.context_length,
                      "notes": conv.notes}, indent=2))
    return 0


def _export(args: argparse.Namespace) -> int:
    import farslip_ext

    model = farslip_ext.create_model(args.model, pretrained=args.pretrained)
    entry = farslip_ext.registered_pretrained().get(args.model, {}).get((args.pretrained or "").lower())
    out = farslip_ext.export_hub_folder(
        model, args.out, arch=args.model,
        license=entry.license if entry else args.license,
        source=f"{entry.source}/{entry.hf_hub_filename}" if entry else (args.pretrained or "random init"),
    )
    print(json.dumps({"out": str(out)}))
    return 0


def register(sub) -> None:
    s = sub.add_parser("list", help="registered models, pretrained tags and components")
    s.set_defaults(func=_list)

    s = sub.add_parser("convert", help="convert any FarSLIP checkpoint to an open_clip safetensors file")
    s.add_argument("src")
    s.add_argument("dst")
    s.add_argument("--arch", default=None, help="architecture (default: inferred from the tensors)")
    s.set_defaults(func=_convert)

    s = sub.add_parser("export", help="write an open_clip Hub folder (local-dir:/hf-hub:) for stock open_clip")
    s.add_argument("model")
    s.add_argument("out")
    s.add_argument("--pretrained", default=None)
    s.add_argument("--license", default="mit")
    s.set_defaults(func=_export)
