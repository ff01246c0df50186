"""Subcommands of the ``farslip`` CLI: one module each, discovered by name.

A command module defines ``register(subparsers) -> None`` that adds its parser and sets
``func=<callable(args) -> int>`` with ``set_defaults``. Adding a command is adding a module here.
"""
from __future__ import annotations

import argparse
import importlib
import pkgutil
import re
from typing import Any, Dict, List, Optional, Sequence

__all__ = ["command_modules", "register_all", "plain_text", "set_help", "parse_key_values"]

_ROLE = re.compile(r":(?:func|mod|class|meth|attr|data|obj|exc):`~?([^`]+)`")
_LITERAL = re.compile(r"``([^`]+)``")


def parse_key_values(items: Optional[Sequence[str]], flag: str, example: str) -> Dict[str, Any]:
    """``["a=1", "b=x"]`` -> ``{"a": 1, "b": "x"}`` for repeatable ``KEY=VALUE`` options: a value is read as
    JSON, then as a Python literal (``True``, ``(1, 2)``), else kept as the string."""
    import ast
    import json

    from farslip_ext.errors import ConfigError

    out: Dict[str, Any] = {}
    for item in items or []:
        if "=" not in item:
            raise ConfigError(f"{flag} {item!r}: write KEY=VALUE, e.g. {flag} {example}")
        k, v = item.split("=", 1)
        try:
            out[k.strip()] = json.loads(v)
        except json.JSONDecodeError:
            try:
                out[k.strip()] = ast.literal_eval(v)
            except (ValueError, SyntaxError):
                out[k.strip()] = v
    return out


def plain_text(text: str) -> str:
    """``text`` (a docstring) without reStructuredText markup, for ``--help``: ``x`` and :func:`x` become x."""
    return _LITERAL.sub(r"\1", _ROLE.sub(r"\1", text or ""))


def set_help(parser: argparse.ArgumentParser, dest: str, text: str) -> None:
    """Describe an argument that a shared helper added without a help text."""
    for action in parser._actions:
        if action.dest == dest:
            action.help = text
            return
    raise KeyError(f"{parser.prog} has no argument {dest!r}")


def command_modules() -> List[str]:
    return sorted(m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_"))


def register_all(subparsers: Any) -> None:
    for name in command_modules():
        importlib.import_module(f"{__name__}.{name}").register(subparsers)
