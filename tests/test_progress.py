"""Progress lines: rewritten in place on a terminal, whole and few in a log file."""

import io
import sys

import pytest

from edgenas.progress import LOG_LINES, Progress


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_line_is_rewritten_on_a_terminal_and_whole_in_a_log(monkeypatch):
    for stream, want in ((io.StringIO(), "epoch 1/4 [50/50] loss 1.2 img/s\nepoch 1/4: val 7.38%\n"),
                         (_Terminal(), "\repoch 1/4 [50/50] loss 1.2 img/s\x1b[K\repoch 1/4: val 7.38%\x1b[K\n")):
        monkeypatch.setattr(sys, "stderr", stream)
        bar = Progress()
        bar.update("epoch 1/4 [50/50] loss 1.2 img/s")
        bar.close("epoch 1/4: val 7.38%")
        assert stream.getvalue() == want


def test_a_log_keeps_about_twenty_reports_of_many_and_the_last(monkeypatch):
    monkeypatch.setattr(sys, "stderr", io.StringIO())
    with Progress(503) as bar:
        for n in range(1, 504):
            bar.update(f"step {n}", n)
    lines = sys.stderr.getvalue().splitlines()
    # the first unit (how fast it goes), every 25th, the last
    assert lines[:2] == ["step 1", "step 25"] and lines[-1] == "step 503" and len(lines) == LOG_LINES + 2
    assert all(not line.startswith("\r") for line in lines)


def test_a_slow_task_writes_a_log_line_every_half_minute(monkeypatch):
    """Units of 20 s each: the every-25th rule alone would stay silent for 8 minutes."""
    import edgenas.progress as progress

    clock = iter(range(0, 10_000, 20))
    monkeypatch.setattr(progress.time, "monotonic", lambda: next(clock))
    monkeypatch.setattr(sys, "stderr", io.StringIO())
    with Progress(503) as bar:
        for n in range(1, 8):
            bar.update(f"step {n}", n)
    # the fake clock moves 20 s a reading: after the first unit's line, a line once 30 s have passed
    assert sys.stderr.getvalue().splitlines() == ["step 1", "step 3", "step 5", "step 7"]


def test_eta_says_how_long_is_left():
    from edgenas.progress import eta

    assert eta(0, 10, 5.0) == "" and eta(10, 10, 5.0) == ""
    assert eta(5, 10, 30.0) == ", about 30 s left" and eta(1, 100, 60.0) == ", about 99 min left"


def test_a_failing_task_ends_its_terminal_line_so_the_error_has_its_own(monkeypatch):
    monkeypatch.setattr(sys, "stderr", _Terminal())
    with pytest.raises(ValueError), Progress(10) as bar:
        bar.update("search 3/10", 3)
        raise ValueError("bad")
    assert sys.stderr.getvalue() == "\rsearch 3/10\x1b[K\n"


def test_a_disabled_bar_shows_nothing(monkeypatch):
    for stream in (io.StringIO(), _Terminal()):
        monkeypatch.setattr(sys, "stderr", stream)
        with Progress(5, enabled=False) as bar:
            bar.update("x", 5)
            bar.close("done")
        assert stream.getvalue() == ""
