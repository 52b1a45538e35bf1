"""Spec -> nn.Module for classification: a backbone and the arch's classifier head."""

from __future__ import annotations

import torch
from torch import nn

from ..spec import Arch
from .backbone import Backbone, ClassifierHead, FeatureInfo, init_weights
from .graph import apply_padding


class ClassificationModel(nn.Module):
    """Backbone + classifier head. The ``arch`` it was built from travels with it (``model.arch``).
    ``padding="tf"`` pads strided convs as TF's 'same' (weights trained in TF expect it)."""

    def __init__(self, arch: Arch, *, output_stride: int | None = None, gc_mode: str = "native",
                 padding: str = "symmetric"):
        super().__init__()
        self.arch = arch
        self.preprocess = arch.preprocess
        self.backbone = Backbone(arch, output_stride=output_stride, gc_mode=gc_mode)
        self.head = ClassifierHead(arch)
        init_weights(self)  # looked up here at build time: bench/init_logits.py swaps it for a variant
        apply_padding(self, padding)

    @property
    def feature_info(self) -> list[FeatureInfo]:
        return self.backbone.feature_info

    def forward_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        return self.backbone(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x)[-1])
