"""What the generated segmentation and detection scenes share: a window of a real photograph as the background
and Fashion-MNIST glyphs, tinted, pasted on it at random sizes and places. Both draw from one
``numpy.random.Generator`` in the same order, so a scene depends on (seed, index) alone."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from PIL import Image


class Pasted(NamedTuple):
    """One pasted object: its square's corner and side, the pixels it covers, its class (Fashion-MNIST + 1)."""

    y: int
    x: int
    side: int
    inside: np.ndarray
    label: int


def check_layout(objects: tuple[int, int], object_scale: tuple[float, float]) -> None:
    if not (1 <= objects[0] <= objects[1]) or not (0 < object_scale[0] <= object_scale[1] <= 1):
        raise ValueError(f"want 1 <= objects[0] <= objects[1] and 0 < object_scale[0] <= object_scale[1]"
                         f" <= 1, got objects={objects}, object_scale={object_scale}")


def photo_window(rng: np.random.Generator, photos: list[np.ndarray], h: int, w: int) -> np.ndarray:
    """A window of a random photo with the scene's aspect, 30-100 % of the largest that fits, mirrored half
    the time (matplotlib ships few photos), resized to (h, w): RGB uint8."""
    photo = photos[int(rng.integers(len(photos)))]
    ph, pw = photo.shape[:2]
    f = min(ph / h, pw / w) * rng.uniform(0.3, 1.0)
    ch, cw = min(ph, max(1, round(h * f))), min(pw, max(1, round(w * f)))
    top, left = int(rng.integers(ph - ch + 1)), int(rng.integers(pw - cw + 1))
    window = Image.fromarray(photo[top:top + ch, left:left + cw])
    if rng.random() < 0.5:
        window = window.transpose(Image.FLIP_LEFT_RIGHT)
    return np.array(window.resize((w, h), Image.BILINEAR))


def paste_objects(rng: np.random.Generator, image: np.ndarray, scenes) -> list[Pasted]:
    """Paste ``scenes.objects`` glyphs (of ``scenes.glyphs``, sized by ``scenes.object_scale``) onto ``image``
    in place, in drawing order (a later object covers an earlier one); a glyph's pixels >= ``threshold``
    are the object."""
    h, w = image.shape[:2]
    pasted = []
    for _ in range(int(rng.integers(scenes.objects[0], scenes.objects[1] + 1))):
        k = int(rng.integers(len(scenes.glyph_labels)))
        side = min(h, w, max(2, round(min(h, w) * rng.uniform(*scenes.object_scale))))
        glyph = np.asarray(Image.fromarray(scenes.glyphs[k]).resize((side, side), Image.BILINEAR))
        tint = rng.uniform(0.35, 1.0, 3)
        y, x = int(rng.integers(h - side + 1)), int(rng.integers(w - side + 1))
        inside = glyph >= scenes.threshold
        image[y:y + side, x:x + side][inside] = np.round(glyph[inside, None] * tint).astype(np.uint8)
        pasted.append(Pasted(y, x, side, inside, int(scenes.glyph_labels[k]) + 1))
    return pasted
