"""COCO box mAP with COCO's own evaluator (pycocotools ``COCOeval``, iouType "bbox").

``DetectionMeter.update`` takes what the SSD core outputs per image: boxes normalised [ymin, xmin, ymax, xmax]
(TF's order) in the frame of the evaluated image, scores, and classes (category ids, as the targets' labels:
1..90 for COCO; 0 = background is dropped). With the target's ``orig_size`` (h, w) they become COCO's
[x, y, w, h] in original pixels, clipped to the image. That is exact because the evaluation transform only
resizes the whole image, and a resize leaves normalised coordinates unchanged. A class the ground truth has no
category for (one of COCO's unused ids) cannot match; COCOeval leaves it out.

The score covers the images passed to ``update`` (so a subset of a dataset is scored alone); an image passed
twice counts once, with its last detections (a distributed sampler pads by repeating images). ``summary``
gives COCOeval's figures as percentages: ``map`` (AP@[.5:.95], also ``quality``), ``ap50``, ``ap75``,
``ap_small/medium/large`` (buckets by the ground truth's ``area``), ``ar100`` and per-class AP; a figure
COCOeval leaves undefined (-1: no ground truth in that bucket) is None. No detections score 0, not an error.
pycocotools' prints are swallowed.
"""

from __future__ import annotations

import contextlib
import io

import numpy as np
import torch
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

STAT_KEYS = ("map", "ap50", "ap75", "ap_small", "ap_medium", "ap_large")  # COCOeval.stats[0:6]


def coco_api(dataset: dict) -> COCO:
    """A pycocotools COCO over a dataset dict (images, annotations, categories), built without its prints."""
    coco = COCO()
    coco.dataset = dataset
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


def _parts(detection) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    if isinstance(detection, dict):
        detection = (detection["boxes"], detection["scores"],
                     detection["classes"] if "classes" in detection else detection["labels"])
    boxes, scores, classes = (torch.as_tensor(v).detach().cpu() for v in detection)
    if (boxes.numel() and (boxes.dim() != 2 or boxes.shape[1] != 4)) or not \
            len(boxes.reshape(-1, 4)) == len(scores) == len(classes):
        raise ValueError(f"want boxes [K, 4], scores [K] and classes [K], got {tuple(boxes.shape)}, "
                         f"{tuple(scores.shape)} and {tuple(classes.shape)}")
    return boxes.reshape(-1, 4).to(torch.float64), scores.reshape(-1), classes.reshape(-1).to(torch.int64)


class DetectionMeter:
    """Accumulates an evaluation pass of a detector against ``ground_truth`` (a COCO object or its dict, in
    original pixels: ``coco_ground_truth()`` of the dataset), as ``SegmentationMeter`` does for masks."""

    def __init__(self, ground_truth: COCO | dict):
        self.gt = ground_truth if isinstance(ground_truth, COCO) else coco_api(ground_truth)
        self.results: dict[int, list[dict]] = {}
        self.loss_sum, self.count = 0.0, 0

    def update(self, detections, targets: list[dict], loss: float | None = None) -> None:
        """``detections``: per image (boxes, scores, classes), or a dict with those keys; ``targets``: the
        dataset's, each with ``image_id`` and ``orig_size``."""
        if len(detections) != len(targets):
            raise ValueError(f"{len(detections)} detections for {len(targets)} targets")
        for detection, target in zip(detections, targets):
            image_id, (h, w) = int(target["image_id"]), (int(v) for v in target["orig_size"])
            image = self.gt.imgs.get(image_id)
            if image is None:
                raise ValueError(f"image {image_id} is not in the ground truth")
            if (image["height"], image["width"]) != (h, w):
                raise ValueError(f"image {image_id}: orig_size {h}x{w} (h x w) but the ground truth has "
                                 f"{image['height']}x{image['width']}")
            boxes, scores, classes = _parts(detection)
            keep = classes > 0
            y0, x0, y1, x1 = (boxes[keep].clamp(0, 1) * torch.tensor([h, w, h, w])).unbind(1)
            rows = zip(x0.tolist(), y0.tolist(), (x1 - x0).tolist(), (y1 - y0).tolist(),
                       scores[keep].tolist(), classes[keep].tolist())
            self.results[image_id] = [{"image_id": image_id, "category_id": cat, "bbox": [x, y, bw, bh],
                                       "score": score, "area": bw * bh, "iscrowd": 0}
                                      for x, y, bw, bh, score, cat in rows]
        self.count += len(targets)
        if loss is not None:
            self.loss_sum += loss * len(targets)

    def all_reduce(self) -> None:
        """Gather every process's detections (a no-op outside torch.distributed)."""
        import torch.distributed as dist

        if not (dist.is_available() and dist.is_initialized()):
            return
        parts: list = [None] * dist.get_world_size()
        dist.all_gather_object(parts, (self.results, self.loss_sum, self.count))
        self.results, self.loss_sum, self.count = {}, 0.0, 0
        for results, loss_sum, count in parts:
            self.results.update(results)
            self.loss_sum += loss_sum
            self.count += count

    def evaluate(self) -> COCOeval | None:
        """COCOeval, run and summarised over the images seen; None before any."""
        if not self.results:
            return None
        anns = [{**d, "id": i} for i, d in enumerate((d for r in self.results.values() for d in r), 1)]
        found = coco_api({"images": self.gt.dataset["images"], "categories": self.gt.dataset["categories"],
                          "annotations": anns})
        coco_eval = COCOeval(self.gt, found, "bbox")
        coco_eval.params.imgIds = sorted(self.results)
        with contextlib.redirect_stdout(io.StringIO()):
            coco_eval.evaluate()
            coco_eval.accumulate()
            coco_eval.summarize()
        return coco_eval

    def summary(self, classes: list[str] | None = None) -> dict:
        """Percentages (see the module docstring); ``classes``, indexed by category id, names the per-class
        APs (default: the ground truth's category names)."""
        coco_eval = self.evaluate()
        pct = (lambda v: None if v < 0 else round(float(v) * 100, 2))
        if coco_eval is None:
            stats, per_class = {k: None for k in STAT_KEYS + ("ar100",)}, {}
        else:
            stats = {**{k: pct(v) for k, v in zip(STAT_KEYS, coco_eval.stats)},
                     "ar100": pct(coco_eval.stats[8])}
            # precision is [IoU threshold, recall point, category, area range, max dets]: area "all", 100 dets
            precision = coco_eval.eval["precision"][:, :, :, 0, -1]
            per_class = {}
            for k, cat in enumerate(coco_eval.params.catIds):
                p = precision[:, :, k]
                name = classes[cat] if classes is not None else self.gt.cats[cat]["name"]
                per_class[name] = pct(np.mean(p[p > -1])) if (p > -1).any() else None
        return {"quality": stats["map"] or 0.0, **stats, "ap": per_class,
                "loss": self.loss_sum / max(self.count, 1), "images": len(self.results)}
