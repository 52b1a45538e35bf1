"""SSD core for the detection family (SpaghettiNet-EdgeTPU with an SSDLite head), after TF OD API's
``ssd_spaghettinet_edgetpu_320x320_coco17_sync_4x4.config``: anchors, box coding and matching, the focal/Huber
loss and NMS post-processing. Boxes are normalized corners ``[ymin, xmin, ymax, xmax]``; class logits have
``num_classes + 1`` columns, column 0 the background."""

from .anchors import (ASPECT_RATIOS, SPAGHETTINET_320_FEATURE_SIZES, anchor_specs, anchors_per_location,
                      detector_anchors, ssd_anchors)
from .boxes import (IGNORED, SCALE_FACTORS, UNMATCHED, Targets, argmax_match, box_area, center_to_corners,
                    corners_to_center, decode, encode, iou_matrix, target_assign)
from .loss import CLASS_BIAS_INIT, SSDLoss, sigmoid_focal_loss, smooth_l1
from .nonmax import Detections, batched_nms, nms, postprocess

__all__ = ["ASPECT_RATIOS", "CLASS_BIAS_INIT", "IGNORED", "SCALE_FACTORS", "SPAGHETTINET_320_FEATURE_SIZES",
           "UNMATCHED", "Detections", "SSDLoss", "Targets", "anchor_specs", "anchors_per_location",
           "argmax_match", "batched_nms", "box_area", "center_to_corners", "corners_to_center", "decode",
           "detector_anchors", "encode", "iou_matrix", "nms", "postprocess", "sigmoid_focal_loss", "smooth_l1", "ssd_anchors",
           "target_assign"]
