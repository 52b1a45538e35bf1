"""search: a TuNAS one-shot search, or a random / evolution baseline, for a latency target (then retrain,
evaluate, export, report); report."""

from __future__ import annotations

from ..search.decode import MOST_LIKELY
from ..search.job import run
from ..search.report import selection_text, write_report
from .output import emit_json
from .train import run_config


def cmd_search(args) -> int:
    cfg = run_config(args, {"search": {}, "out": "runs/search"}, _flags(args))
    result = run(cfg, resume=args.resume)
    if args.json:
        emit_json(result)
        return 0
    s = cfg.search
    if s.strategy == "tunas":
        settled = result.get("selection", {}).get("rule", MOST_LIKELY) == MOST_LIKELY
        chosen = "most likely architecture" if settled else "chosen architecture"
        own = result.get("supernet_quality_recalibrated")
        measure = result.get("quality_measure", "held-out top-1")
        quality = f"supernet {measure} {result['supernet_quality']:.3f}"  # a result from before recalibration
        if own is not None:
            quality = (f"supernet {measure} {own:.3f} with its own BatchNorm statistics "
                       f"({result['supernet_quality']:.3f} with the batch's)")
    else:
        chosen = f"best of {result['trials']} {s.strategy} trials"
        quality = f"{result['quality_label']} {result['quality']:.3f}"
    print(f"{cfg.out}: {s.space} for {s.target} {s.latency_target:g} {result['unit']}: {chosen} predicted at "
          f"{result['predicted_latency']:.4g} {result['unit']} ({result['target_error']:+.1%}), {quality}")
    if result.get("selection", {}).get("rule", MOST_LIKELY) != MOST_LIKELY:
        print(f"chosen by: {selection_text(result)}")
    if result.get("proxy"):
        print(result["proxy"])
    if "retrained" in result:
        r = result["retrained"]
        if "top1" in r:
            print(f"retrained from scratch for {r['epochs']} epochs: {r['top1']:.2f}% test top-1 on "
                  f"{r['test_images']} images; {cfg.out}/model.onnx (max |diff| vs PyTorch "
                  f"{r['onnx']['max_abs_diff']:.1e}, top-1 agreement {r['onnx']['top1_agreement']:.1f}%)")
        else:
            print(f"retrained from scratch for {r['epochs']} epochs: {r['quality']:.2f}% validation "
                  f"{r['quality_label']} on {r['test_images']} images; {r.get('export_line', '')}")
    print(f"{cfg.out}/report.html, arch.yaml, result.json, trace.jsonl")
    return 0


def _flags(args) -> list[str]:
    """--strategy and --ray as config overrides (--set still wins, coming later)."""
    out = [f"search.strategy={args.strategy}"] if args.strategy else []
    if args.ray is not None:
        out.append("search.executor=ray")
        if args.ray:
            out.append(f"search.ray_address={args.ray}")
    return out


def cmd_report(args) -> int:
    print(write_report(args.dir))
    return 0
