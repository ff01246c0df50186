"""Every use of a private (or version-specific) API of open_clip, torch or mmengine, in one place.

farslip_ext extends unmodified dependencies. Where their public API does not reach, the touch lives
here, behind a *feature probe*: a function that checks the exact thing we rely on and raises
:class:`~farslip_ext.errors.CompatibilityError` naming the dependency, the version found and what
changed. ``tests/core/test_compat.py`` runs every probe in :data:`PROBES`, so a dependency upgrade
that breaks an assumption fails one clearly named test instead of a numeric test far away.

What is touched, and why there is no public alternative:

* open_clip has no public way to add a pretrained tag: :func:`install_pretrained_tag` writes
  ``open_clip.pretrained._PRETRAINED``. Tags whose files need conversion (FarSLIP's LongCLIP
  two-table text positions, training containers) are resolved by wrapping the two functions
  ``open_clip.factory.create_model`` calls by name, ``download_pretrained`` and
  ``load_checkpoint`` (:func:`install_weight_resolver`): the download wrapper sees ``cache_dir``
  and returns a deferred reference; the load wrapper resolves it *outside* open_clip's
  ``try/except`` so our typed errors (``WeightsNotAvailableError`` ...) reach the caller.
* open_clip's ``VisionTransformer`` builds its token sequence and pools in ``_embeds``/``_pool``;
  the dense-feature code reuses them so the image embedding stays bit-identical to
  ``encode_image`` (:func:`vit_embeds`, :func:`vit_pool`).
* torch: ``Tensor._version`` (an in-place-edit counter, for memoising fingerprints), the argument
  parser of ``Module.to`` (``torch._C._nn._parse_to``; a module that pins its device re-parses the
  same arguments), ``torch.compile``'s ``_orig_mod`` and the ``torch._foreach_lerp_`` kernel.
* mmengine: removing a registration when a plugin fails half-way (:func:`unregister`), and the
  process-global state tests snapshot (:func:`snapshot_global_state`).
"""
from __future__ import annotations

import functools
import inspect
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import torch

from farslip_ext.errors import CompatibilityError

__all__ = [
    "PROBES",
    "run_probes",
    "normalize_tag",
    "install_pretrained_tag",
    "WeightsRef",
    "TextContextWarning",
    "install_weight_resolver",
    "vit_embeds",
    "vit_pool",
    "tensor_version",
    "parse_to_args",
    "unwrap_compiled",
    "foreach_lerp_",
    "unregister",
    "snapshot_global_state",
    "restore_global_state",
]

PROBES: Dict[str, Callable[[], None]] = {}


def _probe(fn: Callable[[], None]) -> Callable[[], None]:
    PROBES[fn.__name__.removeprefix("probe_")] = fn
    return fn


def run_probes(names: Optional[Sequence[str]] = None) -> None:
    """Run the named probes (all by default); the first failure raises ``CompatibilityError``."""
    for name in names or list(PROBES):
        PROBES[name]()


def _fail(dep: str, what: str) -> CompatibilityError:
    import importlib

    try:
        version = importlib.import_module(dep).__version__
    except Exception:  # pragma: no cover - dependency missing entirely
        version = "?"
    return CompatibilityError(f"{dep} {version}: {what}. farslip_ext supports open_clip_torch 3.3.x, torch 2.x and "
                              f"onedl-mmengine 0.10.x; pin the versions in requirements/base.txt or update "
                              f"farslip_ext/compat.py.")


# ================================================================================================ open_clip
def normalize_tag(tag: str) -> str:
    """open_clip's tag normalisation (lower case, ``-`` → ``_``), written here instead of calling the
    private ``open_clip.pretrained._clean_tag``; :func:`probe_tag_normalization` checks they agree."""
    return tag.lower().replace("-", "_")


@_probe
def probe_tag_normalization() -> None:
    import open_clip

    arch = "RN50"
    tags = open_clip.list_pretrained_tags_by_model(arch)
    if not tags:
        raise _fail("open_clip", f"no pretrained tags listed for {arch}")
    tag = tags[0]
    variant = tag.upper().replace("_", "-")
    if not open_clip.get_pretrained_cfg(arch, variant) or normalize_tag(variant) not in tags:
        raise _fail("open_clip", "pretrained tags are no longer normalised as lower case with '-' -> '_'")


def _pretrained_table() -> Dict[str, Dict[str, Any]]:
    from open_clip import pretrained as oc_pretrained

    table = getattr(oc_pretrained, "_PRETRAINED", None)
    if not isinstance(table, dict):
        raise _fail("open_clip", "open_clip.pretrained._PRETRAINED (the tag table) is gone")
    return table


