"""MobileNetEdgeTPU (v1), depth multipliers 0.75 to 1.75 (reference 1.4b).

Google's ``mobilenet_edgetpu_v1_model_blocks.ModelConfig``: stem 3x3/2 to 32, seven groups, ReLU, no SE.
Its 'no_depthwise' blocks (3x3 full expand, then project) are fused IBNs in our vocabulary.
"""

from __future__ import annotations

from ..spec import IBN, Arch, FusedIBN, Head, Stage, Stem, make_divisible

# (op, kernel, first expand, other expand, blocks, first stride, out channels at dm 1.0)
GROUPS = (
    ("fused", 3, 1, 1, 1, 1, 16),  # expand 1: a 1x1 projection only
    ("fused", 3, 8, 4, 4, 2, 32),
    ("fused", 3, 8, 4, 4, 2, 48),
    ("ibn", 3, 8, 4, 4, 2, 96),
    ("ibn", 3, 8, 4, 4, 1, 96),  # its first block has no residual although the shapes allow one
    ("ibn", 5, 8, 4, 4, 2, 160),
    ("ibn", 3, 8, 8, 1, 1, 192),
)
DEPTH_MULTIPLIERS = {"075": 0.75, "100": 1.0, "125": 1.25, "150": 1.5, "175": 1.75}


def mobilenet_edgetpu(depth_multiplier: float = 1.0, num_classes: int = 1001) -> Arch:
    stages = []
    for g, (op, k, e_first, e_rest, n, stride, ch) in enumerate(GROUPS):
        cls = IBN if op == "ibn" else FusedIBN
        blocks = [cls(kernel_size=k, expand_ratio=e_first, stride=stride, id_skip=g != 4)]
        blocks += [cls(kernel_size=k, expand_ratio=e_rest) for _ in range(n - 1)]
        stages.append(Stage(out_channels=make_divisible(ch * depth_multiplier), blocks=tuple(blocks)))
    name = f"mobilenet_edgetpu_{round(depth_multiplier * 100):03d}"
    return Arch(
        name=name,
        stem=Stem(out_channels=make_divisible(32 * depth_multiplier), kernel_size=3, stride=2),
        stages=tuple(stages),
        # The published counts (2.9 M / 624 M MACs at dm 0.75) match a 1280-wide top that is not scaled.
        head=Head(conv_channels=1280, num_classes=num_classes, dropout=0.1),
        drop_path_rate=0.1,
    )
