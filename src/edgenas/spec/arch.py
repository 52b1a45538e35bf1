"""The architecture spec: stem, stages of blocks, classifier head, deployment input, normalization.

An ``Arch`` is the single source of truth for a network's shape: the builder, the analytic counts and the
latency models all read it. It is frozen, validated on construction (errors name the path), and round-trips
through versioned JSON and YAML.
"""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal, NamedTuple

from pydantic import Field

from .blocks import Act, Block, Channels, KernelSize, Spec, Stride, at_most, at_most_items
from .document import Document
from .errors import SpecError, format_loc

InputSize = Annotated[int, Field(ge=8, le=4096)]
NumClasses = Annotated[int, Field(gt=0), at_most(100_000, "wider than any on-device classifier; ImageNet-21k "
                                                 "has 21,841 classes")]
# Far above any arch the project writes (the most: 22 stages, an Autoseg-space backbone of one block each; 5
# blocks in a stage), so that a junk list is refused before its entries are validated.
MAX_STAGES, MAX_BLOCKS = 64, 64
PerChannel = at_most_items(16, "one value per input channel, and at most 16 input channels")


class Stem(Spec):
    out_channels: Channels
    kernel_size: KernelSize = 3
    stride: Stride = 2
    act: Act = Act.RELU


class Stage(Spec):
    """Blocks that share an output width; the first block maps the previous width to ``out_channels``."""

    out_channels: Channels
    blocks: Annotated[tuple[Block, ...], Field(min_length=1), at_most_items(MAX_BLOCKS, "a stage")]


class Head(Spec):
    """Classifier: [1x1 conv+BN+act] -> global average pool -> [linear+act] -> dropout -> linear."""

    conv_channels: Channels | None = 1280  # Google's "top" 1x1 conv before pooling
    hidden_channels: Channels | None = None  # MobileNetV3's linear layer after pooling
    num_classes: NumClasses = 1000
    dropout: Annotated[float, Field(ge=0, lt=1)] = 0.0
    act: Act = Act.RELU


class Norm(Spec):
    """BatchNorm settings in PyTorch's momentum convention (momentum = 1 - TF's decay)."""

    eps: Annotated[float, Field(gt=0, lt=1)] = 1e-3  # Google: eps 1e-3
    momentum: Annotated[float, Field(gt=0, le=1)] = 0.01  # Google: decay 0.99


class Preprocess(Spec):
    """What the deployed model expects: x in [0, 1] -> (x - mean) / std, resize shorter side, center crop."""

    # one value per input channel (Arch checks the count); Google: RGB scaled to [-1, 1]
    mean: Annotated[tuple[float, ...], Field(min_length=1), PerChannel] = (0.5, 0.5, 0.5)
    std: Annotated[tuple[Annotated[float, Field(gt=0)], ...], Field(min_length=1), PerChannel] = (0.5, 0.5, 0.5)
    crop_pct: Annotated[float, Field(gt=0, le=1)] = 0.875
    interpolation: Literal["bilinear", "bicubic"] = "bilinear"

    def check_channels(self, in_channels: int) -> None:
        """A model normalizes each of its ``in_channels`` input channels by its own mean and std."""
        if len(self.mean) != in_channels or len(self.std) != in_channels:
            raise SpecError(f"preprocess: mean and std need {in_channels} values, one per input channel",
                            loc=("preprocess",))


class BlockSite(NamedTuple):
    """One block in its place: stage, index within the stage, and the channels it maps."""

    stage: int
    index: int
    in_channels: int
    out_channels: int
    block: Block

    @property
    def loc(self) -> tuple:
        return ("stages", self.stage, "blocks", self.index)

    @property
    def path(self) -> str:
        return format_loc(self.loc)


class Arch(Document):
    LEAD: ClassVar = ("schema_version", "name", "input_size", "in_channels")
    NOUN: ClassVar = "an arch"

    name: str = ""
    input_size: InputSize = 224  # deployment resolution; latency is predicted here
    in_channels: Annotated[int, Field(gt=0, le=16)] = 3
    stem: Stem
    stages: Annotated[tuple[Stage, ...], Field(min_length=1), at_most_items(MAX_STAGES, "an arch")]
    head: Head = Head()
    norm: Norm = Norm()
    drop_path_rate: Annotated[float, Field(ge=0, lt=1)] = 0.0  # stochastic depth, rising linearly per block
    preprocess: Preprocess = Preprocess()

    def check(self) -> None:
        self.preprocess.check_channels(self.in_channels)
        for site in self.blocks():
            problems = site.block.check(site.in_channels, site.out_channels)
            if problems:
                field, msg = problems[0]
                raise SpecError(f"{site.path}.{field}: {msg}", loc=(*site.loc, field))

    def blocks(self):
        """Yield a ``BlockSite`` for every block, in network order."""
        cin = self.stem.out_channels
        for i, stage in enumerate(self.stages):
            for j, block in enumerate(stage.blocks):
                yield BlockSite(i, j, cin, stage.out_channels, block)
                cin = stage.out_channels

    @property
    def num_blocks(self) -> int:
        return sum(len(s.blocks) for s in self.stages)

    @property
    def num_classes(self) -> int:
        return self.head.num_classes

    @property
    def out_channels(self) -> int:
        """Channels of the last backbone feature (before the head)."""
        return self.stages[-1].out_channels

    def with_classes(self, num_classes: int) -> Arch:
        return self.replace(head={**dict(self.head), "num_classes": num_classes})


parse_arch = Arch.parse
load_arch = Arch.load
