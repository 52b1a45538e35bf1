"""SSD anchors: the default boxes of TF OD API's ``ssd_anchor_generator``.

Semantics of ``anchor_generators/multiple_grid_anchor_generator.py`` (``create_ssd_anchors``,
``MultipleGridAnchorGenerator``) and ``anchor_generators/grid_anchor_generator.py`` (``tile_anchors``):

* layer ``i`` of ``L`` has scale ``s_i = min_scale + (max_scale - min_scale) i / (L - 1)``; past the last, 1;
* a layer holds one box per aspect ratio ``a``, of height ``s_i / sqrt(a)`` and width ``s_i sqrt(a)``, then,
  when ``interpolated_scale_aspect_ratio > 0``, one of scale ``sqrt(s_i s_{i+1})`` with that aspect ratio;
  with ``reduce_boxes_in_lowest_layer`` the first layer holds only (0.1, 1.0), (s_0, 2.0), (s_0, 0.5) as
  (scale, aspect ratio);
* an ``(h, w)`` feature map centres its cells at ``((i + 0.5) / h, (j + 0.5) / w)``: stride ``1 / size``,
  offset half a stride, in normalized coordinates;
* for a non-square image the base size of each side is scaled by ``min(H, W) / side``, as the SSD
  meta-architecture asks when it passes the image's height and width, so anchors stay square in pixels.

Anchors are normalized corners ``[ymin, xmin, ymax, xmax]`` (TF's ``BoxList`` order), ordered as TF
concatenates them and as the box predictor emits its outputs: layer by layer, then the grid row-major (y, then
x), then the boxes of a cell in the order above. TF does not clip SSD anchors, so some reach outside [0, 1]
unless ``clip``.

The defaults are ``ssd_spaghettinet_edgetpu_320x320_coco17_sync_4x4.config``'s; its feature extractor
(``models/ssd_spaghettinet_feature_extractor.py``) gives 20x20, 10x10, 5x5, 3x3 and 3x3 maps on a 320 input,
its last node (level 8) keeping the 3x3 of the one before: 20*20*3 + 10*10*6 + 5*5*6 + 2 * 3*3*6 = 2058
anchors.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from ..spec import Detector
from ..spec.detector_plan import plan_detector
from .boxes import center_to_corners

ASPECT_RATIOS = (1.0, 2.0, 0.5, 3.0, 0.3333333)  # as written in the config
SPAGHETTINET_320_FEATURE_SIZES = ((20, 20), (10, 10), (5, 5), (3, 3), (3, 3))


def anchor_specs(num_layers: int = 5, min_scale: float = 0.2, max_scale: float = 0.95,
                 aspect_ratios: Sequence[float] = ASPECT_RATIOS, interpolated_scale_aspect_ratio: float = 1.0,
                 reduce_boxes_in_lowest_layer: bool = True) -> list[list[tuple[float, float]]]:
    """Per layer, the (scale, aspect ratio) of each box in a cell."""
    if num_layers < 2:
        raise ValueError(f"num_layers must be at least 2, got {num_layers}")
    if not aspect_ratios or min(aspect_ratios) <= 0:
        raise ValueError(f"aspect_ratios must be positive and not empty, got {tuple(aspect_ratios)}")
    scales = [min_scale + (max_scale - min_scale) * i / (num_layers - 1) for i in range(num_layers)] + [1.0]
    specs = []
    for layer, (scale, scale_next) in enumerate(zip(scales[:-1], scales[1:])):
        if layer == 0 and reduce_boxes_in_lowest_layer:
            specs.append([(0.1, 1.0), (scale, 2.0), (scale, 0.5)])
            continue
        cell = [(scale, ratio) for ratio in aspect_ratios]
        if interpolated_scale_aspect_ratio > 0:
            cell.append((math.sqrt(scale * scale_next), interpolated_scale_aspect_ratio))
        specs.append(cell)
    return specs


def anchors_per_location(num_layers: int = 5, aspect_ratios: Sequence[float] = ASPECT_RATIOS,
                         interpolated_scale_aspect_ratio: float = 1.0,
                         reduce_boxes_in_lowest_layer: bool = True) -> list[int]:
    """Boxes per cell of each layer: [3, 6, 6, 6, 6] for the defaults (the box predictor's channels / 4)."""
    specs = anchor_specs(num_layers, aspect_ratios=aspect_ratios,
                         interpolated_scale_aspect_ratio=interpolated_scale_aspect_ratio,
                         reduce_boxes_in_lowest_layer=reduce_boxes_in_lowest_layer)
    return [len(cell) for cell in specs]


def ssd_anchors(feature_sizes: Sequence[tuple[int, int]], min_scale: float = 0.2, max_scale: float = 0.95,
                aspect_ratios: Sequence[float] = ASPECT_RATIOS, interpolated_scale_aspect_ratio: float = 1.0,
                reduce_boxes_in_lowest_layer: bool = True, base_anchor_size: tuple[float, float] = (1.0, 1.0),
                image_size: tuple[int, int] | None = None, clip: bool = False) -> torch.Tensor:
    """Anchors [N, 4] (float32 corners) for feature maps of ``feature_sizes`` (height, width), one per layer.

    ``image_size`` (height, width) matters only when not square; ``clip`` clamps the corners to [0, 1].
    """
    specs = anchor_specs(len(feature_sizes), min_scale, max_scale, aspect_ratios,
                         interpolated_scale_aspect_ratio, reduce_boxes_in_lowest_layer)
    base_h, base_w = base_anchor_size
    if image_size is not None:
        if min(image_size) <= 0:
            raise ValueError(f"image_size must be positive, got {image_size}")
        shortest = min(image_size)
        base_h, base_w = base_h * shortest / image_size[0], base_w * shortest / image_size[1]
    layers = []
    for (fh, fw), cell in zip(feature_sizes, specs):
        if fh < 1 or fw < 1:
            raise ValueError(f"feature sizes must be positive, got {(fh, fw)}")
        scale = torch.tensor([s for s, _ in cell], dtype=torch.float64)
        root = torch.tensor([r for _, r in cell], dtype=torch.float64).sqrt()
        shape = (fh, fw, len(cell))
        yc = ((torch.arange(fh, dtype=torch.float64) + 0.5) / fh)[:, None, None].expand(shape)
        xc = ((torch.arange(fw, dtype=torch.float64) + 0.5) / fw)[None, :, None].expand(shape)
        h, w = (scale / root * base_h).expand(shape), (scale * root * base_w).expand(shape)
        layers.append(center_to_corners(torch.stack([yc, xc, h, w], -1).reshape(-1, 4)))
    anchors = torch.cat(layers).float()
    return anchors.clamp_(0, 1) if clip else anchors


def detector_anchors(det: Detector, feature_sizes: Sequence[tuple[int, int]] | None = None) -> torch.Tensor:
    """A detector's anchors [N, 4]: its head's settings over its sources' feature maps (the plan's, at the
    spec's input size, unless ``feature_sizes``). The one place the model, the loss and the metric get them."""
    h = det.head
    sizes = plan_detector(det).source_sizes if feature_sizes is None else feature_sizes
    return ssd_anchors(sizes, h.min_scale, h.max_scale, h.aspect_ratios, h.interpolated_scale_aspect_ratio,
                       h.reduce_boxes_in_lowest_layer)
