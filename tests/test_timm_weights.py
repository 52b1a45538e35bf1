"""timm weight import: exact parity on the fixture, every timm size, and clear errors."""

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

import edgenas
from edgenas.models.timm_weights import TIMM_MODELS, WeightLoadError, _key_map, timm_arch
from edgenas.nn import build_model
from edgenas.spec import Norm, count


def test_fixture_logits_match_timm(fixtures_dir):
    model = edgenas.from_timm("mobilenet_edgetpu_v2_m", fixtures_dir / "timm_mobilenet_edgetpu_v2_m.safetensors")
    io = load_file(str(fixtures_dir / "timm_mobilenet_edgetpu_v2_m_io.safetensors"))
    with torch.no_grad():
        logits = model.eval()(io["input"])
    assert (logits - io["logits"]).abs().max().item() <= 1e-4
    keys = json.loads((fixtures_dir / "timm_mobilenet_edgetpu_v2_m_keys.json").read_text())
    assert sum(p.numel() for p in model.parameters()) == keys["num_params"] == 8_462_888
    assert model.preprocess.mean == (0.5, 0.5, 0.5) and model.preprocess.crop_pct == 0.9


def test_googles_batchnorm_eps_does_not_reproduce_timm(fixtures_dir):
    """The deviations matter: with Google's eps (1e-3) the same weights give visibly different logits."""
    timm_model = edgenas.from_timm("mobilenet_edgetpu_v2_m", fixtures_dir / "timm_mobilenet_edgetpu_v2_m.safetensors")
    google_eps = build_model(timm_arch("mobilenet_edgetpu_v2_m").replace(norm=Norm()))
    google_eps.load_state_dict(timm_model.state_dict())
    io = load_file(str(fixtures_dir / "timm_mobilenet_edgetpu_v2_m_io.safetensors"))
    with torch.no_grad():
        assert (google_eps.eval()(io["input"]) - io["logits"]).abs().max() > 1e-2


def _as_timm(model) -> dict:
    inverse = {ours: theirs for theirs, ours in _key_map(model).items()}
    return {inverse[k]: v for k, v in model.state_dict().items()}


@pytest.mark.parametrize("name", TIMM_MODELS)
def test_every_timm_size_round_trips(name, tmp_path):
    source = build_model(timm_arch(name)).eval()
    path = tmp_path / "w.safetensors"
    save_file({k: v.contiguous() for k, v in _as_timm(source).items()}, str(path))
    loaded = edgenas.from_timm(name, path).eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(source(x), loaded(x))
    torch.save(_as_timm(source), tmp_path / "w.pth")
    assert edgenas.from_timm(name, tmp_path / "w.pth").state_dict().keys() == loaded.state_dict().keys()


def test_timm_variant_differences_are_explicit():
    xs = timm_arch("mobilenet_edgetpu_v2_xs")
    assert xs.stem.kernel_size == 3 and xs.stages[0].blocks[0].type == "conv"
    assert (xs.norm.eps, xs.norm.momentum, xs.head.num_classes) == (1e-5, 0.1, 1000)
    timm_params = {"mobilenet_edgetpu_v2_xs": 4_459_880, "mobilenet_edgetpu_v2_s": 5_986_456,
                   "mobilenet_edgetpu_v2_m": 8_462_888, "mobilenet_edgetpu_v2_l": 10_921_640,
                   "mobilenet_edgetpu_100": 4_091_432}
    assert {name: count(timm_arch(name)).params for name in TIMM_MODELS} == timm_params
    with pytest.raises(KeyError, match="timm defines no 'mobilenet_edgetpu_v2_tiny'"):
        timm_arch("mobilenet_edgetpu_v2_tiny")


def test_mismatched_state_dicts_list_the_problems(fixtures_dir):
    state = load_file(str(fixtures_dir / "timm_mobilenet_edgetpu_v2_m.safetensors"))
    del state["blocks.3.1.conv_dw.weight"]
    state["blocks.9.0.extra.weight"] = torch.zeros(1)
    state["conv_head.weight"] = torch.zeros(7, 320, 1, 1)
    with pytest.raises(WeightLoadError) as err:
        edgenas.from_timm("mobilenet_edgetpu_v2_m", state)
    text = str(err.value)
    assert "missing: blocks.3.1.conv_dw.weight" in text
    assert "unexpected: blocks.9.0.extra.weight" in text
    assert "shape mismatch: conv_head.weight (7, 320, 1, 1) vs (1344, 320, 1, 1)" in text
    assert "\n" not in text


def test_wrong_model_for_the_weights(fixtures_dir):
    with pytest.raises(WeightLoadError, match="shape mismatch"):
        edgenas.from_timm("mobilenet_edgetpu_v2_s", fixtures_dir / "timm_mobilenet_edgetpu_v2_m.safetensors")
    with pytest.raises(WeightLoadError, match="no 'classifier.weight'"):
        edgenas.from_timm("mobilenet_edgetpu_v2_m", {"fc.weight": torch.zeros(2, 2)})