def install_pretrained_tag(arch: str, tag: str, cfg: Dict[str, Any]) -> None:
    """Make ``open_clip.get_pretrained_cfg(arch, tag)`` return ``cfg`` (open_clip has no public API)."""
    _pretrained_table().setdefault(arch, {})[normalize_tag(tag)] = cfg


@_probe
def probe_pretrained_table() -> None:
    import open_clip

    table = _pretrained_table()
    arch, tag = "farslip-compat-probe", "probe_tag"
    table.setdefault(arch, {})[tag] = {"url": "", "hf_hub": "", "probe": True}
    try:
        if open_clip.get_pretrained_cfg(arch, tag).get("probe") is not True or \
                tag not in open_clip.list_pretrained_tags_by_model(arch):
            raise _fail("open_clip", "entries written to open_clip.pretrained._PRETRAINED are not seen by "
                                     "get_pretrained_cfg/list_pretrained_tags_by_model")
    finally:
        table.pop(arch, None)


class WeightsRef(str):
    """A deferred weights reference that open_clip passes from ``download_pretrained`` to
    ``load_checkpoint`` unchanged (it is a ``str``). ``key`` names the tag, ``cache_dir`` is the
    one the caller gave ``open_clip.create_model``."""

    key: str
    cache_dir: Optional[str]

    def __new__(cls, key: str, cache_dir: Optional[str]) -> "WeightsRef":
        obj = super().__new__(cls, f"farslip_ext-weights:{key}")
        obj.key = key
        obj.cache_dir = cache_dir
        return obj


#: The cfg key that marks a tag whose weights farslip_ext resolves (value: the resolver key).
RESOLVER_KEY = "farslip_ext_weights"

_RESOLVER: Dict[str, Callable[[WeightsRef, torch.nn.Module], str]] = {}


def install_weight_resolver(resolve: Callable[[WeightsRef, torch.nn.Module], str]) -> None:
    """Route open_clip tags whose cfg carries :data:`RESOLVER_KEY` through ``resolve``.

    ``resolve(ref, model)`` is called by stock ``open_clip.create_model`` right before the weights are
    loaded into the freshly built ``model`` (outside open_clip's error wrapping) and returns the path of
    a file open_clip's own ``load_checkpoint`` loads. Idempotent.
    """
    from open_clip import factory

    probe_weight_hooks()
    _RESOLVER["resolve"] = resolve
    if getattr(factory.download_pretrained, "_farslip_wrapped", False):
        return
    orig_download = factory.download_pretrained
    orig_load = factory.load_checkpoint

    @functools.wraps(orig_download)
    def download_pretrained(cfg: Dict, prefer_hf_hub: bool = True, cache_dir: Optional[str] = None):
        key = cfg.get(RESOLVER_KEY) if isinstance(cfg, dict) else None
        if key:
            return WeightsRef(str(key), None if cache_dir is None else str(cache_dir))
        return orig_download(cfg, prefer_hf_hub=prefer_hf_hub, cache_dir=cache_dir)

    @functools.wraps(orig_load)
    def load_checkpoint(model, checkpoint_path, *args: Any, **kwargs: Any):
        if isinstance(checkpoint_path, WeightsRef):
            checkpoint_path = _RESOLVER["resolve"](checkpoint_path, model)
        else:
            _warn_text_context(model, checkpoint_path)
        return orig_load(model, checkpoint_path, *args, **kwargs)

    download_pretrained._farslip_wrapped = True  # type: ignore[attr-defined]
    load_checkpoint._farslip_wrapped = True  # type: ignore[attr-defined]
    factory.download_pretrained = download_pretrained
    factory.load_checkpoint = load_checkpoint


class TextContextWarning(UserWarning):
    """A weights file's text positions differ from the model's context (open_clip will interpolate them)."""


def _warn_text_context(model: torch.nn.Module, path: Any) -> None:
    """Warn when stock open_clip is about to interpolate a file's text positions to another context (a
    248-token LongCLIP file into a 77-token architecture changes every text embedding). Only safetensors
    files are checked: their header tells the shape without reading the weights."""
    import warnings

    pe = getattr(model, "positional_embedding", None)
    if not str(path).endswith(".safetensors") or not isinstance(pe, torch.Tensor):
        return
    try:
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            if "positional_embedding" not in f.keys():
                return
            rows = f.get_slice("positional_embedding").get_shape()[0]
    except Exception:  # not readable here: open_clip's own loader reports it
        return
    if rows != pe.shape[0]:
        warnings.warn(f"{path} has a {rows}-token text tower but the model was built with {pe.shape[0]} tokens; "
                      f"open_clip will interpolate the text positions, which changes every text embedding. Pass "
                      f"force_context_length={rows} (and get_tokenizer(..., context_length={rows})), or load it with "
                      f"farslip_ext.load(arch, pretrained=<file>), which follows the file.", TextContextWarning,
                      stacklevel=4)


