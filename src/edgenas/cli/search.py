"""search: a TuNAS one-shot search for a latency target (then retrain, evaluate, export, report); report."""

from __future__ import annotations

from .output import emit_json
from .train import run_config


def cmd_search(args) -> int:
    from ..search.job import run

    cfg = run_config(args, {"search": {}, "out": "runs/search"})
    result = run(cfg, resume=args.resume)
    if args.json:
        emit_json(result)
        return 0
    s = cfg.search
    print(f"{cfg.out}: {s.space} for {s.target} {s.latency_target:g} {result['unit']}: most likely architecture "
          f"predicted at {result['predicted_latency']:.4g} {result['unit']} ({result['target_error']:+.1%}), "
          f"supernet held-out top-1 {result['supernet_quality']:.3f}")
    if result.get("proxy"):
        print(result["proxy"])
    if "retrained" in result:
        r = result["retrained"]
        print(f"retrained from scratch for {r['epochs']} epochs: {r['top1']:.2f}% test top-1 on {r['test_images']} "
              f"images; {cfg.out}/model.onnx (max |diff| vs PyTorch {r['onnx']['max_abs_diff']:.1e})")
    print(f"{cfg.out}/report.html, arch.yaml, result.json, trace.jsonl")
    return 0


def cmd_report(args) -> int:
    from ..search.report import write_report

    print(write_report(args.dir))
    return 0
