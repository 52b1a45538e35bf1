"""Progress lines on stderr, one convention for every long command.

On a terminal a task has one line, rewritten in place and cleared to its end (so a shorter report leaves
nothing of a longer one). In a log file (stderr is not a terminal) every report is a whole line, and a task
that reports each of many units (a search's steps) keeps about ``LOG_LINES`` of them and its last: a log reads
line by line, neither one line of carriage returns nor a line per step. A log also gets the first unit's line
(how fast it goes) and a line whenever ``LOG_SECONDS`` passed without one, so a slow start is never silent.
``note`` writes one whole line: what a command is doing before its first unit.
"""

from __future__ import annotations

import sys
import time

LOG_LINES = 20
LOG_SECONDS = 30.0


def note(text: str, enabled: bool = True) -> None:
    """One whole line on stderr: a phase starting (``enabled=False``: another rank, ``--json`` output)."""
    if enabled:
        print(text, file=sys.stderr, flush=True)


def eta(done: int, total: int, seconds: float) -> str:
    """"about N s left" from the pace so far ("" before the first unit)."""
    if done <= 0 or done >= total:
        return ""
    left = seconds / done * (total - done)
    return f", about {left / 60:.0f} min left" if left >= 120 else f", about {left:.0f} s left"


class Progress:
    """``update(text, n)`` after the n-th of ``total`` units (``n`` None: always shown); ``close(text)`` ends
    the line. As a context manager it also ends the line when the task fails, so the error gets a line of its
    own. ``enabled=False`` shows nothing (another rank, ``--json`` output)."""

    def __init__(self, total: int | None = None, enabled: bool = True):
        self.total, self.enabled, self.open = total, enabled, False
        self.last = time.monotonic()  # when a log line was last written

    def update(self, text: str, n: int | None = None) -> None:
        if not self.enabled:
            return
        if sys.stderr.isatty():
            print("\r" + text + "\x1b[K", end="", file=sys.stderr, flush=True)
            self.open = True
        elif (n is None or not self.total or n <= 1 or n >= self.total or n % max(1, self.total // LOG_LINES) == 0
              or time.monotonic() - self.last >= LOG_SECONDS):
            print(text, file=sys.stderr, flush=True)
            self.last = time.monotonic()

    def close(self, text: str | None = None) -> None:
        """End the task's line, with ``text`` as its last report when given."""
        if text is not None:
            self.update(text)
        if self.open:
            print(file=sys.stderr, flush=True)
            self.open = False

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
