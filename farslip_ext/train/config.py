"""Training configs: mmengine ``Config`` recipes, command-line overrides, validation, and the dump.

Precedence is one documented order: built-in defaults < recipe file (and its ``_base_``) <
``--cfg-options key=value`` on the command line. The resolved config is written beside every
checkpoint, so a run can always be reproduced from what it saved.

A recipe is named by its file stem. The names come from every plugin's ``farslip_recipe_paths`` hook
(built-in first: ``farslip_ext/train/recipes``); a name two sources provide is an error.
:func:`describe_config` is what ``farslip train --print-config`` prints: the resolved config with the
constructor defaults of every component filled in, i.e. every key ``--cfg-options`` can set.
"""
from __future__ import annotations

import copy
import inspect
from pathlib import Path
from typing import Any, Dict, List, Optional, Union

from mmengine.config import Config, ConfigDict

from farslip_ext.errors import ConfigError
from farslip_ext.models.logit_scale import LOGIT_SCALE_MAX

__all__ = ["DEFAULTS", "RECIPES_DIR", "list_recipes", "recipe_paths", "load_config", "validate_config",
           "config_to_dict", "expand_defaults", "describe_config"]

RECIPES_DIR = Path(__file__).resolve().parent / "recipes"

#: Values every run has unless the recipe or the command line says otherwise.
DEFAULTS: Dict[str, Any] = dict(
    model=dict(name="farslip-vitb16", pretrained=None, long_clip=None, force_quick_gelu=False),
    task=dict(type="FarSLIPTask"),
    data=dict(batch_size=40, num_workers=4, pin_memory=True, seed_augmentations=True),
    optim=dict(lr=1e-6, weight_decay=1.0, betas=(0.9, 0.98), eps=1e-6, impl="auto", grad_clip_norm=None,
               component_lr=None, component_weight_decay=None),  # None: as the model (lr, weight_decay)
    schedule=dict(epochs=1, warmup_steps=1000, max_steps=None, steps_per_epoch=None),
    train=dict(
        work_dir="work_dirs/run", device="auto", precision="amp_bf16", seed=0, grad_checkpointing=False,
        compile=False, channels_last=False, find_unused_parameters=False, log_every=10, save_every_steps=1000,
        keep_step_checkpoints=False, resume="auto", resume_allow_changes=[], progress=True, tensorboard=False,
        wandb=False,
        logit_scale_max=LOGIT_SCALE_MAX,  # ln(100), the reference clamp
    ),
)


def recipe_paths() -> Dict[str, Path]:
    """``{recipe name: file}`` from every plugin's ``farslip_recipe_paths`` (files or folders of ``.py``)."""
    from farslip_ext.plugins import hook_paths

    found: Dict[str, Path] = {}
    for entry in hook_paths("farslip_recipe_paths"):
        entry = Path(entry)
        files = sorted(entry.glob("*.py")) if entry.is_dir() else [entry]
        for f in files:
            if f.name.startswith("_") or f.suffix != ".py":
                continue
            if not f.is_file():
                raise ConfigError(f"a farslip_recipe_paths hook returned {f}, which is not a file")
            if f.stem in found and found[f.stem].resolve() != f.resolve():
                raise ConfigError(f"recipe name {f.stem!r} is provided twice: {found[f.stem]} and {f}; rename one "
                                  f"of the files (a recipe's name is its file stem)")
            found[f.stem] = f
    return found


def list_recipes() -> List[str]:
    """The names ``farslip train NAME`` accepts (built-in and plugin recipes)."""
    return sorted(recipe_paths())


def _merge(base: Dict[str, Any], over: Dict[str, Any]) -> Dict[str, Any]:
    out = copy.deepcopy(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict) and not v.get("_delete_", False):
            out[k] = _merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
            if isinstance(out[k], dict):
                out[k].pop("_delete_", None)
    return out


def load_config(path_or_name: Union[str, Path], options: Optional[Dict[str, Any]] = None) -> Config:
    """Load a recipe (a file path, or a recipe name such as ``stage1``, built-in or from a plugin), apply
    the defaults underneath and ``options`` (``{"optim.lr": 1e-5, ...}``) on top, and validate
    (:func:`validate_config`: an unknown key, a wrong type or a bad range is a :class:`ConfigError`)."""
    path = Path(path_or_name)
    if not path.is_file():
        recipes = recipe_paths()
        if str(path_or_name) in recipes:
            path = recipes[str(path_or_name)]
        else:
            raise FileNotFoundError(f"config {str(path_or_name)!r} is neither a file nor a recipe; "
                                    f"recipes (built-in and plugins): {sorted(recipes)}")
    recipe = Config.fromfile(str(path))
    merged = _merge(DEFAULTS, recipe.to_dict())
    cfg = Config(merged, filename=str(path))
    if options:
        cfg.merge_from_dict(dict(options))
    validate_config(cfg, options=options)
    return cfg


