"""Console output: the one progress policy and the ``farslip`` CLI's logging setup.

Progress (every long loop of the package uses :func:`progress`):

- on a terminal (stderr is a TTY): a tqdm bar;
- otherwise (logs, CI, pipes): a plain line on the ``farslip_ext.progress`` logger every
  ``interval_s`` seconds (default 30, ``$FARSLIP_PROGRESS_INTERVAL``) and a final line when at
  least one was written, so short loops stay silent;
- ``enabled=True`` forces a bar (``--progress``), ``enabled=False`` shows nothing;
- ``$FARSLIP_PROGRESS`` = ``bar``, ``log`` or ``off`` overrides the automatic choice.

Logging (:func:`setup_logging`, called once by the CLI): farslip_ext's INFO messages ("what it is
doing") as plain lines, warnings and errors of every library, all on stderr; ``-v`` adds logger names
and other libraries' INFO, ``-vv`` everything at DEBUG; ``-q`` only warnings and errors. Results are
the command's own output on stdout.
"""
from __future__ import annotations

import logging
import os
import sys
import time
import warnings
from typing import Any, Iterable, Iterator, Optional

from farslip_ext.errors import ConfigError

__all__ = ["progress", "LogProgress", "interactive", "progress_mode", "setup_logging", "restore_logging",
           "release_held", "ConsoleHandler", "PROGRESS_LOGGER"]

PROGRESS_LOGGER = "farslip_ext.progress"
_MODES = ("bar", "log", "off")


def interactive(stream: Any = None) -> bool:
    """True when ``stream`` (default stderr) is a terminal."""
    stream = sys.stderr if stream is None else stream
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # closed or replaced streams
        return False


def progress_mode(enabled: Optional[bool] = None) -> str:
    """``"bar"``, ``"log"`` or ``"off"`` for a caller's ``enabled`` flag (see the module doc)."""
    if enabled is True:
        return "bar"
    if enabled is False:
        return "off"
    env = os.environ.get("FARSLIP_PROGRESS", "").strip().lower()
    if env:
        if env not in _MODES:
            raise ConfigError(f"FARSLIP_PROGRESS={env!r}; use one of {list(_MODES)} (or unset it)")
        return env
    return "bar" if interactive() else "log"


def _interval(interval_s: Optional[float]) -> float:
    if interval_s is not None:
        return float(interval_s)
    raw = os.environ.get("FARSLIP_PROGRESS_INTERVAL", "30")
    try:
        return float(raw)
    except ValueError:
        raise ConfigError(f"FARSLIP_PROGRESS_INTERVAL={raw!r} is not a number of seconds") from None


def progress(iterable: Optional[Iterable] = None, *, total: Optional[int] = None, desc: str = "",
             unit: str = "it", enabled: Optional[bool] = None, interval_s: Optional[float] = None,
             logger: Optional[logging.Logger] = None, **tqdm_kwargs: Any):
    """Wrap ``iterable`` (or count by hand with ``.update(n)``) with the package's progress policy.

    Returns a tqdm bar or a :class:`LogProgress`; both iterate, and both have ``update(n)``,
    ``set_postfix(**kw)``, ``set_postfix_str(s)``, ``set_description(s)``, ``close()`` and work as
    context managers. ``tqdm_kwargs`` (``leave``, ``dynamic_ncols``, ``initial``...) go to tqdm only,
    except ``initial``, which both honour.
    """
    if total is None and iterable is not None:
        try:
            total = len(iterable)  # type: ignore[arg-type]
        except TypeError:
            total = None
    mode = progress_mode(enabled)
    if mode == "log":
        return LogProgress(iterable, total=total, desc=desc, unit=unit, interval_s=_interval(interval_s),
                           logger=logger, initial=int(tqdm_kwargs.get("initial", 0)))
    from tqdm.auto import tqdm

    return tqdm(iterable, total=total, desc=desc or None, unit=unit, disable=mode == "off", file=sys.stderr,
                **tqdm_kwargs)


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    m, s = divmod(seconds, 60)
    if m < 60:
        return f"{m} min {s:02d} s"
    h, m = divmod(m, 60)
    return f"{h} h {m:02d} min"


