"""The main job from an empty folder for seeds 0-4 (`--set train.seed=N`, nothing else changed): does it land
within +-5% of its latency target and export in every seed? Issue 26's bar, recorded in
bench/results/quickstart_seeds.json (fields per run: seed, predicted_ms, target_ms, error, test_top1, exported,
wall_seconds; plus which rule chose the architecture and where the controller's own argmax stood).

About 13 minutes a seed on 2 cores. Resumable: a seed already in the record is kept (--redo to run it again),
and the record is rewritten after every seed, so an interrupted benchmark loses at most the seed it was on.

    python bench/quickstart_seeds.py [--seeds 0 1 2 3 4] [--data-dir DIR]
"""

from __future__ import annotations

import json
from pathlib import Path

from common import parser  # bench/ is on the path when a bench script runs
from edgenas.env import write_record
from quickstart import empty_folder, run_job

RESULT = Path("bench/results/quickstart_seeds.json")


def seed_row(seed: int, record: dict) -> dict:
    """One seed's figures from its quickstart record."""
    retrained, selection = record.get("retrained", {}), record.get("selection", {})
    onnx = retrained.get("onnx") or {}
    return {"seed": seed, "predicted_ms": record.get("predicted_latency"), "target_ms": record.get("target"),
            "error": record.get("target_error"), "test_top1": retrained.get("top1"),
            "exported": bool(onnx.get("path")) and Path(onnx["path"]).is_file(), "wall_seconds": record["wall_seconds"],
            "rc": record["rc"], "rule": selection.get("rule"), "most_likely_ms": selection.get("most_likely_latency"),
            "log_prob_gap": selection.get("log_prob_gap"), "onnx_max_abs_diff": onnx.get("max_abs_diff"),
            "onnx_top1_agreement": onnx.get("top1_agreement"), "search_seconds": record.get("search_seconds"),
            "trace": record.get("trace")}


def summary(runs: list[dict], tolerance: float = 0.05) -> dict:
    return {"seeds": [r["seed"] for r in runs],
            "all_within_tolerance": all(r["error"] is not None and abs(r["error"]) <= tolerance for r in runs),
            "all_exported": all(r["exported"] for r in runs), "tolerance": tolerance}


def main() -> None:
    ap = parser(__doc__, record=str(RESULT), record_flag="--json", data_dir=None)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    ap.add_argument("--redo", action="store_true", help="run seeds already in the record again")
    args = ap.parse_args()
    path = Path(args.json)
    runs = json.loads(path.read_text())["runs"] if path.is_file() else []
    for seed in args.seeds:
        if any(r["seed"] == seed for r in runs) and not args.redo:
            continue
        out = Path(f"runs/bench_seeds/seed{seed}")
        empty_folder(out)
        row = seed_row(seed, run_job(out, args.data_dir, [f"train.seed={seed}"]))
        runs = sorted([r for r in runs if r["seed"] != seed] + [row], key=lambda r: r["seed"])
        write_record(path, {"config": "configs/quickstart.yaml", "runs": runs, **summary(runs)}, threads=2)
    print(f"{'seed':>4}  {'predicted':>9}  {'target':>6}  {'error':>7}  {'argmax':>7}  {'top-1':>6}  exported  "
          f"{'wall s':>6}  rule")
    def show(value, spec: str) -> str:
        return "-" if value is None else format(value, spec)

    for r in runs:
        print(f"{r['seed']:>4}  {show(r['predicted_ms'], '.4f'):>9}  {show(r['target_ms'], 'g'):>6}  "
              f"{show(r['error'], '+.1%'):>7}  {show(r['most_likely_ms'], '.3f'):>7}  {show(r['test_top1'], '.2f'):>6}  "
              f"{str(r['exported']):>8}  {r['wall_seconds']:>6.0f}  {r['rule']}")
    print(json.dumps(summary(runs)))


if __name__ == "__main__":
    main()
