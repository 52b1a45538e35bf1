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
    # The space searches structure; a model card adds its name and training-time regularization (the cards'
    # drop path 0.05-0.1 and Tiny/XS's head dropout 0.05), so those alone may differ.
    regularization = {"name": True, "drop_path_rate": True, "head": {"dropout"}}
    assert fixed.model_dump(exclude=regularization) == arch.model_dump(exclude=regularization)
    assert fixed.replace(name=arch.name, drop_path_rate=arch.drop_path_rate,
                         head=fixed.head.model_copy(update={"dropout": arch.head.dropout})) == arch
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


@pytest.mark.parametrize("name", ["edgetpu-v2-224", "small-28"])
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
    space = get_space("small-28")
    d = space.to_dict()
    assert json.loads(json.dumps(d)) == d  # plain JSON: nothing needs a default= to be written
    assert d["size"] == space.size() and d["name"] == "small-28"
    text = json.dumps(d["template"])
    assert text.count('{"choice": [') == len(list(space.choices()))  # one node per choice, nested ones too
    # Without choices the template is written exactly as the spec writes an arch: a space file is an arch
    # file with choice nodes, nothing else new.
    arch = space.sample_arch(np.random.default_rng(0))
    assert SearchSpace("point", arch).to_dict() == {"name": "point", "description": "", "size": 1,
                                                    "template": json.loads(arch.to_json())}
    tiny = _tiny_space().to_dict()["template"]
    assert tiny["stem"]["out_channels"] == {"choice": [8, 16]}
    assert tiny["stages"][0]["blocks"][1] == {"choice": [
        {"stride": 1, "id_skip": True, "kernel_size": {"choice": [3, 5]}, "expand_ratio": 4, "mid_channels": None,
         "se_ratio": 0.0, "act": "relu", "type": "ibn"},
        {"stride": 1, "type": "skip"}]}


def test_unknown_space():
    with pytest.raises(KeyError, match="unknown search space 'huge'; known: edgetpu-v2-224, small-28"):
        get_space("huge")


def test_choice_needs_distinct_options():
    with pytest.raises(ValueError, match="distinct labels"):
        Choice((3, 3))
    with pytest.raises(ValueError, match="at least one option"):
        Choice(())


def test_block_positions_their_choices_and_widths_come_from_walking_the_template():
    space = get_space("small-28")
    # groups of 1 (fixed projection), 2, 3, 3, 2 positions: the searched ones are every group's but the first
    assert space.block_paths() == [f"stages[{s}].blocks[{i}]" for s, n in ((1, 2), (2, 3), (3, 3), (4, 2))
                                   for i in range(n)]
    own = space.own_choices("stages[2].blocks[1]")
    assert own[0] == "stages[2].blocks[1]" and len(own) == 1 + 3 * 2 + 1  # op; kernel, expansion per op; GC group
    assert all(space.owner(p) == "stages[2].blocks[1]" for p in own)
    assert space.owner("stages[2].blocks[1]@gc_ibn.group_size") == "stages[2].blocks[1]"
    assert space.owner("stem.kernel_size") is None and space.owner("stages[2].out_channels") is None
    widths = space.width_choices()
    assert "stem.out_channels" in widths and "head.conv_channels" in widths and "stem.kernel_size" not in widths
    assert "stages[2].blocks[1]@gc_ibn.expand_ratio" in widths
    assert len(widths) == 1 + 5 + 1 + 3 * 10  # stem, 5 stages, head, an expansion per op at 10 positions


def test_fix_repairing_hands_the_block_that_broke_to_the_repair():
    from edgenas.space import choice as walk

    space = get_space("edgetpu-v2-224")
    rng = np.random.default_rng(0)
    broken = next(d for d in (walk.sample(space.template, rng) for _ in range(500)) if not space.is_valid(d))
    with pytest.raises(SpecError) as err:
        space.fix(broken)
    first = space.failing_block(err.value)
    loc = err.value.loc
    assert first == f"stages[{loc[1]}].blocks[{loc[3]}]"  # read from the error's place, not its message
    with pytest.raises(SpecError):  # a repair that gives up: the error stands
        space.fix_repairing(broken, lambda block, d: None)
    seen = []

    def next_option(block, d):
        seen.append(block)
        options = space.block_options(block)
        return {**d, **options[seen.count(block) - 1]} if seen.count(block) <= len(options) else None

    arch, fixed = space.fix_repairing(broken, next_option)
    assert seen[0] == first and space.fix(fixed) == arch
    assert {space.owner(p) for p in fixed if fixed[p] != broken.get(p)} <= set(seen)  # nothing else was touched
