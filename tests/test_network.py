"""The network spec (backbone + graph nodes + head + tail): counts, builder, serialization, errors."""

import json

import numpy as np
import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from edgenas.models import get_arch, list_models
from edgenas.models.segmentation import autoseg_edgetpu, bifpn_nodes, deeplabv3plus
from edgenas.nn import build_model
from edgenas.nn.network import SamePool, onehot_argmax, tf_same_pads
from edgenas.space import get_space
from edgenas.spec import SpecError, Tail, count, load_spec, network_layers, parse_network, parse_spec
from edgenas.spec.network import Network

SEG_MODELS = list_models(task="segmentation")

# Analytic counts at 512 (BatchNorm unfolded: gamma and beta per channel), pinned: a change is a change of
# architecture. Autoseg-XS's convs equal Google's TFLite conv for conv (see test_autoseg_xs_matches_tflite).
GOLDEN = {
    "deeplabv3plus_mobilenet_edgetpu_v2_xs": (3_275_216, 3_806_814_208),
    "deeplabv3plus_mobilenet_edgetpu_v2_s": (4_761_792, 6_358_188_032),
    "deeplabv3plus_mobilenet_edgetpu_v2_m": (7_115_920, 9_673_367_552),
    "deeplabv3plus_mobilenet_v2": (2_237_904, 1_655_349_248),
    "autoseg_edgetpu_xs": (2_354_616, 1_914_247_680),
    # at 513: Google's Cityscapes file's 2,039,912 conv weights + gamma and beta of 15,448 BN channels + 19 biases
    "deeplab_mobilenet_edgetpu_slim": (2_070_827, 4_316_022_888),
    "autoseg_edgetpu_s": (2_539_676, 2_312_328_704),
    "autoseg_edgetpu_m": (5_157_684, 4_523_617_792),
}


def test_every_segmentation_model_is_pinned():
    assert set(SEG_MODELS) == set(GOLDEN)
    assert {n: (count(get_arch(n)).params, count(get_arch(n)).macs) for n in SEG_MODELS} == GOLDEN


def _flops_and_params(net: Network, size: int):
    model = build_model(net).eval()
    with FlopCounterMode(display=False) as fc, torch.no_grad():
        out = model(torch.randn(1, 3, size, size))
    return fc.get_total_flops() // 2, sum(p.numel() for p in model.parameters()), out


@pytest.mark.parametrize("name", SEG_MODELS)
def test_analytic_counts_match_the_module(name):
    net = get_arch(name)
    macs, params, out = _flops_and_params(net, 256)
    c = count(net, 256)
    assert (params, macs) == (c.params, c.macs)
    logits = [x for x in network_layers(net, 256, tail=False)][-1]
    assert tuple(out.shape) == (1, net.num_classes, *logits.out_size)


def _random_network(rng) -> Network:
    backbone = get_space("edgetpu-v2-224").sample_arch(rng)
    fusion = str(rng.choice(["sum", "attn", "fastattn", "channel_attn", "channel_fastattn"]))
    if rng.random() < 0.5:
        max_level = int(rng.integers(5, 8))
        nodes = bifpn_nodes(min_level=3, max_level=max_level, channels=int(rng.choice([16, 24, 40])),
                            cells=int(rng.integers(1, 3)), fusion=fusion,
                            in_channels={lv.reduction.bit_length() - 1: lv.channels for lv in _levels(backbone)})
        net = autoseg_edgetpu("xs").replace(backbone=backbone, nodes=tuple(nodes))
    else:
        net = deeplabv3plus(backbone, "random", aspp_channels=int(rng.choice([32, 64])),
                            rates=tuple(int(r) for r in rng.choice([1, 2, 3], size=2)), pool_kernel=None,
                            head_convs=int(rng.integers(1, 3)))
    return net.replace(input_size=128, tail=Tail(steps="resize64,argmax,resize128"))


def _levels(arch):
    from edgenas.spec import feature_levels

    return feature_levels(arch)


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_random_networks_count_like_their_modules(seed):
    net = _random_network(np.random.default_rng(seed))
    macs, params, _ = _flops_and_params(net, 128)
    c = count(net, 128)
    assert (params, macs) == (c.params, c.macs)


