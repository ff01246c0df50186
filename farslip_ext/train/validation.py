"""Config validation: every key known, every value of its type and range, components against their classes.

:func:`check_config` is what :func:`farslip_ext.train.config.load_config` runs on the resolved config:

* the sections ``model``, ``optim``, ``schedule``, ``train`` and ``data`` have a fixed set of keys
  (:data:`SCHEMA`); an unknown key is a :class:`~farslip_ext.errors.ConfigError` naming it, where it came
  from (``--cfg-options`` or the config file) and its close matches;
* each value has a type and a range (intervals and step counts are integers >= 1);
* a component dict (``task``, ``task.losses.<entry>``, ``task.region_head``, ``task.teacher``,
  ``task.dense_attn``, ``data.train`` and its transforms) is checked against its class's signature:
  an unknown argument names the component type, the key and its close matches; a missing required one
  names it too (:func:`check_component`).

Top-level names other than the sections and ``custom_imports`` are errors too, except helper variables
whose name starts with ``_``.
"""
from __future__ import annotations

import difflib
import inspect
import numbers
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Set, Tuple

from farslip_ext.errors import ConfigError

__all__ = ["SCHEMA", "SECTIONS", "check_config", "check_component", "close_matches"]


def close_matches(word: str, options: Iterable[str], prefix: str = "") -> str:
    """``" (did you mean 'optim.lr'?)"`` (``prefix`` + the close options) or ``""``."""
    found = difflib.get_close_matches(str(word), sorted(set(options)), n=3, cutoff=0.6)
    return f" (did you mean {', '.join(repr(prefix + f) for f in found)}?)" if found else ""


# ------------------------------------------------------------------------------------------ value rules
class Rule:
    """A value rule: ``check(value)`` returns None or what was expected."""

    def __init__(self, what: str, ok: Callable[[Any], bool]) -> None:
        self.what, self.ok = what, ok

    def check(self, value: Any) -> Optional[str]:
        try:
            return None if self.ok(value) else self.what
        except Exception:  # noqa: BLE001 - a comparison that fails is a wrong type
            return self.what


def _is_int(v: Any) -> bool:
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def _is_num(v: Any) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, bool)


def Int(lo: Optional[int] = None, what: str = "") -> Rule:
    text = what or ("an integer" + (f" >= {lo}" if lo is not None else ""))
    return Rule(text, lambda v: _is_int(v) and (lo is None or v >= lo))


def Num(lo: Optional[float] = None, strict: bool = False) -> Rule:
    text = "a number" + (f" {'>' if strict else '>='} {lo:g}" if lo is not None else "")
    return Rule(text, lambda v: _is_num(v) and (lo is None or (v > lo if strict else v >= lo)))


def Opt(rule: Rule) -> Rule:
    return Rule(f"None or {rule.what}", lambda v: v is None or rule.check(v) is None)


def Choice(*values: Any) -> Rule:
    return Rule("one of " + ", ".join(repr(v) for v in values), lambda v: v in values)


BOOL = Rule("True or False", lambda v: isinstance(v, bool))
STR = Rule("a string", lambda v: isinstance(v, str))
ANY = Rule("anything", lambda v: True)
BETAS = Rule("two numbers in [0, 1), e.g. (0.9, 0.98)",
             lambda v: isinstance(v, (list, tuple)) and len(v) == 2 and all(_is_num(b) and 0 <= b < 1 for b in v))
RESUME = Rule("'auto', 'none', None or a checkpoint path", lambda v: v is None or v is False or isinstance(v, str))
KEY_LIST = Rule("a list of config keys, e.g. ['data.batch_size']",
                lambda v: isinstance(v, (list, tuple)) and all(isinstance(k, str) and k for k in v))

#: The keys of each fixed section and their rules (``data.train`` and ``task`` are components).
SCHEMA: Dict[str, Dict[str, Rule]] = {
    "model": dict(name=STR, pretrained=Opt(STR), long_clip=Choice(None, "stretch", "scratch"), force_quick_gelu=BOOL,
                  force_context_length=Opt(Int(1))),
    "data": dict(batch_size=Int(1), num_workers=Int(0), pin_memory=BOOL, seed_augmentations=BOOL,
                 prefetch_factor=Int(1)),
    "optim": dict(lr=Num(0, strict=True), weight_decay=Num(0), betas=BETAS, eps=Num(0, strict=True),
                  impl=Choice("auto", "fused", "foreach", "for"), grad_clip_norm=Opt(Num(0, strict=True)),
                  component_lr=Opt(Num(0, strict=True)), component_weight_decay=Opt(Num(0))),
    "schedule": dict(epochs=Int(1), warmup_steps=Int(0), max_steps=Opt(Int(1)), steps_per_epoch=Opt(Int(1))),
    "train": dict(work_dir=STR, device=STR, precision=STR, seed=Int(0), grad_checkpointing=BOOL, compile=BOOL,
                  channels_last=BOOL, find_unused_parameters=BOOL, log_every=Int(1), save_every_steps=Int(1),
                  keep_step_checkpoints=BOOL, resume=RESUME, resume_allow_changes=KEY_LIST, progress=BOOL,
                  tensorboard=BOOL, wandb=BOOL, logit_scale_max=Num(0, strict=True)),
}
#: Keys of ``data`` that hold a component (checked by signature) rather than a value.
DATA_COMPONENTS = ("train",)
SECTIONS = ("model", "task", "data", "optim", "schedule", "train")
TOP_LEVEL_EXTRA = ("custom_imports",)

