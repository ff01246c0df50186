"""Prompt-template sets for zero-shot classification, as ``TEMPLATES`` registry entries.

A template set turns a class name into the prompts whose normalised text embeddings are averaged into
one classifier column (docs/reference/method.md §4.6). Three sets ship:

* ``FarSLIPSatelliteTemplates`` (alias ``farslip``, the default): the two satellite prompts FarSLIP's
  ``tests/test_scene_classification.py`` uses for every scene dataset,
  ``"a satellite photo of {c}."`` and ``"a satellite image of {c}"``.
* ``SkyScriptTemplates`` (alias ``skyscript``): SkyScript's ``prompt_templates.py`` table, per dataset.
  Its scene-classification entries are the same two prompts; its fine-grained entries (``roof_shape``,
  ``smoothness``, ``surface``) insert ``building,``/``road,`` before the class name.
* ``OpenAIImageNetTemplates`` (alias ``openai``): OpenAI's 80 ImageNet prompts, taken from
  ``open_clip.OPENAI_IMAGENET_TEMPLATES``.

Build one with :func:`build_templates` (an alias, a registered name or a ``dict(type=...)`` config).
"""
from __future__ import annotations

import difflib
import logging
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple, Union

from farslip_ext.registry import TEMPLATES

__all__ = [
    "PromptTemplates",
    "FarSLIPSatelliteTemplates",
    "SkyScriptTemplates",
    "OpenAIImageNetTemplates",
    "TEMPLATE_ALIASES",
    "DEFAULT_TEMPLATES",
    "build_templates",
]

logger = logging.getLogger(__name__)

Template = Callable[[str], str]

#: The two prompts of FarSLIP's scene classification test (docs/reference/method.md §4.6).
SATELLITE_TEMPLATES: Tuple[str, ...] = ("a satellite photo of {c}.", "a satellite image of {c}")

#: SkyScript ``prompt_templates.py``: dataset -> format strings (``{c}`` is the class name).
_SKYSCRIPT_TABLE: Dict[str, Tuple[str, ...]] = {
    **{name: SATELLITE_TEMPLATES for name in
       ("aid", "eurosat", "millionaid", "fmow", "patternnet", "nwpu", "SkyScript_cls", "rsicb256")},
    "roof_shape": ("a satellite photo of building, {c}.", "a satellite image of building, {c}"),
    "smoothness": ("a satellite photo of road, {c}.", "a satellite image of road, {c}"),
    "surface": ("a satellite photo of road, {c}.", "a satellite image of road, {c}"),
}
# FarSLIP/SkyScript call the RSI-CB dataset ``rsicb`` but key its templates ``rsicb256``.
_SKYSCRIPT_DATASET_ALIASES = {"rsicb": "rsicb256"}


def _formatter(fmt: str) -> Template:
    if "{c}" not in fmt:
        raise ValueError(f"prompt template {fmt!r} has no '{{c}}' placeholder for the class name")

    def fill(classname: str) -> str:
        return fmt.replace("{c}", classname)

    fill.__doc__ = fmt
    return fill


class PromptTemplates:
    """A set of prompt templates: ``for_dataset(name)`` gives the callables used for that dataset.

    Args:
        templates: format strings with a ``{c}`` placeholder (or callables ``classname -> prompt``).
        name: a label written into result files.
    """

    def __init__(self, templates: Sequence[Union[str, Template]], name: str = "custom") -> None:
        if isinstance(templates, str) or not templates:
            raise ValueError(f"{name} templates: expected a non-empty list of prompt templates, got {templates!r}")
        self.name = name
        self._templates: Tuple[Template, ...] = tuple(_formatter(t) if isinstance(t, str) else t for t in templates)

    def for_dataset(self, dataset: Optional[str] = None) -> Tuple[Template, ...]:
        """The templates for ``dataset`` (the same for every dataset unless a subclass says otherwise)."""
        return self._templates

    def prompts(self, classname: str, dataset: Optional[str] = None) -> List[str]:
        """Every prompt for one class, in template order."""
        return [t(classname) for t in self.for_dataset(dataset)]

    def __len__(self) -> int:
        return len(self._templates)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, n={len(self)})"


@TEMPLATES.register_module()
class FarSLIPSatelliteTemplates(PromptTemplates):
    """FarSLIP's default: ``"a satellite photo of {c}."`` and ``"a satellite image of {c}"`` (docs/reference/method.md §4.6)."""

    def __init__(self) -> None:
        super().__init__(SATELLITE_TEMPLATES, name="farslip")


