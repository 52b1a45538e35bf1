"""What a dataset fixes in an arch trained on it: input channels, classes, normalization, native image size.

One record per dataset, read by training, the search's proxy task and the benchmarks alike, so the
adaptation of a zoo model to a dataset is written once.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..spec import Preprocess


@dataclass(frozen=True)
class DataShape:
    num_classes: int
    in_channels: int | None = None  # None: whatever the arch has (an ImageFolder of RGB images)
    preprocess: Preprocess | None = None  # None: the arch's own (a user's data, normalized as the model was)
    native_size: int | None = None  # the images' own size, the default input size (None: the arch's)

    def arch_changes(self, input_size: int | None = None) -> dict:
        """Top-level ``Arch`` fields to change (``num_classes`` sits in the head: the caller sets it)."""
        changes: dict = {}
        if self.in_channels is not None:
            changes["in_channels"] = self.in_channels
        if self.preprocess is not None:
            changes["preprocess"] = self.preprocess
        if input_size or self.native_size:
            changes["input_size"] = input_size or self.native_size
        return changes


# Fashion-MNIST: 28x28 grayscale, 10 classes; mean and std are the training set's.
FASHION_MNIST = DataShape(num_classes=10, in_channels=1, preprocess=Preprocess(mean=(0.2860,), std=(0.3530,),
                                                                               crop_pct=1.0), native_size=28)
