"""Bad input never shows a traceback and is never silently accepted (issue 12, input half).

Regression tests for each case the issue found, through the real CLI (one line on stderr, non-zero exit) and
the library (an ``EdgenasError``), then a seeded property-based fuzz over specs, data files and configs that
asserts the contract: the input is valid, or it is refused with one line and a project error, nothing else.
"""

import copy
import json
import math
import random

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgenas.cli import main
from edgenas.config import RunConfig, load_config
from edgenas.errors import EdgenasError
from edgenas.models import get_arch
from edgenas.space import get_space
from edgenas.spec import BLOCK_TYPES, SpecError, arch_layers, count, load_arch, parse_arch
from edgenas.spec.datafile import MAX_DEPTH, parse_json, parse_yaml, read_data

BASE = get_arch("mobilenet_edgetpu_v2_s").to_dict()  # fused_ibn, gc_ibn and ibn blocks, every field written out
SMALL = get_arch("mobilenet_v3_small").to_dict()  # mid_channels, SE, hswish


def cli(capsys, *argv) -> tuple[int, str]:
    code = main(list(argv))
    err = capsys.readouterr().err
    return code, err


def one_line_error(code: int, err: str) -> str:
    """The CLI's promise: a failure is exactly one line, ``edgenas: error: ...``."""
    assert code in (1, 2), code
    assert err.startswith("edgenas: error: ") and err.endswith("\n") and err.count("\n") == 1, err
    return err[len("edgenas: error: "):-1]


def write(tmp_path, name: str, data) -> str:
    path = tmp_path / name
    if isinstance(data, bytes):
        path.write_bytes(data)
    else:
        path.write_text(data if isinstance(data, str) else yaml.safe_dump(data, sort_keys=False))
    return str(path)


def with_block(block: dict, base: dict = BASE, stage: int = 1, index: int = 1) -> dict:
    data = copy.deepcopy(base)
    data["stages"][stage]["blocks"][index] = block
    return data


# --- specs ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["ibn", "fused_ibn", "gc_ibn", "grouped_ibn"])
def test_zero_expanded_channels_is_one_line_for_every_block_type(capsys, tmp_path, kind):
    block = {"type": kind, "expand_ratio": 1e-6, **({"group_size": 8} if kind in ("gc_ibn", "grouped_ibn") else {})}
    path = write(tmp_path, "a.yaml", with_block(block))
    msg = one_line_error(*cli(capsys, "arch", "validate", path))
    assert msg == f"{path}: stages[1].blocks[1].expand_ratio: 1e-06 x 48 input channels rounds to 0 expanded channels"
    with pytest.raises(SpecError) as err:
        load_arch(path)
    assert err.value.loc == ("stages", 1, "blocks", 1, "expand_ratio")  # the place survives the file name


@pytest.mark.parametrize("where,value,message", [
    (("stages", 1, "blocks", 0, "mid_channels"), 2**40, "stages[1].blocks[0].mid_channels: must be at most 131,072 "
                                                        "(the widest expansion an expand_ratio allows"),
    (("head", "num_classes"), 10**12, "head.num_classes: must be at most 100,000 (wider than any on-device"),
    (("preprocess", "std"), [0.0, 0.5, 0.5], "preprocess.std[0]: Input should be greater than 0"),
    (("preprocess", "std"), [0.5, math.inf, 0.5], "preprocess.std[1]: Input should be a finite number"),
    (("preprocess", "mean"), [0.5, 0.5, math.nan], "preprocess.mean[2]: Input should be a finite number"),
    (("stages", 1, "blocks", 1, "expand_ratio"), math.nan, "stages[1].blocks[1].expand_ratio: Input should be a "
                                                            "finite number"),
    (("drop_path_rate",), math.nan, "drop_path_rate: Input should be a finite number"),
    (("head", "dropout"), -math.inf, "head.dropout: Input should be a finite number"),
])
def test_absurd_and_non_finite_spec_values_are_refused_with_the_reason(capsys, tmp_path, where, value, message):
    data = copy.deepcopy(SMALL)
    node = data
    for part in where[:-1]:
        node = node[part]
    node[where[-1]] = value
    with pytest.raises(SpecError) as err:
        parse_arch(data)
    assert str(err.value).startswith(message) and " (and " not in str(err.value), str(err.value)
    path = write(tmp_path, "a.yaml", data)  # YAML writes .nan / .inf, which load as floats again
    assert one_line_error(*cli(capsys, "arch", "validate", path)).startswith(f"{path}: {message}")


