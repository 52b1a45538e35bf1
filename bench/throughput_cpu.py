"""CPU throughput of the zoo: training images/s at 28x28 (Fashion-MNIST adaptation) and 224x224, and
inference latency at batch 1 in eager PyTorch against ONNX Runtime.

Training: SGD steps (forward, cross-entropy, backward, update) on random inputs, one warm-up step, then the
median of ``--steps`` timed steps. 28x28 is the Fashion-MNIST adaptation (1 channel, stride-1 stem, 10
classes, batch 128); 224 is the deployment arch (batch 16). Inference: batch 1 at 224, the median of
``--runs`` forward passes after warm-up, eager (no_grad, eval) and ORT (fp32, same thread count).

    python bench/throughput_cpu.py --json bench/results/throughput_cpu.json
"""

from __future__ import annotations

import statistics
import time

import numpy as np
import torch

from common import parser  # bench/ is on the path when a bench script runs
from edgenas.env import write_record
from edgenas.export.onnx import ort_session, run_onnx, to_onnx
from edgenas.models import get_arch, list_models
from edgenas.nn import build_model
from edgenas.data.shape import FASHION_MNIST
from edgenas.tasks.classification import adapt_arch


def adapted(name: str, size: int):
    arch = get_arch(name)
    return adapt_arch(arch, FASHION_MNIST, stem_stride=1) if size == 28 else arch


def train_images_per_s(arch, batch: int, steps: int) -> float:
    torch.manual_seed(0)
    model = build_model(arch).train()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, nesterov=True)
    x = torch.randn(batch, arch.in_channels, arch.input_size, arch.input_size)
    y = torch.randint(0, arch.head.num_classes, (batch,))
    times = []
    for i in range(steps + 1):
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
        if i:  # the first step allocates and warms caches
            times.append(time.perf_counter() - t0)
    return batch / statistics.median(times)


def inference_ms(arch, runs: int, threads: int) -> tuple[float, float]:
    torch.manual_seed(0)
    model = build_model(arch).eval()
    x = torch.randn(1, arch.in_channels, arch.input_size, arch.input_size)
    session = ort_session(to_onnx(model, (x,)), threads=threads)

    def median_ms(fn) -> float:
        for _ in range(3):
            fn()
        times = []
        for _ in range(runs):
            t0 = time.perf_counter()
            fn()
            times.append((time.perf_counter() - t0) * 1e3)
        return statistics.median(times)

    with torch.no_grad():
        eager = median_ms(lambda: model(x))
    return eager, median_ms(lambda: run_onnx(session, x))


def main() -> None:
    ap = parser(__doc__, record="bench/results/throughput_cpu.json", record_flag="--json", threads=2, runs=20)
    ap.add_argument("--models", nargs="*", default=list_models())
    ap.add_argument("--steps", type=int, default=5)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    rows = []
    print(f"{'model':28} {'train 28 img/s':>14} {'train 224 img/s':>15} {'eager ms':>9} {'ORT ms':>7} "
          f"{'eager/ORT':>9}")
    for name in args.models:
        row = {"model": name,
               "train_28_images_per_s": train_images_per_s(adapted(name, 28), 128, args.steps),
               "train_224_images_per_s": train_images_per_s(adapted(name, 224), 16, args.steps)}
        row["eager_ms"], row["ort_ms"] = inference_ms(adapted(name, 224), args.runs, args.threads)
        row["eager_over_ort"] = row["eager_ms"] / row["ort_ms"]
        rows.append(row)
        print(f"{name:28} {row['train_28_images_per_s']:14.0f} {row['train_224_images_per_s']:15.1f} "
              f"{row['eager_ms']:9.1f} {row['ort_ms']:7.1f} {row['eager_over_ort']:9.2f}", flush=True)
    ratios = [r["eager_over_ort"] for r in rows]
    print(f"median eager/ORT latency ratio: {np.median(ratios):.2f}")
    record = {"rows": rows, "median_eager_over_ort": float(np.median(ratios)),
              "settings": {"steps": args.steps, "runs": args.runs, "batch_28": 128, "batch_224": 16,
                           "inference_batch": 1}}
    write_record(args.json, record, args.threads)


if __name__ == "__main__":
    main()