def validate_config(cfg: Config, options: Optional[Dict[str, Any]] = None) -> None:
    """Actionable errors for the values people get wrong: unknown keys (with close matches), types, ranges,
    and component dicts against their classes (farslip_ext/train/validation.py)."""
    from farslip_ext.precision import training_precision
    from farslip_ext.train.validation import check_config

    plain = cfg.to_dict() if isinstance(cfg, Config) else dict(cfg)
    check_config(plain, options=options, filename=getattr(cfg, "filename", None))
    training_precision(cfg.train.precision)  # raises ConfigError naming the accepted values


def _plain(x: Any) -> Any:
    if isinstance(x, dict):
        return {str(k): _plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    if isinstance(x, (str, int, float, bool)) or x is None:
        return x
    return repr(x)


def config_to_dict(cfg: Union[Config, ConfigDict, Dict[str, Any]]) -> Dict[str, Any]:
    """A plain-python copy (lists, dicts, numbers, strings) that torch.load(weights_only=True) accepts."""
    return _plain(cfg.to_dict() if isinstance(cfg, Config) else dict(cfg))


# ---------------------------------------------------------------------------------------- --print-config
#: Where components sit in a config: (dotted path, registry variable). ``*`` is every entry of a dict.
_COMPONENT_SLOTS = (("task", "TASKS"), ("task.losses.*", "LOSSES"), ("task.region_head", "HEADS"),
                    ("task.teacher", "TEACHERS"), ("task.dense_attn", "DENSE_ATTN"),
                    ("data.train", "TRAIN_DATASETS"), ("data.train.transform", "SAMPLE_TRANSFORMS"),
                    ("data.train.region_transform", "SAMPLE_TRANSFORMS"),
                    ("data.train.region_cropper", "SAMPLE_TRANSFORMS"))
#: Arguments the trainer passes itself (default_args) and that a printed config must not pin.
_INJECTED = {"TASKS": {"model"}, "TRAIN_DATASETS": {"tokenizer"},
             "DENSE_ATTN": {"ignore_residual"}}  # the task resolves it per variant (task.ignore_residual)
#: Task-level keys of a loss entry (not constructor arguments).
_ENTRY_KEYS = {"weight"}


def _literal(v: Any) -> bool:
    if isinstance(v, (list, tuple)):
        return all(_literal(x) for x in v)
    if isinstance(v, dict):
        return all(isinstance(k, str) and _literal(x) for k, x in v.items())
    return v is None or isinstance(v, (bool, int, float, str))


def _fill(spec: Dict[str, Any], registry_var: str) -> Dict[str, Any]:
    from farslip_ext.registry import ALL_REGISTRIES

    cls = ALL_REGISTRIES[registry_var].get(spec["type"]) if isinstance(spec.get("type"), str) else None
    if cls is None:
        return spec
    try:
        params = inspect.signature(cls).parameters.values()
    except (TypeError, ValueError):  # pragma: no cover
        return spec
    out = dict(spec)
    skip = _INJECTED.get(registry_var, set()) | set(out)
    if registry_var == "LOSSES" and "weight" in out:
        skip.add("loss_weight")  # the entry's weight is the loss's loss_weight
    for p in params:
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD) or p.name in skip or p.default is p.empty:
            continue
        if _literal(p.default):
            out[p.name] = _plain(p.default)
    return out


def _slot(cfg: Dict[str, Any], path: str, registry_var: str) -> None:
    head, _, rest = path.partition(".")
    if head == "*":
        for key, value in list(cfg.items()):
            if isinstance(value, dict):
                if rest:
                    _slot(value, rest, registry_var)
                elif "type" in value:
                    cfg[key] = _fill(value, registry_var)
        return
    if head not in cfg:
        return
    if rest:
        if isinstance(cfg[head], dict):
            _slot(cfg[head], rest, registry_var)
        return
    value = cfg[head]
    if isinstance(value, str) and registry_var == "DENSE_ATTN":
        value = dict(type=value)
    if isinstance(value, dict) and "type" in value:
        cfg[head] = _fill(value, registry_var)


def expand_defaults(cfg: Union[Config, Dict[str, Any]]) -> Dict[str, Any]:
    """A plain copy of ``cfg`` with every component's constructor defaults written out (the keys
    ``--cfg-options`` can set). Loading the result gives the same run; keys the trainer supplies itself
    (the task's model, the dataset's tokenizer) are left out."""
    out = config_to_dict(cfg) if isinstance(cfg, Config) else copy.deepcopy(dict(cfg))
    for path, registry_var in _COMPONENT_SLOTS:
        _slot(out, path, registry_var)
    return out


def describe_config(cfg: Config) -> str:
    """The text ``farslip train --print-config`` prints: :func:`expand_defaults` as an mmengine Python config."""
    text = Config(expand_defaults(cfg)).pretty_text
    src = getattr(cfg, "filename", None)
    return (f"# resolved config of {src} (built-in defaults < recipe < --cfg-options), component defaults filled\n"
            f"# every key below can be set with --cfg-options key=value\n" + text)