def test_duplicate_keys_in_arch_files_name_the_key_and_line(capsys, tmp_path):
    text = get_arch("mobilenet_v2").to_yaml()
    top = write(tmp_path, "top.yaml", text.replace("name: mobilenet_v2\n", "name: a\nname: b\n", 1))
    assert one_line_error(*cli(capsys, "arch", "validate", top)) == (
        f"{top}: duplicate key 'name' at line 3, column 1 (first at line 2)")
    nested = write(tmp_path, "nested.yaml", "stem: {out_channels: 16, stride: 2, out_channels: 8}\n")
    assert one_line_error(*cli(capsys, "arch", "validate", nested)).startswith(
        f"{nested}: duplicate key 'out_channels' at line 1, column 37 (first at line 1)")


def test_binary_and_deep_arch_files_are_one_line_errors(capsys, tmp_path):
    png = write(tmp_path, "model.yaml", b"\x89PNG\r\n\x1a\n\x00\x00")
    assert one_line_error(*cli(capsys, "arch", "validate", png)) == (
        f"{png}: not UTF-8 text (byte 0: 0x89); is it a binary file?")
    deep_json = write(tmp_path, "deep.json", "[" * 100_000 + "]" * 100_000)
    assert one_line_error(*cli(capsys, "arch", "validate", deep_json)) == (
        f"{deep_json}: nested deeper than {MAX_DEPTH} levels")
    deep_yaml = write(tmp_path, "deep.yaml", "name: " + "[" * 100_000 + "]" * 100_000)
    assert one_line_error(*cli(capsys, "arch", "validate", deep_yaml)).startswith(
        f"{deep_yaml}: nested deeper than {MAX_DEPTH} levels at line 1")
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]  # ten aliases of ten aliases ...: 10**9 values
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 9)]
    bomb = write(tmp_path, "bomb.yaml", "\n".join(lines))
    assert "values once its aliases are expanded" in one_line_error(*cli(capsys, "arch", "validate", bomb))
    loop = write(tmp_path, "loop.yaml", "stages: &s [*s]\n")  # a value that contains itself
    assert "nested deeper than" in one_line_error(*cli(capsys, "arch", "validate", loop))
    folder = one_line_error(*cli(capsys, "arch", "validate", str(tmp_path)))
    assert folder == f"{tmp_path}: cannot read (Is a directory)"


def test_unknown_names_are_project_errors_that_keep_their_message():
    for lookup, name, message in [(get_arch, "resnet50", "unknown model 'resnet50'"),
                                  (get_space, "huge", "unknown search space 'huge'; known: edgetpu-v2-224")]:
        with pytest.raises(EdgenasError) as err:
            lookup(name)
        assert str(err.value).startswith(message)
        assert isinstance(err.value, KeyError)  # what callers caught before the project had its own errors


# --- configs -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("override,message", [
    ("train.lr=.inf", "train.lr: Input should be a finite number"),
    ("train.lr=.nan", "train.lr: Input should be a finite number"),
    ("search.beta=-.inf", "search.beta: Input should be a finite number"),
    ("train.lr=[unclosed", "--set train.lr: not valid YAML (expected ',' or ']', but got '<stream end>' at line 1"),
    ("train={lr: 1, lr: 2}", "--set train: duplicate key 'lr' at line 1, column 9 (first at line 1)"),
    ("model.num_classes=0", "model.num_classes: Input should be greater than 0"),
    ("model.num_classes=1000000000000", "model.num_classes: must be at most 100,000 (wider than any on-device"),
    ("model.num_classes=.nan", "model.num_classes: Input should be a finite number"),
    ("model.input_size=0", "model.input_size: Input should be greater than or equal to 8"),
    ("model.input_size=100000", "model.input_size: Input should be less than or equal to 4096"),
    ("train.threads=1000000", "train.threads: Input should be less than or equal to 1024"),
    ("train.seed=-1", "train.seed: Input should be greater than or equal to 0"),
    ("=1", "--set =1: expected a dotted key such as train.lr before the ="),
    ("train..lr=1", "--set train..lr=1: expected a dotted key such as train.lr before the ="),
])
def test_bad_overrides_stop_train_before_it_starts(capsys, tmp_path, override, message):
    code, err = cli(capsys, "train", "--model", "mobilenet_v3_small", "--out", str(tmp_path / "run"), "--set", override)
    assert one_line_error(code, err).startswith(message), err
    assert not (tmp_path / "run").exists()  # nothing written that could pass for a run


