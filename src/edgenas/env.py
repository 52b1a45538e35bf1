"""The environment a result was measured in; every result file carries it."""

from __future__ import annotations

import json
import os
import platform
import shlex
import subprocess
import sys
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

from . import __version__
from .io import write_atomic

_PACKAGE = Path(__file__).resolve().parent


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _git(*args: str) -> subprocess.CompletedProcess | None:
    try:
        return subprocess.run(["git", *args], cwd=_PACKAGE, capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.SubprocessError):  # no git, or a hung one: the record goes out without it
        return None


def git_commit() -> str | None:
    """The commit the running package's source belongs to: a short hash, "-dirty" appended when tracked files
    differ from it. None when the package is not a tracked part of a git checkout (a wheel installed into a
    virtualenv that happens to sit inside a checkout is not that checkout's code) or git is unavailable."""
    tracked = _git("ls-files", "--error-unmatch", Path(__file__).name)
    if tracked is None or tracked.returncode != 0:
        return None
    head = _git("rev-parse", "--short", "HEAD")
    if head is None or head.returncode != 0:
        return None
    status = _git("status", "--porcelain", "--untracked-files=no")
    # an unreadable status must not pass for a clean tree
    dirty = status is None or status.returncode != 0 or bool(status.stdout.strip())
    return head.stdout.strip() + ("-dirty" if dirty else "")


def environment(threads: int | None = None) -> dict:
    env = {
        "edgenas": __version__,
        "git_commit": git_commit(),
        "command": shlex.join(sys.argv),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    if "torch" in sys.modules or threads is not None:
        import torch

        env.update(torch=torch.__version__, threads=threads or torch.get_num_threads())
    for module, dist in (("onnxruntime", "onnxruntime"), ("ai_edge_litert", "ai-edge-litert")):
        if module in sys.modules:  # only the runtimes the measurement itself loaded
            try:
                env[module] = metadata.version(dist)
            except metadata.PackageNotFoundError:
                pass
    return env


def _plain(value):
    # numpy scalars and arrays (and tensors) give plain numbers through .tolist(); anything else is written as text
    return value.tolist() if hasattr(value, "tolist") else str(value)


def write_record(path: str | Path, data: dict, threads: int | None = None) -> Path:
    """Write ``data`` as a JSON record to ``path`` atomically, with the environment it was measured in under
    "environment". Fields the caller put there (a GPU's name) are kept; the ones ``environment()`` gives are
    always fresh, so a record read back, extended and rewritten never carries a stale date or commit."""
    record = {**data, "environment": {**data.get("environment", {}), **environment(threads)}}
    return write_atomic(path, json.dumps(record, indent=1, default=_plain) + "\n")
