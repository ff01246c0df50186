"""The ``farslip`` command line. Subcommands live in :mod:`farslip_ext.commands` (one module each).

Errors: an expected failure (:class:`~farslip_ext.errors.FarSLIPError`, an OS error such as a full disk,
a read-only folder or a missing file) is one line on stderr, ``farslip <command>: error: ...``, and exit
code 2; ``-v`` (before or after the subcommand) adds the traceback. Anything else is a bug: its
traceback is printed with a one-line hint, exit code 1.
"""
from __future__ import annotations

import argparse
import errno
import os
import re
import sys
import traceback
from typing import List, Optional

__all__ = ["main", "build_parser", "describe_error", "is_expected_error"]

_PKG_DIR = os.path.dirname(os.path.abspath(__file__))


def _add_verbosity(parser: argparse.ArgumentParser, dest_v: str, dest_q: str, default) -> None:
    g = parser.add_argument_group("output")
    g.add_argument("-v", "--verbose", dest=dest_v, action="count", default=default,
                   help="more output: -v adds logger names, other libraries' messages and the traceback of an "
                        "error; -vv everything (DEBUG)")
    g.add_argument("-q", "--quiet", dest=dest_q, action="count", default=default,
                   help="only warnings, errors and the result")


def build_parser() -> argparse.ArgumentParser:
    from farslip_ext.commands import plain_text, register_all

    p = argparse.ArgumentParser(
        prog="farslip", description="FarSLIP on OpenCLIP: models, weights, training, evaluation, segmentation.",
        epilog="Run `farslip COMMAND --help` for the options of a command. Exit codes: 0 success, 2 a usage or "
               "input error (one line on stderr; -v shows its traceback), 1 an internal error (a bug).")
    _add_verbosity(p, "verbose", "quiet", 0)
    sub = p.add_subparsers(dest="cmd", required=True, metavar="COMMAND")
    register_all(sub)
    helps = {a.dest: a.help for a in sub._choices_actions}
    for name, sp in sub.choices.items():
        _add_verbosity(sp, "verbose_sub", "quiet_sub", argparse.SUPPRESS)  # -v/-q after the subcommand too
        # --help is plain text: no reStructuredText markup from docstrings, and never without a description
        sp.description = plain_text(sp.description or helps.get(name) or "")
        for action in sp._actions:
            if isinstance(action.help, str) and action.help != argparse.SUPPRESS:
                action.help = plain_text(action.help)
    return p


# ---------------------------------------------------------------------------------------------- errors
_OS_FIXES = {
    errno.ENOSPC: "free space on that disk or write somewhere else",
    errno.EACCES: "check its permissions or choose a folder you can write to",
    errno.EPERM: "check its permissions or choose a folder you can write to",
    errno.EROFS: "write somewhere else, or remount that file system read-write",
    errno.ENOENT: "check the path (relative paths start at the current folder)",
    errno.EISDIR: "it is a folder; give a file path",
    errno.ENOTDIR: "a part of the path is a file, not a folder",
    errno.EEXIST: "remove it or choose another path",
    errno.EDQUOT: "the disk quota is exhausted; free space or write somewhere else",
}


def _raised_on_purpose(exc: BaseException) -> bool:
    """True when a ``raise`` statement inside farslip_ext raised ``exc`` with a written message."""
    tb = traceback.extract_tb(exc.__traceback__)
    if not tb or not exc.args or not isinstance(exc.args[0], str):
        return False
    last = tb[-1]
    inside = os.path.abspath(last.filename).startswith(_PKG_DIR + os.sep)
    return inside and (last.line or "").lstrip().startswith("raise")