class LogProgress:
    """tqdm's counting API, written as plain log lines every ``interval_s`` seconds (non-terminal output)."""

    def __init__(self, iterable: Optional[Iterable] = None, *, total: Optional[int] = None, desc: str = "",
                 unit: str = "it", interval_s: float = 30.0, logger: Optional[logging.Logger] = None,
                 initial: int = 0) -> None:
        self.iterable = iterable
        self.total = total
        self.desc = desc
        self.unit = unit
        self.interval_s = float(interval_s)
        self.n = int(initial)
        self._start_n = self.n
        self._log = logger or logging.getLogger(PROGRESS_LOGGER)
        self._t0 = self._last = time.monotonic()
        self._postfix = ""
        self._lines = 0
        self._closed = False

    def __iter__(self) -> Iterator:
        if self.iterable is None:
            raise TypeError("this progress object was created without an iterable; call update(n) instead")
        try:
            for item in self.iterable:
                yield item
                self.update(1)
        finally:
            self.close()

    def __len__(self) -> int:
        if self.total is None:
            raise TypeError("progress without a total has no len()")
        return int(self.total)

    def __enter__(self) -> "LogProgress":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def update(self, n: int = 1) -> None:
        self.n += int(n)
        now = time.monotonic()
        if now - self._last >= self.interval_s:
            self._last = now
            self._emit(now)

    def set_postfix(self, ordered_dict: Any = None, refresh: bool = True, **kwargs: Any) -> None:
        items = dict(ordered_dict or {}, **kwargs)
        self._postfix = ", ".join(f"{k}={v}" for k, v in items.items())

    def set_postfix_str(self, s: str = "", refresh: bool = True) -> None:
        self._postfix = str(s)

    def set_description(self, desc: Optional[str] = None, refresh: bool = True) -> None:
        self.desc = desc or ""

    def refresh(self) -> None:
        pass

    def write(self, s: str) -> None:
        self._log.info("%s", s)

    def _rate(self, now: float) -> Optional[float]:
        dt = now - self._t0
        return (self.n - self._start_n) / dt if dt > 0 else None

    def _emit(self, now: float) -> None:
        rate = self._rate(now)
        head = f"{self.desc}: " if self.desc else ""
        if self.total:
            text = f"{head}{self.n}/{self.total} {self.unit} ({100.0 * self.n / self.total:.0f} %)"
            if rate:
                text += f", {rate:.3g} {self.unit}/s, about {_duration(max(0, self.total - self.n) / rate)} left"
        else:
            text = f"{head}{self.n} {self.unit}" + (f", {rate:.3g} {self.unit}/s" if rate else "")
        if self._postfix:
            text += f" [{self._postfix}]"
        self._lines += 1
        self._log.info("%s", text)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._lines:  # long work: say it finished; short loops stay silent
            now = time.monotonic()
            head = f"{self.desc}: " if self.desc else ""
            tail = f" [{self._postfix}]" if self._postfix else ""
            self._log.info("%sdone, %d %s in %s%s", head, self.n, self.unit, _duration(now - self._t0), tail)


# ------------------------------------------------------------------------------------------ logging
class ConsoleHandler(logging.StreamHandler):
    """stderr handler that keeps tqdm bars intact and never shows the same message twice.

    An ERROR record of another library (e.g. open_clip's ``logging.error(msg)`` right before it raises
    the same ``msg``) is held back until the next record or :meth:`release_held`; the CLI releases it with
    the text of the error it is about to print, and a held message contained in it is dropped.
    """

    def __init__(self, stream: Any = None) -> None:
        super().__init__(stream if stream is not None else sys.stderr)
        self._recent: list = []
        self._held: Optional[logging.LogRecord] = None

    def emit(self, record: logging.LogRecord) -> None:
        if self._held is not None and record is not self._held:
            held, self._held = self._held, None
            self._write(held)
        if record.levelno >= logging.ERROR and not record.name.startswith("farslip_ext"):
            self._held = record
            return
        self._write(record)

    def release_held(self, final_error: Optional[str] = None) -> None:
        """Write a held-back record, unless ``final_error`` already says the same."""
        held, self._held = self._held, None
        if held is None:
            return
        msg = " ".join(held.getMessage().split())
        if final_error and msg and msg in " ".join(final_error.split()):
            return
        self._write(held)

    def _repeats(self, record: logging.LogRecord, msg: str) -> bool:
        if msg in self._recent:
            return True
        # logger.error(msg) followed by warnings.warn(msg): the warning line holds the message
        return record.name == "py.warnings" and any(len(seen) >= 20 and seen in msg for seen in self._recent)

    def _write(self, record: logging.LogRecord) -> None:
        msg = record.getMessage().strip()
        if msg and self._repeats(record, msg):
            return
        self._recent = (self._recent + [msg])[-8:]
        try:
            text = self.format(record)
            tq = sys.modules.get("tqdm")
            bars = getattr(getattr(tq, "tqdm", None), "_instances", None) if tq else None
            if bars:
                tq.tqdm.write(text, file=self.stream)
            else:
                self.stream.write(text + self.terminator)
                self.flush()
        except Exception:  # pragma: no cover - logging must never raise
            self.handleError(record)


