"""Builder behaviour: portable grouped convs, dilation for dense tasks, stochastic depth."""

import pytest
import torch

import edgenas
from edgenas.det import detector_anchors
from edgenas.models import get_arch
from edgenas.nn import SplitGroupConv2d, build_backbone, build_model
from edgenas.spec import feature_levels


@pytest.mark.parametrize("name", ["mobilenet_edgetpu_v2_tiny", "mobilenet_edgetpu_v2_l"])
def test_split_group_convs_equal_native(name):
    arch = get_arch(name).replace(input_size=64)
    native = build_model(arch).eval()
    split = build_model(arch, gc_mode="split").eval()
    split.load_state_dict(native.state_dict())  # one weight layout for both
    assert any(isinstance(m, SplitGroupConv2d) for m in split.modules())
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(native(x), split(x), atol=1e-5, rtol=1e-5)


def test_unknown_gc_mode_is_an_error():
    with pytest.raises(ValueError, match="gc_mode must be one of native, split"):
        build_model(get_arch("mobilenet_edgetpu_v2_tiny"), gc_mode="slices")


@pytest.mark.parametrize("output_stride", [8, 16])
def test_output_stride_dilates_instead_of_downsampling(output_stride):
    arch = get_arch("mobilenet_edgetpu_v2_xs")
    backbone = build_backbone(arch, output_stride=output_stride).eval()
    with torch.no_grad():
        feats = backbone(torch.randn(1, 3, 96, 96))
    reductions = [min(r, output_stride) for r in (2, 4, 8, 16, 32)]
    assert [f.reduction for f in backbone.feature_info] == reductions
    assert [f.shape[-1] for f in feats] == [96 // r for r in reductions]
    assert [lv.reduction for lv in feature_levels(arch, output_stride)] == reductions


def test_bad_output_stride():
    with pytest.raises(ValueError, match="output_stride must be 8, 16 or 32"):
        build_backbone(get_arch("mobilenet_v2"), output_stride=4)


def test_batchnorm_uses_googles_settings_in_pytorch_convention():
    bn = edgenas.create_model("mobilenet_edgetpu_v2_s").backbone.stem.bn
    assert (bn.eps, bn.momentum) == (1e-3, 0.01)


def test_drop_path_only_on_residual_blocks_and_only_in_training():
    from edgenas.nn.layers import DropPath

    model = edgenas.create_model("mobilenet_edgetpu_v2_s")
    rates = [(b.has_residual, getattr(b.drop_path, "rate", 0.0)) for s in model.backbone.stages for b in s
             if hasattr(b, "has_residual")]
    assert all(rate == 0.0 for residual, rate in rates if not residual)
    assert max(rate for _, rate in rates) == pytest.approx(0.1 * 18 / 20)  # block 19 changes width: no residual
    model.eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(model(x), model(x))

    # Training: each sample's residual branch is dropped whole (the block passes its input through) or kept
    # and scaled by 1 / keep. BatchNorm stays in eval so that the branch itself does not depend on the batch.
    block = [b for s in model.backbone.stages for b in s if isinstance(getattr(b, "drop_path", None), DropPath)][-1]
    keep = 1.0 - block.drop_path.rate
    branch = []
    block.drop_path.register_forward_hook(lambda m, inputs, out: branch.append(inputs[0]))
    channels = next(m for m in block.modules() if isinstance(m, torch.nn.Conv2d)).in_channels
    x = torch.randn(64, channels, 4, 4, generator=torch.Generator().manual_seed(0))
    block.drop_path.train()
    with torch.no_grad(), torch.random.fork_rng():
        torch.manual_seed(0)  # DropPath draws from torch's global generator
        out = block(x)
    block.drop_path.eval()
    with torch.no_grad():
        assert torch.equal(block(x), branch[1] + x)  # eval: the branch as it is, no scaling
    dropped = [torch.equal(out[i], x[i]) for i in range(len(x))]
    assert 0 < sum(dropped) < len(x)  # rate 0.09 over 64 samples: both happen
    for i, was_dropped in enumerate(dropped):
        if not was_dropped:
            assert torch.allclose(out[i], x[i] + branch[0][i] / keep, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("name,size", [("spaghettinet_edgetpu_s", 64), ("ssdlite_mobilenet_edgetpu_v2_s", 64),
                                       ("deeplabv3plus_mobilenet_edgetpu_v2_xs", 64)])
def test_split_reaches_every_family(name, size):
    """Issue 27 (a): build_model dropped gc_mode for a Detector. Split mode leaves no native grouped conv
    (1 < groups < in_channels) anywhere, and with the same weights gives the same outputs."""
    torch.manual_seed(0)
    spec = get_arch(name).replace(input_size=size)
    native, split = build_model(spec).eval(), build_model(spec, gc_mode="split").eval()
    split.load_state_dict(native.state_dict())

    def grouped(model):
        return [type(m) for m in model.modules() if isinstance(m, torch.nn.Conv2d) and 1 < m.groups < m.in_channels]

    assert grouped(native) and set(grouped(native)) == {torch.nn.Conv2d}
    assert set(grouped(split)) == {SplitGroupConv2d}
    x = torch.randn(1, 3, size, size)
    with torch.no_grad():
        for a, b in zip(torch.utils._pytree.tree_leaves(native(x)), torch.utils._pytree.tree_leaves(split(x))):
            # float32 sums in another order: equal to a few ulps of the output's scale (logits of ~10 here)
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5 * a.abs().max().item())


def test_build_options_reach_every_family_or_are_refused():
    det = get_arch("spaghettinet_edgetpu_s").replace(input_size=64)
    tf = build_model(det, padding="tf")
    assert all(not any(m.padding) for m in tf.modules() if isinstance(m, torch.nn.Conv2d) and max(m.stride) > 1)
    assert any(m.padding[0] for m in build_model(get_arch("mobilenet_v2")).modules()
               if isinstance(m, torch.nn.Conv2d) and max(m.stride) > 1)
    assert not any(m.padding[0] for m in build_model(get_arch("mobilenet_v2"), padding="tf").modules()
                   if isinstance(m, torch.nn.Conv2d) and max(m.stride) > 1)
    assert torch.equal(tf.anchors, detector_anchors(det))  # the one owner: model, loss and meter alike
    with pytest.raises(ValueError, match="output_stride: a Detector fixes its own"):
        build_model(det, output_stride=16)
    with pytest.raises(ValueError, match="padding must be one of symmetric, tf"):
        build_model(det, padding="same")


def test_checkpoints_of_the_sequential_conv_module_still_load():
    """Before issue 27 a network op's conv-BN-act was a Sequential (``0`` conv, ``1`` BN); such state dicts
    load into the one ConvNormAct."""
    net = get_arch("autoseg_edgetpu_xs").replace(input_size=64)
    model = build_model(net)
    state = model.state_dict()
    old = {}
    for key, value in state.items():
        if key.startswith(("nodes.", "head.")):
            key = key.replace(".conv.", ".0.").replace(".bn.", ".1.")
        old[key] = value
    assert old.keys() != state.keys()
    fresh = build_model(net)
    fresh.load_state_dict(old)  # strict
    assert all(torch.equal(fresh.state_dict()[k], v) for k, v in state.items())


def test_conv_init_counts_fan_out_as_pytorch_does():
    """VarianceScaling(2, fan_out) with PyTorch's fan_out, out * kh * kw, for every conv kind: TF's count for
    depthwise and grouped kernels (out / groups * kh * kw) is not adopted yet (nn.backbone.init_weights says
    what it did to short runs). This pins which rule is in force, so a change to it is a decision."""
    torch.manual_seed(0)
    model = build_model(get_arch("mobilenet_edgetpu_v2_s"))
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d) and m.weight.numel() >= 2000]
    kinds = {"depthwise": [m for m in convs if m.groups == m.in_channels],
             "grouped": [m for m in convs if 1 < m.groups < m.in_channels],
             "full": [m for m in convs if m.groups == 1]}
    for kind, found in kinds.items():
        assert found, kind
        for m in found:
            fan_out = m.out_channels * m.kernel_size[0] * m.kernel_size[1]
            assert m.weight.std().item() == pytest.approx((2.0 / fan_out) ** 0.5, rel=0.1), (kind, m)


def test_an_inverted_bottleneck_exposes_its_expansion():
    from edgenas.nn import InvertedBottleneck

    model = build_model(get_arch("mobilenet_v2").replace(input_size=32)).eval()
    block = next(b for s in model.backbone.stages for b in s
                 if isinstance(b, InvertedBottleneck) and b.has_residual)
    x = torch.randn(2, block.expand.conv.in_channels, 8, 8)
    with torch.no_grad():
        out, expansion = block.forward_with_expansion(x)
        assert torch.equal(out, block(x)) and torch.equal(expansion, block.expand(x))


def test_the_types_say_a_detector_comes_back_too():
    """Issue 27 (d): get_arch and build_model were typed "Arch or Network" though a Detector comes back too."""
    from typing import get_args, get_type_hints

    from edgenas.models.registry import get_arch as registry_get_arch
    from edgenas.nn import DetectorModel
    from edgenas.spec import Detector

    assert Detector in get_args(get_type_hints(registry_get_arch)["return"])
    assert DetectorModel in get_args(get_type_hints(build_model)["return"])
