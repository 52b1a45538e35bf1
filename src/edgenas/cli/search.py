"""search: a TuNAS one-shot search for a latency target."""

from __future__ import annotations

from .output import emit_json


def cmd_search(args) -> int:
    from ..config import load_config
    from ..search import search

    base = {"search": {}, "out": args.out or "runs/search"}
    overrides = list(args.set or [])
    if args.data_dir:
        overrides.append(f"data.data_dir={args.data_dir}")
    cfg = load_config(args.config, overrides, base)
    result = search(cfg, resume=args.resume)
    if args.json:
        emit_json(result)
        return 0
    s = cfg.search
    print(f"{cfg.out}: {s.space} for {s.target} {s.latency_target:g} {result['unit']}: most likely architecture "
          f"predicted at {result['predicted_latency']:.4g} {result['unit']} ({result['target_error']:+.1%}); "
          f"{cfg.out}/arch.yaml, result.json, trace.jsonl")
    return 0
