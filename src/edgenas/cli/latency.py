"""Latency commands: predict, calibrate, check; lookup tables: build, kit, import."""

from __future__ import annotations

import sys
import time
from fnmatch import fnmatch
from pathlib import Path

import numpy as np

from ..env import write_record
from ..latency import get_latency_model
from ..latency.calibrate import calibrate
from ..latency.check import check
from ..latency.edgetpu import warm
from ..latency.kit import import_results, write_kit
from ..latency.scalesim_cycles import CycleCache
from ..models import get_arch, list_models
from ..progress import Progress
from ..space import get_space
from ..spec import Network, SpecError
from .commands import _arch_from
from .output import emit_json, table


def _model(args, **options):
    return get_latency_model(args.target, cache_dir=args.cache_dir, lut_path=getattr(args, "lut", None), **options)


def cmd_latency(args) -> int:
    arch = _arch_from(args.ref, args.input_size, args.tail)
    report = _model(args).predict(arch)
    if args.json:
        emit_json(report.to_dict())
        return 0
    rows = [[x.path, x.op, f"{x.value:.4f}", x.source] for x in report.layers]
    print(table(rows, ["layer", "op", report.unit, "source"], "llrl"))
    print(f"\n{report.arch or args.ref} @ {report.input_size}x{report.input_size} on {report.target} "
          f"({report.precision}): {report.total:.4f} {report.unit}")
    for note in report.notes:
        print(f"note: {note}")
    return 0


def cmd_calibrate(args) -> int:
    if args.target != "edgetpu":
        print(f"edgenas: error: calibrate fits the edgetpu model; {args.target!r} is measured, not fitted",
              file=sys.stderr)
        return 1
    sweep = [float(p) for p in args.sweep.split(",")] if args.sweep else []
    results = {p: calibrate(_model(args), dw_packing=p) for p in sweep}
    main = calibrate(_model(args), dw_packing=args.dw_packing)
    if args.json:
        emit_json({**main.to_dict(), "sweep": {str(p): {k: v for k, v in r.to_dict().items() if k != "models"}
                                               for p, r in results.items()}})
        return 0
    p = main.params
    print(f"edgetpu parameters (dw_packing {p.dw_packing:g} fixed; the rest fitted to {len(main.models)} published "
          "Pixel 6 Edge TPU latencies):")
    print(f"  ms per Mcycle {p.ms_per_mcycle:.4f} (effective clock {1 / p.ms_per_mcycle:.3f} GHz), "
          f"per-layer overhead {p.layer_overhead_ms * 1e3:.2f} us, fixed {p.fixed_ms:.3f} ms\n")
    rows = [[m, f"{a:.2f}", f"{b:.3f}", f"{(b / a - 1) * 100:+.1f}%", f"{c:.3f}", f"{(c / a - 1) * 100:+.1f}%"]
            for m, a, b, c in zip(main.models, main.published, main.predicted, main.loo_predicted)]
    print(table(rows, ["model", "published ms", "fitted", "error", "leave-one-out", "error"], "lrrrrr"))
    print(f"\nMAPE {main.mape:.2f}%, leave-one-out MAPE {main.loo_mape:.2f}% (max {main.loo_max:.1f}%), "
          f"Kendall tau {main.kendall_tau:.3f}")
    for shape, ms in main.blocks.items():
        print(f"{shape} block (e4, 3x3): " + ", ".join(f"{k} {v * 1e3:.1f} us" for k, v in ms.items()))
    print(f"Google's finding (fused beats IBN early, IBN beats fused late): {'holds' if main.finding_holds else 'FAILS'}")
    if results:
        rows = [[f"{q:g}", f"{r.loo_mape:.2f}%", f"{r.kendall_tau:.3f}", "yes" if r.finding_holds else "no"]
                for q, r in results.items()]
        print("\n" + table(rows, ["dw_packing", "LOO MAPE", "tau", "finding holds"], "rrrl"))
    return 0


def cmd_check(args) -> int:
    if not args.space and not args.models:
        print("edgenas: error: latency check needs --space (sampled architectures) or --models (zoo models)",
              file=sys.stderr)
        return 2
    space = get_space(args.space) if args.space else None
    rng = np.random.default_rng(args.seed)
    archs = _zoo_archs(args.models, args.tail, args.input_size) if args.models else [space.sample_arch(rng) for _ in range(args.samples)]
    fit_archs = [space.sample_arch(rng) for _ in range(args.fit_samples)] if space else []
    what = args.models or args.space

    model = _model(args, threads=args.threads)
    with Progress(len(archs), enabled=not args.json) as bar:
        def progress(i, n, res):
            bar.update(f"[{i}/{n}] last: predicted {res.predicted[-1]:.3f} ms, measured {res.measured[-1]:.3f} ms "
                       f"({res.errors[-1] * 100:+.1f}%)", i)

        result = check(model, archs, target=args.target, space=what, seed=args.seed, fit_archs=fit_archs,
                       progress=progress)
    if args.out:
        write_record(args.out, {**result.to_dict(), "lut": model.lut.fingerprint.model_dump()}, args.threads)
    s = result.summary()
    if args.json:
        emit_json(s)
    else:
        fitted = (f"overhead fitted on {len(fit_archs)} others from {args.space}" if fit_archs else
                  "the table's own overhead" if model.lut.overhead else "no overhead fitted: sums of layers")
        print(f"{args.target} on {what}: {s['samples']} architectures (seed {args.seed}; {fitted})")
        print(f"within +-10%: {s['within_10pct'] * 100:.1f}%   within +-5%: {s['within_5pct'] * 100:.1f}%   "
              f"RMSE {s['rmse_ms']:.3f} ms" + (f"   Kendall tau {s['kendall_tau']:.3f}" if s["kendall_tau"] is not None
                                               else ""))
        if s["machine_busy"]:
            print(f"warning: the machine was busy: one unchanged model, timed {s['probe_samples']} times during the "
                  f"check, varied by {s['probe_cv'] * 100:.1f}% (CV); these figures measure the machine as much "
                  "as the predictor: run the check again on a quiet machine")
    return 0


