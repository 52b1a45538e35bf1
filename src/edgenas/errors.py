"""The project's error types share one base, so the CLI (and any caller) can tell a problem with the user's
input, files or data, which deserves one line naming what and where, from a bug, which deserves a traceback.

Each subsystem raises its own subclass (``SpecError`` for specs and configs, ``DataError`` for datasets,
``LatencyError``, ``ExportError``, ``WeightLoadError``, ``CheckpointError``); all are ``ValueError``s too, as
they were before this base existed.
"""

from __future__ import annotations


class EdgenasError(ValueError):
    """A problem the user can act on; ``str(err)`` is one line naming the file, field or option."""


class DataError(EdgenasError):
    """A dataset file is missing or malformed; the message names the file."""
