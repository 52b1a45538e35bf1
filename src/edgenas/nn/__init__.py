"""PyTorch modules built from specs."""

from .blocks import BLOCK_MODULES, FusedBottleneck, InvertedBottleneck
from .layers import ConvNormAct, SplitGroupConv2d
from .model import Backbone, ClassificationModel, FeatureInfo, build_backbone, build_model

__all__ = ["BLOCK_MODULES", "FusedBottleneck", "InvertedBottleneck", "ConvNormAct", "SplitGroupConv2d", "Backbone",
           "ClassificationModel", "FeatureInfo", "build_backbone", "build_model"]
