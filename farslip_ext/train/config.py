"""Training configs: mmengine ``Config`` recipes, command-line overrides, validation, and the dump.

Precedence is one documented order: built-in defaults < recipe file (and its ``_base_``) <
``--cfg-options key=value`` on the command line. The resolved config is written beside every
checkpoint, so a run can always be reproduced from what it saved.
"""
from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Dict, List, Optional, Union

from mmengine.config import Config, ConfigDict

from farslip_ext.models.logit_scale import LOGIT_SCALE_MAX

__all__ = ["DEFAULTS", "RECIPES_DIR", "list_recipes", "load_config", "validate_config", "config_to_dict"]

RECIPES_DIR = Path(__file__).resolve().parent / "recipes"

#: Values every run has unless the recipe or the command line says otherwise.
DEFAULTS: Dict[str, Any] = dict(
    model=dict(name="farslip-vitb16", pretrained=None, long_clip=None, force_quick_gelu=False),
    task=dict(type="FarSLIPTask"),
    data=dict(batch_size=40, num_workers=4, pin_memory=True, seed_augmentations=True),
    optim=dict(lr=1e-6, weight_decay=1.0, betas=(0.9, 0.98), eps=1e-6, impl="auto", grad_clip_norm=None),
    schedule=dict(epochs=1, warmup_steps=1000, max_steps=None, steps_per_epoch=None),
    train=dict(
        work_dir="work_dirs/run", device="auto", precision="amp_bf16", seed=0, grad_checkpointing=False,
        compile=False, channels_last=False, find_unused_parameters=False, log_every=10, save_every_steps=1000,
        keep_step_checkpoints=False, resume="auto", progress=True, tensorboard=False, wandb=False,
        logit_scale_max=LOGIT_SCALE_MAX,  # ln(100), the reference clamp
    ),
)


def list_recipes() -> List[str]:
    return sorted(p.stem for p in RECIPES_DIR.glob("*.py") if not p.name.startswith("_"))


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
    """Load a recipe (a file path, or the name of a built-in recipe such as ``stage1``), apply the
    defaults underneath and ``options`` (``{"optim.lr": 1e-5, ...}``) on top, and validate."""
    path = Path(path_or_name)
    if not path.is_file():
        named = RECIPES_DIR / f"{path_or_name}.py"
        if named.is_file():
            path = named
        else:
            raise FileNotFoundError(f"config {str(path_or_name)!r} is neither a file nor a built-in recipe; "
                                    f"built-in recipes: {list_recipes()}")
    recipe = Config.fromfile(str(path))
    merged = _merge(DEFAULTS, recipe.to_dict())
    cfg = Config(merged, filename=str(path))
    if options:
        cfg.merge_from_dict(dict(options))
    validate_config(cfg)
    return cfg


def validate_config(cfg: Config) -> None:
    """Actionable errors for the values people get wrong."""
    from farslip_ext.precision import training_precision

    training_precision(cfg.train.precision)  # raises ConfigError naming the accepted values
    if cfg.data.batch_size < 1:
        raise ValueError(f"data.batch_size must be >= 1, got {cfg.data.batch_size}")
    if "train" not in cfg.data:
        raise ValueError("data.train (a dict(type=...) dataset config) is required; see the built-in recipes "
                         f"{list_recipes()}")
    if cfg.optim.lr <= 0:
        raise ValueError(f"optim.lr must be > 0, got {cfg.optim.lr}")
    if cfg.model.long_clip not in (None, "stretch", "scratch"):
        raise ValueError(f"model.long_clip={cfg.model.long_clip!r}; accepted: None, 'stretch' (77 -> 248 from "
                         f"a 77-token model, reference load_from_clip), 'scratch' (the weights already have 248 "
                         f"positions, reference load_from_scratch)")


def config_to_dict(cfg: Union[Config, ConfigDict, Dict[str, Any]]) -> Dict[str, Any]:
    """A plain-python copy (lists, dicts, numbers, strings) that torch.load(weights_only=True) accepts."""
    def plain(x: Any) -> Any:
        if isinstance(x, dict):
            return {str(k): plain(v) for k, v in x.items()}
        if isinstance(x, (list, tuple)):
            return [plain(v) for v in x]
        if isinstance(x, (str, int, float, bool)) or x is None:
            return x
        return repr(x)

    return plain(cfg.to_dict() if isinstance(cfg, Config) else dict(cfg))
