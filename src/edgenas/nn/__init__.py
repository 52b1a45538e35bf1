"""PyTorch modules built from specs; ``build_model`` is the one entry point over the three families."""

from .backbone import Backbone, FeatureInfo, build_backbone, init_weights
from .blocks import BLOCK_MODULES, FusedBottleneck, InvertedBottleneck
from .build import build_model
from .detector import DetectorModel
from .layers import ConvNormAct, SplitGroupConv2d
from .model import ClassificationModel
from .network import NetworkModel

__all__ = ["BLOCK_MODULES", "FusedBottleneck", "InvertedBottleneck", "ConvNormAct", "SplitGroupConv2d", "Backbone",
           "ClassificationModel", "DetectorModel", "FeatureInfo", "NetworkModel", "build_backbone", "build_model",
           "init_weights"]