def test_config_file_errors_name_the_file_key_and_line(capsys, tmp_path):
    dup = write(tmp_path, "dup.yaml", "model: {name: mobilenet_v3_small}\ntrain:\n  lr: 0.1\n  epochs: 2\n  lr: 0.2\n")
    with pytest.raises(SpecError, match=r"dup.yaml: duplicate key 'lr' at line 5, column 3 \(first at line 3\)$"):
        load_config(dup)
    top = write(tmp_path, "top.yaml", "model: {name: mobilenet_v3_small}\ntrain: {lr: 0.1}\ntrain: {lr: 0.2}\n")
    with pytest.raises(SpecError, match="top.yaml: duplicate key 'train' at line 3"):
        load_config(top)
    deep = write(tmp_path, "deep.yaml", "train: " + "{a: " * 5000 + "1" + "}" * 5000)
    msg = one_line_error(*cli(capsys, "train", "--config", deep))
    assert msg.startswith(f"{deep}: nested deeper than {MAX_DEPTH} levels")
    nan = write(tmp_path, "nan.yaml", "model: {name: mobilenet_v3_small}\ntrain: {lr: .nan}\n")
    assert one_line_error(*cli(capsys, "train", "--config", nan)) == f"{nan}: train.lr: Input should be a finite number"
    assert one_line_error(*cli(capsys, "train", "--config", str(tmp_path / "nope.yaml"))).endswith(
        "nope.yaml: cannot read (No such file or directory)")


# --- the CLI's one error path --------------------------------------------------------------------------


def test_debug_shows_the_traceback_before_or_after_the_command(tmp_path):
    bad = write(tmp_path, "bad.yaml", "stem: {out_channels: 16}\nstem: {}\n")
    for argv in (["--debug", "arch", "validate", bad], ["arch", "validate", bad, "--debug"]):
        with pytest.raises(SpecError, match="duplicate key 'stem'"):
            main(argv)


@pytest.mark.parametrize("model,what", [("spaghettinet_edgetpu_s", "a detector"), ("mobilenet_v2", "a classifier")])
def test_a_tail_on_a_model_without_one_names_what_the_model_is(capsys, model, what):
    """A detector was called a classifier."""
    message = one_line_error(*cli(capsys, "profile", model, "--tail", "resize320,argmax"))
    assert message.startswith(f"--tail: {model} is {what}") and "only segmentation networks have a tail" in message


def test_usage_errors_are_one_line_with_exit_status_2(capsys):
    for argv, message in [
        (["profile", "mobilenet_v2", "--input-size", "0"], "argument --input-size: must be at least 1, got 0"),
        (["export", "run/checkpoint.pt", "--check-images", "0"], "argument --check-images: must be at least 1"),
        (["space", "show", "small-28", "--seed", "-1"], "argument --seed: must be at least 0, got -1"),
        (["latency", "calibrate", "--target", "edgetpu", "--sweep", "0,nan"], "argument --sweep: must be within"),
        (["models", "--batch", "x"], "argument --batch: expected a whole number, got 'x'"),
        (["nonsense"], "argument command: invalid choice: 'nonsense'"),
    ]:
        code, err = cli(capsys, *argv)
        assert code == 2 and one_line_error(code, err).startswith(message), err


def test_os_errors_name_their_file_and_bugs_keep_their_traceback(capsys, monkeypatch, tmp_path):
    from edgenas.cli import commands

    def raising(error):
        def command(args):
            raise error
        return command

    monkeypatch.setattr(commands, "cmd_profile", raising(PermissionError(13, "Permission denied", "/x/y.yaml")))
    assert one_line_error(*cli(capsys, "profile", "m")) == "/x/y.yaml: Permission denied"
    undecodable = UnicodeDecodeError("utf-8", b"\xff", 0, 1, "invalid start byte")
    monkeypatch.setattr(commands, "cmd_profile", raising(undecodable))
    assert "not UTF-8 text (invalid start byte at byte 0)" in one_line_error(*cli(capsys, "profile", "m"))
    monkeypatch.setattr(commands, "cmd_profile", raising(KeyboardInterrupt()))
    assert cli(capsys, "profile", "m") == (130, "edgenas: interrupted\n")
    monkeypatch.setattr(commands, "cmd_profile", raising(ZeroDivisionError("a bug")))
    with pytest.raises(ZeroDivisionError):  # not a user error: swallowing it would hide the bug
        main(["profile", "m"])


# --- the fuzz suite ------------------------------------------------------------------------------------

