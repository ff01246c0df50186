"""Released weights: download, verify, convert once, cache.

* Hugging Face Hub files go through :func:`huggingface_hub.hf_hub_download`, so ``HF_HUB_CACHE``,
  ``HF_HOME``, ``HF_HUB_OFFLINE`` and ``cache_dir`` behave as everywhere else in the HF ecosystem.
* Files published at a plain URL (optionally a member of a ``.zip``) are downloaded into
  ``<cache_dir or $FARSLIP_CACHE>/downloads/``, with the same sha256 check and the same offline rule:
  with ``HF_HUB_OFFLINE=1`` (or ``FARSLIP_OFFLINE=1``) nothing is downloaded and a missing file is a
  :class:`~farslip_ext.errors.WeightsNotAvailableError` with instructions.
* :func:`fetch_converted` turns a released file into a plain open_clip safetensors file under
  ``$FARSLIP_CACHE/converted/`` once per file. Beside it a JSON sidecar records its size and sha256;
  a cached file that does not match (truncated by a full disk, edited) is rebuilt, not trusted.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import zipfile
from pathlib import Path
from typing import Any, Dict, Optional, Tuple, Union

from farslip_ext.catalogue import PretrainedEntry, package_dir
from farslip_ext.errors import CacheCorruptError, ChecksumError, WeightsNotAvailableError
from farslip_ext.io import atomic_path, cache_root, sha256_file
from farslip_ext.version import __version__

__all__ = ["fetch", "fetch_converted", "packaged_path", "converted_cache_dir", "downloads_dir", "offline", "verify_sha256"]

logger = logging.getLogger(__name__)

PathLike = Union[str, Path]


def converted_cache_dir() -> Path:
    return cache_root() / "converted"


def downloads_dir(cache_dir: Optional[PathLike] = None) -> Path:
    return Path(cache_dir) / "farslip_downloads" if cache_dir is not None else cache_root() / "downloads"


def offline() -> bool:
    """True when downloads are disabled (``HF_HUB_OFFLINE`` or ``FARSLIP_OFFLINE``)."""
    def on(name: str) -> bool:
        return os.environ.get(name, "").strip().lower() in {"1", "true", "yes", "on"}

    return on("HF_HUB_OFFLINE") or on("FARSLIP_OFFLINE")


def verify_sha256(path: Path, expected: Optional[str], what: str) -> None:
    if not expected:
        return
    got = sha256_file(path)
    if got.lower() != expected.lower():
        raise ChecksumError(f"{path} has sha256 {got}, the manifest for {what} expects {expected}; delete the file "
                            f"and download it again.")


# ---------------------------------------------------------------------------------------------- sources
def _fetch_hf(entry: PretrainedEntry, cache_dir: Optional[PathLike]) -> Path:
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    try:
        return Path(hf_hub_download(
            repo_id=entry.hf_hub_id, filename=entry.hf_hub_filename, revision=entry.revision,
            cache_dir=str(cache_dir) if cache_dir is not None else None,
            library_name="farslip_ext", library_version=__version__))
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


def _url_cache_path(entry: PretrainedEntry, cache_dir: Optional[PathLike]) -> Path:
    key = (entry.sha256 or hashlib.sha256(entry.url.encode()).hexdigest())[:16]
    return downloads_dir(cache_dir) / key / Path(entry.url.split("?")[0]).name


def _download(url: str, dst: Path) -> None:
    """Stream ``url`` to ``dst`` atomically with a progress bar (urllib: no extra dependency)."""
    import urllib.request

    from tqdm.auto import tqdm

    with urllib.request.urlopen(url, timeout=60) as src, atomic_path(dst) as tmp, open(tmp, "wb") as out:
        total = int(src.headers.get("Content-Length") or 0) or None
        with tqdm(total=total, unit="B", unit_scale=True, desc=dst.name, disable=None) as bar:
            for block in iter(lambda: src.read(1 << 20), b""):
                out.write(block)
                bar.update(len(block))


def extract_member(archive: Path, member: str, dst: Path) -> Path:
    """Extract one ``member`` of a zip ``archive`` to ``dst``; the member path must stay inside the
    archive's namespace (no absolute paths, no ``..``), checked on resolved paths."""
    base = dst.parent.resolve()
    target = (base / Path(member).name).resolve()
    if not target.is_relative_to(base) or Path(member).is_absolute() or ".." in Path(member).parts:
        raise WeightsNotAvailableError(f"{archive}: refusing to extract {member!r} (it points outside the cache)")
    with zipfile.ZipFile(archive) as zf:
        names = zf.namelist()
        if member not in names:
            raise WeightsNotAvailableError(f"{archive} has no member {member!r}; it holds {names[:10]}")
        with zf.open(member) as src, atomic_path(dst) as tmp, open(tmp, "wb") as out:
            shutil.copyfileobj(src, out, 1 << 20)
    return dst