class _ConsoleFormatter(logging.Formatter):
    def __init__(self, verbose: bool) -> None:
        super().__init__()
        self.verbose = verbose

    def format(self, record: logging.LogRecord) -> str:
        msg = record.getMessage()
        if self.verbose:
            text = f"{record.levelname} {record.name}: {msg}"
        elif record.levelno >= logging.ERROR:
            text = f"error: {msg}"
        elif record.levelno >= logging.WARNING:
            text = f"warning: {msg}"
        else:
            text = msg
        if record.exc_info and self.verbose:
            text += "\n" + self.formatException(record.exc_info)
        return text


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    where = f" ({filename}:{lineno})" if logging.getLogger("py.warnings").isEnabledFor(logging.DEBUG) else ""
    logging.getLogger("py.warnings").warning("%s: %s%s", category.__name__, message, where)


_HANDLER: Optional[ConsoleHandler] = None
_SAVED: Optional[tuple] = None

#: Warnings of other libraries that say nothing to a farslip user; shown with -v only.
HARMLESS_WARNINGS = (
    r"Fail to import ``MultiScaleDeformableAttention``",  # mmcv-lite: the op is not used by farslip_ext
    r"The draw is False, it means that the hook for visualization",  # mmseg: OVSS runs do not draw
)


def setup_logging(verbosity: int = 0, stream: Any = None) -> ConsoleHandler:
    """Route all logging to one :class:`ConsoleHandler` on stderr (see the module doc for the levels).

    ``verbosity``: -1 (``-q``), 0 (default), 1 (``-v``), 2 (``-vv``). Python warnings become one
    ``warning: Category: message`` line each. :func:`restore_logging` undoes it (the CLI does, so
    in-process calls such as tests leave no handler behind).
    """
    global _HANDLER, _SAVED
    restore_logging()
    root, ours, pyw = logging.getLogger(), logging.getLogger("farslip_ext"), logging.getLogger("py.warnings")
    _SAVED = (root.level, ours.level, pyw.level, warnings.showwarning, list(warnings.filters))
    handler = ConsoleHandler(stream)
    handler.setFormatter(_ConsoleFormatter(verbose=verbosity >= 1))
    root.addHandler(handler)
    _HANDLER = handler
    root.setLevel(logging.DEBUG if verbosity >= 2 else logging.INFO if verbosity >= 1 else logging.WARNING)
    ours.setLevel(logging.WARNING if verbosity < 0 else logging.DEBUG if verbosity >= 1 else logging.INFO)
    pyw.setLevel(logging.DEBUG if verbosity >= 2 else logging.WARNING)
    warnings.showwarning = _show_warning
    if verbosity < 1:
        for pattern in HARMLESS_WARNINGS:
            warnings.filterwarnings("ignore", message=pattern)
    return handler


def release_held(final_error: Optional[str] = None) -> None:
    """Write the record :class:`ConsoleHandler` holds back, unless ``final_error`` contains it."""
    if _HANDLER is not None:
        _HANDLER.release_held(final_error)


def restore_logging() -> None:
    """Remove the handler of :func:`setup_logging` and restore the levels and ``warnings.showwarning``."""
    global _HANDLER, _SAVED
    if _HANDLER is not None:
        _HANDLER.release_held()
        logging.getLogger().removeHandler(_HANDLER)
        _HANDLER = None
    if _SAVED is not None:
        root_level, ours_level, pyw_level, show, filters = _SAVED
        logging.getLogger().setLevel(root_level)
        logging.getLogger("farslip_ext").setLevel(ours_level)
        logging.getLogger("py.warnings").setLevel(pyw_level)
        warnings.showwarning = show
        warnings.filters[:] = filters
        warnings._filters_mutated()  # type: ignore[attr-defined]
        _SAVED = None
