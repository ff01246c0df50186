"""Subcommands of the ``farslip`` CLI: one module each, discovered by name.

A command module defines ``register(subparsers) -> None`` that adds its parser and sets
``func=<callable(args) -> int>`` with ``set_defaults``. Adding a command is adding a module here.
"""
from __future__ import annotations

import importlib
import pkgutil
from typing import Any, List

__all__ = ["command_modules", "register_all"]


def command_modules() -> List[str]:
    return sorted(m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_"))


def register_all(subparsers: Any) -> None:
    for name in command_modules():
        importlib.import_module(f"{__name__}.{name}").register(subparsers)