def test_autoseg_xs_has_googles_conv_inventory():
    """The released TFLite (shared/fixtures/google/README.md): 136 convs; 78 1x1, 46 dw3x3, 8 dw5x5, 4 full
    3x3; 2,322,168 weights and 20,320 biases once BatchNorm is folded (one bias per conv output channel)."""
    convs = [x for x in network_layers(get_arch("autoseg_edgetpu_xs")) if x.op == "conv"]
    kinds = {}
    for x in convs:
        key = f"{'dw' if x.is_depthwise else 'conv'}{x.kernel_size}"
        kinds[key] = kinds.get(key, 0) + 1
    assert kinds == {"conv1": 78, "dw3": 46, "dw5": 8, "conv3": 4}
    assert sum(x.out_channels * (x.in_channels // x.groups) * x.kernel_size**2 for x in convs) == 2_322_168
    assert sum(x.out_channels for x in convs) == 20_320


@pytest.mark.parametrize("output_stride", [None, 16, 8])
def test_every_backbone_gives_its_feature_levels(output_stride):
    from edgenas.nn import build_backbone

    for name in SEG_MODELS:
        arch = get_arch(name).backbone
        backbone = build_backbone(arch, output_stride=output_stride).eval()
        with torch.no_grad():
            feats = backbone(torch.randn(1, 3, 64, 64))
        caps = [min(r, output_stride or r) for r in (2, 4, 8, 16, 32)]
        assert [f.reduction for f in backbone.feature_info] == caps, name
        assert [f.shape[1:] for f in feats] == [(i.channels, 64 // i.reduction, 64 // i.reduction)
                                              for i in backbone.feature_info]


def test_autoseg_feature_levels_feed_the_head():
    widths = {"autoseg_edgetpu_xs": (40, 84, 480), "autoseg_edgetpu_s": (60, 112, 160),
              "autoseg_edgetpu_m": (60, 168, 320)}
    for name, expected in widths.items():
        levels = {lv.reduction: lv.channels for lv in _levels(get_arch(name).backbone)}
        assert (levels[8], levels[16], levels[32]) == expected
    logits = network_layers(get_arch("autoseg_edgetpu_xs"), tail=False)[-1]
    assert logits.out_size == (64, 64)  # stride 8 at 512
    logits = network_layers(get_arch("deeplabv3plus_mobilenet_edgetpu_v2_xs"), tail=False)[-1]
    assert logits.out_size == (32, 32)  # Google's levels: ASPP at stride 32, low-level features at 16


@pytest.mark.parametrize("name", SEG_MODELS)
def test_json_and_yaml_round_trip(name, tmp_path):
    net = get_arch(name).with_tail("resize256,argmax,resize512")
    for suffix in (".json", ".yaml"):
        path = tmp_path / f"net{suffix}"
        net.save(path)
        assert load_spec(path) == net
    assert parse_spec(json.loads(net.to_json())) == net


def test_with_classes_and_tail():
    net = get_arch("autoseg_edgetpu_xs", num_classes=11)
    assert net.num_classes == 11
    assert net.with_tail("resize512,argmax").tail.fused is False
    assert net.with_tail("resize128,argmax,resize512").tail.plan() == [
        ("resize", 128, "bilinear"), ("argmax", None, "onehot"), ("resize", 512, "nearest")]


def _data(**changes) -> dict:
    data = json.loads(get_arch("deeplabv3plus_mobilenet_v2").to_json())
    data.update(changes)
    return data


@pytest.mark.parametrize("mutate, message", [
    (lambda d: d["nodes"][5].update(inputs=["aspp_1x1", "nope"]), "nodes[5].inputs[1]: 'nope' is not a known earlier"),
    (lambda d: d["nodes"][0].update(inputs=["C9"]), "nodes[0].inputs[0]: 'C9' is not a known backbone level"),
    (lambda d: d["nodes"][7].update(combine="sum"), "nodes[7].inputs: a sum needs equal channels"),
    (lambda d: d["nodes"][1].update(name="aspp_1x1"), "nodes[1].name: 'aspp_1x1' is already defined"),
    (lambda d: d["nodes"][1].update(name="C3"), "nodes[1].name: 'C3' is reserved"),
    (lambda d: d["nodes"][1]["ops"][0].update(type="conv3d"), "nodes[1].ops[0]"),
    (lambda d: d["head"].update(source="missing"), "head.source: 'missing' is not a backbone level or node"),
    (lambda d: d["head"]["classifier"].update(norm=True), "the classifier must be linear"),
    (lambda d: d.update(tail="resize512,softmax"), "tail.steps: step 1 'softmax' is not resize<N> or argmax"),
    (lambda d: d.update(schema_version=7), "schema_version: 7 is not supported"),
])
def test_bad_networks_fail_with_their_path(mutate, message):
    data = _data()
    mutate(data)
    with pytest.raises(SpecError) as err:
        parse_network(data)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_onehot_argmax_is_the_first_maximum():
    x = torch.randn(2, 7, 9, 9)
    x[:, 3] = x[:, 5] = x.amax(dim=1) + 1  # a tie: both channels hold the maximum
    assert torch.equal(onehot_argmax(x)[:, 0].long(), x.argmax(dim=1))
    assert (x.argmax(dim=1) == 3).all()


def test_serving_tails_give_class_maps():
    net = get_arch("autoseg_edgetpu_xs").replace(input_size=128)
    model = build_model(net.with_tail("resize128,argmax")).eval()
    fused = build_model(net.with_tail("resize64,argmax,resize128"))
    fused.load_state_dict(model.state_dict())
    x = torch.randn(1, 3, 128, 128)
    with torch.no_grad():
        exact, approx = model.serve(x), fused.eval().serve(x)
    assert exact.shape == approx.shape == (1, 128, 128)
    assert exact.max() < net.num_classes and (approx == approx.round()).all()


def test_tf_same_padding_and_pooling():
    assert tf_same_pads(64, 3, 2) == (0, 1) and tf_same_pads(65, 3, 2) == (1, 1) and tf_same_pads(8, 1, 2) == (0, 0)
    x = torch.arange(16.0).view(1, 1, 4, 4)
    out = SamePool("avg", 3, 2)(x)  # windows rows/cols {0,1,2} and {2,3}+pad; the pad is not averaged
    assert torch.allclose(out, torch.tensor([[[[5.0, 6.5], [11.0, 12.5]]]]))
    assert torch.equal(SamePool("max", 3, 2)(x), torch.tensor([[[[10.0, 11.0], [14.0, 15.0]]]]))


def _cli(capsys, *argv):
    from edgenas.cli import main

    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_profile_validate_and_latency_work_on_networks(capsys, tmp_path):
    code, out, _ = _cli(capsys, "profile", "autoseg_edgetpu_xs", "--tail", "resize256,argmax,resize512")
    assert code == 0 and "tail.1.argmax" in out and "2,354,616 params, 1,914,247,680 MACs" in out
    path = tmp_path / "net.yaml"
    get_arch("deeplabv3plus_mobilenet_v2").save(path)
    code, out, _ = _cli(capsys, "arch", "validate", str(path))
    assert code == 0 and "segmentation network" in out and "8 nodes" in out
    code, out, _ = _cli(capsys, "latency", "autoseg_edgetpu_xs", "--target", "edgetpu", "--tail", "resize512,argmax",
                        "--cache-dir", str(tmp_path))
    assert code == 0 and "cpu-fallback" in out and "CPU fallback" in out
    code, _, err = _cli(capsys, "profile", "autoseg_edgetpu_xs", "--tail", "resize51,softmax")
    assert code == 1 and err.strip().endswith("tail.steps: step 1 'softmax' is not resize<N> or argmax")
    code, _, err = _cli(capsys, "latency", "mobilenet_v2", "--target", "macs", "--tail", "resize512,argmax")
    assert code == 1 and "only segmentation networks have a tail" in err


def test_weighted_fusions_follow_efficientdet():
    """attn: softmax weights; fastattn: ReLU weights over their sum + 1e-4; channel_* the same per channel."""
    from edgenas.nn.network import Fuse

    g = torch.Generator().manual_seed(0)
    xs = [torch.randn(2, 3, 4, 4, generator=g) for _ in range(3)]
    fast = Fuse("fastattn", 3, 3)
    with torch.no_grad():
        fast.weight.copy_(torch.tensor([1.0, -2.0, 3.0]))
    assert torch.allclose(fast(xs), (1 * xs[0] + 0 * xs[1] + 3 * xs[2]) / (4 + 1e-4), atol=1e-6)
    attn = Fuse("attn", 3, 3)
    w = torch.softmax(attn.weight.detach(), 0)
    assert torch.allclose(attn(xs), w[0] * xs[0] + w[1] * xs[1] + w[2] * xs[2], atol=1e-6)
    per_channel = Fuse("channel_fastattn", 3, 3)
    with torch.no_grad():
        per_channel.weight.copy_(torch.tensor([[1.0, 0.0, 2.0], [1.0, 1.0, 0.0], [0.0, 1.0, 2.0]]))
    out = per_channel(xs)
    for c, ws in enumerate(([1.0, 1.0, 0.0], [0.0, 1.0, 1.0], [2.0, 0.0, 2.0])):
        expect = sum(w * x[:, c] for w, x in zip(ws, xs)) / (sum(ws) + 1e-4)
        assert torch.allclose(out[:, c], expect, atol=1e-6)