FUZZ = settings(derandomize=True, deadline=None, database=None, max_examples=150,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
NUMBERS = [0, -1, 1, 2, 3, 7, 8, 16, 17, 64, 8193, 2**31, 2**40, 2**64, 10**30, 1e-6, 1e-300, 0.01, 0.1, 0.5, -0.0,
           1.5, 4.0, 1e300, math.inf, -math.inf, math.nan]
SCALES = [0, 1e-6, 1e-3, 0.1, 0.5, 2, 1e3, 1e6, -1, math.inf]
WORDS = st.sampled_from([*BLOCK_TYPES, "relu", "hswish", "none", "bilinear", "type", "stride", "", " ", "a\nb"])
SCALARS = st.one_of(st.sampled_from(NUMBERS), WORDS, st.integers(), st.floats(), st.booleans(), st.none(),
                    st.text(max_size=6))
VALUES = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
    st.one_of(WORDS, st.text(max_size=5)), inner, max_size=3), max_leaves=10)
NESTED = st.integers(1, 3 * MAX_DEPTH).map(lambda n: json.loads("[" * n + "1" + "]" * n))


def places(node, out=None) -> list[tuple]:
    """Every (container, key) in a plain-data tree."""
    out = [] if out is None else out
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for key, child in items:
        out.append((node, key))
        places(child, out)
    return out


@st.composite
def mutated_arch(draw) -> dict:
    data = copy.deepcopy(draw(st.sampled_from([BASE, BASE, SMALL])))
    # places and numbers drawn uniformly: hypothesis's own draws favour the first of a list (schema_version, 0)
    pick = random.Random(draw(st.integers(0, 2**32 - 1))).choice
    for _ in range(draw(st.integers(1, 2))):  # more, and the first problem hides the others
        action = pick(["block"] * 4 + ["number", "delete", "replace", "nest", "add"])
        numbers = [(c, k) for c, k in places(data) if type(c[k]) in (int, float)]
        in_blocks = [(c, k) for c, k in numbers if "type" in c]  # where most cross-field rules are
        candidates = {"block": in_blocks or numbers, "number": numbers}.get(action) or places(data)
        container, key = pick(candidates)
        if action in ("block", "number"):  # a number by another: past the type checks to the bounds and counts
            v = container[key]
            near = [v + 1, v - 1, round(v * 0.7)] if math.isfinite(v) else [v]
            container[key] = pick([pick(NUMBERS), pick(near), v * pick(SCALES)])
        elif action == "delete":
            del container[key]
        elif action == "add" and isinstance(container, dict):
            container[draw(st.one_of(WORDS, st.text(max_size=5)))] = draw(VALUES)
        else:
            container[key] = draw(NESTED if action == "nest" else VALUES)
    return data


def refused_in_one_line(err: EdgenasError) -> None:
    text = str(err)
    assert text and "\n" not in text and "\r" not in text, repr(text)


def check_valid(arch) -> None:
    """A spec that validates is usable: counts, layers and a lossless round trip, with no exception."""
    count(arch)
    arch_layers(arch)
    assert parse_arch(json.loads(arch.to_json())) == arch


@FUZZ
@given(mutated_arch())
def test_fuzz_specs_are_valid_or_one_line_errors(data):
    try:
        arch = parse_arch(data)
    except EdgenasError as err:
        refused_in_one_line(err)
        return
    check_valid(arch)


@st.composite
def one_block(draw) -> dict:
    """Any block at the place where a block's own rules (widths, groups, strides) all apply."""
    kind = draw(st.sampled_from(sorted(BLOCK_TYPES)))
    fields = {"expand_ratio": st.floats(0, 20, exclude_min=True) | st.integers(-1, 20) | st.sampled_from(NUMBERS),
              "mid_channels": st.integers(-1, 300) | st.sampled_from(NUMBERS),
              "group_size": st.integers(-1, 300) | st.sampled_from(NUMBERS),
              "kernel_size": st.sampled_from([3, 5, 1, 7, 2, 0, 13]), "stride": st.sampled_from([1, 2, 0, 3]),
              "se_ratio": st.floats(-0.5, 1.5) | st.sampled_from(NUMBERS)}
    own = [name for name in sorted(fields) if name in BLOCK_TYPES[kind].model_fields]
    chosen = draw(st.sets(st.sampled_from(own))) if own else ()
    return {"type": kind, **{name: draw(fields[name]) for name in sorted(chosen)}}


@FUZZ
@given(one_block(), st.sampled_from([(1, 0), (1, 1), (2, 0), (4, 1)]))
def test_fuzz_block_numbers_are_valid_or_one_line_errors(block, place):
    try:
        arch = parse_arch(with_block(block, BASE, *place))
    except EdgenasError as err:
        refused_in_one_line(err)
        return
    check_valid(arch)