#: Where components sit: (dotted path, registry variable, arguments the trainer injects). ``*``: every entry.
COMPONENT_SLOTS: Tuple[Tuple[str, str, Set[str]], ...] = (
    ("task", "TASKS", {"model"}),
    ("task.losses.*", "LOSSES", set()),
    ("task.region_head", "HEADS", set()),
    ("task.teacher", "TEACHERS", set()),
    ("task.dense_attn", "DENSE_ATTN", set()),
    ("data.train", "TRAIN_DATASETS", {"tokenizer"}),
    ("data.train.transform", "SAMPLE_TRANSFORMS", set()),
    ("data.train.region_transform", "SAMPLE_TRANSFORMS", set()),
    ("data.train.region_cropper", "SAMPLE_TRANSFORMS", set()),
)
#: Keys of a ``task.losses`` entry that belong to the task, not to the loss's constructor.
ENTRY_KEYS = {"weight"}


def _origin(key: str, options: Mapping[str, Any], filename: Optional[str]) -> str:
    for opt in options:
        if opt == key or opt.startswith(key + ".") or key.startswith(opt + "."):
            return f"--cfg-options {opt}={options[opt]!r}"
    return f"the config file {filename}" if filename else "the config"


# ------------------------------------------------------------------------------------------ components
def _simple_type(annotation: Any) -> Optional[Tuple[Rule, str]]:
    """A rule for the plain annotations (int, float, bool, str and their Optional[...]), else None."""
    text = annotation if isinstance(annotation, str) else getattr(annotation, "__name__", None)
    if not isinstance(text, str):
        return None
    text = text.replace(" ", "")
    optional = False
    for pre, post in (("Optional[", "]"),):
        if text.startswith(pre) and text.endswith(post):
            text, optional = text[len(pre):-len(post)], True
    if text.endswith("|None"):
        text, optional = text[:-5], True
    base = {"int": Int(), "float": Num(), "bool": BOOL, "str": STR}.get(text)
    if base is None:
        return None
    return (Opt(base) if optional else base), text


def _signature(cls: Any) -> Optional[inspect.Signature]:
    try:
        return inspect.signature(cls)
    except (TypeError, ValueError):  # pragma: no cover - builtins without a signature
        return None


