"""One error type for every invalid spec, with a one-line message that names the path."""

from __future__ import annotations

import reprlib

from pydantic import ValidationError

from ..errors import EdgenasError
from .blocks import BLOCK_TYPES
from .ops import OP_ALIASES, OP_TYPES

# the tags pydantic inserts into a location after a tagged union's place: a list item (a block, a node op), a
# head or a classifier (not every name: an Arch's head has a ``dropout`` field, a node op type too)
_TAGS = {int: set(BLOCK_TYPES) | OP_TYPES, "head": {"segmentation", "ssd"}, "classifier": OP_TYPES}
# an error names its first few problems and counts the rest: a spec with 100,000 bad entries gets one short line
_NAMED = 3


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


def fail(loc: tuple, message: str):
    """Raise the ``SpecError`` of a check that knows where in the spec it looks: ``path: message``."""
    raise SpecError(f"{format_loc(loc)}: {message}", loc=loc)


def one_line(text: str) -> str:
    """``text`` with line breaks and other control characters escaped: user text (a key, a file name) inside a
    message must not break the one-line promise."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def _plain_loc(loc: tuple) -> tuple:
    """A pydantic location without the discriminated-union tags (``stages.2.blocks.1.gc_ibn.group_size``) and
    validator-step names it inserts: they name a variant or a function, not a field a user can find."""
    out = []
    for i, part in enumerate(loc):
        if i > 0 and part in _TAGS.get(loc[i - 1] if isinstance(loc[i - 1], str) else int, ()):
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


def _tag_message(e: dict, loc: tuple) -> str:
    """An unknown ``type``, with the types valid at that place (a node op is not a block)."""
    ctx = e.get("ctx") or {}
    known = [t.strip(" '") for t in ctx.get("expected_tags", "").split(",")]
    known = sorted(t for t in known if t and t not in OP_ALIASES)
    what = ("op" if "ops" in loc or "classifier" in loc else "block" if "blocks" in loc
            else "head" if "head" in loc else "node")
    kind = reprlib.repr(e["input"].get("type"))  # bounded: the value may be a huge nested list
    return f"unknown {what} type {kind} (known: {', '.join(known)})"


def _line(e: dict, root: str) -> tuple[str, tuple]:
    """One pydantic error as ``path: problem`` and its plain location."""
    msg = e["msg"].removeprefix("Value error, ").removeprefix("Assertion failed, ")
    loc = _plain_loc(tuple(e["loc"]))
    if (e["type"] != "extra_forbidden" and len(loc) > 1 and loc[-1] in _SCALAR_MEMBERS
            and isinstance(loc[-2], str)):
        loc = loc[:-1]
    cause = (e.get("ctx") or {}).get("error")
    path = format_loc(loc)
    if isinstance(cause, SpecError):  # a check that names its own path below the model that raised it
        msg, loc = str(cause), loc + cause.loc
        path, msg = (path + ("" if msg.startswith("[") else ".") + msg, "") if path else ("", msg)
    if root:
        path = f"{root}.{path}" if path else root
    if e["type"] == "missing":
        msg = "is required"
    elif e["type"] == "extra_forbidden":
        msg = "is not a known field"
    elif e["type"] == "union_tag_invalid":
        msg = _tag_message(e, loc)
    elif e["type"] == "union_tag_not_found":
        msg = "a block needs a 'type' field" if "blocks" in loc else "needs a 'type' field"
    return (f"{path}: {msg}" if path and msg else path or msg), loc


def from_validation_error(err: ValidationError, root: str = "") -> SpecError:
    """Collapse a pydantic ``ValidationError`` into a one-line ``SpecError`` (``loc``: its first error's) that
    names its first few problems and counts the others."""
    lines: dict[str, tuple] = {}  # a dict, not a list: membership in constant time for 100,000 errors
    for e in err.errors(include_url=False):
        line, loc = _line(e, root)
        lines.setdefault(line, loc)
    first, *rest = lines
    more = f" (and {len(rest)} more: {'; '.join(rest[:_NAMED - 1])})" if rest else ""
    return SpecError(first + more, loc=lines[first])
