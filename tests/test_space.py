"""Search spaces: the zoo as fixed points, the one walk, sampling, fixing and counting."""

import json

import numpy as np
import pytest
import torch

from edgenas.models import get_arch
from edgenas.nn import build_model
from edgenas.space import SPACES, Choice, SearchSpace, get_space
from edgenas.spec import IBN, Arch, FusedIBN, Head, Skip, SpecError, Stage, Stem, count

V2 = [f"mobilenet_edgetpu_v2_{v}" for v in ("tiny", "xs", "s", "m", "l")]


@pytest.mark.parametrize("name", V2)
def test_every_edgetpu_v2_variant_is_a_point(name):
    space, arch = get_space("edgetpu-v2-224"), get_arch(name)
    decision = space.match(arch)
    assert decision is not None
    fixed = space.fix(decision)
    skip = {"name", "drop_path_rate", "head", "preprocess"}
    assert fixed.model_dump(exclude=skip) == arch.model_dump(exclude=skip)
    assert count(fixed).macs == count(arch).macs
    assert list(decision) == [p for p, _ in space.choices() if p in decision]  # walk order


def test_models_outside_the_space_do_not_match():
    space = get_space("edgetpu-v2-224")
    assert space.match(get_arch("mobilenet_v2")) is None
    assert space.match(get_arch("mobilenet_edgetpu_100")) is None  # 4 blocks in G1: another skeleton


def _tiny_space() -> SearchSpace:
    block = Choice((IBN.model_construct(kernel_size=Choice((3, 5)), expand_ratio=4), Skip.model_construct()))
    template = Arch.model_construct(
        input_size=16, stem=Stem.model_construct(out_channels=Choice((8, 16))),
        stages=(Stage.model_construct(out_channels=8, blocks=(FusedIBN(expand_ratio=1), block)),),
        head=Head(conv_channels=None, num_classes=3))
    return SearchSpace("tiny", template)


def test_size_counts_points_not_decisions():
    space = _tiny_space()
    assert space.size() == 2 * (2 + 1)  # stem width x (ibn with two kernels, or skip)
    assert [p for p, _ in space.choices()] == [
        "stem.out_channels", "stages[0].blocks[1]", "stages[0].blocks[1]@ibn.kernel_size"]


def test_fix_and_its_errors():
    space = _tiny_space()
    arch = space.fix({"stem.out_channels": 16, "stages[0].blocks[1]": "ibn",
                      "stages[0].blocks[1]@ibn.kernel_size": 5})
    assert arch.stages[0].blocks[1].kernel_size == 5 and arch.stem.out_channels == 16
    # decisions inside options that were not picked are allowed (a controller decides every choice)
    skip = space.fix({"stem.out_channels": 8, "stages[0].blocks[1]": "skip",
                      "stages[0].blocks[1]@ibn.kernel_size": 3})
    assert skip.stages[0].blocks[1].type == "skip"
    with pytest.raises(SpecError, match=r"stages\[0\].blocks\[1\]: no decision for this choice"):
        space.fix({"stem.out_channels": 8})
    with pytest.raises(SpecError, match=r"stem.out_channels: 12 is not one of 8, 16"):
        space.fix({"stem.out_channels": 12, "stages[0].blocks[1]": "skip"})
    with pytest.raises(SpecError, match=r"stem.kernel_size: not a choice of space 'tiny'"):
        space.fix({"stem.kernel_size": 3, "stem.out_channels": 8, "stages[0].blocks[1]": "skip"})


def test_invalid_points_are_rejected_with_the_path():
    space = get_space("edgetpu-v2-224")
    decision = space.match(get_arch("mobilenet_edgetpu_v2_tiny"))
    decision["stages[2].blocks[1]@gc_ibn.group_size"] = 128  # 48 x 4 = 192 channels: 128 does not divide
    with pytest.raises(SpecError, match=r"stages\[2\].blocks\[1\].group_size: 128 does not divide the 192"):
        space.fix(decision)


@pytest.mark.parametrize("name", SPACES)
def test_sampling_is_seeded_and_valid(name):
    space = get_space(name)
    a = [space.sample(np.random.default_rng(7)) for _ in range(2)]
    assert a[0] == a[1]
    assert space.sample(np.random.default_rng(8)) != a[0]
    space.fix(a[0])


@pytest.mark.parametrize("name", SPACES)
def test_sampled_points_build_with_the_predicted_shapes(name):
    space = get_space(name)
    rng = np.random.default_rng(0)
    for _ in range(3):
        arch = space.sample_arch(rng)
        size = min(arch.input_size, 64)
        model = build_model(arch.replace(input_size=size)).eval()
        with torch.no_grad():
            feats = model.forward_features(torch.randn(1, arch.in_channels, size, size))
            logits = model(torch.randn(1, arch.in_channels, size, size))
        assert logits.shape == (1, arch.head.num_classes)
        for f, info in zip(feats, model.feature_info):
            assert f.shape[1:] == (info.channels, -(-size // info.reduction), -(-size // info.reduction))
        assert sum(p.numel() for p in model.parameters()) == count(arch).params


def test_space_serializes_to_json():
    d = get_space("small-28").to_dict()
    text = json.dumps(d)
    assert d["size"] == get_space("small-28").size() and '"choice"' in text


def test_unknown_space():
    with pytest.raises(KeyError, match="unknown search space 'huge'; known: edgetpu-v2-224, small-28"):
        get_space("huge")


def test_choice_needs_distinct_options():
    with pytest.raises(ValueError, match="distinct labels"):
        Choice((3, 3))
    with pytest.raises(ValueError, match="at least one option"):
        Choice(())
