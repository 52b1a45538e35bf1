"""``edgenas <command>``: each command turns its arguments into one library call. Nothing imports cli/."""

from __future__ import annotations

import argparse
import sys

from ..data.fashion_mnist import DEFAULT_DIR, DataError
from ..spec import SpecError
from . import commands


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="edgenas", description="Hardware-aware NAS for on-device vision.")
    sub = p.add_subparsers(dest="command", required=True)
    jsonp = argparse.ArgumentParser(add_help=False)
    jsonp.add_argument("--json", action="store_true", help="machine-readable output")

    m = sub.add_parser("models", parents=[jsonp], help="list the zoo with params, MACs and published figures")
    m.add_argument("pattern", nargs="?", default="*", help="shell-style name filter")
    m.add_argument("--time-forward", action="store_true",
                   help="also time each model's eager forward pass on a batch of Fashion-MNIST test images")
    m.add_argument("--data-dir", default=DEFAULT_DIR, help="folder with the Fashion-MNIST IDX files")
    m.add_argument("--batch", type=int, default=8)
    m.add_argument("--runs", type=int, default=5, help="timed runs per model (median reported)")
    m.add_argument("--threads", type=int, default=2)
    m.add_argument("--out", help="also write the report (with its environment) to this JSON file")
    m.set_defaults(func=commands.cmd_models)

    pr = sub.add_parser("profile", parents=[jsonp], help="per-layer shapes, params and MACs")
    pr.add_argument("ref", help="model name or arch file (.yaml/.json)")
    pr.add_argument("--input-size", type=int)
    pr.set_defaults(func=commands.cmd_profile)

    a = sub.add_parser("arch", help="architecture files").add_subparsers(dest="arch_command", required=True)
    v = a.add_parser("validate", parents=[jsonp], help="check an arch file; one line says what is wrong")
    v.add_argument("file")
    v.set_defaults(func=commands.cmd_arch_validate)
    d = a.add_parser("dump", parents=[jsonp], help="write a model's arch as YAML or JSON")
    d.add_argument("ref", help="model name or arch file")
    d.add_argument("--format", choices=("yaml", "json"), default="yaml")
    d.add_argument("--out", help="file to write (.yaml or .json); stdout if absent")
    d.set_defaults(func=commands.cmd_arch_dump)

    s = sub.add_parser("space", help="search spaces").add_subparsers(dest="space_command", required=True)
    ss = s.add_parser("show", parents=[jsonp], help="choices, size and MACs range of a space")
    ss.add_argument("name")
    ss.add_argument("--samples", type=int, default=256, help="points drawn for the MACs range")
    ss.add_argument("--seed", type=int, default=0)
    ss.set_defaults(func=commands.cmd_space_show)
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return args.func(args)
    except (SpecError, DataError, FileNotFoundError, ValueError) as err:
        print(f"edgenas: error: {err}", file=sys.stderr)
        return 1
    except KeyError as err:
        print(f"edgenas: error: {err.args[0]}", file=sys.stderr)
        return 1
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
