"""Property tests: any valid spec, and any point of a space, builds into a network whose outputs, parameters
and MACs are exactly what the spec predicts."""

import math

import numpy as np
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch.utils.flop_counter import FlopCounterMode

from edgenas.nn import build_model
from edgenas.space import get_space
from edgenas.spec import Arch, count, feature_levels, parse_arch

TYPES = ["ibn", "fused_ibn", "gc_ibn", "grouped_ibn", "skip", "conv", "sep_conv"]


@st.composite
def block_data(draw, cin: int, cout: int, first: bool) -> dict:
    kind = draw(st.sampled_from(TYPES))
    stride = draw(st.sampled_from([1, 2])) if first else 1
    k = draw(st.sampled_from([1, 3, 5]))
    act = draw(st.sampled_from(["relu", "relu6", "hswish"]))
    if kind == "skip":
        if cin == cout and stride == 1:
            return {"type": "skip"}
        kind = "ibn"
    if kind in ("conv", "sep_conv"):
        return {"type": kind, "kernel_size": k, "stride": stride, "act": act}
    e = draw(st.sampled_from([1, 2, 3, 4, 6]))
    mid = cin * e
    block = {"type": kind, "kernel_size": k, "stride": stride, "expand_ratio": e, "act": act,
             "se_ratio": draw(st.sampled_from([0.0, 0.25]))}
    if kind == "gc_ibn":
        groups = [g for g in range(2, cin + 1) if cin % g == 0 and mid % g == 0]
        if e == 1 or not groups:
            block["type"] = "fused_ibn"
        else:
            block["group_size"] = mid // draw(st.sampled_from(groups))
    if kind == "grouped_ibn":
        block["group_size"] = mid // draw(st.sampled_from([g for g in range(1, mid + 1) if mid % g == 0][:6]))
    if block["type"] == "fused_ibn" and e == 1 and stride == 2:
        block["expand_ratio"] = 2
    return block


@st.composite
def arch_data(draw) -> dict:
    in_channels = draw(st.sampled_from([1, 3]))
    stem = {"out_channels": draw(st.sampled_from([8, 12, 16])), "kernel_size": draw(st.sampled_from([3, 5])),
            "stride": draw(st.sampled_from([1, 2]))}
    cin, stages = stem["out_channels"], []
    for _ in range(draw(st.integers(1, 3))):
        cout = draw(st.sampled_from([8, 12, 16, 24]))
        blocks = []
        for j in range(draw(st.integers(1, 3))):
            blocks.append(draw(block_data(cin if j == 0 else cout, cout, j == 0)))
        stages.append({"out_channels": cout, "blocks": blocks})
        cin = cout
    head = {"conv_channels": draw(st.sampled_from([None, 32])), "hidden_channels": draw(st.sampled_from([None, 16])),
            "num_classes": draw(st.integers(2, 12))}
    return {"input_size": draw(st.integers(8, 40)), "in_channels": in_channels, "stem": stem, "stages": stages,
            "head": head, "preprocess": {"mean": [0.5] * in_channels, "std": [0.5] * in_channels}}


def _check_built_against_spec(arch: Arch, batch: int = 2):
    model = build_model(arch).eval()
    size = arch.input_size
    x = torch.randn(batch, arch.in_channels, size, size)
    with torch.no_grad(), FlopCounterMode(display=False) as flops:
        logits = model(x)
    assert logits.shape == (batch, arch.head.num_classes)
    assert sum(p.numel() for p in model.parameters()) == count(arch).params
    assert flops.get_total_flops() == 2 * batch * count(arch).macs
    with torch.no_grad():
        feats = model.forward_features(x)
    levels = feature_levels(arch)
    assert len(feats) == len(levels)
    for f, lv in zip(feats, levels):
        side = math.ceil(size / lv.reduction)
        assert f.shape == (batch, lv.channels, side, side)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(arch_data())
def test_random_valid_specs_build_as_predicted(data):
    arch = parse_arch(data)  # every spec the strategy makes is valid
    assert parse_arch(arch.to_dict()) == arch
    _check_built_against_spec(arch)


@settings(max_examples=8, deadline=None)
@given(st.integers(0, 2**32 - 1), st.sampled_from(["small-28", "edgetpu-v2-224"]))
def test_random_points_of_each_space_build_as_predicted(seed, name):
    space = get_space(name)
    arch = space.sample_arch(np.random.default_rng(seed))
    assert space.match(arch) is not None
    if arch.input_size > 64:  # the shapes scale the same way at any size; keep the test fast
        arch = arch.replace(input_size=64)
    _check_built_against_spec(arch, batch=1)
