"""The progress policy (tqdm on a terminal, periodic log lines otherwise) and the CLI's logging setup."""
from __future__ import annotations

import io
import logging
import warnings

import pytest

from farslip_ext import logs


class _Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def clock(monkeypatch):
    c = _Clock()
    monkeypatch.setattr(logs.time, "monotonic", c)
    return c


def test_mode_follows_the_terminal(monkeypatch):
    monkeypatch.delenv("FARSLIP_PROGRESS", raising=False)
    monkeypatch.setattr(logs, "interactive", lambda stream=None: True)
    assert logs.progress_mode(None) == "bar"
    monkeypatch.setattr(logs, "interactive", lambda stream=None: False)
    assert logs.progress_mode(None) == "log"
    assert logs.progress_mode(True) == "bar" and logs.progress_mode(False) == "off"
    monkeypatch.setenv("FARSLIP_PROGRESS", "off")
    assert logs.progress_mode(None) == "off"
    monkeypatch.setenv("FARSLIP_PROGRESS", "loud")
    with pytest.raises(ValueError, match="FARSLIP_PROGRESS='loud'.*bar"):
        logs.progress_mode(None)


def test_a_tty_gets_a_tqdm_bar(monkeypatch):
    from tqdm import tqdm

    monkeypatch.delenv("FARSLIP_PROGRESS", raising=False)
    monkeypatch.setattr(logs, "interactive", lambda stream=None: True)
    bar = logs.progress(range(3), desc="x")
    assert isinstance(bar, tqdm) and not bar.disable
    assert list(bar) == [0, 1, 2]
    off = logs.progress(range(3), enabled=False)
    assert isinstance(off, tqdm) and off.disable and list(off) == [0, 1, 2]


def test_logs_get_periodic_lines_and_a_final_line(monkeypatch, clock, caplog):
    monkeypatch.delenv("FARSLIP_PROGRESS", raising=False)
    monkeypatch.setattr(logs, "interactive", lambda stream=None: False)
    caplog.set_level(logging.INFO, logger=logs.PROGRESS_LOGGER)
    items = []
    p = logs.progress(range(10), desc="tiles", unit="tile", interval_s=30)
    assert isinstance(p, logs.LogProgress) and p.total == 10
    for i in p:
        items.append(i)
        clock.t += 10  # one item every 10 s: a line every third item
    assert items == list(range(10))
    msgs = [r.getMessage() for r in caplog.records if r.name == logs.PROGRESS_LOGGER]
    assert msgs[0] == "tiles: 3/10 tile (30 %), 0.1 tile/s, about 1 min 10 s left"
    assert len(msgs) == 4  # at 3, 6, 9 items, then the final line
    assert msgs[-1] == "tiles: done, 10 tile in 1 min 40 s"


def test_short_loops_stay_silent(monkeypatch, clock, caplog):
    monkeypatch.setattr(logs, "interactive", lambda stream=None: False)
    monkeypatch.delenv("FARSLIP_PROGRESS", raising=False)
    caplog.set_level(logging.INFO, logger=logs.PROGRESS_LOGGER)
    assert list(logs.progress([1, 2, 3], desc="quick")) == [1, 2, 3]
    assert not [r for r in caplog.records if r.name == logs.PROGRESS_LOGGER]


def test_manual_updates_postfix_and_unknown_total(clock, caplog):
    caplog.set_level(logging.INFO, logger=logs.PROGRESS_LOGGER)
    with logs.LogProgress(desc="train", unit="step", interval_s=5) as p:
        clock.t += 6
        p.set_postfix(loss="0.4321")
        p.update(4)
    msgs = [r.getMessage() for r in caplog.records]
    assert msgs[0] == "train: 4 step, 0.667 step/s [loss=0.4321]"
    assert msgs[-1] == "train: done, 4 step in 6 s [loss=0.4321]"
    with pytest.raises(TypeError, match="update"):
        iter(logs.LogProgress()).__next__()


def _records(stream: io.StringIO):
    return [ln for ln in stream.getvalue().splitlines() if ln]


def test_setup_logging_levels_and_format():
    buf = io.StringIO()
    try:
        logs.setup_logging(0, stream=buf)
        logging.getLogger("farslip_ext.something").info("doing a thing")
        logging.getLogger("farslip_ext.something").debug("detail")
        logging.getLogger("otherlib").info("other chatter")
        logging.getLogger("otherlib").warning("other warning")
        assert _records(buf) == ["doing a thing", "warning: other warning"]
        buf.truncate(0), buf.seek(0)
        logs.setup_logging(1, stream=buf)
        logging.getLogger("otherlib").info("other chatter")
        logging.getLogger("farslip_ext.x").debug("detail")
        assert _records(buf) == ["INFO otherlib: other chatter", "DEBUG farslip_ext.x: detail"]
        buf.truncate(0), buf.seek(0)
        logs.setup_logging(-1, stream=buf)
        logging.getLogger("farslip_ext.x").info("hidden")
        assert _records(buf) == []
    finally:
        logs.restore_logging()


def test_warnings_become_one_line_and_duplicates_are_dropped():
    buf = io.StringIO()
    try:
        logs.setup_logging(0, stream=buf)
        msg = "loading OpenAI weights into a model whose MLPs use nn.GELU; use QuickGELU"
        logging.getLogger("farslip_ext.models.quickgelu").error(msg)
        with warnings.catch_warnings():
            warnings.simplefilter("always")
            warnings.showwarning = logs._show_warning
            warnings.warn(msg, UserWarning)
            warnings.warn("something else entirely", DeprecationWarning)
        assert _records(buf) == [f"error: {msg}", "warning: DeprecationWarning: something else entirely"]
    finally:
        logs.restore_logging()


def test_restore_logging_puts_everything_back():
    root = logging.getLogger()
    before = (list(root.handlers), root.level, logging.getLogger("farslip_ext").level, warnings.showwarning,
              list(warnings.filters))
    logs.setup_logging(0, stream=io.StringIO())
    logs.restore_logging()
    after = (list(root.handlers), root.level, logging.getLogger("farslip_ext").level, warnings.showwarning,
             list(warnings.filters))
    assert after == before
