"""`--help` of every command: every argument says what it does, no raw reStructuredText markup."""
from __future__ import annotations

import argparse

import pytest

from farslip_ext.cli import build_parser

#: Every subcommand (the argument checks below run on each).
COMMANDS = ("benchmark", "convert", "demo", "export", "list", "ovss", "ovss-check", "ovss-convert", "retrieval",
            "segment", "selfcheck", "train", "zeroshot")


def _subparsers(p: argparse.ArgumentParser):
    (action,) = [a for a in p._actions if isinstance(a, argparse._SubParsersAction)]
    return action


def test_every_command_has_a_help_line():
    sub = _subparsers(build_parser())
    helps = {a.dest: a.help for a in sub._choices_actions}
    assert set(helps) == set(sub.choices) == set(COMMANDS)
    for name, text in helps.items():
        assert text and len(text) > 15, name


@pytest.mark.parametrize("cmd", COMMANDS)
def test_every_argument_is_described(cmd):
    sp = _subparsers(build_parser()).choices[cmd]
    for action in sp._actions:
        if isinstance(action, argparse._HelpAction):
            continue
        assert action.help and action.help != argparse.SUPPRESS, (cmd, action.dest)
    text = sp.format_help()
    assert "``" not in text and ":func:" not in text and ":mod:" not in text and ":class:" not in text, text
    assert "§" not in text, text
    assert sp.description, cmd


@pytest.mark.parametrize("cmd", COMMANDS)
def test_help_prints_and_exits_zero(cmd, capsys):
    from farslip_ext.cli import main

    with pytest.raises(SystemExit) as e:
        main([cmd, "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: farslip {cmd}") and "-v, --verbose" in out


def test_top_level_help_names_the_exit_codes(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--help"])
    out = capsys.readouterr().out
    assert "Exit codes" in out and "-v, --verbose" in out and "-q, --quiet" in out


def test_plain_text_strips_markup():
    from farslip_ext.commands import plain_text

    assert plain_text("``farslip x`` calls :func:`~farslip_ext.load` and :class:`Foo`") == \
        "farslip x calls farslip_ext.load and Foo"


def test_docs_cli_lists_every_command():
    from pathlib import Path

    text = (Path(__file__).resolve().parents[2] / "docs" / "cli.md").read_text(encoding="utf-8")
    table = [ln for ln in text.splitlines() if ln.startswith("| `")]
    named = {name for ln in table for name in ln.split("|")[1].replace("`", "").replace(" ", "").split(",")}
    assert named == set(COMMANDS)
