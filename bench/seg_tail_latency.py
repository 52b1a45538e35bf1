"""The serving tail, exact against fused, at 512: end-to-end CPU latency of each segmentation model (ONNX
Runtime for all, LiteRT/XNNPACK for the models named by ``--litert``), the edgetpu prediction beside it, and what
fusing costs in quality on real images with Google's Autoseg-XS weights.

Timings interleave the two tails of a model (exact, fused, exact, ...) and report medians, so a busy spell on
the shared machine hits both alike; the ratio is the figure to read. The quality part compares the two class
maps of the imported Autoseg-XS on 20 real photos and scores both on the two labelled ADE20K pairs.

    python bench/seg_tail_latency.py --shared ../shared --out bench/results/seg_tail_latency.json
"""

from __future__ import annotations

import statistics
import tempfile
from pathlib import Path

import numpy as np
import torch

from common import parser  # bench/ is on the path when a bench script runs
from edgenas.env import write_record
from edgenas.export.onnx import to_onnx
from edgenas.latency import get_latency_model
from edgenas.latency.cpu_ort import time_onnx
from edgenas.latency.litert import time_tflite
from edgenas.models import get_arch, list_models
from edgenas.nn import build_model
from edgenas.nn.network import Serving

TAILS = {"exact": "resize512,argmax", "fused": "resize256,argmax,resize512"}
FIXTURES = Path(__file__).resolve().parents[1] / "tests" / "fixtures"


def timings(models: dict, runner, rounds: int, runs: int) -> dict[str, float]:
    """Median ms per tail, the tails interleaved round by round."""
    samples: dict[str, list[float]] = {k: [] for k in models}
    for _ in range(rounds):
        for tail, call in models.items():
            samples[tail] += runner(call, runs)
    return {tail: statistics.median(v) for tail, v in samples.items()}


def quality(shared: Path) -> dict:
    from edgenas.data.segmentation import ade20k
    from edgenas.eval.seg_metrics import SegConfusion
    from edgenas.models.tflite_check import load_photo
    from edgenas.models.tflite_import import from_tflite
    from edgenas.nn.network import ServingTail
    from edgenas.spec import Tail

    model = from_tflite("autoseg_edgetpu_xs", FIXTURES / "google" / "autoseg_edgetpu_xs_fused_argmax.tflite")
    tails = {k: ServingTail(Tail(steps=v)) for k, v in TAILS.items()}
    photos = sorted((shared / "data/coco128/images/val2017").glob("*.jpg"))[:10] + \
        sorted((shared / "data/camvid/val").glob("*.png"))[:10]
    agree = []
    with torch.no_grad():
        for f in photos:
            x = torch.from_numpy((load_photo(f, 512).astype(np.float32) - 127.0) / 127.5).permute(2, 0, 1)[None]
            logits = model(x)
            maps = {k: t(logits) for k, t in tails.items()}
            agree.append(float((maps["exact"] == maps["fused"]).float().mean()))
        ade = ade20k(FIXTURES / "ade20k-tiny", "validation")
        conf = {k: SegConfusion(32) for k in TAILS}
        for i in range(len(ade)):
            logits = model(ade[i][0][None])
            for k, t in tails.items():
                conf[k].update(t(logits).long(), ade[i][1][None])
    return {"photos": len(photos), "exact_vs_fused_pixel_agreement": agree,
            "mean_agreement": float(np.mean(agree)),
            "ade20k_32_smoke_miou": {k: c.miou() * 100 for k, c in conf.items()}}


def main() -> None:
    ap = parser(__doc__, record="bench/results/seg_tail_latency.json", shared=True, threads=1, rounds=3,
                runs=5)
    ap.add_argument("--litert", default="autoseg_edgetpu_xs,deeplabv3plus_mobilenet_edgetpu_v2_xs")
    args = ap.parse_args()
    torch.set_num_threads(2)
    edgetpu = get_latency_model("edgetpu")
    rows = []
    x = torch.randn(1, 3, 512, 512)
    for name in list_models(task="segmentation"):
        net = get_arch(name)
        row = {"model": name, "edgetpu_ms": {k: edgetpu.predict(net.with_tail(v)).total for k, v in TAILS.items()}}
        graphs = {}
        for tail, text in TAILS.items():
            with torch.no_grad():
                graphs[tail] = to_onnx(Serving(build_model(net.with_tail(text)).eval()), (x,))
        row["cpu_ort_ms"] = timings(graphs, lambda g, n: time_onnx(g, (x,), args.threads, n), args.rounds, args.runs)
        if name in args.litert.split(","):
            from edgenas.export.litert import to_tflite

            with tempfile.TemporaryDirectory() as tmp:
                paths = {}
                for tail, text in TAILS.items():
                    paths[tail] = to_tflite(Serving(build_model(net.with_tail(text)).eval()), (x,),
                                            Path(tmp) / f"{tail}.tflite")
                row["cpu_litert_ms"] = timings(paths, lambda p, n: time_tflite(p, args.threads, n), args.rounds,
                                               args.runs)
        for target in ("edgetpu_ms", "cpu_ort_ms", "cpu_litert_ms"):
            if target in row:
                row[target]["exact_over_fused"] = row[target]["exact"] / row[target]["fused"]
        rows.append(row)
        print(name, {k: {t: round(v, 3) for t, v in row[k].items()} for k in row if k.endswith("_ms")}, flush=True)
    record = {"what": "end-to-end latency at 512, exact vs fused tail; quality cost of fusing on real images",
              "tails": TAILS, "threads": args.threads, "rounds": args.rounds, "runs_per_round": args.runs,
              "models": rows, "quality": quality(Path(args.shared))}
    write_record(args.out, record, threads=args.threads)
    q = record["quality"]
    print(f"Autoseg-XS (Google's weights), exact vs fused on {q['photos']} photos: {q['mean_agreement']:.2%} of "
          f"pixels agree; ADE20K-32 smoke mIoU {q['ade20k_32_smoke_miou']}")


if __name__ == "__main__":
    main()