def check_component(spec: Mapping[str, Any], registry_var: str, where: str, injected: Set[str] = frozenset(),
                    extra_keys: Set[str] = frozenset(), required: bool = True) -> Any:
    """Check a ``dict(type=..., **kwargs)`` against the registered class's constructor; returns the class.

    An unknown type, an unknown argument (with close matches), a missing required argument (unless the
    trainer ``injected`` it) or a plain-typed argument of the wrong type is a :class:`ConfigError` naming
    ``where``, the type and the key.
    """
    from farslip_ext.registry import ALL_REGISTRIES

    reg = ALL_REGISTRIES[registry_var]
    if not isinstance(spec, Mapping) or "type" not in spec:
        raise ConfigError(f"{where} must be a dict(type=<a {reg.name} name>, ...); got {spec!r}. "
                          f"Registered: {reg.names()}")
    typ = spec["type"]
    cls = reg.get(typ) if isinstance(typ, str) else typ
    if cls is None:
        raise ConfigError(f"{where}: type={typ!r} is not registered in {registry_var}{close_matches(typ, reg.names())}. "
                          f"Registered: {reg.names()}")
    if not callable(cls):
        raise ConfigError(f"{where}: type={typ!r} is not a class or function")
    sig = _signature(cls)
    name = getattr(cls, "__name__", str(typ))
    if sig is None:
        return cls
    params = sig.parameters
    takes_any = any(p.kind is p.VAR_KEYWORD for p in params.values())
    named = [n for n, p in params.items() if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
    given = [k for k in spec if k not in ("type", "_scope_") and k not in extra_keys]
    if not takes_any:
        unknown = [k for k in given if k not in params]
        if unknown:
            accepted = [n for n in named if n not in injected]
            k = unknown[0]
            raise ConfigError(f"{where} ({name}) has no argument {k!r}{close_matches(k, accepted)}; {name} accepts: "
                              f"{', '.join(accepted) or '(nothing)'}")
    for k in given:
        p = params.get(k)
        if p is None or p.annotation is p.empty:
            continue
        simple = _simple_type(p.annotation)
        if simple is None:
            continue
        rule, text = simple
        if spec[k] is not None and rule.check(spec[k]) is not None and not (text == "float" and _is_num(spec[k])):
            raise ConfigError(f"{where}.{k}={spec[k]!r} ({name}): expected {rule.what}, got {type(spec[k]).__name__}")
    if required:
        missing = [n for n, p in params.items() if p.default is p.empty and n not in injected and n not in spec
                   and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
        if missing:
            raise ConfigError(f"{where} ({name}) needs {', '.join(repr(m) for m in missing)}: set "
                              f"{', '.join(f'{where}.{m}=...' for m in missing)}")
    return cls


def _walk_slots(cfg: Mapping[str, Any], path: str, prefix: str = "") -> List[Tuple[str, Any]]:
    """``(dotted name, value)`` of the entries at ``path`` (``*`` matches every key of a dict)."""
    head, _, rest = path.partition(".")
    keys = list(cfg) if head == "*" else ([head] if head in cfg else [])
    out: List[Tuple[str, Any]] = []
    for k in keys:
        v = cfg[k]
        name = f"{prefix}.{k}" if prefix else str(k)
        if rest:
            if isinstance(v, Mapping):
                out.extend(_walk_slots(v, rest, name))
        else:
            out.append((name, v))
    return out


def _check_components(cfg: Mapping[str, Any]) -> None:
    for path, registry_var, injected in COMPONENT_SLOTS:
        for name, value in _walk_slots(cfg, path):
            if value is None:
                continue  # a removed loss entry, or "use the default"
            if registry_var == "DENSE_ATTN" and isinstance(value, str):
                value = dict(type=value)
            if registry_var in ("SAMPLE_TRANSFORMS", "DENSE_ATTN") and not isinstance(value, Mapping):
                continue  # an instance / callable given in a Python config
            extra = ENTRY_KEYS if registry_var == "LOSSES" else set()
            if registry_var == "DENSE_ATTN":
                injected = {"ignore_residual"}
            check_component(value, registry_var, name, injected=injected, extra_keys=extra)


# ------------------------------------------------------------------------------------------ the config
def check_config(cfg: Mapping[str, Any], options: Optional[Mapping[str, Any]] = None,
                 filename: Optional[str] = None) -> None:
    """Raise :class:`ConfigError` for the first unknown key, wrong type, bad range or bad component."""
    options = dict(options or {})
    for key in cfg:
        if key in SECTIONS or key in TOP_LEVEL_EXTRA or str(key).startswith("_"):
            continue
        raise ConfigError(f"unknown config key {key!r} (from {_origin(key, options, filename)}){close_matches(key, SECTIONS)}; "
                          f"the top-level keys are {', '.join(SECTIONS)} (and custom_imports; prefix a helper "
                          f"variable of a config file with '_')")
    for section, rules in SCHEMA.items():
        value = cfg.get(section)
        if value is None:
            continue
        if not isinstance(value, Mapping):
            raise ConfigError(f"{section} must be a dict of settings, got {value!r} (from "
                              f"{_origin(section, options, filename)})")
        allowed = set(rules) | (set(DATA_COMPONENTS) if section == "data" else set())
        for key, v in value.items():
            dotted = f"{section}.{key}"
            if key not in allowed:
                raise ConfigError(f"unknown config key {dotted} (from {_origin(dotted, options, filename)})"
                                  f"{close_matches(key, allowed, section + '.')}; the keys of {section} "
                                  f"are: {', '.join(sorted(allowed))}")
            rule = rules.get(key)
            if rule is None:
                continue
            problem = rule.check(v)
            if problem is not None:
                got = "" if _is_num(v) or isinstance(v, bool) and problem == BOOL.what else f", got {type(v).__name__}"
                raise ConfigError(f"{dotted}={v!r} (from {_origin(dotted, options, filename)}): expected {problem}"
                                  f"{got}{_hint(dotted)}")
    if "train" not in (cfg.get("data") or {}):
        raise ConfigError("data.train (a dict(type=...) dataset config) is required; see the built-in recipes")
    _check_components(cfg)


def _hint(dotted: str) -> str:
    if dotted in ("train.log_every", "train.save_every_steps"):
        return " (an interval in optimizer steps)"
    if dotted.startswith("schedule."):
        return " (a count of optimizer steps or epochs)"
    return ""


def schema_keys() -> Dict[str, Sequence[str]]:
    """The known keys of each fixed section (for messages and docs)."""
    return {s: sorted(r) for s, r in SCHEMA.items()}
