"""Every registered model: builds, runs, has the feature levels its spec says, and counts as the spec says."""

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

import edgenas
from edgenas.models import get_arch, list_models
from edgenas.spec import count, feature_levels

MODELS = list_models(task="classification")  # the segmentation networks: test_network.py

# (params, MACs at 224): Google's tables for the Edge TPU families (1001 classes), torchvision's parameter
# counts for the baselines (1000 classes).
GOLDEN = {
    "mobilenet_edgetpu_v2_tiny": (3_762_729, 512_449_280),
    "mobilenet_edgetpu_v2_xs": (4_462_697, 707_483_392),
    "mobilenet_edgetpu_v2_s": (5_987_737, 1_198_003_968),
    "mobilenet_edgetpu_v2_m": (8_464_233, 1_835_638_784),
    "mobilenet_edgetpu_v2_l": (10_923_049, 2_530_787_840),
    "mobilenet_v2": (3_504_872, None),
    "mobilenet_v3_large": (5_483_032, None),
    "mobilenet_v3_small": (2_542_856, None),
}
# MobileNetEdgeTPU v1: the computed MACs table (reference 1.4b), to within 1%.
V1_MACS = {"075": 624.5e6, "100": 990.7e6, "125": 1634.3e6, "150": 2202.8e6, "175": 3122.4e6}
# The papers' MACs for the baselines, to within 2%.
PAPER_MACS = {"mobilenet_v2": 300e6, "mobilenet_v3_large": 219e6, "mobilenet_v3_small": 56e6}


def test_registry_lists_every_family():
    assert len(MODELS) == 13 and len(edgenas.list_models()) == 26
    assert edgenas.list_models(task="detection") == [f"spaghettinet_edgetpu_{v}" for v in ("s", "m", "l")] + [
        "ssdlite_mobilenet_v2", "ssdlite_mobilenet_edgetpu_v2_s"]
    assert edgenas.list_models(task="segmentation") == [
        *(f"deeplabv3plus_mobilenet_edgetpu_v2_{v}" for v in ("xs", "s", "m")), "deeplabv3plus_mobilenet_v2",
        "deeplab_mobilenet_edgetpu_slim", *(f"autoseg_edgetpu_{v}" for v in ("xs", "s", "m"))]
    assert edgenas.list_models("mobilenet_edgetpu_v2_*") == [f"mobilenet_edgetpu_v2_{v}" for v in
                                                            ("tiny", "xs", "s", "m", "l")]
    with pytest.raises(KeyError, match="unknown model 'mobilenet_edgetpu_v3'"):
        edgenas.create_model("mobilenet_edgetpu_v3")


@pytest.mark.parametrize("name", GOLDEN)
def test_golden_counts(name):
    params, macs = GOLDEN[name]
    c = count(get_arch(name))
    assert c.params == params
    if macs is not None:
        assert c.macs == macs


@pytest.mark.parametrize("tag", V1_MACS)
def test_edgetpu_v1_macs_within_one_percent(tag):
    assert count(get_arch(f"mobilenet_edgetpu_{tag}")).macs == pytest.approx(V1_MACS[tag], rel=0.01)


def test_edgetpu_v1_at_1000_classes_matches_timm():
    assert count(get_arch("mobilenet_edgetpu_100", num_classes=1000)).params == 4_091_432


@pytest.mark.parametrize("name", PAPER_MACS)
def test_baseline_macs_within_two_percent_of_the_papers(name):
    assert count(get_arch(name)).macs == pytest.approx(PAPER_MACS[name], rel=0.02)


@pytest.mark.parametrize("name", MODELS)
def test_built_model_matches_its_spec(name):
    """Analytic params == module params; analytic MACs == flop_counter FLOPs / 2 at the deployment size;
    features have the channels and strides of ``feature_info``."""
    torch.manual_seed(0)
    model = edgenas.create_model(name).eval()
    arch = model.arch
    assert sum(p.numel() for p in model.parameters()) == count(arch).params
    x = torch.randn(1, 3, arch.input_size, arch.input_size)
    with torch.no_grad(), FlopCounterMode(display=False) as flops:
        logits = model(x)
    assert flops.get_total_flops() == 2 * count(arch).macs
    assert logits.shape == (1, arch.head.num_classes) and torch.isfinite(logits).all()

    with torch.no_grad():
        feats = model.forward_features(torch.randn(2, 3, 64, 64))
    assert [f.reduction for f in model.feature_info] == [2, 4, 8, 16, 32]
    assert [(f.channels, f.reduction) for f in model.feature_info] == [
        (lv.channels, lv.reduction) for lv in feature_levels(arch)]
    for f, info in zip(feats, model.feature_info):
        assert f.shape == (2, info.channels, 64 // info.reduction, 64 // info.reduction)


@pytest.mark.parametrize("name", ["mobilenet_edgetpu_v2_tiny", "mobilenet_v3_small"])
def test_num_classes_and_preprocessing(name):
    model = edgenas.create_model(name, num_classes=10)
    assert model.head.classifier.out_features == 10
    assert len(model.preprocess.mean) == 3
