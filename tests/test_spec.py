"""The spec: round trips, Google's block semantics, and one-line errors for invalid specs."""

import json

import pytest

from edgenas.models import get_arch, list_models
from edgenas.spec import (GCIBN, IBN, Arch, FusedIBN, SpecError, Stage, Stem, arch_layers, count, load_arch,
                          parse_arch)


@pytest.mark.parametrize("name", list_models(task="classification"))  # networks: test_network.py
def test_json_and_yaml_round_trip(name, tmp_path):
    arch = get_arch(name)
    assert parse_arch(json.loads(arch.to_json())) == arch
    for suffix in (".json", ".yaml"):
        path = tmp_path / f"a{suffix}"
        arch.save(path)
        assert load_arch(path) == arch
    assert arch.to_dict()["schema_version"] == 1


def test_fused_expand_one_is_a_projection_only():
    arch = get_arch("mobilenet_edgetpu_v2_s")
    block0 = [x for x in arch_layers(arch) if x.path.startswith("stages[0].blocks[0]")]
    assert [(x.path, x.kernel_size, x.act) for x in block0] == [("stages[0].blocks[0].project", 1, "none")]


def test_expansion_is_relative_to_input_channels_and_projection_is_linear():
    arch = get_arch("mobilenet_edgetpu_v2_m")  # block 2: GC-IBN, 64 -> 64, e=4, group size 64
    layers = {x.path: x for x in arch_layers(arch) if x.path.startswith("stages[1].blocks[1]")}
    expand = layers["stages[1].blocks[1].expand"]
    assert (expand.in_channels, expand.out_channels, expand.groups, expand.kernel_size) == (64, 256, 4, 3)
    assert layers["stages[1].blocks[1].project"].act == "none"
    assert "stages[1].blocks[1].add" in layers  # stride 1, 64 == 64: residual


def test_residual_rule_and_id_skip():
    ibn = IBN(expand_ratio=4)
    assert ibn.has_residual(32, 32) and not ibn.has_residual(32, 48)
    assert not IBN(expand_ratio=4, stride=2).has_residual(32, 32)
    assert not IBN(expand_ratio=4, id_skip=False).has_residual(32, 32)
    v1 = get_arch("mobilenet_edgetpu_100")  # G4's first block: no residual though shapes match
    assert not v1.stages[4].blocks[0].has_residual(96, 96)


def test_gc_groups_follow_googles_group_size():
    block = GCIBN(expand_ratio=4, group_size=64)
    assert block.groups(48) == 3  # 192 expanded channels / 64 per group; each group sees 16 inputs


def test_stochastic_depth_rises_linearly():
    from edgenas.spec import block_plan

    plan = block_plan(get_arch("mobilenet_edgetpu_v2_s"))
    assert [round(p.drop_path, 6) for p in plan[:3]] == [0.0, round(0.1 / 20, 6), round(0.2 / 20, 6)]


def test_googles_default_config_has_6069657_params():
    from edgenas.models.edgetpu_v2 import tf_default_config

    assert count(tf_default_config()).params == 6_069_657


def _base(**stage_overrides) -> dict:
    arch = Arch(input_size=32, stem=Stem(out_channels=16), stages=(
        Stage(out_channels=16, blocks=(FusedIBN(expand_ratio=1),)),
        Stage(out_channels=24, blocks=(IBN(expand_ratio=4, stride=2), IBN(expand_ratio=4))),
        Stage(out_channels=36, blocks=(FusedIBN(expand_ratio=4, stride=2), GCIBN(expand_ratio=4, group_size=48))),
    ))
    return arch.model_dump(mode="json")


def _with(data, path, value):
    node = data
    for key in path[:-1]:
        node = node[key]
    if value is _DELETE:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return data


_DELETE = object()
B = ("stages", 2, "blocks", 1)

INVALID = [
    (B + ("group_size",), 64, "stages[2].blocks[1].group_size: 64 does not divide the 144 expanded channels"),
    (B + ("group_size",), 144, "stages[2].blocks[1].group_size: 144 makes one group of the 144 expanded "
                               "channels; that is a fused_ibn block"),
    (B + ("group_size",), 18, "stages[2].blocks[1].group_size: 8 groups do not split the 36 input channels evenly"),
    (B + ("expand_ratio",), 1, "stages[2].blocks[1].expand_ratio: a gc_ibn block needs expand_ratio > 1"),
    (("stages", 0, "blocks", 0, "kernel_size"), 4, "stages[0].blocks[0].kernel_size: kernel size must be odd, got 4"),
    (("stages", 0, "blocks", 0, "stride"), 2, "stages[0].blocks[0].stride: a fused block with expand_ratio 1"),
    (("stages", 1, "blocks", 0, "stride"), 3, "stages[1].blocks[0].stride: Input should be 1 or 2"),
    (("stages", 1, "blocks", 0, "type"), "mbconv", "stages[1].blocks[0]: unknown block type 'mbconv'"),
    (("stages", 1, "blocks", 0), {"type": "skip"}, "stages[1].blocks[0].type: a skip block needs equal input "
                                                   "and output channels, not 16 -> 24"),
    (("stages", 1, "blocks", 1), {"type": "skip", "stride": 2}, "stages[1].blocks[1].stride: a skip block cannot "
                                                                "downsample"),
    (("stages", 1, "blocks", 1, "expansion"), 4, "stages[1].blocks[1].expansion: is not a known field"),
    (("stages", 1, "blocks", 1, "mid_channels"), 64, "stages[1].blocks[1]: give expand_ratio or mid_channels"),
    (("stages", 1, "out_channels"), -8, "stages[1].out_channels: Input should be greater than 0"),
    (("stem", "out_channels"), _DELETE, "stem.out_channels: is required"),
    (("stages",), [], "stages: Tuple should have at least 1 item"),
    (("schema_version",), 2, "schema_version: 2 is not supported (this edgenas reads 1)"),
    (("preprocess", "mean"), [0.5], "preprocess: mean and std need 3 values"),
    (("head", "dropout"), 1.5, "head.dropout: Input should be less than 1"),
]


