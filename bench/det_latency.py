"""Detection latency at 320 on this machine's CPU, with the post-processing cost apart: each detector's raw
heads and its full graph with decoding and NMS on ONNX Runtime, its raw heads on LiteRT/XNNPACK with our
PyTorch decoding + NMS (the documented post-processing of the TFLite export) timed on its own, and the edgetpu
model's prediction (network only: on the phone, NMS runs on the CPU) beside them.

The weights are the untrained initialisation (class bias -4.6, every score ~0.01). With TF's score threshold
of 1e-8 every anchor of every class is an NMS candidate, so the NMS figures are the worst case: a trained
model's confident scores give NMS the same candidates (the threshold passes them all), but its per-class
lists stop sooner once 100 boxes are kept, so read them as an upper bound.

Timings interleave the graphs of a model (heads, with-NMS, heads, ...) round by round and report medians; the
noise probe of ``latency check`` is not used here, so compare within a row.

    python bench/det_latency.py --out bench/results/det_latency.json
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

import torch

from common import parser  # bench/ is on the path when a bench script runs
from edgenas.det import postprocess
from edgenas.env import write_record
from edgenas.export.detection import to_onnx_with_nms
from edgenas.export.onnx import to_onnx
from edgenas.latency import get_latency_model
from edgenas.latency.cpu_ort import time_onnx
from edgenas.models import get_arch, list_models
from edgenas.nn import build_model


def interleaved(calls: dict, rounds: int) -> dict[str, float]:
    samples: dict[str, list[float]] = {k: [] for k in calls}
    for _ in range(rounds):
        for k, call in calls.items():
            samples[k] += call()
    return {k: statistics.median(v) for k, v in samples.items()}


def time_postprocess(cls: torch.Tensor, box: torch.Tensor, anchors: torch.Tensor, runs: int) -> list[float]:
    out = []
    with torch.no_grad():
        for _ in range(runs):
            t0 = time.perf_counter()
            postprocess(cls, box, anchors)
            out.append((time.perf_counter() - t0) * 1e3)
    return out


def main() -> None:
    ap = parser(__doc__, record="bench/results/det_latency.json", threads=1, rounds=3, runs=5)
    ap.add_argument("--models", default=",".join(list_models(task="detection")))
    ap.add_argument("--no-litert", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    edgetpu = get_latency_model("edgetpu")
    x = torch.rand(1, 3, 320, 320) * 2 - 1
    rows = []
    for name in args.models.split(","):
        det = get_arch(name)
        model = build_model(det).eval()
        with torch.no_grad():
            cls, box = model(x)
            kept = len(postprocess(cls, box, model.anchors)[0].scores)
        heads, full = to_onnx(model, (x,)), to_onnx_with_nms(model, x)
        calls = {"ort_heads": lambda: time_onnx(heads, (x,), args.threads, args.runs),
                 "ort_with_nms": lambda: time_onnx(full, (x,), args.threads, args.runs),
                 "torch_postprocess": lambda: time_postprocess(cls, box, model.anchors, args.runs)}
        with tempfile.TemporaryDirectory() as tmp:
            if not args.no_litert:
                from edgenas.export.litert import to_tflite
                from edgenas.latency.litert import time_tflite

                path = to_tflite(model, (x,), Path(tmp) / "heads.tflite")
                calls["litert_heads"] = lambda: time_tflite(path, args.threads, args.runs)
            ms = interleaved(calls, args.rounds)
        row = {"model": name, "anchors": int(cls.shape[1]), "detections_kept": kept,
               "edgetpu_ms": edgetpu.predict(det).total, **{f"{k}_ms": v for k, v in ms.items()},
               "ort_nms_ms": ms["ort_with_nms"] - ms["ort_heads"]}
        if "litert_heads" in ms:
            row["litert_with_postprocess_ms"] = ms["litert_heads"] + ms["torch_postprocess"]
        rows.append(row)
        print(name, {k: round(v, 3) if isinstance(v, float) else v for k, v in row.items() if k != "model"},
              flush=True)
    write_record(args.out, {"what": "detection latency at 320: network and post-processing (decode + NMS) apart, "
                                    "measured on ORT and LiteRT, edgetpu predicted (network only)",
                            "weights": "untrained initialisation (class bias -4.6): NMS at its worst case",
                            "threads": args.threads, "rounds": args.rounds, "runs_per_round": args.runs,
                            "models": rows}, threads=args.threads)
    print(f"\n{'model':<32} {'edgetpu':>8} {'ORT net':>8} {'ORT+NMS':>8} {'NMS':>6} {'LiteRT':>7} {'torch pp':>8}")
    for r in rows:
        print(f"{r['model']:<32} {r['edgetpu_ms']:>8.3f} {r['ort_heads_ms']:>8.2f} {r['ort_with_nms_ms']:>8.2f} "
              f"{r['ort_nms_ms']:>6.2f} {r.get('litert_heads_ms', float('nan')):>7.2f} "
              f"{r['torch_postprocess_ms']:>8.2f}")


if __name__ == "__main__":
    main()