@TEMPLATES.register_module()
class SkyScriptTemplates(PromptTemplates):
    """SkyScript's per-dataset table (``prompt_templates.py``), including its fine-grained sets.

    Args:
        dataset: fix the dataset instead of choosing per call of :meth:`for_dataset`.
        fallback: what a dataset missing from the table gets: ``"satellite"`` (the two scene prompts,
            logged) or ``"error"``.
    """

    table: Mapping[str, Tuple[str, ...]] = _SKYSCRIPT_TABLE

    def __init__(self, dataset: Optional[str] = None, fallback: str = "satellite") -> None:
        if fallback not in ("satellite", "error"):
            raise ValueError(f"SkyScriptTemplates: fallback={fallback!r}; choose 'satellite' or 'error'")
        super().__init__(SATELLITE_TEMPLATES, name="skyscript")
        self.fallback = fallback
        self.dataset = dataset
        self._cache: Dict[str, Tuple[Template, ...]] = {}
        if dataset is not None:
            self.for_dataset(dataset)  # validate early

    def for_dataset(self, dataset: Optional[str] = None) -> Tuple[Template, ...]:
        dataset = dataset if dataset is not None else self.dataset
        if dataset is None:
            return self._templates
        key = _SKYSCRIPT_DATASET_ALIASES.get(dataset, dataset)
        if key not in self.table:
            if self.fallback == "error":
                close = difflib.get_close_matches(dataset, list(self.table), n=3)
                raise KeyError(f"SkyScript has no prompt templates for dataset {dataset!r}"
                               f"{' (did you mean ' + ', '.join(map(repr, close)) + '?)' if close else ''}; "
                               f"it has {sorted(self.table)}. Use templates='farslip' or a custom list.")
            logger.warning("SkyScript has no templates for dataset %r; using the two satellite prompts", dataset)
            return self._templates
        if key not in self._cache:
            self._cache[key] = tuple(_formatter(t) for t in self.table[key])
        return self._cache[key]


@TEMPLATES.register_module()
class OpenAIImageNetTemplates(PromptTemplates):
    """OpenAI's 80 ImageNet prompts (``open_clip.OPENAI_IMAGENET_TEMPLATES``), as used by the OVSS protocol."""

    def __init__(self) -> None:
        import open_clip

        super().__init__(tuple(open_clip.OPENAI_IMAGENET_TEMPLATES), name="openai")


#: Short names accepted wherever a template set is named (CLI ``--templates``).
TEMPLATE_ALIASES: Dict[str, str] = {
    "farslip": "FarSLIPSatelliteTemplates",
    "satellite": "FarSLIPSatelliteTemplates",
    "skyscript": "SkyScriptTemplates",
    "openai": "OpenAIImageNetTemplates",
    "openai_imagenet": "OpenAIImageNetTemplates",
}
DEFAULT_TEMPLATES = "farslip"


def build_templates(spec: Union[None, str, Mapping[str, Any], Sequence[str], PromptTemplates] = None
                    ) -> PromptTemplates:
    """A :class:`PromptTemplates` from an alias (``farslip``, ``skyscript``, ``openai``), a ``TEMPLATES``
    registry name, a ``dict(type=..., **kwargs)`` config, a list of ``{c}`` format strings, or an instance.
    ``None`` gives the default (``farslip``)."""
    if spec is None:
        spec = DEFAULT_TEMPLATES
    if isinstance(spec, PromptTemplates):
        return spec
    if isinstance(spec, Mapping):
        cfg = dict(spec)
        if isinstance(cfg.get("type"), str):
            cfg["type"] = TEMPLATE_ALIASES.get(cfg["type"].lower(), cfg["type"])
        obj = TEMPLATES.build(cfg)
    elif isinstance(spec, str):
        name = TEMPLATE_ALIASES.get(spec.lower(), spec)
        if TEMPLATES.get(name) is None:
            known = sorted(TEMPLATE_ALIASES) + TEMPLATES.names()
            close = difflib.get_close_matches(spec, known, n=3, cutoff=0.5)
            raise KeyError(f"unknown prompt templates {spec!r}"
                           f"{' (did you mean ' + ', '.join(map(repr, close)) + '?)' if close else ''}; "
                           f"choose one of {sorted(TEMPLATE_ALIASES)} or a TEMPLATES registry name "
                           f"{TEMPLATES.names()}, or register your own with "
                           f"@farslip_ext.registry.TEMPLATES.register_module()")
        obj = TEMPLATES.build(dict(type=name))
    else:
        obj = PromptTemplates(list(spec))
    if not isinstance(obj, PromptTemplates):
        raise TypeError(f"template set {spec!r} built a {type(obj).__name__}, not a PromptTemplates")
    return obj
