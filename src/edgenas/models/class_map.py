"""A new dataset's classes from a pretrained head's: ``CamVid Building <- ADE20K building, house, wall``.

A map file (YAML or JSON) names the pretrained head's classes, by a known list or in full, and the sources of
every class of the new dataset, in any order (``[]``: no pretrained class means it)::

    source: ade20k-32            # or source_classes: [other, wall, building, ...]
    classes:
      Sky: [sky]
      Building: [building, house, wall]
      Pole: []

A head starts from the map linearly: class ``c``'s row is its first (primary) source's row, so wherever the
pretrained model's winner is a primary source, the new model at step 0 predicts that source's class. A
class with no source gets zero weights and an ``UNMAPPED`` bias, below the logits a pretrained head's winners
have yet near enough for the class to learn. The other sources of a class (Building <- house, wall) cannot
enter a linear row exactly; averaging their rows in scored far below the primary row in a one-off check on
CamVid val (not a benchmark record; the primary row's zero-shot figure is in
bench/results/camvid_finetune.json). ``merged_logits`` is that map applied to a pretrained
model's logits; ``init_classifier`` writes it into a classifier's output layer, so at step 0 the new model's
logits are the merged ones; ``lookup`` maps a pretrained argmax class by class (every source counts).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch
from torch import nn

from ..data.segmentation import ADE20K_32_CLASSES, CITYSCAPES_CLASSES
from ..errors import EdgenasError
from ..spec.datafile import read_data

SOURCES = {"ade20k-32": ADE20K_32_CLASSES, "cityscapes": CITYSCAPES_CLASSES}
UNMAPPED = -10.0  # the starting logit of a class no pretrained class means


class ClassMapError(EdgenasError):
    """A class map file that cannot be read or does not fit the data or the head; the message names it."""


@dataclass(frozen=True)
class ClassMap:
    classes: tuple[str, ...]  # the new dataset's, in its order
    source_classes: tuple[str, ...]  # the pretrained head's, in its order
    sources: tuple[tuple[int, ...], ...]  # per new class, indices into source_classes
    path: str = ""

    @property
    def mapped(self) -> list[str]:
        return [c for c, s in zip(self.classes, self.sources) if s]

    def matrix(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(A, c): new logits = A @ source logits + c; A (new x source) picks each class's primary source."""
        a = torch.zeros(len(self.classes), len(self.source_classes))
        c = torch.full((len(self.classes),), UNMAPPED)
        for i, src in enumerate(self.sources):
            if src:
                a[i, src[0]], c[i] = 1.0, 0.0
        return a, c

    def lookup(self) -> torch.Tensor:
        """Source class -> new class id (-1 where the source means none of them): an argmax mapped."""
        out = torch.full((len(self.source_classes),), -1, dtype=torch.int64)
        for i, src in enumerate(self.sources):
            out[list(src)] = i
        return out


def _names(value, where: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ClassMapError(f"{where}: want a list of class names, got {value!r:.60}")
    return value


def load_class_map(path: str | Path, classes: Sequence[str] | None = None) -> ClassMap:
    """The map at ``path``, checked: known source names, each used once; with ``classes`` (the dataset's),
    every one of them mapped (possibly to []) and no other, returned in the dataset's order."""
    data = read_data(path)
    if not isinstance(data, dict) or not isinstance(data.get("classes"), dict):
        raise ClassMapError(f"{path}: a class map is a mapping with 'classes' (new class: [pretrained classes])")
    if ("source" in data) == ("source_classes" in data):
        raise ClassMapError(f"{path}: give one of source ({', '.join(SOURCES)}) and source_classes (a list)")
    if "source" in data:
        if data["source"] not in SOURCES:
            raise ClassMapError(f"{path}: source: {data['source']!r:.40} is not one of {', '.join(SOURCES)}; "
                                "list the head's classes as source_classes instead")
        source = list(SOURCES[data["source"]])
    else:
        source = _names(data["source_classes"], f"{path}: source_classes")
    given = {str(k): _names(v or [], f"{path}: classes.{k}") for k, v in data["classes"].items()}
    order = list(classes) if classes is not None else list(given)
    missing, extra = [c for c in order if c not in given], [c for c in given if c not in order]
    if missing or extra:
        what = (f"no entry for {', '.join(missing[:5])}" if missing else
                f"{', '.join(extra[:5])} {'is' if len(extra) == 1 else 'are'} not a class of the data")
        raise ClassMapError(f"{path}: classes: {what} (the data's classes: {', '.join(order)})")
    seen: dict[str, str] = {}
    for new, names in given.items():
        for name in names:
            if name not in source:
                raise ClassMapError(f"{path}: classes.{new}: {name!r:.40} is not a class of the pretrained head "
                                    f"({', '.join(source[:8])}, ...)")
            if name in seen:
                raise ClassMapError(f"{path}: classes.{new}: {name!r} already feeds {seen[name]}; a pretrained "
                                    "class can mean one new class")
            seen[name] = new
    return ClassMap(tuple(order), tuple(source), tuple(tuple(source.index(n) for n in given[c]) for c in order),
                    str(path))


def merged_logits(logits: torch.Tensor, cmap: ClassMap) -> torch.Tensor:
    """A pretrained model's logits (N, S, ...) through the map: (N, new classes, ...)."""
    a, c = cmap.matrix()
    out = torch.einsum("ns,bs...->bn...", a.to(logits), logits)
    return out + c.to(logits).view(1, -1, *([1] * (logits.dim() - 2)))


@torch.no_grad()
def init_classifier(layer: nn.Module, weight: torch.Tensor, bias: torch.Tensor, cmap: ClassMap) -> None:
    """``layer`` (the new head's output conv or linear) set so that its output is the pretrained output layer
    (``weight``, ``bias``) merged through ``cmap``."""
    a, c = cmap.matrix()
    if tuple(layer.weight.shape[:1]) != (len(cmap.classes),) or weight.shape[0] != len(cmap.source_classes):
        raise ClassMapError(f"{cmap.path}: maps {len(cmap.source_classes)} pretrained classes to "
                            f"{len(cmap.classes)}, but the heads have {weight.shape[0]} and {layer.weight.shape[0]}")
    merged = (a @ weight.reshape(weight.shape[0], -1).float()).reshape(layer.weight.shape)
    layer.weight.copy_(merged)
    layer.bias.copy_(a @ bias.float() + c)
