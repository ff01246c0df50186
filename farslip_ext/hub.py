"""Released weights from the Hugging Face Hub: download, verify, convert, cache.

``fetch`` downloads a file with :func:`huggingface_hub.hf_hub_download` (so ``HF_HUB_CACHE``,
``HF_HOME``, ``HF_HUB_OFFLINE`` and ``cache_dir`` behave as everywhere else in the HF ecosystem);
``fetch_converted`` turns a released FarSLIP file into a plain open_clip safetensors file, cached
under ``$FARSLIP_CACHE`` (default ``~/.cache/farslip_ext``) so the conversion runs once per file.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Optional, Union

from farslip_ext.catalogue import PretrainedEntry
from farslip_ext.version import __version__

__all__ = ["WeightsNotAvailableError", "ChecksumError", "fetch", "fetch_converted", "converted_cache_dir", "sha256_file"]

logger = logging.getLogger(__name__)


class WeightsNotAvailableError(FileNotFoundError):
    """The weights are neither cached nor downloadable from here."""


class ChecksumError(ValueError):
    """A downloaded file does not match the sha256 recorded in the manifest."""


def converted_cache_dir() -> Path:
    root = os.environ.get("FARSLIP_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.join(os.path.expanduser("~"), ".cache")), "farslip_ext"
    )
    return Path(root) / "converted"


def sha256_file(path: Union[str, Path], chunk: int = 1 << 22) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def fetch(entry: PretrainedEntry, cache_dir: Optional[Union[str, Path]] = None) -> Path:
    """Path of the released file of ``entry`` in the HF cache, downloading it if allowed."""
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    try:
        path = hf_hub_download(
            repo_id=entry.hf_hub_id,
            filename=entry.hf_hub_filename,
            revision=entry.revision,
            cache_dir=str(cache_dir) if cache_dir is not None else None,
            library_name="farslip_ext",
            library_version=__version__,
        )
    except (LocalEntryNotFoundError, HfHubHTTPError, OSError) as e:
        from huggingface_hub import constants

        where = cache_dir or constants.HF_HUB_CACHE
        raise WeightsNotAvailableError(
            f"{entry.arch}:{entry.tag} weights {entry.hf_hub_id}/{entry.hf_hub_filename} (revision {entry.revision}) "
            f"are not in the Hugging Face cache at {where} and could not be downloaded "
            f"(HF_HUB_OFFLINE={os.environ.get('HF_HUB_OFFLINE', '0')}): {type(e).__name__}. To get them: on a machine "
            f"with internet run `hf download {entry.hf_hub_id} {entry.hf_hub_filename}` and copy its cache folder "
            f"here (set HF_HUB_CACHE to it), or download the file and pass its path as pretrained=<file>."
        ) from e
    path = Path(path)
    if entry.sha256:
        got = sha256_file(path)
        if got.lower() != entry.sha256.lower():
            raise ChecksumError(
                f"{path} has sha256 {got}, the manifest for {entry.arch}:{entry.tag} expects {entry.sha256}; "
                f"delete the cached file and download it again."
            )
    return path


def _cache_key(path: Path) -> str:
    real = path.resolve()
    st = real.stat()
    return hashlib.sha256(f"{real}:{st.st_size}:{st.st_mtime_ns}".encode()).hexdigest()[:20]


def fetch_converted(entry: PretrainedEntry, cache_dir: Optional[Union[str, Path]] = None) -> "tuple[Path, dict]":
    """Download (if needed) and convert ``entry``; returns ``(safetensors_path, info)``.

    ``info`` has ``context_length`` and ``long_clip_folded`` as detected from the tensors.
    """
    from farslip_ext.convert import convert_checkpoint_file

    raw = fetch(entry, cache_dir=cache_dir)
    out_dir = converted_cache_dir() / entry.arch
    dst = out_dir / f"{entry.tag}-{_cache_key(raw)}.safetensors"
    info_path = dst.with_suffix(".json")
    if dst.is_file() and info_path.is_file():
        return dst, json.loads(info_path.read_text())
    conv = convert_checkpoint_file(raw, dst, arch=entry.arch)
    info = {"context_length": conv.context_length, "long_clip_folded": conv.long_clip_folded,
            "source": str(raw), "notes": conv.notes}
    tmp = info_path.with_name(info_path.name + ".partial")
    tmp.write_text(json.dumps(info, indent=1))
    tmp.replace(info_path)
    for n in conv.notes:
        logger.info("%s:%s: %s", entry.arch, entry.tag, n)
    return dst, info