@settings(FUZZ, max_examples=60)
@given(mutated_arch(), st.sampled_from(["yaml", "json"]))
def test_fuzz_arch_files_through_the_cli(capsys, tmp_path_factory, data, fmt):
    path = tmp_path_factory.getbasetemp() / f"fuzz.{fmt}"
    path.write_text(json.dumps(data) if fmt == "json" else yaml.safe_dump(data))
    code, err = cli(capsys, "arch", "validate", str(path))
    if code != 0:
        one_line_error(code, err)


@st.composite
def damaged_text(draw) -> str:
    text = draw(st.sampled_from([get_arch("mobilenet_v3_small").to_yaml(), json.dumps(SMALL), "a: [1, {b: 2}]"]))
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(text)))
        cut = draw(st.integers(0, 3))
        text = text[:at] + draw(st.sampled_from(["", ":", "[", "{", "&a ", "*a", "!!", "\t", "\x00", "\n  ", "'",
                                                 '"', "- ", "<<: ", "9" * 5000, "é", "\ud800"])) + text[at + cut:]
    return text


@FUZZ
@given(st.one_of(damaged_text(), st.text(max_size=40)), st.sampled_from(["yaml", "json"]))
def test_fuzz_data_files_parse_or_refuse_in_one_line(text, fmt):
    for parse in (parse_yaml, parse_json) if fmt == "yaml" else (parse_json,):
        try:
            data = parse(text, "f")
        except EdgenasError as err:
            refused_in_one_line(err)
            continue
        try:
            parse_arch(data)
        except EdgenasError as err:
            refused_in_one_line(err)


@settings(FUZZ, max_examples=40)
@given(st.binary(max_size=64), st.sampled_from(["a.yaml", "a.json"]))
def test_fuzz_bytes_on_disk(tmp_path_factory, raw, name):
    path = tmp_path_factory.getbasetemp() / name
    path.write_bytes(raw)
    try:
        read_data(path)
    except EdgenasError as err:
        refused_in_one_line(err)
        assert str(err).startswith(str(path))


KEYS = sorted(RunConfig(model={"name": "mobilenet_v3_small"}, search={}).dotted())
OVERRIDE_VALUES = st.one_of(
    st.sampled_from([".inf", "-.inf", ".nan", "[unclosed", "{a: 1, a: 2}", "0", "-1", "1e400", "1.0e400", "null",
                     "", "true", "[1, 2]", "{}", "&a [*a]", "!!python/object:os.system", "2020-13-45", "9" * 5000,
                     "'", "small-28", "relu", "sgd", "0.5", "100001", "4097", "\t"]),
    st.sampled_from(["1", "2", "0.1", "0.9", "16", "32", "none", "basic", "cosine", "macs", "false", "null"]),
    st.text(max_size=10), st.sampled_from(NUMBERS).map(str))
OTHER_OVERRIDE = st.one_of(st.builds("{}={}".format, st.text(alphabet="ab.=\n", max_size=6), OVERRIDE_VALUES),
                           st.text(max_size=8))
OVERRIDE = st.integers(0, 9).flatmap(  # mostly known keys: a bad key stops validation before any value counts
    lambda n: st.builds("{}={}".format, st.sampled_from(KEYS), OVERRIDE_VALUES) if n < 8 else OTHER_OVERRIDE)


@settings(FUZZ, max_examples=200)
@given(st.lists(OVERRIDE, min_size=1, max_size=4))
def test_fuzz_config_overrides_are_valid_or_one_line_errors(tmp_path_factory, overrides):
    try:
        cfg = load_config(overrides=["model.name=mobilenet_v3_small", *overrides])
    except EdgenasError as err:
        refused_in_one_line(err)
        return
    saved = tmp_path_factory.getbasetemp() / "config.yaml"
    cfg.save(saved)
    assert load_config(saved) == cfg  # what a run saves beside its results loads back as the same config


@settings(FUZZ, max_examples=60)
@given(st.lists(OVERRIDE, min_size=1, max_size=3))
def test_fuzz_config_overrides_through_the_cli(capsys, monkeypatch, overrides):
    import edgenas.cli.train

    trained = []  # validate, don't train: a valid config reaches fit, which records it instead
    monkeypatch.setattr(edgenas.cli.train, "fit", lambda cfg, task, resume: trained.append(cfg) or [])
    argv = ["train", "--model", "mobilenet_v3_small"] + [a for o in overrides for a in ("--set", o)]
    code, err = cli(capsys, *argv)
    if code != 0:
        one_line_error(code, err)
    else:
        assert len(trained) == 1  # the stand-in ran: a real run would train here
