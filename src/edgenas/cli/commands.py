"""The inspection commands: models, profile, arch validate/dump, space show."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from ..data.fashion_mnist import load_fashion_mnist
from ..env import environment
from ..io import write_atomic
from ..latency import get_latency_model
from ..models import MODELS, get_arch, list_models
from ..models.forward_timing import zoo_forward_report
from ..space import get_space
from ..spec import Arch, Detector, Network, SpecError, count, load_spec, spec_layers
from .output import emit_json, millions, table


def _arch_from(ref: str, input_size: int | None = None, tail: str | None = None) -> Arch | Network:
    """A registered model name or an arch or network file; ``tail`` sets a network's serving tail."""
    arch = load_spec(ref) if Path(ref).suffix in (".json", ".yaml", ".yml") else get_arch(ref)
    if tail is not None:
        if not isinstance(arch, Network):
            what = "a detector (NMS is its serving end)" if isinstance(arch, Detector) else "a classifier"
            raise SpecError(f"--tail: {arch.name or ref} is {what}; only segmentation networks have a tail")
        arch = arch.with_tail(tail or None)
    return arch.replace(input_size=input_size) if input_size else arch


def cmd_models(args) -> int:
    names = list_models(args.pattern)
    rows = []
    for name in names:
        card, arch = MODELS[name], get_arch(name)
        c, pub = count(arch), MODELS[name].published
        rows.append({"model": name, "family": card.family, "task": card.task, "params": c.params, "macs": c.macs,
                     "input_size": arch.input_size, "num_classes": arch.num_classes,
                     "published_top1": pub.top1 if pub else None, "published_miou": pub.miou if pub else None,
                     "published_params_m": pub.params if pub else None,
                     "published_note": pub.note if pub else None,
                     "published_latency_ms": pub.latency_ms if pub else None,
                     "latency_device": pub.latency_device if pub else None})
    if args.time_forward:
        rows = _add_forward_timing(rows, args)
    if args.json:
        emit_json(rows)
        return 0
    headers = ["model", "params (M)", "MACs (M)", "input", "quality (pub.)", "latency (pub.)"]
    if args.time_forward:
        headers += [f"eager ms / {args.batch} img", "img/s"]
    out = []
    for r in rows:
        row = [r["model"], millions(r["params"]), millions(r["macs"]), r["input_size"],
               f"{MODELS[r['model']].published.quality} {r['published_note'].split(',')[0]}"
               if r["published_note"] else "-",
               f"{r['published_latency_ms']:.2f} ms {r['latency_device']}" if r["published_latency_ms"] else "-"]
        if args.time_forward:
            row += [f"{r['eager_ms_median']:.1f}", f"{r['images_per_s']:.1f}"]
        out.append(row)
    print(table(out, headers, "lrrrll" + "rr" * bool(args.time_forward)))
    return 0


def _add_forward_timing(rows: list[dict], args) -> list[dict]:
    import torch

    torch.set_num_threads(args.threads)
    images, _ = load_fashion_mnist("test", args.data_dir)
    timing = zoo_forward_report([r["model"] for r in rows], images[: args.batch], runs=args.runs)
    merged = [{**r, **t} for r, t in zip(rows, timing)]
    if args.out:
        doc = {"what": "zoo params/MACs (analytic) and eager PyTorch forward time on Fashion-MNIST test images "
                       "resized to each model's input", "data_dir": str(args.data_dir),
               "environment": environment(args.threads), "models": merged}
        write_atomic(args.out, json.dumps(doc, indent=1))
    return merged


def cmd_profile(args) -> int:
    arch = _arch_from(args.ref, args.input_size, getattr(args, "tail", None))
    layers = spec_layers(arch)
    total = count(arch)
    if args.json:
        emit_json({"arch": arch.name, "input_size": arch.input_size, "params": total.params, "macs": total.macs,
                   "num_layers": len(layers), "layers": [{"path": x.path, "op": x.op, "in": [x.in_channels, *x.in_size],
                               "out": [x.out_channels, *x.out_size], "kernel": x.kernel_size, "stride": x.stride,
                               "groups": x.groups, "params": x.params, "macs": x.macs} for x in layers]})
        return 0
    rows = []
    for x in layers:
        op = x.op if x.op != "conv" else ("dwconv" if x.is_depthwise else f"conv{x.kernel_size}x{x.kernel_size}"
                                          + (f"/g{x.groups}" if x.groups > 1 else ""))
        rows.append([x.path, op + (f"/s{x.stride}" if x.stride > 1 else ""),
                     "x".join(map(str, (x.in_channels, *x.in_size))), "x".join(map(str, (x.out_channels, *x.out_size))),
                     f"{x.params:,}", f"{x.macs:,}"])
    print(table(rows, ["layer", "op", "in (CxHxW)", "out (CxHxW)", "params", "MACs"], "llrrrr"))
    print(f"\n{arch.name or args.ref} @ {arch.input_size}x{arch.input_size}: {total.params:,} params, "
          f"{total.macs:,} MACs, {len(layers)} layers")
    return 0