def _fetch_url(entry: PretrainedEntry, cache_dir: Optional[PathLike]) -> Path:
    raw = _url_cache_path(entry, cache_dir)
    final = raw.with_name(Path(entry.archive_member).name) if entry.archive_member else raw
    if final.is_file():
        return final
    if not raw.is_file():
        if offline():
            raise WeightsNotAvailableError(
                f"{entry.arch}:{entry.tag} weights ({entry.url}) are not in the download cache at {raw} and downloads "
                f"are off (HF_HUB_OFFLINE/FARSLIP_OFFLINE). To get them: download {entry.url} on a machine with "
                f"internet and put it at {raw}, or pass the file as pretrained=<file>.")
        try:
            _download(entry.url, raw)
        except OSError as e:
            raise WeightsNotAvailableError(f"{entry.arch}:{entry.tag}: downloading {entry.url} failed ({e}); put the "
                                           f"file at {raw} by hand or pass it as pretrained=<file>.") from e
    if entry.archive_member:
        return extract_member(raw, entry.archive_member, final)
    return raw


def packaged_path(entry: PretrainedEntry) -> Path:
    """Where a ``file`` entry lives (relative paths are inside the installed ``farslip_ext`` folder)."""
    return Path(entry.file) if Path(entry.file).is_absolute() else package_dir() / entry.file


def fetch(entry: PretrainedEntry, cache_dir: Optional[PathLike] = None) -> Path:
    """Path of the released file of ``entry`` (downloaded if allowed), its sha256 verified when known.

    For a URL entry with an archive, the sha256 is that of the archive as published.
    """
    if entry.kind == "hf":
        path = _fetch_hf(entry, cache_dir)
    elif entry.kind == "url":
        path = _fetch_url(entry, cache_dir)
        if entry.archive_member:  # verify the published archive, not the member
            verify_sha256(_url_cache_path(entry, cache_dir), entry.sha256, f"{entry.arch}:{entry.tag}")
            return path
    elif entry.kind == "file":
        path = packaged_path(entry)
        if not path.is_file():
            raise WeightsNotAvailableError(f"{entry.arch}:{entry.tag}: the packaged file {path} is missing; "
                                           f"reinstall farslip_ext")
    else:
        raise WeightsNotAvailableError(
            f"{entry.arch}:{entry.tag} cannot be downloaded automatically: {entry.manual} Then load it with "
            f"farslip_ext.load({entry.arch!r}, pretrained='<path of the file>').")
    verify_sha256(path, entry.sha256, f"{entry.arch}:{entry.tag}")
    return path


# ------------------------------------------------------------------------------------------- conversion
def _cache_key(path: Path) -> str:
    real = path.resolve()
    st = real.stat()
    return hashlib.sha256(f"{real}:{st.st_size}:{st.st_mtime_ns}".encode()).hexdigest()[:20]


def _read_sidecar(dst: Path, info_path: Path) -> Optional[Dict[str, Any]]:
    """The sidecar of a cached conversion, or None when the pair is missing or does not match."""
    if not (dst.is_file() and info_path.is_file()):
        return None
    try:
        info = json.loads(info_path.read_text())
        if int(info["size"]) != dst.stat().st_size:
            raise CacheCorruptError(f"size {dst.stat().st_size} != {info['size']}")
        if sha256_file(dst) != info["sha256"]:
            raise CacheCorruptError("sha256 differs")
        return info
    except (ValueError, KeyError, TypeError, CacheCorruptError) as e:
        logger.warning("cached converted weights %s do not match their record (%s); converting again", dst, e)
        return None


def fetch_converted(entry: PretrainedEntry, cache_dir: Optional[PathLike] = None) -> Tuple[Path, Dict[str, Any]]:
    """Download (if needed) and convert ``entry``; returns ``(safetensors_path, info)``.

    ``info`` holds ``context_length`` and ``long_clip_folded`` as detected from the tensors. Entries
    with ``convert: false`` (already open_clip safetensors) are returned as they are.
    """
    from safetensors import safe_open

    raw = fetch(entry, cache_dir=cache_dir)
    if not entry.convert:
        with safe_open(str(raw), framework="pt") as f:
            pe = f.get_slice("positional_embedding").get_shape() if "positional_embedding" in f.keys() else None
        return raw, {"context_length": int(pe[0]) if pe else None, "long_clip_folded": False, "source": str(raw)}
    from farslip_ext.convert import convert_checkpoint_file

    dst = converted_cache_dir() / entry.arch / f"{entry.tag}-{_cache_key(raw)}.safetensors"
    info_path = dst.with_suffix(".json")
    info = _read_sidecar(dst, info_path)
    if info is not None:
        return dst, info
    conv = convert_checkpoint_file(raw, dst, arch=entry.arch, overwrite=True)
    info = {"context_length": conv.context_length, "long_clip_folded": conv.long_clip_folded, "source": str(raw),
            "notes": conv.notes, "size": dst.stat().st_size, "sha256": sha256_file(dst)}
    with atomic_path(info_path) as tmp:
        tmp.write_text(json.dumps(info, indent=1))
    for n in conv.notes:
        logger.info("%s:%s: %s", entry.arch, entry.tag, n)
    return dst, info
