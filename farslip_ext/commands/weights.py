"""``farslip convert`` and ``farslip export``: weight files for other tools.

Both say the text context of the weights (77 tokens, or 248 for a LongCLIP text tower) and refuse the
LongCLIP trap: a 248-token file named as a 77-token architecture, which stock
``open_clip.create_model(arch, pretrained=file)`` would load by silently interpolating the 248 text
positions down to 77.
"""
from __future__ import annotations

import argparse
import json
import logging
import re
from pathlib import Path
from typing import Any, Dict, Optional

logger = logging.getLogger(__name__)

_REPO_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9_.-]*$")


def arch_context(arch: str) -> Optional[int]:
    """The text context length an architecture's config declares (None when unknown)."""
    import open_clip

    from farslip_ext.catalogue import CATALOGUE

    cfg = CATALOGUE.model_config(arch) or open_clip.get_model_config(arch)
    return int(cfg.get("text_cfg", {}).get("context_length", 77)) if cfg else None


def peek_state_dict(path: Path) -> Optional[Dict[str, Any]]:
    """The tensors of a checkpoint without reading their data (shapes only for safetensors, a
    memory-mapped zip-format ``torch.save`` file); None when the file cannot be read that way."""
    import torch

    from farslip_ext.convert import unwrap_state_dict

    try:
        if path.suffix == ".safetensors":
            from safetensors import safe_open

            with safe_open(str(path), framework="pt") as f:
                return {k: torch.empty(f.get_slice(k).get_shape(), device="meta") for k in f.keys()}
        return unwrap_state_dict(torch.load(str(path), map_location="cpu", weights_only=True, mmap=True))
    except Exception:  # legacy (non-zip) pickles cannot be mapped; the full conversion reports real errors
        return None


def check_context(src: Path, arch: Optional[str]) -> Optional[int]:
    """Refuse ``arch`` when the file's text context differs and a registered architecture with the same
    tensors matches it; returns the file's context length (None when it cannot be peeked)."""
    from farslip_ext.convert import infer_arch, text_context_length
    from farslip_ext.errors import CheckpointFormatError, ContextLengthMismatch

    sd = peek_state_dict(src)
    if sd is None:
        return None
    ctx = text_context_length(sd)
    want = arch_context(arch) if arch else None
    if arch is None or ctx is None or want is None or ctx == want:
        return ctx
    try:
        better = infer_arch(sd)  # prefers the architecture whose text context matches the file's
    except CheckpointFormatError:
        better = None
    if better is not None and arch_context(better) == ctx:
        raise ContextLengthMismatch(
            f"{src} has a {ctx}-token text tower{' (LongCLIP)' if ctx > 77 else ''} but --arch {arch} is a "
            f"{want}-token architecture: stock open_clip.create_model({arch!r}, pretrained=...) would silently "
            f"interpolate the text positions to {want} and give wrong text features. Use --arch {better} (the same "
            f"tensors with {ctx} tokens), or leave --arch out to infer it.")
    logger.warning("%s has a %d-token text tower but %s is a %d-token architecture and no registered architecture "
                   "matches both; load the result with force_context_length=%d (farslip_ext.load does this by "
                   "itself)", src, ctx, arch, want, ctx)
    return ctx


def _load_lines(arch: str, dst: str, ctx: Optional[int]) -> Dict[str, str]:
    extra = ""
    want = arch_context(arch)
    if ctx is not None and want is not None and ctx != want:
        extra = f", force_context_length={ctx}"
    return {"farslip_ext": f"farslip_ext.load({arch!r}, {dst!r})",
            "open_clip": f"open_clip.create_model({arch!r}, pretrained={dst!r}{extra})"}


