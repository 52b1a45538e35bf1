"""The architecture spec: typed blocks, ``Arch``, validation, serialization, shapes and analytic counts.

Imports no torch, so it loads and tests fast.
"""

from .arch import Arch, Head, Norm, Preprocess, Stage, Stem, load_arch, parse_arch
from .blocks import BLOCK_TYPES, IBN, GCIBN, Act, Block, BlockBase, Conv, FusedIBN, GroupedIBN, SepConv, Skip
from .blocks import make_divisible
from .detector import Detector, GraphNode, GraphStem, SSDHead, parse_detector
from .detector_plan import detector_layers, plan_detector
from .document import SCHEMA_VERSION, Document
from .documents import KINDS, Counts, count, load_spec, parse_spec, spec_layers
from .errors import SpecError
from .graph import network_layers, plan_network
from .layer import Layer
from .network import Network, Node, SegmentationHead, Tail, parse_network
from .ops import ConvOp, DropoutOp, FusedGroupedOp, IbnOp, PoolOp, ResizeOp, SepConvOp
from .shapes import FeatureLevel, PlannedBlock, Tensor, arch_layers, block_plan, feature_levels

__all__ = [
    "SCHEMA_VERSION", "Document", "Arch", "Head", "Norm", "Preprocess", "Stage", "Stem", "load_arch",
    "parse_arch", "BLOCK_TYPES", "IBN", "GCIBN", "Act", "Block", "BlockBase", "Conv", "FusedIBN", "GroupedIBN",
    "SepConv", "Skip", "make_divisible", "SpecError", "Layer", "Counts", "FeatureLevel", "PlannedBlock", "Tensor",
    "arch_layers", "block_plan", "count", "feature_levels", "spec_layers", "KINDS", "load_spec", "parse_spec",
    "ConvOp", "SepConvOp", "PoolOp", "ResizeOp", "DropoutOp", "IbnOp", "FusedGroupedOp", "Network", "Node",
    "SegmentationHead", "Tail", "parse_network", "network_layers", "plan_network", "Detector", "GraphNode",
    "GraphStem", "SSDHead", "parse_detector", "detector_layers", "plan_detector",
]