@_probe
def probe_weight_hooks() -> None:
    from open_clip import factory

    names = factory.create_model.__code__.co_names
    for fn in ("download_pretrained", "load_checkpoint"):
        if not callable(getattr(factory, fn, None)) or fn not in names:
            raise _fail("open_clip", f"open_clip.factory.create_model no longer calls factory.{fn} by name")
    params = list(inspect.signature(getattr(factory.download_pretrained, "__wrapped__",
                                            factory.download_pretrained)).parameters)
    if params[:3] != ["cfg", "prefer_hf_hub", "cache_dir"]:
        raise _fail("open_clip", f"download_pretrained's signature changed to {params}")
    params = list(inspect.signature(getattr(factory.load_checkpoint, "__wrapped__",
                                            factory.load_checkpoint)).parameters)
    if params[:2] != ["model", "checkpoint_path"]:
        raise _fail("open_clip", f"load_checkpoint's signature changed to {params}")


def vit_embeds(visual: torch.nn.Module, images: torch.Tensor) -> torch.Tensor:
    """Patch embedding + CLS + positions + patch dropout + ``ln_pre`` of an open_clip ViT at its own grid."""
    return visual._embeds(images)


def vit_pool(visual: torch.nn.Module, tokens: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """open_clip ViT pooling of the final token sequence: ``(pooled, tokens)`` before ``proj``."""
    return visual._pool(tokens)


@_probe
def probe_vit_internals() -> None:
    from open_clip.transformer import VisionTransformer

    for name in ("_embeds", "_pool"):
        if not callable(getattr(VisionTransformer, name, None)):
            raise _fail("open_clip", f"VisionTransformer.{name} is gone (dense features rely on it)")
    vt = VisionTransformer(image_size=16, patch_size=8, width=16, layers=1, heads=2, mlp_ratio=2.0, output_dim=8)
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        t = vt.transformer(vit_embeds(vt, x))
        pooled, _ = vit_pool(vt, t)
        ref = vt(x)
    if not torch.equal(pooled @ vt.proj, ref):
        raise _fail("open_clip", "VisionTransformer.forward is no longer _embeds -> transformer -> _pool -> proj")


@_probe
def probe_timm_vit_structure() -> None:
    """timm's ViT and Eva trunks still have the (public, unprefixed) attributes the dense-feature tower
    adapters (:mod:`farslip_ext.models.towers`) re-wire; timm does not promise them as an API."""
    from timm.models.eva import Eva
    from timm.models.vision_transformer import VisionTransformer as TimmViT

    vit = TimmViT(img_size=16, patch_size=8, embed_dim=16, depth=1, num_heads=2, num_classes=0)
    eva = Eva(img_size=16, patch_size=8, embed_dim=16, depth=1, num_heads=2, num_classes=0)
    need = {"trunk": ("patch_embed", "blocks", "norm", "forward_intermediates", "forward_head", "num_prefix_tokens"),
            "block": ("norm1", "attn", "mlp"), "attn": ("proj",)}
    for trunk in (vit, eva):
        for owner, attrs in need.items():
            obj = {"trunk": trunk, "block": trunk.blocks[0], "attn": trunk.blocks[0].attn}[owner]
            missing = [a for a in attrs if not hasattr(obj, a)]
            if missing:
                raise _fail("timm", f"{type(obj).__name__} of {type(trunk).__name__} lacks {missing}")
    if not (hasattr(vit.blocks[0].attn, "qkv") and hasattr(vit.blocks[0].attn, "q_norm")):
        raise _fail("timm", "timm Attention no longer has qkv/q_norm")


# ==================================================================================================== torch
def tensor_version(t: torch.Tensor) -> int:
    """torch's in-place modification counter of ``t`` (``Tensor._version``)."""
    return int(t._version)


@_probe
def probe_tensor_version() -> None:
    t = torch.zeros(2)
    v = tensor_version(t)
    t.add_(1)
    if tensor_version(t) == v:
        raise _fail("torch", "Tensor._version no longer counts in-place edits")


def parse_to_args(*args: Any, **kwargs: Any) -> Tuple[Optional[torch.device], Optional[torch.dtype], bool]:
    """``(device, dtype, non_blocking)`` of ``Module.to(*args, **kwargs)``, parsed exactly as torch does
    (``torch._C._nn._parse_to``, the parser ``nn.Module.to`` itself uses)."""
    device, dtype, non_blocking, _ = torch._C._nn._parse_to(*args, **kwargs)
    return device, dtype, bool(non_blocking)


@_probe
def probe_parse_to() -> None:
    try:
        dev, dtype, nb = parse_to_args("cpu", torch.float16, non_blocking=True)
    except Exception as e:
        raise _fail("torch", f"torch._C._nn._parse_to is gone or changed ({e})")
    if dev != torch.device("cpu") or dtype != torch.float16 or nb is not True:
        raise _fail("torch", "torch._C._nn._parse_to returns something else than (device, dtype, non_blocking, ...)")


def unwrap_compiled(model: torch.nn.Module) -> torch.nn.Module:
    """The eager module inside a ``torch.compile`` wrapper (``OptimizedModule._orig_mod``), else ``model``."""
    inner = getattr(model, "_orig_mod", None)
    return inner if isinstance(inner, torch.nn.Module) else model


@_probe
def probe_compiled_wrapper() -> None:
    lin = torch.nn.Linear(2, 2)
    wrapped = torch.compile(lin)
    if unwrap_compiled(wrapped) is not lin:
        raise _fail("torch", "torch.compile's wrapper no longer exposes the eager module as _orig_mod")


def foreach_lerp_(targets: List[torch.Tensor], sources: List[torch.Tensor], weight: float) -> None:
    """``t += weight * (s - t)`` for every pair, in one fused kernel where torch has it."""
    fused = getattr(torch, "_foreach_lerp_", None)
    if fused is not None:
        fused(targets, sources, weight)
    else:  # pragma: no cover - older/newer torch without the foreach kernel
        for t, s in zip(targets, sources):
            t.lerp_(s, weight)


@_probe
def probe_foreach_lerp() -> None:
    a, b = [torch.zeros(3)], [torch.ones(3)]
    foreach_lerp_(a, b, 0.25)
    if not torch.allclose(a[0], torch.full((3,), 0.25)):
        raise _fail("torch", "torch._foreach_lerp_ changed its semantics")


# ================================================================================================= mmengine
def unregister(registry: Any, names: Sequence[str]) -> None:
    """Remove ``names`` from an mmengine ``Registry`` (used to roll back a plugin that failed half-way;
    mmengine has no public unregister)."""
    table = registry._module_dict
    for n in names:
        table.pop(n, None)


@_probe
def probe_registry_table() -> None:
    from mmengine.registry import Registry

    reg = Registry("farslip-compat-probe")

    @reg.register_module()
    class _Probe:  # noqa: N801 - a throwaway class
        pass

    if "_Probe" not in reg.module_dict:
        raise _fail("mmengine", "Registry.module_dict does not list registered classes")
    unregister(reg, ["_Probe"])
    if "_Probe" in reg.module_dict:
        raise _fail("mmengine", "Registry._module_dict is no longer the table behind module_dict")


def snapshot_global_state() -> Dict[str, Any]:
    """Process-global tables of open_clip (model configs, tags) and mmengine (default scope), for tests
    that must not leak registrations into each other."""
    from mmengine.registry import DefaultScope
    from open_clip import factory as oc_factory

    return {
        "config_paths": list(oc_factory._MODEL_CONFIG_PATHS),
        "configs": dict(oc_factory._MODEL_CONFIGS),
        "tags": {k: dict(v) for k, v in _pretrained_table().items()},
        "scopes": dict(DefaultScope._instance_dict),
    }


def restore_global_state(state: Dict[str, Any]) -> None:
    from mmengine.registry import DefaultScope
    from open_clip import factory as oc_factory

    oc_factory._MODEL_CONFIG_PATHS[:] = state["config_paths"]
    oc_factory._MODEL_CONFIGS.clear()
    oc_factory._MODEL_CONFIGS.update(state["configs"])
    table = _pretrained_table()
    table.clear()
    table.update(state["tags"])
    DefaultScope._instance_dict.clear()
    DefaultScope._instance_dict.update(state["scopes"])


@_probe
def probe_global_state() -> None:
    from mmengine.registry import DefaultScope
    from open_clip import factory as oc_factory

    if not isinstance(getattr(oc_factory, "_MODEL_CONFIG_PATHS", None), list) or \
            not isinstance(getattr(oc_factory, "_MODEL_CONFIGS", None), dict):
        raise _fail("open_clip", "open_clip.factory._MODEL_CONFIG_PATHS/_MODEL_CONFIGS changed")
    if not isinstance(getattr(DefaultScope, "_instance_dict", None), dict):
        raise _fail("mmengine", "DefaultScope._instance_dict changed")