def cmd_arch_validate(args) -> int:
    arch = load_spec(args.file)  # raises SpecError with the path and problem
    c = count(arch)
    if args.json:
        emit_json({"valid": True, "name": arch.name, "params": c.params, "macs": c.macs})
        return 0
    if isinstance(arch, Detector):
        what = ("detector, " + (f"{arch.backbone.num_blocks} backbone blocks, " if arch.backbone else "")
                + f"{len(arch.nodes)} graph nodes, {sum(len(n.ops) for n in arch.nodes)} ops, SSD head on "
                f"{len(arch.head.sources)} sources, {arch.num_classes} classes")
    elif isinstance(arch, Network):
        what = (f"{arch.task} network, {arch.backbone.num_blocks} backbone blocks, {len(arch.nodes)} nodes"
                + (f", tail {arch.tail.text}" if arch.tail else ""))
    else:
        what = f"{arch.num_blocks} blocks"
    print(f"ok: {args.file}: {arch.name or 'unnamed'}, {what}, {c.params:,} params, "
          f"{c.macs:,} MACs at {arch.input_size}x{arch.input_size}")
    return 0


def cmd_arch_dump(args) -> int:
    arch = _arch_from(args.ref)
    if args.out:
        arch.save(args.out)
        print(f"wrote {args.out}")
    else:
        print(arch.to_json() if args.json or args.format == "json" else arch.to_yaml(), end="")
    return 0


def cmd_space_show(args) -> int:
    space = get_space(args.name)
    lo, hi = space.macs_range(np.random.default_rng(args.seed), args.samples)
    task = {"network": "segmentation", "detector": "detection"}.get(getattr(space.template, "kind", None),
                                                                     "classification")
    zoo = {n: space.match(get_arch(n)) is not None for n in list_models(task=task)}
    members = [n for n, inside in zoo.items() if inside]
    latency = None
    if args.target:
        model, rng = get_latency_model(args.target, cache_dir=args.cache_dir), np.random.default_rng(args.seed)
        reports = [model.predict(space.sample_arch(rng)) for _ in range(args.target_samples)]
        totals = sorted(r.total for r in reports)
        latency = {"target": args.target, "unit": reports[0].unit, "min": totals[0], "median": totals[len(totals) // 2],
                   "max": totals[-1], "samples": args.target_samples, "seed": args.seed}
    if args.json:
        emit_json({**space.to_dict(), "choices": {p: c.labels for p, c in space.choices()},
                   "macs_range_sampled": {"min": lo, "max": hi, "samples": args.samples, "seed": args.seed},
                   "zoo_members": members, "latency_range_sampled": latency})
        return 0
    size, channels = space.input_shape()
    print(f"space {space.name}: {space.description}")
    print(f"input {size}x{size}x{channels}, {task}, {len(space.block_paths())} block positions")
    rows = [[path, " | ".join(c.labels)] for path, c in space.choices()]
    print(table(rows, ["choice", "options"], "ll"))
    print(f"\nsize: {space.size():,} points (10^{math.log10(space.size()):.1f}), {len(rows)} choices")
    print(f"MACs over {args.samples} sampled valid points (seed {args.seed}): {lo / 1e6:,.1f} M to {hi / 1e6:,.1f} M")
    print(f"zoo models that are points of it: {', '.join(members) or 'none'}")
    if latency:
        print(f"predicted {latency['target']} latency over {latency['samples']} sampled points: "
              f"{latency['min']:.4g} to {latency['max']:.4g} {latency['unit']} (median {latency['median']:.4g}); "
              f"pick a search target inside it")
    return 0
