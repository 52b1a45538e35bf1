"""The spec: round trips, Google's block semantics, and one-line errors for invalid specs."""

import json

import pytest

from edgenas.models import get_arch, list_models
from edgenas.spec import (GCIBN, IBN, Arch, FusedIBN, SepConvOp, SpecError, Stage, Stem, arch_layers, count,
                          load_arch, parse_arch, parse_spec)


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


# --- one document base, one op vocabulary, and the bad input they refuse (issue 27) ---------------------------

def _cli(capsys, *argv):
    from edgenas.cli import main

    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def _refused(data, message: str) -> str:
    with pytest.raises(SpecError) as err:
        parse_spec(data)
    text = str(err.value)
    assert "\n" not in text and text.startswith(message), text
    return text


def test_replace_takes_every_change_at_once_and_validates_once(monkeypatch):
    from edgenas.spec import Preprocess, network

    net = get_arch("deeplabv3plus_mobilenet_v2")
    plans, backbone_checks = [], []
    real_plan, real_check = network.plan_network, Preprocess.check_channels
    monkeypatch.setattr(network, "plan_network", lambda *a: plans.append(1) or real_plan(*a))
    monkeypatch.setattr(Preprocess, "check_channels", lambda *a: backbone_checks.append(1) or real_check(*a))
    changed = net.replace(name="x", input_size=256, padding="tf")
    assert (changed.name, changed.input_size, changed.padding) == ("x", 256, "tf")
    assert plans == [1] and backbone_checks == []  # the backbone is valid as it is: not checked again
    assert net.model_copy(update={"name": net.name}) == net  # whether checked is not part of a document
    _refused({**net.to_dict(), "input_size": 2}, "input_size: Input should be greater than or equal to 8")


def test_every_document_writes_its_lead_fields_and_discriminators_first():
    for name in ("mobilenet_v2", "deeplabv3plus_mobilenet_v2", "ssdlite_mobilenet_v2"):
        spec = get_arch(name)
        data = spec.to_dict(compact=True)
        assert list(data)[:len(spec.LEAD)] == list(spec.LEAD)
        assert parse_spec(data) == spec == parse_spec(json.loads(spec.to_json()))
    data = get_arch("ssdlite_mobilenet_v2").to_dict(compact=True)
    assert list(data["nodes"][0]["ops"][1])[0] == "type" and list(data["head"])[0] == "type"


def test_old_sep_spelling_loads_and_one_spelling_is_written():
    """A detector's ``sep`` (SpaghettiNet's files) is the shared ``sep_conv`` op with a detector's defaults:
    a biased depthwise without BN, or with ``dw_norm`` BN + ReLU6; the counts are the same either way."""
    det = get_arch("spaghettinet_edgetpu_s")
    old = json.loads(det.to_json())
    for node in old["nodes"]:
        node["ops"] = [{k: v for k, v in op.items() if k not in ("dw_bias", "dw_act", "act")} | (
            {"type": "sep"} if op["type"] == "sep_conv" else {}) for op in node["ops"]]
    assert any(op["type"] == "sep" for node in old["nodes"] for op in node["ops"])
    loaded = parse_spec(old)
    assert loaded == det and count(loaded) == count(det)
    assert "'sep'" not in loaded.to_json() and '"sep"' not in loaded.to_json()
    sep = next(op for node in loaded.nodes for op in node.ops if isinstance(op, SepConvOp))
    assert (sep.type, sep.dw_bias, sep.dw_act, sep.act) == ("sep_conv", True, "none", "relu6")
    ssd = parse_spec(get_arch("ssdlite_mobilenet_v2").to_dict())
    conv, sep = ssd.nodes[0].ops
    assert (conv.act, sep.dw_bias, sep.dw_act) == ("relu6", False, "relu6")


@pytest.mark.parametrize("name, mutate, message", [
    ("deeplabv3plus_mobilenet_v2", lambda d: d["nodes"][0]["ops"][0].update(stride=2),
     "nodes[0].ops[0].stride: a network's conv has no stride"),
    ("deeplabv3plus_mobilenet_v2", lambda d: d["nodes"][0]["ops"][0].pop("out_channels"),
     "nodes[0].ops[0].out_channels: a network's conv needs out_channels"),
    ("ssdlite_mobilenet_v2", lambda d: d["nodes"][0]["ops"][1].update(dw_bias=True),
     "nodes[0].ops[1].dw_bias: a depthwise with BN has no bias"),
    ("ssdlite_mobilenet_v2", lambda d: d["nodes"][0]["ops"][0].update(dilation=2),
     "nodes[0].ops[0].dilation: a detector's conv is undilated"),
    ("deeplabv3plus_mobilenet_v2", lambda d: d["backbone"]["stages"][1]["blocks"][0].update(kernel_size=4),
     "backbone.stages[1].blocks[0].kernel_size: kernel size must be odd"),
    ("deeplabv3plus_mobilenet_v2", lambda d: d["backbone"]["stages"][1]["blocks"][0].update(type="skip", stride=1),
     "backbone.stages[1].blocks[0]"),
])
def test_the_shared_ops_keep_each_familys_rules(name, mutate, message):
    data = get_arch(name).to_dict()
    mutate(data)
    _refused(data, message)


