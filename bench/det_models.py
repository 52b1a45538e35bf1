"""The detection zoo: analytic params and MACs at 320 against reference 5.3 (the config header and the
reference's own computation) and, for SSDLite on MobileNetV2, the MobileNetV2 paper (counted at its 80 classes),
the per-node breakdown, and the edgetpu model's predicted Pixel 6 latency.

The latencies are a blind test of the accelerator model: it was calibrated on the ten classification latencies
only, and Google's SpaghettiNet latencies are not in the project (reference 5.3). Nothing is measured.

    python bench/det_models.py --out bench/results/det_models.json
"""

from __future__ import annotations

from common import parser, zoo  # bench/ is on the path when a bench script runs
from edgenas.env import write_record
from edgenas.latency import get_latency_model
from edgenas.spec import count, plan_detector

COMPUTED = {"spaghettinet_edgetpu_s": (3.48, 1.04), "spaghettinet_edgetpu_m": (4.17, 1.24),
            "spaghettinet_edgetpu_l": (5.76, 1.56)}  # reference 5.3, incl. the SSDLite head


def part_of(path: str) -> str:
    """SpaghettiNet: stem, backbone (n*), head nodes (c0n*); SSDLite: backbone, extra layers; the SSD box
    predictor."""
    node = path.split(".")[0]
    if node in ("head", "backbone"):
        return "ssd_head" if node == "head" else "backbone"
    if node.startswith("extra"):
        return "extra_layers"
    return "stem" if node == "s0" else "head_nodes" if node.startswith("c") else "backbone_nodes"


def main() -> None:
    args = parser(__doc__, record="bench/results/det_models.json", cache_dir=None).parse_args()
    edgetpu = get_latency_model("edgetpu", cache_dir=args.cache_dir)
    rows = []
    for name, det, pub in zoo("detection"):
        c, plan = count(det), plan_detector(det)
        nodes = [{"node": "s0" if det.backbone is None else "backbone", "params": sum(x.params for x in plan.stem), "macs": sum(x.macs for x in plan.stem)}]
        nodes += [{"node": n.name, "level": n.out.level, "params": sum(x.params for x in n.layers),
                   "macs": sum(x.macs for x in n.layers), "out": [*n.out.size, n.out.channels]} for n in plan.nodes]
        anchors = sum(a * h * w for a, (h, w) in zip(plan.anchors, plan.source_sizes))
        nodes.append({"node": "ssd_head", "params": sum(x.params for x in plan.head),
                      "macs": sum(x.macs for x in plan.head), "anchors": anchors})
        report = edgetpu.predict(det)
        parts: dict[str, float] = {}
        for x in report.layers:
            key = "fixed" if x.path == "fixed" else part_of(x.path)
            parts[key] = parts.get(key, 0.0) + x.value
        head_nodes = [n for n in nodes if n["node"].startswith("c")]
        rows.append({"model": name, "params": c.params, "macs": c.macs,
                     "head_nodes_share": {"params": sum(n["params"] for n in head_nodes) / c.params,
                                          "macs": sum(n["macs"] for n in head_nodes) / c.macs},
                     "published_params_m": pub and pub.params, "published_macs_m": pub and pub.macs,
                     "published_map": pub and pub.map,
                     "reference_computed": COMPUTED.get(name),
                     "params_at_80_classes": count(det.with_classes(80)).params,
                     "macs_at_80_classes": count(det.with_classes(80)).macs, "nodes": nodes,
                     "edgetpu_ms": report.total, "edgetpu_breakdown_ms": parts,
                     # what resampling, crops and sums (residuals included) cost: the layer kinds new here
                     "edgetpu_vector_ms": sum(x.value for x in report.layers
                                              if x.op in ("resize", "max_pool", "crop", "add")),
                     "edgetpu_vector_share": sum(x.value for x in report.layers
                                                 if x.op in ("resize", "max_pool", "crop", "add")) / report.total})
    write_record(args.out, {"what": "detection zoo: analytic counts at 320 and blind edgetpu predictions",
                            "edgetpu_params": report.environment["params"], "models": rows})
    print(f"{'model':<32} {'params':>10} {'ref M':>6} {'GMACs':>6} {'ref B':>6} {'edgetpu ms':>10}  breakdown")
    for r in rows:
        b, ref = r["edgetpu_breakdown_ms"], r["reference_computed"] or (float("nan"), float("nan"))
        print(f"{r['model']:<32} {r['params']:>10,} {ref[0]:>6.2f} {r['macs'] / 1e9:>6.3f} "
              f"{ref[1]:>6.2f} {r['edgetpu_ms']:>10.3f}  "
              + ", ".join(f"{k} {v:.3f}" for k, v in b.items()))


if __name__ == "__main__":
    main()
