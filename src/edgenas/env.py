"""The environment a result was measured in; every result file carries it."""

from __future__ import annotations

import json
import os
import platform
import re
import shlex
import subprocess
import sys
import tempfile
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

from . import __version__
from .io import write_atomic

_PACKAGE = Path(__file__).resolve().parent
# an absolute path inside a string: after a start, a space, "=", a quote or a bracket (not a URL, not ms/step)
_ABSOLUTE = re.compile(r"(?<![\w.~<>/:-])/[\w.@%+~,-]+(?:/[\w.@%+~,-]+)*/?")


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


def _roots() -> list[tuple[str, str]]:
    """(absolute folder, what a record writes for it), longest first so that a folder inside another one wins.
    The checkout and the working folder become relative paths; the data and temporary folders get a name."""
    checkout = _PACKAGE.parents[1]
    shared = os.environ.get("EDGENAS_SHARED") or checkout.parent / "shared"
    source = [(checkout, "")] if (checkout / "pyproject.toml").is_file() else []  # not a wheel's folder
    named = [(Path.cwd(), ""), *source, (shared, "<shared>"), ("/usr/share/datasets", "<datasets>"),
             (tempfile.gettempdir(), "<tmp>"), (Path.home(), "~")]
    roots = {os.path.realpath(p): name for p, name in reversed(named) if os.path.realpath(p) != "/"}
    return sorted(roots.items(), key=lambda r: -len(r[0]))


def portable(value, roots: list[tuple[str, str]] | None = None):
    """``value`` (a record: dicts, lists, strings) with every absolute path of this machine written relative
    to the working folder or the checkout (``tests/x``, ``../runs``), or under a named root
    (``<shared>/data``, ``<datasets>/fashion-mnist``, ``<tmp>/x``, ``~/.cache``): a record says what ran, not
    where."""
    roots = _roots() if roots is None else roots  # once per record, not per string
    if isinstance(value, dict):
        return {portable(k, roots): portable(v, roots) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [portable(v, roots) for v in value]
    if not isinstance(value, str) or "/" not in value:
        return value

    def one(m: re.Match) -> str:
        path = os.path.normpath(m.group(0))
        for root, name in roots:
            if path == root or path.startswith(root + "/"):
                rest = path[len(root) + 1:]
                return (f"{name}/{rest}" if rest else name) if name else (rest or ".")
        return os.path.relpath(path)

    return _ABSOLUTE.sub(one, value)


def _command_name(argv0: str) -> str:
    return Path(argv0).name if argv0.startswith("/") and not argv0.endswith(".py") else argv0


def environment(threads: int | None = None) -> dict:
    env = {
        "edgenas": __version__,
        "git_commit": git_commit(),
        # an installed entry point by its name (edgenas), a script as given; machine paths made portable
        "command": portable(shlex.join([_command_name(sys.argv[0]), *sys.argv[1:]]) if sys.argv else ""),
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
    # through JSON first, so that numpy values and paths are plain text when the machine's paths are taken out
    plain = json.loads(json.dumps(record, default=_plain))
    return write_atomic(path, json.dumps(portable(plain), indent=1) + "\n")
