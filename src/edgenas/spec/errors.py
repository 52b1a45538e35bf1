"""One error type for every invalid spec, with a one-line message that names the path."""

from __future__ import annotations

import reprlib

from pydantic import ValidationError

from ..errors import EdgenasError
from .blocks import BLOCK_TYPES


class SpecError(EdgenasError):
    """An architecture or search-space spec is invalid. ``str(err)`` is one line: ``path: problem``.

    ``loc`` is the same place as data (``("stages", 2, "blocks", 1, "group_size")``) when the error has one, so
    code that reacts to where a spec broke (a search redrawing that block) never parses the message."""

    def __init__(self, message: str, loc: tuple = ()):
        super().__init__(one_line(message))
        self.loc = tuple(loc)


class UnknownName(SpecError, KeyError):
    """A model or search space name that is not registered. Also a ``KeyError``, which is what looking one up
    raised before the project had its own errors."""

    __str__ = Exception.__str__  # KeyError's would quote the message


def one_line(text: str) -> str:
    """``text`` with line breaks and other control characters escaped: user text (a key, a file name) inside a
    message must not break the one-line promise."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def _plain_loc(loc: tuple) -> tuple:
    """A pydantic location without the discriminated-union tags (``stages.2.blocks.1.gc_ibn.group_size``) and
    validator-step names it inserts: they name a variant or a function, not a field a user can find."""
    out = []
    for i, part in enumerate(loc):
        if isinstance(part, str) and part in BLOCK_TYPES and i > 0 and isinstance(loc[i - 1], int):
            continue
        if isinstance(part, str) and part.startswith("function-"):
            continue
        out.append(part)
    return tuple(out)


def format_loc(loc: tuple) -> str:
    """Turn a location tuple into ``stages[2].blocks[1].group_size``."""
    out = ""
    for part in _plain_loc(loc):
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else part
    return out


# pydantic names the member of a scalar union (``expand_ratio: int | float``) that failed: one error per member,
# each at ``expand_ratio.int`` / ``.float``, for what a user sees as one field.
_SCALAR_MEMBERS = ("int", "float")


def from_validation_error(err: ValidationError, root: str = "") -> SpecError:
    """Collapse a pydantic ``ValidationError`` into a one-line ``SpecError`` (``loc``: its first error's)."""
    lines, locs = [], []
    for e in err.errors(include_url=False):
        msg = e["msg"].removeprefix("Value error, ").removeprefix("Assertion failed, ")
        loc = _plain_loc(tuple(e["loc"]))
        if (e["type"] != "extra_forbidden" and len(loc) > 1 and loc[-1] in _SCALAR_MEMBERS
                and isinstance(loc[-2], str)):
            loc = loc[:-1]
        cause = (e.get("ctx") or {}).get("error")
        if isinstance(cause, SpecError):  # a cross-field check: its message already names its own path
            msg, loc = str(cause), loc + cause.loc
            path = ""
        else:
            path = format_loc(loc)
        if root:
            path = f"{root}.{path}" if path else root
        if e["type"] == "missing":
            msg = "is required"
        elif e["type"] == "extra_forbidden":
            msg = "is not a known field"
        elif e["type"] == "union_tag_invalid":
            kind = reprlib.repr(e["input"].get("type"))  # bounded: the value may be a huge nested list
            msg = f"unknown block type {kind} (known: {', '.join(sorted(BLOCK_TYPES))})"
        elif e["type"] == "union_tag_not_found":
            msg = "a block needs a 'type' field"
        line = f"{path}: {msg}" if path else msg
        if line not in lines:
            lines.append(line)
            locs.append(loc)
    more = f" (and {len(lines) - 1} more: {'; '.join(lines[1:3])})" if len(lines) > 1 else ""
    return SpecError(lines[0] + more, loc=locs[0])
