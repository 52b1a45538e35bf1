"""The named search spaces.

``edgetpu-v2-224``: the MobileNetEdgeTPUV2 skeleton (20 blocks in 7 groups at 224) with, per block, the op
(IBN, fused-IBN, GC-IBN, and skip where depth may shrink), kernel, expansion and GC group size; per group the
output channels; the stem's kernel and channels and the head's width. Every released variant (Tiny to L) is
a point of it. Google did not publish the choice sets it searched (reference 3.1): these are the sets its
released models use, widened to kernel 5 for the search.

``small-28``: the same block choices for 28-64 px single-channel inputs (Fashion-MNIST): a stride-1 stem and
three downsamplings instead of five.

``autoseg-512`` (``space.autoseg``) and ``spaghetti-320`` (``space.spaghetti``): the segmentation and detection
spaces, with Autoseg-EdgeTPU-XS/S/M and SpaghettiNet-EdgeTPU-S/M/L as points.
"""

from __future__ import annotations

from ..data.shape import FASHION_MNIST
from ..spec import GCIBN, IBN, Arch, FusedIBN, Head, Preprocess, Skip, Stage, Stem
from ..spec.errors import UnknownName
from .autoseg import autoseg_512
from .choice import Choice
from .space import SearchSpace
from .spaghetti import spaghetti_320

KERNELS = (3, 5)
EXPANSIONS = (4, 8)
GROUP_SIZES = (64, 128)


def block_choice(stride: int, skippable: bool) -> Choice:
    """One searchable block position: op, and under each op its own kernel, expansion (and group size)."""
    kw = dict(kernel_size=Choice(KERNELS), expand_ratio=Choice(EXPANSIONS), stride=stride)
    options = [IBN.model_construct(**kw), FusedIBN.model_construct(**kw),
               GCIBN.model_construct(**kw, group_size=Choice(GROUP_SIZES))]
    if skippable:
        options.append(Skip.model_construct())
    return Choice(tuple(options))


def _template(*, name, input_size, in_channels, stem, groups, head, num_classes, preprocess) -> Arch:
    """``groups``: (number of blocks, first stride, channel options); group 0 is Google's fixed 1x1
    projection (a fused block with expansion 1), every later position is a searchable block."""
    stages = []
    for g, (n, stride, channels) in enumerate(groups):
        if g == 0:
            blocks = (FusedIBN(expand_ratio=1),)
        else:
            blocks = tuple(block_choice(stride if i == 0 else 1, skippable=i > 0) for i in range(n))
        stages.append(Stage.model_construct(out_channels=Choice(channels), blocks=blocks))
    stem_kernels, stem_channels, stem_stride = stem
    return Arch.model_construct(
        name=name, input_size=input_size, in_channels=in_channels,
        stem=Stem.model_construct(kernel_size=Choice(stem_kernels), out_channels=Choice(stem_channels),
                                  stride=stem_stride),
        stages=tuple(stages),
        head=Head.model_construct(conv_channels=Choice(head), num_classes=num_classes, dropout=0.2),
        preprocess=preprocess,
    )


def edgetpu_v2_224() -> SearchSpace:
    template = _template(
        name="edgetpu-v2-224", input_size=224, in_channels=3, stem=((3, 5, 7), (32, 64), 2),
        groups=(
            (1, 1, (16, 24, 32)),
            (2, 2, (32, 48, 64)),
            (4, 2, (48, 64, 80, 96)),
            (4, 2, (80, 96, 128, 160, 192)),
            (4, 1, (112, 144, 160, 192, 240)),
            (4, 2, (160, 192, 240, 256)),
            (1, 1, (192, 256, 320, 384)),
        ),
        head=(1280, 1344, 1408), num_classes=1001, preprocess=Preprocess(),
    )
    return SearchSpace("edgetpu-v2-224", template, "MobileNetEdgeTPUV2 skeleton at 224x224x3, 1001 classes")


def small_28() -> SearchSpace:
    template = _template(
        name="small-28", input_size=28, in_channels=1, stem=((3, 5), (16, 24, 32), 1),
        groups=(
            (1, 1, (16, 24)),
            (2, 2, (32, 48, 64)),
            (3, 2, (48, 64, 96)),
            (3, 1, (96, 128)),
            (2, 2, (128, 160, 192)),
        ),
        head=(512, 768, 1024), num_classes=10,
        preprocess=FASHION_MNIST.preprocess,
    )
    return SearchSpace("small-28", template, "Same block choices for 28-64 px single-channel inputs, 10 classes")


SPACES = {"edgetpu-v2-224": edgetpu_v2_224, "small-28": small_28, "autoseg-512": autoseg_512,
          "spaghetti-320": spaghetti_320}


def get_space(name: str) -> SearchSpace:
    if name not in SPACES:
        raise UnknownName(f"unknown search space {name!r}; known: {', '.join(SPACES)}")
    return SPACES[name]()
