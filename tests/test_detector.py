"""The detector spec (SpaghettiNet graph + SSD head, and SSDLite on classification backbones): counts against
reference 5.3 and the MobileNetV2 paper, builder, serialization, validation errors, and the model's outputs
against the SSD core."""

import numpy as np
import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from edgenas.det import anchors_per_location, postprocess, ssd_anchors
from edgenas.models import get_arch, list_models
from edgenas.models.detection import spaghettinet_edgetpu, ssdlite_mobilenet_v2
from edgenas.nn import build_model
from edgenas.spec import (IBN, Arch, ConvOp, Detector, FusedGroupedOp, GraphNode, IbnOp, SepConvOp, SpecError,
                          SSDHead, Stage, Stem, count, load_spec, parse_spec, plan_detector, spec_layers)

DET_MODELS = list_models(task="detection")

# Analytic counts at 320 with the SSDLite head for 90 COCO classes (BatchNorm unfolded), pinned. Reference 5.3
# computed 3.48 M / 1.04 B, 4.17 M / 1.24 B and 5.76 M / 1.56 B: these agree to the digits it gives.
GOLDEN = {
    "spaghettinet_edgetpu_s": (3_478_933, 1_039_208_776),
    "spaghettinet_edgetpu_m": (4_169_829, 1_244_490_352),
    "spaghettinet_edgetpu_l": (5_758_389, 1_564_189_896),
    # SSDLite: MobileNetV2 read at layer_15/expansion_output (E4) and layer_19 (final) + 4 extra layers
    "ssdlite_mobilenet_v2": (4_500_543, 804_397_504),
    "ssdlite_mobilenet_edgetpu_v2_s": (7_198_255, 2_720_800_704),
}
SOURCE_SIZES = {"spaghettinet": [20, 10, 5, 3, 3], "ssdlite": [20, 10, 5, 3, 2, 1]}
# Reference 5.1: the output nodes' (size, channels) at 320.
OUTPUTS = {"s": [(20, 120), (10, 168), (5, 136), (3, 136), (3, 64)],
           "m": [(20, 120), (10, 168), (5, 136), (3, 136), (3, 64)],
           "l": [(20, 120), (10, 168), (5, 112), (3, 128), (3, 64)]}


def test_every_detection_model_is_pinned_and_matches_the_reference():
    assert set(DET_MODELS) == set(GOLDEN)
    got = {n: (count(get_arch(n)).params, count(get_arch(n)).macs) for n in DET_MODELS}
    assert got == GOLDEN
    for name, (params, macs) in got.items():
        if not name.startswith("spaghettinet"):
            continue
        reference = {"s": (3.48, 1.04), "m": (4.17, 1.24), "l": (5.76, 1.56)}[name[-1]]
        assert (round(params / 1e6, 2), round(macs / 1e9, 2)) == reference


@pytest.mark.parametrize("variant", ["s", "m", "l"])
def test_output_feature_maps_are_the_references(variant):
    det = spaghettinet_edgetpu(variant)
    plan = plan_detector(det)
    outs = {n.name: n.out for n in plan.nodes}
    assert [(outs[s].size[0], outs[s].channels) for s in det.head.sources] == OUTPUTS[variant]
    assert outs["c0n5"].size == (3, 3) and det.nodes[-1].level == 8  # nominally level 8, no stride: stays 3x3


