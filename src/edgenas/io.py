"""Writing files so that nothing already written is lost: a temporary name in the same folder, then rename;
reading torch files so that a bad one is named with what is wrong with it.

A writer killed between the two (SIGKILL, power loss) leaves its temporary file, ``.<name>.<pid>.tmp``; the
next writer of the same file, and a run opening its folder, remove those whose process is gone.
"""

from __future__ import annotations

import glob
import os
import re
from pathlib import Path
from typing import Callable

from .errors import EdgenasError

_TEMP = re.compile(r"^\.(?P<name>.+)\.(?P<pid>\d+)\.tmp$")


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def remove_stale_temps(folder: str | Path, name: str | None = None) -> list[Path]:
    """Remove the temporary files in ``folder`` (of ``name`` only, if given) whose writer no longer runs;
    returns them. A live writer's file is left alone, so two processes never race over one."""
    folder = Path(folder)
    removed = []
    for path in folder.glob(f".{glob.escape(name) if name else '*'}.*.tmp"):
        m = _TEMP.match(path.name)
        if m and (name is None or m["name"] == name) and not _alive(int(m["pid"])):
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed


def open_folder(path: str | Path) -> Path:
    """A run's output folder, created if absent and cleaned of what killed writers left in it."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise EdgenasError(f"{path}: is a file, not a folder; choose another --out")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise EdgenasError(f"{path}: cannot create the folder ({err.strerror})") from None
    remove_stale_temps(path)
    return path


def writable(path: str | Path) -> Path:
    """``path``, checked to name a file that can be written (not a folder, not under a file), so a command
    can refuse a wrong output before its work rather than after it."""
    path = Path(path)
    if path.is_dir():
        raise EdgenasError(f"{path}: is a folder; give a file name")
    for parent in path.parents:  # the nearest existing ancestor must be a folder
        if parent.exists():
            if not parent.is_dir():
                raise EdgenasError(f"{path}: {parent} is a file, not a folder")
            break
    return path


def write_atomic(path: str | Path, data: str | bytes | Callable[[Path], None]) -> Path:
    """Write ``data`` (text, bytes, or a function that writes to the path it is given) to ``path`` atomically.
    Parent folders are created; a crash leaves either the old file or the new one, never half of one."""
    path = writable(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_temps(path.parent, path.name)
        if isinstance(data, str):
            tmp.write_text(data)
        elif isinstance(data, bytes):
            tmp.write_bytes(data)
        else:
            data(tmp)
        tmp.replace(path)
    except OSError as err:
        raise EdgenasError(f"{path}: cannot write ({err.strerror or err})") from None
    finally:
        tmp.unlink(missing_ok=True)  # an error, not a kill: nothing left behind
    return path


_ZIP_MAGIC = b"PK\x03\x04"  # torch.save writes a zip archive


def load_torch(path: str | Path, error: type[EdgenasError], what: str):
    """``torch.load(path, weights_only=True)`` on the CPU; a file that is missing, empty, cut short, not
    PyTorch's, or holding more than weights raises ``error`` naming the file and which of these it is."""
    import torch

    path = Path(path)
    a = "an" if what[:1] in "aeiou" else "a"
    if not path.is_file():
        raise error(f"{path}: no such {what}" if not path.exists() else f"{path}: a folder, not {a} {what}")
    with open(path, "rb") as f:
        head = f.read(4)
    if not head:
        raise error(f"{path}: empty (0 bytes), not {a} {what}; was its write cut short?")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch.load's failures on a bad file have no common type
        if head != _ZIP_MAGIC:
            raise error(f"{path}: not a PyTorch file (torch.save writes a zip archive), so not {a} {what}") from None
        if "Weights only load failed" in str(err):
            raise error(f"{path}: holds Python objects beyond tensors, numbers and strings, which edgenas does not "
                        f"load (that would run the code they name); not {a} {what}") from None
        reason = str(err).split(". ")[0].rsplit(": ", 1)[-1]
        raise error(f"{path}: truncated or corrupted ({reason}); not a usable {what}") from None
