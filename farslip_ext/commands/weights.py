"""``farslip convert`` and ``farslip export``: weight files for other tools."""
from __future__ import annotations

import argparse
import json


def _convert(args: argparse.Namespace) -> int:
    from farslip_ext.convert import convert_checkpoint_file

    conv = convert_checkpoint_file(args.src, args.dst, arch=args.arch, overwrite=args.overwrite)
    print(json.dumps({"dst": args.dst, "arch": conv.arch, "context_length": conv.context_length,
                      "notes": conv.notes}, indent=2))
    return 0


def _export(args: argparse.Namespace) -> int:
    import farslip_ext
    from farslip_ext.catalogue import CATALOGUE

    lm = farslip_ext.load(args.model, args.pretrained, eval=False)
    entry = CATALOGUE.find(lm.arch, args.pretrained) if args.pretrained else None
    out = farslip_ext.export_hub_folder(
        lm.model, args.out, arch=lm.arch,
        license=entry.license if entry else args.license,
        source=entry.location if entry else (args.pretrained or "random init"),
        repo_id=args.repo_id, overwrite=args.overwrite,
    )
    print(json.dumps({"out": str(out), "arch": lm.arch, "context_length": lm.context_length}))
    return 0


def register(sub) -> None:
    s = sub.add_parser("convert", help="convert any FarSLIP/OpenCLIP checkpoint into an open_clip safetensors file")
    s.add_argument("src", help="checkpoint file (bare state dict, training container, DDP prefixes, fp16, LongCLIP "
                               "two-table text positions)")
    s.add_argument("dst", help="output .safetensors file (never the source; existing files need --overwrite)")
    s.add_argument("--arch", default=None, help="architecture (default: inferred from the tensors)")
    s.add_argument("--overwrite", action="store_true", help="replace an existing DST")
    s.set_defaults(func=_convert)

    s = sub.add_parser("export", help="write an open_clip Hub folder (local-dir:/hf-hub:) that stock open_clip loads")
    s.add_argument("model", help="architecture, hf-hub:/local-dir: name or checkpoint file")
    s.add_argument("out", help="output folder (a folder that holds files needs --overwrite)")
    s.add_argument("--pretrained", default=None, help="tag (s2, ...) or checkpoint file of MODEL")
    s.add_argument("--license", default="mit", help="licence for the model card when the weights are not a tag")
    s.add_argument("--repo-id", default=None, help="Hub repository (org/name) the model card's usage lines name")
    s.add_argument("--overwrite", action="store_true", help="replace the files of an existing OUT folder")
    s.set_defaults(func=_export)