def test_a_detectors_preprocess_has_one_value_per_input_channel():
    data = get_arch("spaghettinet_edgetpu_s").to_dict()
    _refused({**data, "in_channels": 1}, "preprocess: mean and std need 1 values, one per input channel")
    parse_spec({**data, "in_channels": 1, "preprocess": {"mean": [0.5], "std": [0.5]}})


def test_a_backbone_without_a_final_conv_cannot_be_read_at_final(capsys, tmp_path):
    data = get_arch("ssdlite_mobilenet_v2").to_dict()
    data["backbone"]["head"]["conv_channels"] = None
    message = "nodes[0].inputs[0]: reads 'final', the backbone's final 1x1 conv, but backbone.head.conv_channels"
    _refused(data, message)
    path = tmp_path / "det.json"
    path.write_text(json.dumps(data))
    for argv in (("arch", "validate", str(path)), ("profile", str(path))):
        code, _, err = _cli(capsys, *argv)
        assert code == 1 and message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_class_and_anchor_counts_are_capped_where_they_multiply_memory():
    data = get_arch("ssdlite_mobilenet_v2").to_dict()
    _refused({**data, "head": {**data["head"], "num_classes": 100_000}},
             "head.num_classes: 100,000 classes + background x 6 anchors a cell is a 600,006-wide class conv; "
             "at most 8,192")
    _refused({**data, "head": {**data["head"], "aspect_ratios": [1.0] * 9}}, "head.aspect_ratios: 9 entries; at most 8")
    assert parse_spec({**data, "head": {**data["head"], "num_classes": 1203}}).num_classes == 1203  # LVIS
    _refused({**data, "head": {**data["head"], "num_classes": 1365}}, "head.num_classes: 1,365 classes")


@pytest.mark.parametrize("name, place, known", [
    ("deeplabv3plus_mobilenet_v2", "nodes[0].ops[0]", "conv, dropout, pool, resize, sep_conv"),
    ("spaghettinet_edgetpu_s", "nodes[0].ops[0]", "conv, fused_grouped, ibn, sep_conv"),
])
def test_an_unknown_op_lists_the_ops_valid_there(name, place, known):
    data = get_arch(name).to_dict()
    data["nodes"][0]["ops"][0] = {"type": "gc_ibn"}
    _refused(data, f"{place}: unknown op type 'gc_ibn' (known: {known})")
    data = get_arch("deeplabv3plus_mobilenet_v2").to_dict()
    data["head"]["classifier"]["type"] = "ibn"
    _refused(data, "head.classifier: unknown op type 'ibn' (known: conv, sep_conv)")


def test_an_unknown_kind_is_named_with_the_known_ones():
    data = get_arch("deeplabv3plus_mobilenet_v2").to_dict()
    text = _refused({**data, "kind": "Network"}, "kind: 'Network' is not a known kind (known, case-sensitive: "
                                                 "network, detector; an arch has no kind)")
    assert "stem" not in text


def test_huge_junk_is_refused_by_its_first_problem_in_one_short_line():
    """Refused before its entries are validated (each of these took over 20 s): the line names the first
    problem and a count, not 100,000 problems."""
    arch = get_arch("mobilenet_v2").to_dict()
    text = _refused({**arch, "stages": [{"junk": 1}] * 100_000}, "stages: 100,000 entries; at most 64 (an arch)")
    assert len(text) < 200
    stem = {**arch["stem"], **{f"x{i}": 1 for i in range(100_000)}}
    text = _refused({**arch, "stem": stem}, "stem: 'x0' and 99,999 more keys are not known fields")
    assert len(text) < 200
    det = get_arch("spaghettinet_edgetpu_s").to_dict()
    _refused({**det, "nodes": [{"junk": 1}] * 100_000}, "nodes: 100,000 entries; at most 256 (a detector)")
    net = get_arch("deeplabv3plus_mobilenet_v2").to_dict()
    _refused({**net, "nodes": [{"junk": 1}] * 1000}, "nodes: 1,000 entries; at most 256 (a network)")
    net["nodes"][0]["ops"] = [{"type": "dropout", "rate": 0.1}] * 17
    _refused(net, "nodes[0].ops: 17 entries; at most 16 (a node)")


def test_many_small_problems_name_the_first_few_and_count_the_rest():
    arch = get_arch("mobilenet_v2").to_dict()
    arch["stages"] = [{"junk": 1}] * 64
    text = _refused(arch, "stages[0].out_channels: is required (and ")
    assert text.count(";") == 1 and len(text) < 300
