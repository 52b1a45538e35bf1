"""report.html: one static page per search, built from result.json and trace.jsonl alone.

Inline SVG, no script, no network: what the controller tried (predicted latency against held-out quality),
the zoo on the latency axis, the chosen architecture block by block, and the controller's probabilities and
entropy over time. ``edgenas report DIR`` rebuilds it from a result folder.
"""

from __future__ import annotations

import html
import math
from pathlib import Path

from ..io import write_atomic
from ..spec import SpecError
from ..spec.datafile import parse_json, read_data
from .decode import CLOSEST, MOST_LIKELY

OP_COLORS = {"ibn": "#3b6fb6", "fused_ibn": "#e07b39", "gc_ibn": "#3a9a5b", "skip": "#b9b9b9",
             "grouped_ibn": "#8d5fb8", "conv": "#555555", "sep_conv": "#999933", "fused_grouped": "#2f8f7f",
             "sep": "#b0a030", "none": "#eeeeee", "resample": "#cccccc"}
W, H, PAD = 640, 360, 56


def _esc(x) -> str:
    return html.escape(str(x), quote=True)


def _ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    step = 10 ** math.floor(math.log10(max(hi - lo, 1e-12) / n))
    step *= min((m for m in (1, 2, 5, 10) if (hi - lo) / (step * m) <= n), default=10)
    first = math.ceil(lo / step) * step
    return [first + i * step for i in range(int((hi - first) / step + 1e-9) + 1)]


class _Axes:
    """Linear x/y scales onto a W x H plot with ticks and labels."""

    def __init__(self, xs: list[float], ys: list[float], xlabel: str, ylabel: str):
        pad = lambda lo, hi: (lo - 0.05 * (hi - lo or 1), hi + 0.05 * (hi - lo or 1))  # noqa: E731
        self.x0, self.x1 = pad(min(xs), max(xs))
        self.y0, self.y1 = pad(min(ys), max(ys))
        self.xlabel, self.ylabel = xlabel, ylabel

    def x(self, v: float) -> float:
        return PAD + (v - self.x0) / (self.x1 - self.x0) * (W - 1.5 * PAD)

    def y(self, v: float) -> float:
        return H - PAD - (v - self.y0) / (self.y1 - self.y0) * (H - 1.5 * PAD)

    def frame(self) -> str:
        parts = [f'<rect x="{PAD}" y="{PAD / 2}" width="{W - 1.5 * PAD}" height="{H - 1.5 * PAD}" '
                 'fill="none" stroke="#444"/>']
        for v in _ticks(self.x0, self.x1):
            parts.append(f'<text x="{self.x(v):.1f}" y="{H - PAD + 16}" text-anchor="middle">{v:g}</text>')
        for v in _ticks(self.y0, self.y1):
            parts.append(f'<text x="{PAD - 6}" y="{self.y(v) + 4:.1f}" text-anchor="end">{v:g}</text>')
        parts.append(f'<text x="{PAD + (W - 1.5 * PAD) / 2}" y="{H - 12}" text-anchor="middle">'
                     f'{_esc(self.xlabel)}</text>')
        parts.append(f'<text transform="translate(14,{H / 2}) rotate(-90)" text-anchor="middle">'
                     f'{_esc(self.ylabel)}</text>')
        return "".join(parts)