@pytest.mark.parametrize("name", DET_MODELS)
def test_module_counts_equal_the_spec_and_outputs_cover_the_anchors(name):
    det = get_arch(name)
    model = build_model(det).eval()
    with FlopCounterMode(display=False) as fc, torch.no_grad():
        cls, box = model(torch.randn(1, 3, 320, 320))
    assert (sum(p.numel() for p in model.parameters()), fc.get_total_flops() // 2) == GOLDEN[name]
    sizes = SOURCE_SIZES[name.split("_")[0]]
    assert plan_detector(det).anchors == anchors_per_location(len(sizes)) == [3] + [6] * (len(sizes) - 1)
    n = 3 * 20 * 20 + 6 * sum(s * s for s in sizes[1:])  # 2058 (SpaghettiNet), 2034 (SSDLite)
    assert cls.shape == (1, n, 91) and box.shape == (1, n, 4)
    assert torch.equal(model.anchors, ssd_anchors([(s, s) for s in sizes]))
    # class bias -4.6: every class starts near a 1% prior, as the focal-loss config wants
    assert torch.sigmoid(model.head.cls[0][-1].bias).max().item() == pytest.approx(0.00995, abs=1e-4)
    dets = postprocess(cls, box, model.anchors)
    assert len(dets[0].scores) == 100 and dets[0].classes.min() >= 1


def test_anchor_order_is_tfs():
    """Anchor n of a source is (row, column, anchor of the cell): a logit planted at one cell's channel
    surfaces at the matching anchor."""
    det = spaghettinet_edgetpu("s")
    model = build_model(det).eval()
    head = model.head.cls[1][-1]  # source 1 (10x10, 6 anchors)
    k = det.num_classes + 1
    with torch.no_grad():
        head.weight.zero_()
        head.bias.fill_(-10.0)
        head.bias[4 * k + 7] = 10.0  # anchor 4 of every cell, class 7
        cls, _ = model(torch.randn(1, 3, 320, 320))
    start = 20 * 20 * 3
    hot = (cls[0, start:start + 600] > 0).nonzero().tolist()
    assert hot == [[(y * 10 + x) * 6 + 4, 7] for y in range(10) for x in range(10)]


def _random_detector(rng) -> Detector:
    """A small random graph: a backbone chain, two fused nodes and a passthrough; random ops and widths."""
    def ops(first_stride, resample):
        out = []
        for i in range(int(rng.integers(1, 4))):
            s = first_stride if i == 0 else 1
            kind = rng.integers(3)
            r = i > 0 and bool(rng.random() < 0.7)
            if kind == 0:
                out.append(IbnOp(kernel_size=int(rng.choice([3, 5])), expansion=int(rng.choice([2, 4])), stride=s,
                                 residual=r))
            elif kind == 1 and not resample:
                out.append(FusedGroupedOp(expansion=int(rng.choice([2, 4])), stride=s, groups=int(rng.choice([1, 2])),
                                          residual=r))
            else:
                out.append(SepConvOp(kernel_size=3, stride=s, residual=r))
        return tuple(out)

    w = [int(rng.choice([8, 16, 24])) for _ in range(6)]
    nodes = [GraphNode(name="b2", level=2, width=w[0], inputs=("s0",), ops=ops(2, False)),
             GraphNode(name="b3", level=3, width=w[1], inputs=("b2",), ops=ops(2, False)),
             GraphNode(name="b4", level=4, width=w[2], inputs=("b3",), ops=ops(2, False)),
             GraphNode(name="h3", level=3, width=w[3], inputs=("b4", "b2", "b3"), ops=ops(1, True)),
             GraphNode(name="h4", level=4, width=w[4], inputs=("h3", "b4"), ops=ops(1, True)),
             GraphNode(name="h5", level=5, width=w[5], inputs=("h4",), ops=ops(2, False))]
    return Detector(name="random", input_size=int(rng.choice([64, 72, 80])), nodes=tuple(nodes),
                    head=SSDHead(sources=("h3", "h4", "h5"), num_classes=int(rng.integers(1, 12))))


@pytest.mark.parametrize("seed", range(4))
def test_random_detectors_count_like_their_modules(seed):
    det = _random_detector(np.random.default_rng(seed))
    model = build_model(det).eval()
    size = det.input_size
    with FlopCounterMode(display=False) as fc, torch.no_grad():
        cls, box = model(torch.randn(2, 3, size, size))
    c = count(det)
    assert (sum(p.numel() for p in model.parameters()), fc.get_total_flops() // 4) == (c.params, c.macs)
    assert cls.shape[1] == box.shape[1] == len(model.anchors)


@pytest.mark.parametrize("name", DET_MODELS)
def test_json_and_yaml_round_trip(name, tmp_path):
    det = get_arch(name)
    for suffix in (".json", ".yaml"):
        det.save(tmp_path / f"d{suffix}")
        assert load_spec(tmp_path / f"d{suffix}") == det
    assert parse_spec(det.to_dict()) == det and det.with_classes(10).num_classes == 10


def _mutated(path, value):
    data = spaghettinet_edgetpu("s").to_dict()
    target = data
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return data


@pytest.mark.parametrize("path,value,message", [
    (("nodes", 6, "inputs"), ["n3", "nx"], r"nodes\[6\].inputs\[1\]: unknown input 'nx'"),
    (("nodes", 2, "inputs"), ["c0n1"], r"nodes\[2\].inputs\[0\]: 'c0n1' comes later in the list: .* cycle"),
    (("nodes", 0, "ops", 0, "residual"), True, r"nodes\[0\].ops\[0\].residual: a residual needs the op to keep its "
                                                r"shape, but it maps 24 channels at stride 2 to 48"),
    (("nodes", 2, "level"), 3, r"nodes\[2\].level: level 3 \(stride 8\) cannot be reached: n1 at stride 8 and the "
                               r"ops' strides give stride 16"),
    (("nodes", 1, "ops", 0, "groups"), 5, r"nodes\[1\].ops\[0\].groups: 48 input channels do not split into 5"),
    (("nodes", 6, "ops", 0, "stride"), 2, r"nodes\[6\].ops\[0\].stride: a node with resample edges works at its "
                                          r"own level"),
    (("head", "sources", 0), "s0", r"head.sources\[0\]: unknown node 's0'"),
])
def test_bad_graphs_fail_with_their_path(path, value, message):
    with pytest.raises(SpecError, match=message):
        parse_spec(_mutated(path, value))


def test_profile_validate_and_latency_work_on_detectors(capsys, tmp_path):
    from test_cli import run

    get_arch("spaghettinet_edgetpu_s").save(tmp_path / "d.yaml")
    code, out, _ = run(capsys, "arch", "validate", str(tmp_path / "d.yaml"))
    assert code == 0 and "detector, 12 graph nodes, 32 ops, SSD head on 5 sources, 90 classes" in out

    code, out, _ = run(capsys, "profile", "spaghettinet_edgetpu_s")
    assert code == 0 and "3,478,933 params, 1,039,208,776 MACs" in out and "c0n1.edge_c0n0.upsample" in out
    layers = spec_layers(get_arch("spaghettinet_edgetpu_s"))
    assert {"conv", "add", "max_pool", "resize"} <= {x.op for x in layers}
    code, out, _ = run(capsys, "latency", "spaghettinet_edgetpu_s", "--target", "macs")
    assert code == 0 and "1039.2088" in out


def test_ssdlite_mobilenet_v2_counts_as_the_paper():
    """MobileNetV2 paper, Table 6: SSDLite 4.3 M params, 0.8 B MAdds at 320, COCO's 80 classes (+ background)."""
    c = count(ssdlite_mobilenet_v2(num_classes=80))
    assert (round(c.params / 1e6, 1), round(c.macs / 1e9, 1)) == (4.3, 0.8)
    tensors = plan_detector(ssdlite_mobilenet_v2()).tensors
    assert [(tensors[s].size[0], tensors[s].channels) for s in ssdlite_mobilenet_v2().head.sources] == [
        (20, 576), (10, 1280), (5, 512), (3, 256), (2, 256), (1, 128)]


def test_backbone_taps_read_the_classifiers_tensors():
    """The detector's backbone has the classifier's state-dict keys; with the classifier's weights loaded, E4
    is block 13's expansion output and ``final`` the classifier's 1x1 head conv."""
    det = ssdlite_mobilenet_v2()
    model, classifier = build_model(det).eval(), build_model(det.backbone).eval()
    weights = {k: v for k, v in classifier.state_dict().items() if k.startswith("backbone.")}
    weights |= {k.replace("head.conv.", "backbone.final."): v for k, v in classifier.state_dict().items()
                if k.startswith("head.conv.")}
    missing, unexpected = model.load_state_dict(weights, strict=False)
    assert not unexpected and all(not k.startswith("backbone.") for k in missing)
    seen = {}
    block13 = [b for stage in classifier.backbone.stages for b in stage][13]
    block13.expand.register_forward_hook(lambda m, i, o: seen.setdefault("E4", o))
    x = torch.randn(1, 3, 96, 96)
    with torch.no_grad():
        feats = model.features(x)
        final = classifier.head.conv(classifier.backbone(x)[-1])
    assert torch.allclose(feats["E4"], seen["E4"]) and torch.allclose(feats["final"], final)


def _tiny_backbone(**head) -> Arch:
    blocks = lambda s: (IBN(expand_ratio=4, stride=s), IBN(expand_ratio=4))  # noqa: E731
    return Arch(name="tiny", stem=Stem(out_channels=8), input_size=64,
                stages=(Stage(out_channels=16, blocks=blocks(2)), Stage(out_channels=24, blocks=blocks(2)),
                        Stage(out_channels=32, blocks=blocks(2))), **head)


@pytest.mark.parametrize("sources", [("E3", "C4"), ("C3", "E2", "x5")])
def test_backbone_detectors_count_like_their_modules(sources):
    det = Detector(name="tiny_ssd", input_size=64, backbone=_tiny_backbone(),
                   nodes=(GraphNode(name="x5", level=5, width=16, inputs=("C4",),
                                    ops=(ConvOp(out_channels=8), SepConvOp(stride=2, dw_norm=True))),),
                   head=SSDHead(sources=sources, num_classes=3))
    model = build_model(det).eval()
    with FlopCounterMode(display=False) as fc, torch.no_grad():
        cls, box = model(torch.randn(2, 3, 64, 64))
    c = count(det)
    assert (sum(p.numel() for p in model.parameters()), fc.get_total_flops() // 4) == (c.params, c.macs)
    assert cls.shape[1] == box.shape[1] == len(model.anchors)
    assert parse_spec(det.to_dict(compact=True)) == det


@pytest.mark.parametrize("change,message", [
    ({"stem": {"out_channels": 16}}, r"stem: a detector with a backbone has no stem of its own"),
    ({"head": {"type": "ssd", "sources": ["E4"]}}, r"head.sources\[0\]: unknown node 'E4'"),
    ({"nodes": [{"name": "x5", "level": 5, "width": 16, "inputs": ["E4"], "ops": [{"type": "sep", "stride": 2}]}]},
     r"nodes\[0\].inputs\[0\]: unknown input 'E4'; known: C1, C2, C3, C4, E1, E2, E3, final"),
    ({"nodes": [{"name": "x5", "level": 5, "width": 16, "inputs": ["C4"],
                 "ops": [{"type": "conv", "out_channels": 8, "stride": 2}]}]},
     r"nodes\[0\].ops\[0\]: the last op gives 8 channels, not the node's width 16"),
])
def test_bad_backbone_detectors_fail_with_their_path(change, message):
    data = {"name": "tiny_ssd", "input_size": 64, "backbone": _tiny_backbone().to_dict(), "kind": "detector",
            "nodes": [{"name": "x5", "level": 5, "width": 16, "inputs": ["C4"],
                       "ops": [{"type": "sep", "stride": 2}]}],
            "head": {"type": "ssd", "sources": ["C3", "x5"]}, **change}
    with pytest.raises(SpecError, match=message):
        parse_spec(data)


def test_checkpoints_written_before_the_backbone_field_still_resume():
    """A detector checkpoint records its spec as JSON; one written before ``backbone`` existed has no such
    key and must still count as the same architecture (the fit loop compares specs, not strings)."""
    import json

    from edgenas.train.loop import same_spec

    det = spaghettinet_edgetpu("s")
    old = det.to_dict()
    assert old.pop("backbone") is None
    assert json.dumps(old) != det.to_json() and same_spec(json.dumps(old), det)
    assert not same_spec(json.dumps(old), spaghettinet_edgetpu("m")) and not same_spec("{not json", det)