def cmd_warm(args) -> int:
    """Simulate every layer shape of sampled points of the spaces (and the zoo of their tasks) on the edgetpu
    model's array, so searches price them from the table instead of running SCALE-Sim."""
    if args.bundle:
        path = Path(__file__).parents[1] / "latency" / "data" / "scalesim-64x64.json"
        cache = CycleCache(path, use_bundled=False)
    else:
        cache = CycleCache(Path(args.cache_dir) / "scalesim-cycles.json")
    rows = []
    for name in args.space.split(","):
        space, t0 = get_space(name.strip()), time.perf_counter()
        task = {"network": "segmentation", "detector": "detection"}.get(getattr(space.template, "kind", None),
                                                                         "classification")
        rng = np.random.default_rng(args.seed)
        specs = [get_arch(m) for m in list_models(task=task)] + [space.sample_arch(rng) for _ in range(args.samples)]
        with Progress() as bar:
            def progress(n: int, total: int) -> None:
                cache.save()  # every 50 shapes: an interrupted warm-up keeps what it simulated
                bar.update(f"{name}: {n}/{total} shapes")

            shapes, simulated = warm(cache, specs, progress)
        cache.save()
        rows.append({"space": name, "points": args.samples, "shapes": shapes, "simulated": simulated,
                     "seconds": round(time.perf_counter() - t0, 1)})
    if args.json:
        emit_json({"table": str(cache.path), "spaces": rows})
        return 0
    print(table([[r["space"], r["points"], r["shapes"], r["simulated"], r["seconds"]] for r in rows],
                ["space", "points", "distinct shapes", "simulated now", "seconds"], "lrrrr"))
    print(f"table: {cache.path}")
    return 0


def _zoo_archs(pattern: str, tail: str | None, input_size: int | None = None) -> list:
    """Zoo models by name or glob (comma-separated), at their deployment size unless ``input_size`` is given;
    ``tail`` set on networks."""
    names = [n for n in list_models() if any(fnmatch(n, p.strip()) for p in pattern.split(","))]
    if not names:
        raise SpecError(f"--models {pattern!r}: no zoo model matches (see `edgenas models`)")
    specs = [get_arch(n) for n in names]
    specs = [s.with_tail(tail) if tail and isinstance(s, Network) else s for s in specs]
    return [s.replace(input_size=input_size) for s in specs] if input_size else specs


def cmd_lut_build(args) -> int:
    space = get_space(args.space)
    rng = np.random.default_rng(args.seed)
    archs = [space.fix(d) for d in space.covering()] if args.all else \
        [space.sample_arch(rng) for _ in range(args.samples)]
    archs += [get_arch(name) for name in list_models(task="classification")] if args.zoo else []
    if args.target == "edgetpu":  # the simulator: every layer once into the cycle cache; nothing to fit
        model = _model(args)
        with Progress(len(archs)) as bar:
            for i, arch in enumerate(archs):
                model.predict(arch)
                bar.update(f"[{i + 1}/{len(archs)}] {model.cache.simulated} layers simulated", i + 1)
        print(f"{model.cache.path}: {len(archs)} architectures, {model.cache.simulated} layers simulated now "
              "(the rest were cached)", file=sys.stderr)
        return 0
    model = _model(args, threads=args.threads)
    with Progress(len(archs)) as bar:
        for i, arch in enumerate(archs):
            for layer in model.layers_of(arch):
                model.entry(layer)
            bar.update(f"[{i + 1}/{len(archs)}] {len(model.lut.entries)} entries", i + 1)
    overhead = model.fit_overhead([space.sample_arch(rng) for _ in range(args.fit_samples)])
    print(f"{model.lut_path}: {len(model.lut.entries)} entries ({model.measured} measured now); end-to-end = "
          f"{overhead.scale:.3f} x sum {overhead.a_ms:+.3f} ms {overhead.b_ms_per_layer * 1e3:+.1f} us/layer "
          f"(fitted on {overhead.fitted_on} models)")
    return 0


def cmd_lut_kit(args) -> int:
    space = get_space(args.space)
    rng = np.random.default_rng(args.seed)
    archs = [space.sample_arch(rng) for _ in range(args.samples)]

    with Progress() as bar:
        manifest = write_kit(archs, args.out, archs[: args.fit_samples], space=args.space,
                             progress=lambda n: bar.update(f"{n} layers converted"))
    print(f"{args.out}: {len(manifest['layers'])} layer models, {len(manifest['models'])} whole models; next: "
          f"BENCHMARK_MODEL=... {Path(args.out) / 'run_on_device.sh'}, then edgenas lut import {args.out} "
          "--device NAME")
    return 0


def cmd_lut_import(args) -> int:
    lut = import_results(args.kit, args.device)
    out = Path(args.out or Path(args.kit) / f"lut-cpu-litert-{args.device}.json")
    lut.save(out)
    fitted = (f"; end-to-end = {lut.overhead.scale:.3f} x sum {lut.overhead.a_ms:+.3f} ms "
              f"{lut.overhead.b_ms_per_layer * 1e3:+.1f} us/layer") if lut.overhead else "; overhead not fitted"
    print(f"{out}: {len(lut.entries)} entries for {args.device} ({lut.fingerprint.cpu}){fitted}")
    print(f"use it: edgenas latency ARCH --target cpu-litert --lut {out}")
    return 0