def _svg(fig_id: str, body: str, width: int = W, height: int = H) -> str:
    return (f'<svg id="{fig_id}" xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
            f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="11">{body}</svg>')


def quality(result: dict) -> float:
    """The chosen architecture's quality on the figure's axis: its trial's top-1 (multi-trial), or the supernet's
    estimate with the batch's BatchNorm statistics (TuNAS): the estimator of every dot beside it."""
    if "quality" in result:
        return result["quality"]
    return result["supernet_quality"]


def _measure(result: dict) -> str:
    """What the supernet's quality measures, e.g. "held-out top-1" or "held-out mIoU"."""
    return result.get("quality_measure", "held-out top-1")


def quality_label(result: dict) -> str:
    """The quality axis: a multi-trial search's own label; TuNAS's supernet estimate with batch statistics."""
    if result.get("strategy", "tunas") != "tunas":
        return result["quality_label"]
    return f"{_measure(result)} (supernet, the batch's BatchNorm statistics)"


def pareto_figure(result: dict, trace: list[dict]) -> str:
    """Every controller sample or trial (latency, quality), darker later; the chosen architecture; the zoo
    models at the same deployment size as marks on the latency axis only (``ZOO_NOTE``)."""
    unit = result["unit"]
    tried = [(lat, q, r["step"]) for r in trace for lat, q in r.get("samples", [])]
    zoo = result.get("zoo", [])
    xs = [t[0] for t in tried] + [result["predicted_latency"], result["target"]] + [z["latency"] for z in zoo]
    ys = [t[1] for t in tried] + [quality(result)]
    ax = _Axes(xs, ys, f"predicted latency ({result['latency_model']}, {unit})", quality_label(result))
    last = max((t[2] for t in tried), default=1) or 1
    parts = [ax.frame()]
    tx = ax.x(result["target"])
    parts.append(f'<line x1="{tx:.1f}" x2="{tx:.1f}" y1="{PAD / 2}" y2="{H - PAD}" stroke="#c33" '
                 f'stroke-dasharray="4 3"/><text x="{tx + 4:.1f}" y="{PAD / 2 + 12}" fill="#c33">target</text>')
    for lat, q, step in tried:
        shade = int(200 - 170 * step / last)
        parts.append(f'<circle class="tried" cx="{ax.x(lat):.1f}" cy="{ax.y(q):.1f}" r="2.5" '
                     f'fill="rgb({shade},{shade},{min(255, shade + 40)})"><title>step {step}: {lat:.4g} {unit}, '
                     f'{q:.3f}</title></circle>')
    for z in zoo:
        zx = ax.x(z["latency"])
        parts.append(f'<line class="zoo" x1="{zx:.1f}" x2="{zx:.1f}" y1="{H - PAD}" y2="{H - PAD - 10}" '
                     f'stroke="#e0a020" stroke-width="2"><title>{_esc(z["name"])}: {z["latency"]:.4g} {unit}'
                     '</title></line>')
    cx, cy = ax.x(result["predicted_latency"]), ax.y(quality(result))
    star = " ".join(f"{cx + r * math.sin(a * math.pi / 5):.1f},{cy - r * math.cos(a * math.pi / 5):.1f}"
                    for a, r in zip(range(10), [9, 4] * 5))
    parts.append(f'<polygon id="chosen" points="{star}" fill="#c33"><title>chosen: '
                 f'{result["predicted_latency"]:.4g} {unit}</title></polygon>')
    return _svg("fig-pareto", "".join(parts))


ZOO_NOTE = ("Zoo models stand on the latency axis only. Their quality here could only be the supernet's "
            "estimate, and for architectures the controller rarely or never sampled that estimate means little: "
            "with their own BatchNorm statistics zoo points have scored far below the samples beside them, and "
            "the supernet's ranking of architectures against training them alone is weak (docs/search.md). "
            "Comparing their quality with the chosen architecture's needs each trained the same way.")


def zoo_table(result: dict) -> str:
    """The zoo at the same deployment size: predicted latency, and against the chosen architecture."""
    zoo, unit = result.get("zoo", []), result["unit"]
    if not zoo:
        return ""
    chosen = result["predicted_latency"]
    rows = "".join(f'<tr class="zoo-row"><td>{_esc(z["name"])}</td><td>{z["latency"]:.4g} {_esc(unit)}</td>'
                   f'<td>{z["latency"] / chosen:.2f}x</td></tr>' for z in sorted(zoo, key=lambda z: z["latency"]))
    return (f'<table id="zoo"><tr><th>zoo model</th><th>predicted latency</th><th>against the chosen</th></tr>'
            f"{rows}</table>")


def _backbone_boxes(arch: dict) -> list[tuple]:
    boxes = [("stem", f"k{arch['stem'].get('kernel_size', '')}", arch["stem"]["out_channels"], "#555555", "")]
    for s, stage in enumerate(arch["stages"]):
        for i, block in enumerate(stage["blocks"]):
            kind = block.get("type", "ibn")
            detail = "" if kind == "skip" else f"k{block.get('kernel_size', '')} e{block.get('expand_ratio', '')}"
            if kind == "gc_ibn":
                detail += f" g{block.get('group_size', '')}"
            boxes.append((kind, detail, stage["out_channels"], OP_COLORS.get(kind, "#777"), f"stage {s} block {i}"))
    return boxes


def _graph_boxes(spec: dict) -> list[tuple]:
    """A network's nodes (one box each: what it combines, its ops) or a detector's (one box per op, under the
    node's name), in the spec's order, then the head."""
    boxes = []
    if spec.get("kind") == "detector":
        stem = spec.get("stem") or {}
        boxes.append(("stem", f"k{stem.get('kernel_size', '')}", stem.get("out_channels", 0), "#555555", "stem"))
        for node in spec["nodes"]:
            for j, op in enumerate(node["ops"]):
                kind = op.get("type", "")
                detail = f"k{op.get('kernel_size', '')}" + (f" e{op['expansion']}" if "expansion" in op else "") + \
                    (f" g{op['groups']}" if op.get("groups", 1) > 1 else "") + (" s2" if op.get("stride", 1) == 2 else "")
                where = f"{node['name']} (level {node['level']}, from {' + '.join(node['inputs'])}) op {j}"
                boxes.append((kind, detail, node["width"], OP_COLORS.get(kind, "#777"), where,
                              node["name"] if j == 0 else ""))
        boxes.append(("head", "ssd", 0, "#555555", "SSD head on " + ", ".join(spec["head"]["sources"])))
        return boxes
    width = {}
    for node in spec.get("nodes", []):
        ops = node.get("ops", [])
        channels = next((o["out_channels"] for o in reversed(ops) if "out_channels" in o),
                        max((width.get(i, 0) for i in node["inputs"]), default=0))
        width[node["name"]] = channels
        kind = ops[-1]["type"] if ops else "resample"
        detail = f"{node.get('combine', 'sum')} of {len(node['inputs'])}" if len(node["inputs"]) > 1 else "1 input"
        boxes.append((kind, detail, channels, OP_COLORS.get(kind, "#777"),
                      f"{node['name']} (level {node['level']}, from {' + '.join(node['inputs'])})", node["name"]))
    classifier = spec["head"]["classifier"]
    boxes.append(("head", classifier.get("type", ""), classifier["out_channels"], "#555555", "class head"))
    return boxes


def arch_figure(arch: dict) -> str:
    """The architecture left to right: stem, each block as a box coloured by op with its kernel, expansion
    and channels, stage by stage, then the head; a segmentation network's backbone, then its head's graph node
    by node; a detector's graph node by node, each op a box under its node's name."""
    if arch.get("kind") == "network":
        boxes = _backbone_boxes(arch["backbone"]) + _graph_boxes(arch)
    elif arch.get("kind") == "detector":
        boxes = _graph_boxes(arch)
    else:
        boxes = _backbone_boxes(arch) + [("head", "1x1", arch["head"]["conv_channels"], "#555555", "")]
    boxes = [b if len(b) == 6 else (*b, "") for b in boxes]
    bw, gap, top = 34, 4, 30
    width = len(boxes) * (bw + gap) + 2 * gap
    tallest = max(c for _, _, c, _, _, _ in boxes) or 1
    parts = []
    for n, (kind, detail, channels, color, where, group) in enumerate(boxes):
        x = gap + n * (bw + gap)
        h = 30 + 120 * channels / tallest
        dash = ' stroke-dasharray="3 2"' if kind == "skip" else ""
        parts.append(f'<g class="block"><rect x="{x}" y="{top + 150 - h:.1f}" width="{bw}" height="{h:.1f}" '
                     f'fill="{color}" stroke="#222"{dash}><title>{_esc(where)} {_esc(kind)} {_esc(detail)} '
                     f'-> {channels} ch</title></rect>'
                     f'<text x="{x + bw / 2}" y="{top + 164}" text-anchor="middle" font-size="9">{channels}</text>'
                     f'<text transform="translate({x + bw / 2 + 3},{top + 172}) rotate(60)" font-size="9">'
                     f'{_esc(kind)} {_esc(detail)}</text></g>')
        if group:
            parts.append(f'<text class="node" x="{x}" y="{top + 150 - h - 4:.1f}" font-size="9">{_esc(group)}</text>')
    legend = "".join(f'<rect x="{gap + 110 * k}" y="6" width="10" height="10" fill="{c}"/>'
                     f'<text x="{gap + 110 * k + 14}" y="15">{op}</text>'
                     for k, (op, c) in enumerate(_legend(boxes)))
    return _svg("fig-arch", legend + "".join(parts), max(width, 460), 270)


def _legend(boxes: list[tuple]) -> list[tuple[str, str]]:
    kinds = {b[0] for b in boxes}
    shown = [(op, c) for op, c in OP_COLORS.items() if op in kinds]
    return shown if len(shown) > 1 else list(OP_COLORS.items())[:4]


def probability_figure(trace: list[dict], result: dict) -> str:
    """Per block position, the controller's op probabilities over the search as stacked bands."""
    snaps = [r for r in trace if "probabilities" in r]
    if not snaps:
        return _svg("fig-probabilities", '<text x="10" y="20">no probability snapshots in the trace</text>', W, 40)
    probs = result["probabilities"]
    positions = [p for p in probs if p.endswith("]")]  # block positions: backbone blocks, a node's ops
    cols, cw, ch = 5, 120, 60
    rows = math.ceil(len(positions) / cols)
    last = snaps[-1]["step"] or 1
    parts = []
    for n, path in enumerate(positions):
        ox, oy = 8 + (n % cols) * (cw + 10), 24 + (n // cols) * (ch + 26)
        labels = list(probs[path])
        lower = [0.0] * len(snaps)
        for k, label in enumerate(labels):
            upper = [lo + r["probabilities"][path][k] for lo, r in zip(lower, snaps)]
            top = " ".join(f"{ox + cw * r['step'] / last:.1f},{oy + ch * (1 - u):.1f}" for r, u in zip(snaps, upper))
            bottom = " ".join(f"{ox + cw * r['step'] / last:.1f},{oy + ch * (1 - lo):.1f}"
                              for r, lo in reversed(list(zip(snaps, lower))))
            parts.append(f'<polygon points="{top} {bottom}" fill="{OP_COLORS.get(label, "#777")}">'
                         f'<title>{_esc(path)} {_esc(label)}</title></polygon>')
            lower = upper
        parts.append(f'<text x="{ox}" y="{oy - 4}" font-size="9">{_esc(path)}</text>')
    return _svg("fig-probabilities", "".join(parts), cols * (cw + 10) + 8, rows * (ch + 26) + 16)


def trace_figure(trace: list[dict], result: dict) -> str:
    """TuNAS: the controller's entropy and the predicted latency of its most likely architecture, step by
    step; a multi-trial search: the latency of the best trial so far, trial by trial."""
    multi = result.get("strategy", "tunas") != "tunas"
    steps = [r["step"] for r in trace]
    lat = [r["likely_latency"] for r in trace]
    ax = _Axes(steps, lat + [result["target"]], "trial" if multi else "step",
               f"{'best trial so far' if multi else 'most likely architecture'} ({result['unit']})")
    line = " ".join(f"{ax.x(s):.1f},{ax.y(v):.1f}" for s, v in zip(steps, lat))
    ty = ax.y(result["target"])
    body = (ax.frame() + f'<polyline points="{line}" fill="none" stroke="#3b6fb6" stroke-width="1.5"/>'
            f'<line x1="{PAD}" x2="{W - PAD / 2}" y1="{ty:.1f}" y2="{ty:.1f}" stroke="#c33" stroke-dasharray="4 3"/>')
    ent = [r["entropy"] for r in trace if "entropy" in r]
    if ent:
        e0, e1 = min(ent), max(ent) or 1
        eline = " ".join(f"{ax.x(s):.1f},{H - PAD - (v - e0) / ((e1 - e0) or 1) * (H - 1.5 * PAD):.1f}"
                         for s, v in zip(steps, ent))
        body += (f'<polyline points="{eline}" fill="none" stroke="#aaa"><title>entropy</title></polyline>'
                 f'<text x="{W - PAD}" y="{PAD / 2 + 12}" text-anchor="end" fill="#888">grey: entropy '
                 f'{e1:.1f} to {ent[-1]:.1f} nats</text>')
    return _svg("fig-trace", body)


def render(result: dict, trace: list[dict]) -> str:
    s = result["config"]["search"]
    rows = [("space", s["space"]), ("latency model", result["latency_model"]),
            ("target", f"{result['target']:g} {result['unit']}"),
            ("chosen architecture", f"{result['predicted_latency']:.4g} {result['unit']} "
                                    f"({result['target_error']:+.1%} from the target)")]
    if result.get("selection"):
        rows.append(("chosen by", selection_text(result)))
    rows.append((quality_label(result), f"{quality(result):.3f}"))
    if "supernet_quality_recalibrated" in result:
        rows.append((f"supernet {_measure(result)}, its own BatchNorm statistics",
                     f"{result['supernet_quality_recalibrated']:.3f}"))
    strategy = result.get("strategy", "tunas")
    multi = strategy != "tunas"
    rows.insert(0, ("strategy", strategy))
    rows.append(("trials", f"{len(trace)} of {s['trials']}") if multi else ("steps", f"{len(trace)} of {s['steps']}"))
    retrained = result.get("retrained")
    if retrained and "top1" in retrained:
        rows.append(("retrained from scratch", f"{retrained['top1']:.2f}% test top-1 after {retrained['epochs']} "
                                               f"epochs on {retrained['test_images']} test images"))
        if retrained.get("onnx"):
            onnx = retrained["onnx"]
            agreement = (f", top-1 agreement {onnx['top1_agreement']:.1f}%" if onnx.get("top1_agreement") is not None
                         else "")
            rows.append(("ONNX export", f"max |diff| vs PyTorch {onnx['max_abs_diff']:.2e}{agreement}"))
    elif retrained:
        rows.append(("retrained from scratch", f"{retrained['quality']:.2f}% validation {retrained['quality_label']} "
                                               f"after {retrained['epochs']} epochs on {retrained['test_images']} "
                                               "images"))
        if retrained.get("export_line"):
            rows.append(("ONNX export", retrained["export_line"]))
    table = "".join(f"<tr><th>{_esc(k)}</th><td>{_esc(v)}</td></tr>" for k, v in rows)
    proxy = f'<p class="proxy">{_esc(result["proxy"])}</p>' if result.get("proxy") else ""
    notes = "".join(f"<li>{_esc(n)}</li>" for n in result.get("latency_notes", []))
    if multi:
        over_time = (f"<section><h2>The search over time</h2><p>The predicted latency of the best trial (by "
                     f"reward) after each trial.</p>\n{trace_figure(trace, result)}</section>")
    else:
        over_time = (f"<section><h2>The controller over time</h2><p>Op probabilities at each block position "
                     f"(colours as above).</p>\n{probability_figure(trace, result)}\n{trace_figure(trace, result)}"
                     "</section>")
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>edgenas search: {_esc(s['space'])} for {_esc(result['latency_model'])}</title>
<style>body{{font-family:sans-serif;max-width:1100px;margin:24px auto;color:#222}} th{{text-align:left;padding-right:18px}}
section{{margin:28px 0}} .proxy{{background:#fff6dd;padding:8px}} svg{{display:block;max-width:100%;height:auto}}</style>
</head><body>
<h1>edgenas search: {_esc(s['space'])} for {_esc(result['latency_model'])} at {result['target']:g} {_esc(result['unit'])}</h1>
{proxy}<table id="summary">{table}</table>
<section><h2>What was tried</h2><p>{_esc(TRIED[multi].replace("{measure}", _measure(result)))}</p>
{pareto_figure(result, trace)}<p>{_esc(ZOO_NOTE)}</p>{zoo_table(result)}</section>
<section><h2>The chosen architecture</h2><p>Block by block (a network's head and a detector's graph node by
node; hover for a node's inputs); height is the output channels.</p>
{arch_figure(result['arch'])}</section>
{over_time}
<section><h2>Latency model notes</h2><ul>{notes}</ul></section>
</body></html>
"""


TRIED = {
    False: "Each dot is an architecture the controller sampled (darker: later), at its predicted latency and its "
           "{measure} on one held-out batch with the shared weights and that batch's BatchNorm statistics, as the "
           "controller scored it. Star: the chosen architecture, scored the same way on the held-out split.",
    True: "Each dot is a trial (darker: later): an architecture trained from scratch for the trial's steps, at "
          "its predicted latency and its top-1 on the held-out split. Star: the trial with the best reward.",
}


def selection_text(result: dict) -> str:
    """Which rule chose the architecture (``search.decode``), in words."""
    sel, unit = result["selection"], result["unit"]
    tol = result["config"]["search"].get("target_tolerance", 0.05)
    if sel["rule"] == MOST_LIKELY:
        return "the controller's most likely architecture"
    argmax = f"the controller's most likely architecture ({sel['most_likely_latency']:.4g} {unit}, " \
             f"{sel['most_likely_latency'] / result['target'] - 1:+.1%})"
    if sel["rule"] == CLOSEST:
        return (f"{argmax} missed the target by more than {tol:.0%} and no likely architecture within it was "
                f"found: the closest one found, {sel['moves']} choices away")
    return (f"{argmax} missed the target by more than {tol:.0%} (the controller had not settled): the most likely "
            f"architecture within it that the decoding found, {sel['moves']} choices away, "
            f"{sel['log_prob_gap']:.2f} nats less likely")


def write_report(out: str | Path) -> Path:
    """OUT/report.html from OUT/result.json and OUT/trace.jsonl."""
    out = Path(out)
    result = read_data(out / "result.json", "json")
    trace_path = out / "trace.jsonl"
    try:
        text = trace_path.read_text()
    except OSError as err:
        raise SpecError(f"{trace_path}: cannot read ({err.strerror})") from None
    trace = [parse_json(line, f"{trace_path}:{n}") for n, line in enumerate(text.splitlines(), 1) if line.strip()]
    try:
        page = render(result, trace)
    except (KeyError, TypeError, ValueError) as err:  # valid JSON, but not what a search writes
        raise SpecError(f"{out}: result.json or trace.jsonl is not a search's record ({err!r})") from None
    return write_atomic(out / "report.html", page)
