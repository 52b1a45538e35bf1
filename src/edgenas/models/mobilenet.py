"""Hand-designed baselines from their papers, counted as PyTorch's reference implementation builds them.

MobileNetV2 (Sandler et al. 2018) and MobileNetV3-Large/Small (Howard et al. 2019), with torchvision's
parameter counts at 1000 classes (3,504,872; 5,483,032; 2,542,856) as the target.
"""

from __future__ import annotations

from ..spec import IBN, Act, Arch, Head, Norm, Preprocess, Stage, Stem, make_divisible

IMAGENET = Preprocess(mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225), crop_pct=0.875)

# MobileNetV2 (t, c, n, s): expansion, output channels, repeats, first stride.
V2_SETTINGS = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2),
               (6, 320, 1, 1))


def mobilenet_v2(num_classes: int = 1000) -> Arch:
    stages = []
    for t, c, n, s in V2_SETTINGS:
        blocks = tuple(IBN(kernel_size=3, expand_ratio=t, stride=s if i == 0 else 1, act=Act.RELU6)
                       for i in range(n))
        stages.append(Stage(out_channels=make_divisible(c), blocks=blocks))
    return Arch(
        name="mobilenet_v2",
        stem=Stem(out_channels=32, kernel_size=3, stride=2, act=Act.RELU6),
        stages=tuple(stages),
        head=Head(conv_channels=1280, num_classes=num_classes, dropout=0.2, act=Act.RELU6),
        norm=Norm(eps=1e-5, momentum=0.1),
        preprocess=IMAGENET,
    )


# MobileNetV3 rows (kernel, expanded width, out channels, SE, activation, stride), the paper's tables 1 and 2.
V3_LARGE = (
    (3, 16, 16, False, "relu", 1), (3, 64, 24, False, "relu", 2), (3, 72, 24, False, "relu", 1),
    (5, 72, 40, True, "relu", 2), (5, 120, 40, True, "relu", 1), (5, 120, 40, True, "relu", 1),
    (3, 240, 80, False, "hswish", 2), (3, 200, 80, False, "hswish", 1), (3, 184, 80, False, "hswish", 1),
    (3, 184, 80, False, "hswish", 1), (3, 480, 112, True, "hswish", 1), (3, 672, 112, True, "hswish", 1),
    (5, 672, 160, True, "hswish", 2), (5, 960, 160, True, "hswish", 1), (5, 960, 160, True, "hswish", 1),
)
V3_SMALL = (
    (3, 16, 16, True, "relu", 2), (3, 72, 24, False, "relu", 2), (3, 88, 24, False, "relu", 1),
    (5, 96, 40, True, "hswish", 2), (5, 240, 40, True, "hswish", 1), (5, 240, 40, True, "hswish", 1),
    (5, 120, 48, True, "hswish", 1), (5, 144, 48, True, "hswish", 1), (5, 288, 96, True, "hswish", 2),
    (5, 576, 96, True, "hswish", 1), (5, 576, 96, True, "hswish", 1),
)


def _v3(name: str, rows, last_conv: int, hidden: int, num_classes: int) -> Arch:
    stages: list[tuple[int, list[IBN]]] = []
    for k, mid, out, se, act, stride in rows:
        block = IBN(kernel_size=k, mid_channels=mid, stride=stride, se_ratio=0.25 if se else 0.0, act=Act(act))
        if stages and stages[-1][0] == out:
            stages[-1][1].append(block)
        else:
            stages.append((out, [block]))
    return Arch(
        name=name,
        stem=Stem(out_channels=16, kernel_size=3, stride=2, act=Act.HSWISH),
        stages=tuple(Stage(out_channels=c, blocks=tuple(b)) for c, b in stages),
        head=Head(conv_channels=last_conv, hidden_channels=hidden, num_classes=num_classes, dropout=0.2,
                  act=Act.HSWISH),
        norm=Norm(eps=1e-3, momentum=0.01),
        preprocess=IMAGENET,
    )


def mobilenet_v3_large(num_classes: int = 1000) -> Arch:
    return _v3("mobilenet_v3_large", V3_LARGE, 960, 1280, num_classes)


def mobilenet_v3_small(num_classes: int = 1000) -> Arch:
    return _v3("mobilenet_v3_small", V3_SMALL, 576, 1024, num_classes)
