"""The segmentation zoo: analytic params and MACs at 512 against Google's README, and the edgetpu model's
predicted Pixel 6 latency with the logits only, the exact tail and the two fused tails.

The latencies are a blind test of the accelerator model: it was calibrated on the ten classification latencies
only, and Google's segmentation latencies are not in the project (reference 4.4). Nothing is measured, so this
takes seconds once SCALE-Sim has simulated the new layer shapes.

    python bench/seg_models.py --out bench/results/seg_models.json
"""

from __future__ import annotations

from common import parser, zoo  # bench/ is on the path when a bench script runs
from edgenas.env import write_record
from edgenas.latency import get_latency_model
from edgenas.models import get_arch
from edgenas.spec import arch_layers, count, network_layers

TAILS = {"exact": "resize512,argmax", "fused256": "resize256,argmax,resize512",
         "fused128": "resize128,argmax,resize512"}


def main() -> None:
    args = parser(__doc__, record="bench/results/seg_models.json", cache_dir=None).parse_args()
    edgetpu = get_latency_model("edgetpu", cache_dir=args.cache_dir)
    rows = []
    for name, net, pub in zoo("segmentation"):
        c = count(net)
        backbone = sum(x.params for x in network_layers(net, tail=False)
                       if not x.path.startswith(("nodes.", "head.")))
        row = {"model": name, "params": c.params, "macs": c.macs, "backbone_params": backbone,
               "head_params": c.params - backbone, "published_params_m": pub.params if pub else None,
               "published_miou": pub.miou if pub else None, "published_miou_fused": pub.miou_fused if pub else None,
               "edgetpu_ms": {"logits": edgetpu.predict(net).total}}
        for tail, text in TAILS.items():
            row["edgetpu_ms"][tail] = edgetpu.predict(net.with_tail(text)).total
        row["edgetpu_exact_over_fused256"] = row["edgetpu_ms"]["exact"] / row["edgetpu_ms"]["fused256"]
        row["edgetpu_tail_ms"] = {t: row["edgetpu_ms"][t] - row["edgetpu_ms"]["logits"] for t in TAILS}
        exact = edgetpu.predict(net.with_tail(TAILS["exact"]))
        parts: dict[str, float] = {}
        for x in exact.layers:  # where the exact-tail prediction goes: backbone, BiFPN/decoder, head, tail
            part = x.path.split(".")[0] if x.path.startswith(("nodes.", "head.", "tail.")) else (
                "fixed" if x.path == "fixed" else "backbone")
            parts[f"{part}/{x.source}"] = parts.get(f"{part}/{x.source}", 0.0) + x.value
        row["edgetpu_exact_breakdown_ms"] = parts
        if pub and pub.params:  # what the README counts beyond ours, and the unused classification top's share
            top = [x for x in arch_layers(net.backbone) if x.path == "head.conv"]
            row["readme_minus_ours_m"] = pub.params - c.params / 1e6
            row["backbone_top_conv_params"] = top[0].params if top else 0
        rows.append(row)
    write_record(args.out, {"what": "segmentation zoo: analytic counts at 512 and blind edgetpu predictions",
                            "edgetpu_params": edgetpu.predict(get_arch("autoseg_edgetpu_xs")).environment["params"],
                            "tails": TAILS, "models": rows})
    print(f"{'model':<40} {'params':>10} {'pub. M':>7} {'GMACs':>6} {'logits':>7} {'exact':>7} {'fused256':>8} "
          f"{'fused128':>8} {'ratio':>6}")
    for r in rows:
        ms = r["edgetpu_ms"]
        pub = f"{r['published_params_m']:.2f}" if r["published_params_m"] else "-"
        print(f"{r['model']:<40} {r['params']:>10,} {pub:>7} {r['macs'] / 1e9:>6.2f} {ms['logits']:>7.2f} "
              f"{ms['exact']:>7.2f} {ms['fused256']:>8.2f} {ms['fused128']:>8.2f} "
              f"{r['edgetpu_exact_over_fused256']:>6.2f}")


if __name__ == "__main__":
    main()