def _convert(args: argparse.Namespace) -> int:
    from farslip_ext.convert import convert_checkpoint_file
    from farslip_ext.io import check_destination

    src, dst = Path(args.src), Path(args.dst)
    if not src.is_file():
        raise FileNotFoundError(f"checkpoint file not found: {src}")
    check_destination(dst, src=src, overwrite=args.overwrite, what="conversion destination")  # before any work
    check_context(src, args.arch)
    logger.info("converting %s -> %s", src, dst)
    conv = convert_checkpoint_file(src, dst, arch=args.arch, overwrite=args.overwrite)
    want = arch_context(conv.arch) if conv.arch else None
    if conv.context_length and want and conv.context_length != want:
        logger.warning("%s: the text tower has %d tokens, the architecture %s declares %d; load it with "
                       "force_context_length=%d", dst, conv.context_length, conv.arch, want, conv.context_length)
    logger.info("wrote %s: %s, text context %s tokens%s", dst, conv.arch, conv.context_length,
                " (LongCLIP)" if conv.long_clip else "")
    print(json.dumps({"dst": str(dst), "arch": conv.arch, "context_length": conv.context_length,
                      "arch_context_length": want, "long_clip": conv.long_clip, "notes": conv.notes,
                      "load_with": _load_lines(conv.arch, str(dst), conv.context_length)}, indent=2))
    return 0


def _export(args: argparse.Namespace) -> int:
    import farslip_ext
    from farslip_ext.catalogue import CATALOGUE
    from farslip_ext.errors import ConfigError
    from farslip_ext.io import check_destination
    from farslip_ext.loading import CHECKPOINT_SUFFIXES

    model = str(args.model)
    carries_weights = model.startswith(("hf-hub:", "local-dir:")) or Path(model).is_file() or model.endswith(
        CHECKPOINT_SUFFIXES)
    if args.random_init and args.pretrained:
        raise ConfigError("--random-init and --pretrained contradict each other; give one of them")
    if args.pretrained is None and not carries_weights and not args.random_init:
        tags = sorted(CATALOGUE.entries().get(model, {}))
        raise ConfigError(
            f"farslip export {model} without --pretrained would publish randomly initialised weights; pass "
            f"--pretrained TAG or FILE" + (f" (tags of {model}: {', '.join(tags)})" if tags else "") +
            ", or --random-init if random weights are really what you want")
    if args.repo_id is not None and not _REPO_ID.match(args.repo_id):
        raise ConfigError(f"--repo-id {args.repo_id!r} is not a Hub repository id; write ORG/NAME, e.g. "
                          f"my-lab/farslip-vitb16-s2")
    check_destination(args.out, overwrite=args.overwrite, what="export folder")  # before loading weights
    logger.info("loading %s%s", model, f" with {args.pretrained}" if args.pretrained else
                (" (random init)" if args.random_init else ""))
    lm = farslip_ext.load(model, args.pretrained, eval=False)
    want = arch_context(lm.arch) if not lm.arch.startswith(("hf-hub:", "local-dir:")) else None
    if lm.context_length and want and lm.context_length != want:
        logger.warning("the weights have a %d-token text tower but %s declares %d tokens; the exported "
                       "open_clip_config.json says %d, so the folder loads correctly. Do not pass its safetensors "
                       "file to open_clip.create_model(%r, pretrained=...): that would interpolate the text "
                       "positions to %d.", lm.context_length, lm.arch, want, lm.context_length, lm.arch, want)
    entry = CATALOGUE.find(lm.arch, args.pretrained) if args.pretrained else None
    source = entry.location if entry else (args.pretrained or (model if carries_weights else "random init"))
    out = farslip_ext.export_hub_folder(
        lm.model, args.out, arch=None if lm.arch.startswith(("hf-hub:", "local-dir:")) else lm.arch,
        model_cfg=_hub_model_cfg(lm.arch), license=entry.license if entry else args.license, source=source,
        repo_id=args.repo_id, overwrite=args.overwrite,
        description="" if not args.random_init else f"{lm.arch} with RANDOM weights (exported with --random-init).",
    )
    ref = f"hf-hub:{args.repo_id}" if args.repo_id else f"local-dir:{out}"
    if not args.repo_id:
        logger.info("the model card's usage line names local-dir:%s; pass --repo-id ORG/NAME to name the Hub "
                    "repository you upload it to", out.name)
    logger.info("wrote %s (%s, text context %s tokens)", out, lm.arch, lm.context_length)
    print(json.dumps({"out": str(out), "arch": lm.arch, "context_length": lm.context_length, "weights": source,
                      "repo_id": args.repo_id, "files": sorted(p.name for p in out.iterdir()),
                      "load_with": f"open_clip.create_model_and_transforms({ref!r})"}, indent=2))
    return 0


