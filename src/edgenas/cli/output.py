"""Plain-text tables and JSON output shared by the commands."""

from __future__ import annotations

import json
import sys


def table(rows: list[list], headers: list[str], align: str | None = None) -> str:
    """A fixed-width table; ``align`` is one of 'l'/'r' per column (default: numbers right)."""
    cells = [[str(c) for c in headers]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    if align is None:
        align = "".join("r" if rows and isinstance(rows[0][i], (int, float)) else "l" for i in range(len(headers)))
    def fmt(row):
        return "  ".join(c.rjust(w) if a == "r" else c.ljust(w) for c, w, a in zip(row, widths, align)).rstrip()
    lines = [fmt(cells[0]), "  ".join("-" * w for w in widths)] + [fmt(r) for r in cells[1:]]
    return "\n".join(lines)


def emit_json(data) -> None:
    json.dump(data, sys.stdout, indent=1)
    sys.stdout.write("\n")


def millions(n: int) -> str:
    return f"{n / 1e6:,.3f}"
