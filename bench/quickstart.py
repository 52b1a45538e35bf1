"""The main job (`make run`) as a benchmark: `edgenas search --config configs/quickstart.yaml` run as a user
runs it, timed, and its figures (search time and convergence, predicted latency against the target,
retraining, test top-1, ONNX parity, checkpoint size) recorded for README.md and docs/benchmarks.md.

About 13 minutes on 2 cores. A figure is only a clean-run figure when the folder started empty: --clean
empties it first, and the record says whether the run resumed earlier work ("fresh").

    python bench/quickstart.py --clean [--out runs/bench_quickstart] [--json bench/results/quickstart.json]
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

from common import epochs, parser  # bench/ is on the path when a bench script runs
from edgenas.env import write_record

CONFIG = "configs/quickstart.yaml"
TAIL = 50  # steps over which the most likely architecture's latency must have settled


def search_seconds(stderr: str) -> float | None:
    """The search's own time, from the last state of its progress line ("search [###] 300/300 ... 262 s")."""
    lines = [x for x in re.split(r"[\r\n]", stderr) if x.startswith("search [")]
    m = re.search(r"(\d+(?:\.\d+)?) s\s*$", lines[-1]) if lines else None
    return float(m.group(1)) if m else None


def trace_summary(trace: list[dict]) -> dict:
    if not trace:
        return {}
    tail = [r["likely_latency"] for r in trace[-TAIL:] if "likely_latency" in r]
    return {"steps": len(trace), "entropy_initial": trace[0].get("entropy"),
            "entropy_final": trace[-1].get("entropy"),
            f"likely_latency_last_{TAIL}_steps": {"min": min(tail), "max": max(tail)} if tail else None}


def quickstart_record(out: Path, wall_seconds: float, stderr: str, fresh: bool, rc: int) -> dict:
    """The record of a finished (or failed) job from what it left in ``out``; every figure the docs quote."""
    record = {"config": CONFIG, "out": str(out), "rc": rc, "fresh": fresh, "wall_seconds": wall_seconds,
              "search_seconds": search_seconds(stderr), "stderr_tail": stderr.strip().splitlines()[-5:]}
    result_path = out / "result.json"
    if not result_path.is_file():
        return record
    result = json.loads(result_path.read_text())
    keep = ("predicted_latency", "unit", "target", "target_error", "latency_model", "supernet_quality",
            "selection", "proxy", "checkpoint_bytes", "decision", "config")
    record.update({k: result[k] for k in keep if k in result})
    trace = out / "trace.jsonl"
    if trace.is_file():
        record["trace"] = trace_summary([json.loads(x) for x in trace.read_text().splitlines() if x.strip()])
    if "retrained" in result:
        log = epochs(out / "retrain" / "metrics.jsonl", "val_top1")
        record["retrained"] = {**result["retrained"], "epochs_log": log}
    return record


def empty_folder(out: Path) -> None:
    """Remove a previous run's folder (only under runs/), so a figure is a clean run's."""
    if out.exists():
        if not out.resolve().is_relative_to(Path("runs").resolve()):
            raise SystemExit(f"error: only folders under runs/ are emptied, not {out}")
        shutil.rmtree(out)


def run_job(out: Path, data_dir: str | None, overrides: list[str] = ()) -> dict:
    """Run the main job into ``out`` as `make run` does (plus ``overrides`` as --set), showing its log as it
    comes; returns ``quickstart_record``."""
    fresh = not out.exists() or not any(out.iterdir())
    cmd = [sys.executable, "-m", "edgenas", "search", "--config", CONFIG, "--out", str(out), "--resume"]
    cmd += ["--data-dir", data_dir] if data_dir else []
    cmd += [a for o in overrides for a in ("--set", o)]
    t0 = time.time()
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True)
    stderr = []
    for chunk in iter(lambda: proc.stderr.read(64), ""):  # shown as it comes (the progress line), and kept
        sys.stderr.write(chunk)
        stderr.append(chunk)
    proc.wait()
    return quickstart_record(out, time.time() - t0, "".join(stderr), fresh, proc.returncode)


def main() -> None:
    ap = parser(__doc__, record="bench/results/quickstart.json", record_flag="--json",
                work="runs/bench_quickstart", data_dir=None)
    ap.add_argument("--clean", action="store_true", help="empty --out first (it must be under runs/)")
    args = ap.parse_args()
    out = Path(args.out)
    if args.clean:
        empty_folder(out)
    record = run_job(out, args.data_dir)
    write_record(args.json, record, threads=2)
    r, rc = record.get("retrained", {}), record["rc"]
    print(f"{args.json}: rc {rc}, {record['wall_seconds']:.0f} s in all (search "
          f"{record['search_seconds']} s), predicted {record.get('predicted_latency')} "
          f"{record.get('unit', '')}, test top-1 {r.get('top1')}%, fresh {record['fresh']}")
    if rc:
        raise SystemExit(rc)


if __name__ == "__main__":
    main()
