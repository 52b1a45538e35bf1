"""The architecture spec: typed blocks, ``Arch``, validation, serialization, shapes and analytic counts.

Imports no torch, so it loads and tests fast.
"""

from .arch import SCHEMA_VERSION, Arch, Head, Norm, Preprocess, Stage, Stem, load_arch, parse_arch
from .blocks import BLOCK_TYPES, IBN, GCIBN, Act, Block, BlockBase, Conv, FusedIBN, GroupedIBN, SepConv, Skip
from .blocks import make_divisible
from .errors import SpecError
from .layer import Layer
from .shapes import Counts, FeatureLevel, PlannedBlock, arch_layers, block_plan, count, feature_levels, spec_layers
from .network import (ConvOp, DropoutOp, Network, Node, PoolOp, ResizeOp, SegmentationHead, SepConvOp, Tail,
                      load_spec, parse_network, parse_spec)
from .graph import network_layers, plan_network
from .detector import (Detector, FusedGroupedOp, GraphConvOp, GraphNode, GraphStem, IbnOp, SepOp, SSDHead,
                       parse_detector)
from .detector_plan import detector_layers, plan_detector

__all__ = [
    "SCHEMA_VERSION", "Arch", "Head", "Norm", "Preprocess", "Stage", "Stem", "load_arch", "parse_arch",
    "BLOCK_TYPES", "IBN", "GCIBN", "Act", "Block", "BlockBase", "Conv", "FusedIBN", "GroupedIBN", "SepConv",
    "Skip", "make_divisible", "SpecError", "Layer", "Counts", "FeatureLevel", "PlannedBlock", "arch_layers",
    "block_plan", "count", "feature_levels", "spec_layers", "ConvOp", "DropoutOp", "Network", "Node", "PoolOp",
    "ResizeOp", "SegmentationHead", "SepConvOp", "Tail", "load_spec", "parse_network", "parse_spec",
    "network_layers", "plan_network", "Detector", "FusedGroupedOp", "GraphConvOp", "GraphNode", "GraphStem",
    "IbnOp", "SepOp", "SSDHead", "parse_detector", "detector_layers", "plan_detector",
]