def _hub_model_cfg(arch: str) -> Optional[Dict[str, Any]]:
    """The model config of a ``hf-hub:``/``local-dir:`` source (None for registered names)."""
    if not arch.startswith(("hf-hub:", "local-dir:")):
        return None
    from farslip_ext.errors import ConfigError

    try:
        if arch.startswith("local-dir:"):
            path = Path(arch[len("local-dir:"):]) / "open_clip_config.json"
        else:
            from huggingface_hub import hf_hub_download

            path = Path(hf_hub_download(arch[len("hf-hub:"):], "open_clip_config.json"))
        return json.loads(path.read_text(encoding="utf-8"))["model_cfg"]
    except (OSError, KeyError, ValueError) as e:
        raise ConfigError(f"cannot read the model config of {arch} ({e}); export it from its architecture name "
                          f"with --pretrained instead") from e


def register(sub) -> None:
    s = sub.add_parser("convert", help="convert any FarSLIP/OpenCLIP checkpoint into an open_clip safetensors file",
                       description="Convert a checkpoint (bare state dict, training container, DDP prefixes, fp16, "
                                   "LongCLIP two-table text positions) into one open_clip safetensors file, loaded "
                                   "strictly. Prints the architecture, the text context (77, or 248 for LongCLIP) "
                                   "and the lines that load the result.")
    s.add_argument("src", help="checkpoint file (.pt, .pth, .bin, .ckpt or .safetensors)")
    s.add_argument("dst", help="output .safetensors file (never the source; an existing file needs --overwrite)")
    s.add_argument("--arch", default=None,
                   help="architecture name (default: inferred from the tensors, preferring one whose text context "
                        "matches); a 77-token name for a 248-token file is refused when a matching name exists")
    s.add_argument("--overwrite", action="store_true", help="replace an existing DST")
    s.set_defaults(func=_convert)

    s = sub.add_parser("export", help="write an open_clip Hub folder (local-dir:/hf-hub:) that stock open_clip loads",
                       description="Write open_clip_config.json, open_clip_model.safetensors and a README.md model "
                                   "card (files readable by everyone) into OUT. Load it with "
                                   "open_clip.create_model_and_transforms('local-dir:OUT'), or upload it to the Hub "
                                   "and use 'hf-hub:ORG/NAME'.")
    s.add_argument("model", help="architecture name (then --pretrained is required), hf-hub:ORG/NAME, "
                                 "local-dir:FOLDER or a checkpoint file")
    s.add_argument("out", help="output folder (a folder that holds files needs --overwrite)")
    s.add_argument("--pretrained", default=None, help="tag (s1, s2, demo, ...) or checkpoint file for MODEL")
    s.add_argument("--random-init", action="store_true",
                   help="export randomly initialised weights (refused without this flag when --pretrained is "
                        "missing)")
    s.add_argument("--license", default="mit",
                   help="licence written in the model card when the weights are not a registered tag (default: mit)")
    s.add_argument("--repo-id", default=None, metavar="ORG/NAME",
                   help="Hub repository the model card's usage lines name (default: local-dir:OUT)")
    s.add_argument("--overwrite", action="store_true", help="replace the files of an existing OUT folder")
    s.set_defaults(func=_export)
