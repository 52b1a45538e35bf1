"""One error type for every invalid spec, with a one-line message that names the path."""

from __future__ import annotations

from pydantic import ValidationError

# Discriminated-union tags that pydantic inserts into error locations (stages.2.blocks.1.gc_ibn.group_size):
# they name the variant, not a field, so the path a user reads leaves them out.
_UNION_TAGS = {"ibn", "fused_ibn", "gc_ibn", "grouped_ibn", "skip", "conv", "sep_conv"}


class SpecError(ValueError):
    """An architecture or search-space spec is invalid. ``str(err)`` is one line: ``path: problem``."""


def format_loc(loc: tuple) -> str:
    """Turn a pydantic location tuple into ``stages[2].blocks[1].group_size``."""
    out = ""
    for i, part in enumerate(loc):
        if isinstance(part, int):
            out += f"[{part}]"
        elif part in _UNION_TAGS and i > 0 and isinstance(loc[i - 1], int):
            continue
        elif part.startswith("function-"):  # pydantic's name for a validator step, not a field
            continue
        else:
            out += f".{part}" if out else part
    return out


def from_validation_error(err: ValidationError, root: str = "") -> SpecError:
    """Collapse a pydantic ``ValidationError`` into a one-line ``SpecError``."""
    lines = []
    for e in err.errors(include_url=False):
        msg = e["msg"].removeprefix("Value error, ").removeprefix("Assertion failed, ")
        path = format_loc(tuple(e["loc"]))
        if root:
            path = f"{root}.{path}" if path else root
        if e["type"] == "missing":
            msg = "is required"
        elif e["type"] == "extra_forbidden":
            msg = "is not a known field"
        elif e["type"] == "union_tag_invalid":
            msg = f"unknown block type {e['input'].get('type')!r} (known: {', '.join(sorted(_UNION_TAGS))})"
        elif e["type"] == "union_tag_not_found":
            msg = "a block needs a 'type' field"
        # Cross-field checks raise at the model's root with their own path already in the message.
        lines.append(f"{path}: {msg}" if path else msg)
    more = f" (and {len(lines) - 1} more: {'; '.join(lines[1:3])})" if len(lines) > 1 else ""
    return SpecError(lines[0] + more)