@pytest.mark.parametrize("path,value,message", INVALID, ids=[m.split(":")[0] + f"-{i}" for i, (_, _, m) in
                                                             enumerate(INVALID)])
def test_invalid_specs_fail_with_one_line_naming_the_path(path, value, message):
    data = _with(_base(), path, value)
    with pytest.raises(SpecError) as err:
        parse_arch(data)
    text = str(err.value)
    assert "\n" not in text
    assert text.startswith(message), text


def test_the_base_of_the_invalid_table_is_valid():
    assert parse_arch(_base()).stages[2].blocks[1].groups(36) == 3


def test_load_arch_names_the_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("stem: {out_channels: 16}\nstages: [{out_channels: 8, blocks: [{type: ibn, kernel_size: 2}]}]\n")
    with pytest.raises(SpecError, match=r"bad.yaml: stages\[0\].blocks\[0\].kernel_size: kernel size must be odd"):
        load_arch(bad)
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    with pytest.raises(SpecError, match="broken.json: not valid JSON"):
        load_arch(broken)
    with pytest.raises(SpecError, match="cannot read"):
        load_arch(tmp_path / "missing.yaml")


def test_not_a_mapping():
    with pytest.raises(SpecError, match="an arch must be a mapping, got list"):
        parse_arch([1, 2])


def test_specs_are_frozen():
    from pydantic import ValidationError

    arch = get_arch("mobilenet_v2")
    # pydantic's error, not SpecError: assigning to a spec is a programming error, not input to validate
    with pytest.raises(ValidationError, match=r"1 validation error for Arch\ninput_size\n  Instance is frozen"):
        arch.input_size = 96
    with pytest.raises(ValidationError, match=r"for IBN\nkernel_size\n  Instance is frozen"):
        arch.stages[1].blocks[0].kernel_size = 5  # frozen all the way down, not only at the top
    with pytest.raises(TypeError, match="'tuple' object does not support item assignment"):
        arch.stages[1].blocks[0] = arch.stages[1].blocks[1]
    assert arch.replace(input_size=96).input_size == 96 and arch.input_size == 224
    assert arch.stages[1].blocks[0].kernel_size == 3 and arch == get_arch("mobilenet_v2")


def test_spec_errors_carry_their_place_as_data():
    """Code that reacts to where a spec broke (a search redrawing that block) reads ``SpecError.loc``; the
    message stays the one line a user reads."""
    from edgenas.models import get_arch

    data = get_arch("mobilenet_edgetpu_v2_s").to_dict()
    data["stages"][1]["blocks"][1]["group_size"] = 100  # cross-field: needs the block's channels
    with pytest.raises(SpecError) as err:
        parse_arch(data)
    assert str(err.value) == "stages[1].blocks[1].group_size: 100 does not divide the 192 expanded channels"
    assert err.value.loc == ("stages", 1, "blocks", 1, "group_size")
    data["stages"][1]["blocks"][1]["group_size"] = -1  # a field's own bound, inside a tagged union
    with pytest.raises(SpecError) as err:
        parse_arch(data)
    assert err.value.loc == ("stages", 1, "blocks", 1, "group_size")
    assert str(err.value).startswith("stages[1].blocks[1].group_size: ")


def test_layers_are_built_by_keyword_from_a_closed_set_of_ops():
    from edgenas.spec import Layer
    from edgenas.spec.layer import Op

    with pytest.raises(TypeError):
        Layer("x", "conv", 8, 8, (4, 4), (4, 4))  # positional construction is refused
    with pytest.raises(ValueError, match="'cnov' is not a valid Op"):
        Layer(path="x", op="cnov", in_channels=8, out_channels=8, in_size=(4, 4), out_size=(4, 4))
    layer = Layer(path="x", op="conv", in_channels=8, out_channels=16, in_size=(4, 4), out_size=(4, 4))
    assert layer.op is Op.CONV and layer.op == "conv" and layer.macs == 4 * 4 * 16 * 8
