"""search: a TuNAS one-shot search for a latency target."""

from __future__ import annotations

from .output import emit_json
from .train import run_config


def cmd_search(args) -> int:
    from ..search import search

    cfg = run_config(args, {"search": {}, "out": "runs/search"})
    result = search(cfg, resume=args.resume)
    if args.json:
        emit_json(result)
        return 0
    s = cfg.search
    print(f"{cfg.out}: {s.space} for {s.target} {s.latency_target:g} {result['unit']}: most likely architecture "
          f"predicted at {result['predicted_latency']:.4g} {result['unit']} ({result['target_error']:+.1%}); "
          f"{cfg.out}/arch.yaml, result.json, trace.jsonl")
    return 0