def is_expected_error(exc: BaseException) -> bool:
    """Whether the CLI reports ``exc`` as one line (exit 2) rather than as a bug (traceback, exit 1).

    Expected: every :class:`~farslip_ext.errors.FarSLIPError`; every ``OSError`` (missing file, full disk,
    permissions); and ``ValueError``/``KeyError``/``TypeError``/``RuntimeError`` raised by a ``raise``
    statement of farslip_ext with a written message (modules that predate ``FarSLIPError``) or caused by
    one of the former (a library wrapping a failed download, say).
    """
    from farslip_ext.errors import FarSLIPError

    if isinstance(exc, (FarSLIPError, OSError)):
        return True
    if isinstance(exc, (ValueError, LookupError, TypeError, RuntimeError)):
        if _raised_on_purpose(exc):
            return True
        # a library's error caused by an OS error (e.g. open_clip's RuntimeError over a failed download)
        return any(isinstance(c, (FarSLIPError, OSError)) for c in _causes(exc))
    return False


def _causes(exc: BaseException):
    seen = {id(exc)}
    cur = exc.__cause__ or (None if exc.__suppress_context__ else exc.__context__)
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        yield cur
        cur = cur.__cause__ or (None if cur.__suppress_context__ else cur.__context__)


#: The temporary name :func:`farslip_ext.io.atomic_path` writes before renaming: ``.NAME.PID.partial``.
_PARTIAL = re.compile(r"^\.(?P<name>.+)\.\d+\.partial$")


def _user_path(path: object) -> str:
    """The path the user asked for: a temporary ``.NAME.PID.partial`` file is reported as ``NAME``."""
    text = os.fsdecode(path) if isinstance(path, (str, bytes, os.PathLike)) else str(path)
    head, tail = os.path.split(text)
    m = _PARTIAL.match(tail)
    return os.path.join(head, m.group("name")) if m else text


def describe_error(exc: BaseException) -> str:
    """One line: what failed, naming the path or value, and the fix."""
    if isinstance(exc, OSError) and exc.errno is not None and exc.filename is not None and exc.strerror:
        # a raw OS error ("[Errno 13] Permission denied: 'x'"): name the path and say what to do
        path = _user_path(exc.filename)
        if exc.filename2 is not None:
            path = f"{path} -> {_user_path(exc.filename2)}"
        fix = _OS_FIXES.get(exc.errno)
        text = f"{exc.strerror.lower()}: {path}" + (f"; {fix}" if fix else "")
    elif isinstance(exc, OSError) and exc.errno is not None and exc.strerror:
        text = exc.strerror  # without the "[Errno 28] " prefix
        if exc.strerror == os.strerror(exc.errno) and exc.errno in _OS_FIXES:  # the bare OS text: add the fix
            text = f"{text.lower()}; {_OS_FIXES[exc.errno]}"
    elif isinstance(exc, KeyError) and len(exc.args) == 1 and isinstance(exc.args[0], str):
        text = exc.args[0]  # str(KeyError) would add quotes
    else:
        text = str(exc) or type(exc).__name__
    return " ".join(text.split())


def _verbosity(args: argparse.Namespace) -> int:
    v = int(getattr(args, "verbose", 0) or 0) + int(getattr(args, "verbose_sub", 0) or 0)
    q = int(getattr(args, "quiet", 0) or 0) + int(getattr(args, "quiet_sub", 0) or 0)
    return v - q


def main(argv: Optional[List[str]] = None) -> int:
    from farslip_ext import logs

    args = build_parser().parse_args(argv)
    verbosity = args.verbosity = _verbosity(args)
    logs.setup_logging(verbosity)
    prog = f"farslip {args.cmd}"
    try:
        rc = int(args.func(args) or 0)
        logs.release_held()
        return rc
    except KeyboardInterrupt:
        logs.release_held()
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # noqa: BLE001 - the one place that turns exceptions into exit codes
        line = describe_error(e)
        logs.release_held(line)
        if is_expected_error(e):
            if verbosity >= 1:
                traceback.print_exception(e, file=sys.stderr)
            print(f"{prog}: error: {line}", file=sys.stderr)
            return 2
        traceback.print_exception(e, file=sys.stderr)
        print(f"{prog}: internal error ({type(e).__name__}: {line}). This is a bug in farslip_ext or a plugin, not "
              f"in your input: please report it with the traceback above.", file=sys.stderr)
        return 1
    finally:
        sys.stdout.flush()
        logs.restore_logging()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
