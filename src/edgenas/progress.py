"""Progress lines on stderr, one convention for every long command.

On a terminal a task has one line, rewritten in place and cleared to its end (so a shorter report leaves
nothing of a longer one). In a log file (stderr is not a terminal) every report is a whole line, and a task
that reports each of many units (a search's steps) keeps about ``LOG_LINES`` of them and its last: a log reads
line by line, neither one line of carriage returns nor a line per step.
"""

from __future__ import annotations

import sys

LOG_LINES = 20


class Progress:
    """``update(text, n)`` after the n-th of ``total`` units (``n`` None: always shown); ``close(text)`` ends
    the line. As a context manager it also ends the line when the task fails, so the error gets a line of its
    own. ``enabled=False`` shows nothing (another rank, ``--json`` output)."""

    def __init__(self, total: int | None = None, enabled: bool = True):
        self.total, self.enabled, self.open = total, enabled, False

    def update(self, text: str, n: int | None = None) -> None:
        if not self.enabled:
            return
        if sys.stderr.isatty():
            print("\r" + text + "\x1b[K", end="", file=sys.stderr, flush=True)
            self.open = True
        elif n is None or not self.total or n >= self.total or n % max(1, self.total // LOG_LINES) == 0:
            print(text, file=sys.stderr, flush=True)

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
