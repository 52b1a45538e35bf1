"""MobileNetEdgeTPUV2 Tiny to L, exactly as Google's tables define them (reference sections 1.1 to 1.4).

One shared topology of 20 blocks in 7 groups plus per-variant channels and overrides, the way Google writes
the family (``_default_mobilenet_edgetpu_v2_topology`` and ``mobilenet_edgetpu_v2_{tiny,...}``).
"""

from __future__ import annotations

from ..spec import GCIBN, IBN, Arch, FusedIBN, Head, Stage, Stem

# (group, op, expand_ratio, stride) of each block; every released kernel is 3x3.
# "fused" with expand_ratio 1 is Google's projection-only block 0.
TOPOLOGY = (
    (0, "fused", 1, 1),
    (1, "fused", 8, 2), (1, "gc", 4, 1),
    (2, "fused", 8, 2), (2, "gc", 4, 1), (2, "fused", 4, 1), (2, "gc", 4, 1),
    (3, "fused", 8, 2), (3, "ibn", 4, 1), (3, "ibn", 4, 1), (3, "ibn", 4, 1),
    (4, "ibn", 8, 1), (4, "ibn", 4, 1), (4, "ibn", 4, 1), (4, "ibn", 4, 1),
    (5, "ibn", 8, 2), (5, "ibn", 4, 1), (5, "ibn", 4, 1), (5, "ibn", 4, 1),
    (6, "ibn", 8, 1),
)

# Per variant (reference 1.2): stem channels and kernel, group output channels G0..G6, top 1x1 width,
# GC group size, dropout, drop-connect, and blocks whose op Google overrides to GC-IBN.
VARIANTS = {
    "tiny": dict(stem=(32, 5), channels=(16, 32, 48, 80, 112, 160, 192), top=1280, group_size=64,
                 dropout=0.05, drop_path=0.05, gc_blocks=(3, 5, 7)),
    "xs": dict(stem=(32, 5), channels=(16, 32, 48, 96, 144, 160, 192), top=1280, group_size=64,
               dropout=0.05, drop_path=0.05),
    "s": dict(stem=(64, 5), channels=(24, 48, 64, 128, 160, 192, 256), top=1280, group_size=64,
              dropout=0.2, drop_path=0.1),
    "m": dict(stem=(64, 5), channels=(32, 64, 80, 160, 192, 240, 320), top=1344, group_size=64,
              dropout=0.2, drop_path=0.1),
    "l": dict(stem=(64, 7), channels=(32, 64, 96, 192, 240, 256, 384), top=1408, group_size=128,
              dropout=0.2, drop_path=0.1),
}


def _block(op: str, expand: int, stride: int, kernel: int, group_size: int):
    if op == "ibn":
        return IBN(kernel_size=kernel, expand_ratio=expand, stride=stride)
    if op == "gc":
        return GCIBN(kernel_size=kernel, expand_ratio=expand, stride=stride, group_size=group_size)
    return FusedIBN(kernel_size=kernel, expand_ratio=expand, stride=stride)


def mobilenet_edgetpu_v2(variant: str, num_classes: int = 1001, kernels: dict[int, int] | None = None) -> Arch:
    """Google's MobileNetEdgeTPUV2-{Tiny,XS,S,M,L}; ``kernels`` overrides the kernel of given block numbers."""
    cfg = VARIANTS[variant]
    kernels = kernels or {}
    stages: list[list] = [[] for _ in cfg["channels"]]
    for n, (group, op, expand, stride) in enumerate(TOPOLOGY):
        op = "gc" if n in cfg.get("gc_blocks", ()) else op
        stages[group].append(_block(op, expand, stride, kernels.get(n, 3), cfg["group_size"]))
    stem_ch, stem_k = cfg["stem"]
    return Arch(
        name=f"mobilenet_edgetpu_v2_{variant}",
        input_size=224,
        stem=Stem(out_channels=stem_ch, kernel_size=stem_k, stride=2),
        stages=tuple(Stage(out_channels=c, blocks=tuple(b)) for c, b in zip(cfg["channels"], stages)),
        head=Head(conv_channels=cfg["top"], num_classes=num_classes, dropout=cfg["dropout"]),
        drop_path_rate=cfg["drop_path"],
    )


def tf_default_config() -> Arch:
    """``MobilenetEdgeTPUV2()`` with no arguments: S with 5x5 kernels in blocks 15-19. Google's unit test
    pins its trainable parameters at 6,069,657 (reference 1.4)."""
    arch = mobilenet_edgetpu_v2("s", kernels={n: 5 for n in range(15, 20)})
    return arch.replace(name="mobilenet_edgetpu_v2_tf_default")
