"""``farslip`` command line: ``demo``, ``selfcheck``, ``list``, ``convert``, ``export``."""
from __future__ import annotations

import argparse
import json
import logging
import sys
from typing import List, Optional

__all__ = ["main"]


def _cmd_selfcheck(args: argparse.Namespace) -> int:
    from farslip_ext.selfcheck import run_selfcheck

    result = run_selfcheck(args.model, pretrained=args.pretrained, device=args.device)
    print(json.dumps(result, indent=2))
    return 0


def _cmd_list(args: argparse.Namespace) -> int:
    import farslip_ext
    from farslip_ext.registry import ALL_REGISTRIES

    out = {
        "models": farslip_ext.list_models(),
        "pretrained": [f"{a}:{t}" for a, t in farslip_ext.list_pretrained()],
        "registries": {k: r.names() for k, r in ALL_REGISTRIES.items()},
    }
    print(json.dumps(out, indent=2))
    return 0


def _cmd_convert(args: argparse.Namespace) -> int:
    from farslip_ext.convert import convert_checkpoint_file

    conv = convert_checkpoint_file(args.src, args.dst, arch=args.arch)
    print(json.dumps({"dst": args.dst, "arch": conv.arch, "context_length": conv.context_length,
                      "notes": conv.notes}, indent=2))
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    import farslip_ext

    model = farslip_ext.create_model(args.model, pretrained=args.pretrained)
    entry = farslip_ext.registered_pretrained().get(args.model, {}).get((args.pretrained or "").lower())
    out = farslip_ext.export_hub_folder(
        model, args.out, arch=args.model,
        license=entry.license if entry else args.license,
        source=(entry.source + "/" + entry.hf_hub_filename) if entry else (args.pretrained or "random init"),
    )
    print(json.dumps({"out": str(out)}))
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="farslip", description=__doc__)
    p.add_argument("-v", "--verbose", action="store_true")
    sub = p.add_subparsers(dest="cmd", required=True)

    for name, help_ in (("demo", "the main job on the embedded default (currently: the self-check)"),
                        ("selfcheck", "build a model and run one forward pass on the embedded image")):
        s = sub.add_parser(name, help=help_)
        s.add_argument("--model", default="farslip-vitb16")
        s.add_argument("--pretrained", default=None, help="tag (s1, s2) or checkpoint path; default: random init")
        s.add_argument("--device", default="cpu")
        s.set_defaults(func=_cmd_selfcheck)

    s = sub.add_parser("list", help="registered models, pretrained tags and components")
    s.set_defaults(func=_cmd_list)

    s = sub.add_parser("convert", help="convert any FarSLIP checkpoint to an open_clip safetensors file")
    s.add_argument("src")
    s.add_argument("dst")
    s.add_argument("--arch", default=None)
    s.set_defaults(func=_cmd_convert)

    s = sub.add_parser("export", help="write an open_clip Hub folder (local-dir:/hf-hub:) for stock open_clip")
    s.add_argument("model")
    s.add_argument("out")
    s.add_argument("--pretrained", default=None)
    s.add_argument("--license", default="mit")
    s.set_defaults(func=_cmd_export)
    return p


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        return int(args.func(args) or 0)
    except (FileNotFoundError, KeyError, ValueError, RuntimeError) as e:
        print(f"farslip {args.cmd}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
