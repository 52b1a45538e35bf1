"""From a ``RunConfig`` to the pieces a classification run needs: the arch (adapted to the data), the
datasets and the class names. The fit loop itself knows nothing about classification."""

from __future__ import annotations

from pathlib import Path

from ..config import DataConfig, RunConfig
from ..data.datasets import ImageFolder, fashion_mnist
from ..data.shape import FASHION_MNIST, DataShape
from ..data.transforms import build_transform
from ..models import get_arch
from ..spec import Arch, SpecError, load_arch


def data_shape(data: DataConfig) -> DataShape:
    """What the configured dataset fixes in an arch (an ImageFolder: its class count, read from the folder)."""
    if data.dataset == "fashion-mnist":
        return FASHION_MNIST
    return DataShape(num_classes=len(ImageFolder(Path(data.data_dir) / "train", None).classes))


def adapt_arch(arch: Arch, shape: DataShape, *, input_size: int | None = None, num_classes: int | None = None,
               stem_stride: int | None = None) -> Arch:
    """``arch`` as trained on a dataset of ``shape``: its input channels, normalization and classes, at
    ``input_size`` (default: the dataset's native size, else the arch's); ``stem_stride`` 1 keeps five
    downsamplings from reducing a 28 px image to 1 px too early. The blocks are unchanged."""
    changes = shape.arch_changes(input_size)
    if stem_stride:
        changes["stem"] = arch.stem.model_copy(update={"stride": stem_stride})
    return arch.replace(**changes).with_classes(num_classes or shape.num_classes)


def run_arch(cfg: RunConfig) -> Arch:
    """The arch to train: the registered model or file, adapted to the dataset as the config asks.

    Fashion-MNIST is 28x28x1 with 10 classes: a zoo model keeps its blocks and gets a 1-channel input, the
    dataset's normalization, ``model.input_size`` (default 28) and, optionally, a stride-1 stem so five
    downsamplings do not reduce a 28 px image to 1 px too early. The deployment arch is unchanged; results
    say which input the model was trained at.
    """
    m = cfg.model
    if m is None:
        raise SpecError("model: a training run needs model.name or model.arch")
    arch = get_arch(m.name) if m.name else load_arch(m.arch)
    arch = adapt_arch(arch, data_shape(cfg.data), input_size=m.input_size, num_classes=m.num_classes,
                      stem_stride=m.stem_stride)
    changes: dict = {}
    if cfg.train.drop_path_rate is not None:
        changes["drop_path_rate"] = cfg.train.drop_path_rate
    if cfg.train.bn_momentum is not None:
        changes["norm"] = arch.norm.model_copy(update={"momentum": cfg.train.bn_momentum})
    return arch.replace(**changes) if changes else arch


def dataset(cfg: RunConfig, arch: Arch, split: str):
    """The ``train`` or ``val`` dataset with the arch's input size and preprocessing."""
    p, d, train = arch.preprocess, cfg.data, split == "train"
    min_scale = d.crop_scale or (0.35 if arch.input_size <= 64 else 0.08)  # tiny images lose their object
    transform = build_transform(train, arch.input_size, p.mean, p.std, crop_pct=p.crop_pct,
                                augment=d.augment if train else "none", ops=d.randaugment_ops,
                                magnitude=d.randaugment_magnitude, interpolation=p.interpolation,
                                min_scale=min_scale)
    seed, subset = cfg.train.seed, d.train_subset if train else d.val_subset
    if d.dataset == "fashion-mnist":
        return fashion_mnist("train" if train else "test", d.data_dir, transform, seed, subset)
    return ImageFolder(Path(d.data_dir) / split, transform, seed, d.skip_corrupt, subset, arch.in_channels)


def datasets(cfg: RunConfig, arch: Arch):
    """(train, val)."""
    return dataset(cfg, arch, "train"), dataset(cfg, arch, "val")


def load_trained(checkpoint, *, ema: bool = False, gc_mode: str = "native", overrides: list[str] = ()):
    """(config, arch, model) of a training checkpoint: its own resolved config (with ``overrides``), its arch,
    and the model with its weights (the EMA weights when asked and present)."""
    import json

    import yaml

    from ..config import load_config
    from ..nn import build_model
    from ..spec import parse_arch
    from .checkpoint import load_checkpoint

    state = load_checkpoint(checkpoint)
    cfg = load_config(base=yaml.safe_load(state["config"]), overrides=list(overrides))
    arch = parse_arch(json.loads(state["arch"]))
    model = build_model(arch, gc_mode=gc_mode)
    model.load_state_dict(state["ema"] if ema and state["ema"] else state["model"])
    return cfg, arch, model
