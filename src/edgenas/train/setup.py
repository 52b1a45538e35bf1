"""From a ``RunConfig`` to the pieces a classification run needs: the arch (adapted to the data), the
datasets and the class names (``tasks.ClassificationTask`` hands them to the fit loop, which knows nothing
about classification); and ``load_trained``, which reads a checkpoint of any task."""

from __future__ import annotations

from pathlib import Path

from ..config import DataConfig, RunConfig
from ..data.datasets import ImageFolder, fashion_mnist
from ..errors import DataError
from ..data.shape import FASHION_MNIST, DataShape
from ..data.transforms import build_transform
from ..models import get_arch
from ..spec import Arch, Network, SpecError, load_spec


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
    arch = get_arch(m.name) if m.name else load_spec(m.arch)
    if isinstance(arch, Network):
        field, ref = ("model.name", m.name) if m.name else ("model.arch", m.arch)
        raise SpecError(f"{field}: {ref} is a {arch.task} network; set task: {arch.task} to train it")
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
        data = fashion_mnist("train" if train else "test", d.data_dir, transform, seed, subset)
    else:
        data = ImageFolder(Path(d.data_dir) / split, transform, seed, d.skip_corrupt, subset, arch.in_channels)
    _check_labels(data, arch.head.num_classes, cfg)
    return data


def _check_labels(data, num_classes: int, cfg: RunConfig) -> None:
    """Before the first step: a label the head has no output for would end the run mid-epoch in the loss."""
    lo, hi = data.label_range()
    if lo >= 0 and hi < num_classes:
        return
    fix = (f"model.num_classes {num_classes} is too few; leave it unset to take the dataset's"
           if cfg.model is not None and cfg.model.num_classes else "this data does not fit the model")
    raise DataError(f"{data.source}: labels run {lo}..{hi}, but the model's head has {num_classes} classes "
                    f"(0..{num_classes - 1}); {fix}")


def datasets(cfg: RunConfig, arch: Arch):
    """(train, val), checked to name the same classes in the same order (an ImageFolder numbers its class
    folders: one missing from val would silently shift the labels of those after it)."""
    train, val = dataset(cfg, arch, "train"), dataset(cfg, arch, "val")
    if train.classes != val.classes:  # sorted names: the sets differ
        only = sorted(set(train.classes) ^ set(val.classes))
        raise DataError(f"{val.source}: its classes differ from {train.source}'s ({', '.join(only[:5])}"
                        f"{' ...' if len(only) > 5 else ''} in only one)")
    return train, val


def load_trained(checkpoint, *, ema: bool = False, gc_mode: str = "native", overrides: list[str] = ()):
    """(config, spec, model) of a training checkpoint: its own resolved config (with ``overrides``), its spec
    (an ``Arch``, or a ``Network`` for segmentation), and the model with its weights (the EMA weights when
    asked; a run trained without EMA has none)."""
    import json

    import yaml

    from ..config import load_config
    from ..nn import build_model
    from ..spec import parse_spec
    from .checkpoint import CheckpointError, load_checkpoint

    state = load_checkpoint(checkpoint)
    if ema and not state["ema"]:
        raise CheckpointError(f"{checkpoint}: was trained without EMA (train.ema_decay 0), so it has no EMA "
                              "weights for --ema; drop --ema")
    try:
        base, arch = yaml.safe_load(state["config"]), parse_spec(json.loads(state["arch"]))
    except (TypeError, ValueError, yaml.YAMLError) as err:  # SpecError is a ValueError
        raise CheckpointError(f"{checkpoint}: its stored config or arch is unreadable ({err})") from None
    cfg = load_config(base=base, overrides=list(overrides))
    model = build_model(arch, gc_mode=gc_mode)
    try:
        model.load_state_dict(state["ema"] if ema else state["model"])
    except (RuntimeError, TypeError, AttributeError) as err:
        raise CheckpointError(f"{checkpoint}: its weights do not fit its arch "
                              f"({str(err).splitlines()[0]})") from None
    return cfg, arch, model
