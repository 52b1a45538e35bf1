"""train and eval."""

from __future__ import annotations

import sys

from ..config import load_config
from ..errors import EdgenasError
from ..models.pretrained import load_pretrained
from ..models.timm_weights import from_timm
from ..nn import build_model
from ..nn.network import Serving
from ..spec import Network
from ..tasks import get_task
from ..tasks.base import percent
from ..train.checkpoint import load_trained
from ..train.loop import evaluate, fit
from .output import emit_json, table


def run_config(args, base: dict | None = None, flags: list[str] = ()):
    """The ``RunConfig`` of a train or search command: ``base`` <- --config <- --out, --data-dir, the
    command's own ``flags`` (as overrides), --set (the command line wins over the file)."""
    base = dict(base or {})
    if getattr(args, "model", None):
        base["model"] = {"name": args.model}
    if getattr(args, "arch", None):
        base["model"] = {"arch": args.arch}
    overrides = [f"out={args.out}"] if args.out else []
    overrides += list(flags) + list(args.set or [])
    if args.data_dir:
        overrides.append(f"data.data_dir={args.data_dir}")
    return load_config(args.config, overrides, base)


def cmd_train(args) -> int:
    cfg = run_config(args)
    task = get_task(cfg)
    history = fit(cfg, task, resume=args.resume)
    record = history[-1] if history else {}
    if args.json:
        emit_json(record)
    elif record:
        print(f"{cfg.out}: epoch {record['epoch'] + 1}/{cfg.train.epochs}, val {task.quality_label} "
              f"{record['val_quality']:.2f}%, checkpoint {cfg.out}/checkpoint.pt")
    return 0


def _zero_shot(args):
    """(config, spec, fresh model) of the run --config describes, started from --pretrained by the caller."""
    if args.ema or args.model:
        raise EdgenasError(f"{'--ema' if args.ema else '--model'}: not with --pretrained (give the model in "
                           "--config or --set model.name=...)")
    overrides = [f"model.pretrained={args.pretrained}", *(args.set or [])]
    if args.class_map:
        overrides.append(f"model.class_map={args.class_map}")
    cfg = load_config(args.config, overrides)
    spec = get_task(cfg).spec(cfg)
    return cfg, spec, build_model(spec)


def cmd_eval(args) -> int:
    import torch

    timm, zero_shot = bool(args.weights), bool(args.pretrained)
    if sum((bool(args.checkpoint), timm, zero_shot)) != 1 or (timm and not args.model):
        raise EdgenasError("give a checkpoint, --model NAME --weights FILE, or --pretrained FILE --config CFG "
                           "(one of the three)")
    if (args.class_map or args.config) and not zero_shot:
        raise EdgenasError(f"{'--class-map' if args.class_map else '--config'}: goes with --pretrained")
    if args.checkpoint:
        cfg, arch, model = load_trained(args.checkpoint, ema=args.ema, overrides=args.set or [])
    elif zero_shot:
        cfg, arch, model = _zero_shot(args)
    else:
        if args.ema:
            raise EdgenasError("--ema: timm weights are one set of weights; --ema applies to a checkpoint")
        model = from_timm(args.model, args.weights)
        arch = model.arch
        cfg = load_config(base={"model": {"name": args.model}, "data": {"dataset": "imagefolder"},
                                "train": {"batch_size": 32}}, overrides=args.set or [])
    if args.data_dir:
        cfg = load_config(base=cfg.model_dump(mode="json"), overrides=[f"data.data_dir={args.data_dir}"])
    if args.tail and not isinstance(arch, Network):
        raise EdgenasError(f"--tail: {arch.name} is a {cfg.task} model; a serving tail ends a segmentation "
                           "network")
    task = get_task(cfg)  # the checkpoint's own config names its task
    val_set = task.dataset(cfg, arch, "val")
    if zero_shot:  # the map (--class-map, else the config's) is checked against the data's classes
        print(load_pretrained(model, cfg.model.pretrained, cfg.model.class_map, getattr(val_set, "classes", None)),
              file=sys.stderr)
    torch.set_num_threads(cfg.train.threads or torch.get_num_threads())
    loss = task.loss(cfg, train=False)
    if args.tail:
        model, loss = Serving(model, arch.with_tail(args.tail).tail), None  # the tail's text is checked
    meter = evaluate(model, val_set, task.meter(arch, val_set), loss, cfg.train.batch_size,
                     collate=getattr(task, "collate", None))
    summary = meter.summary(getattr(val_set, "classes", None))
    if args.json:
        emit_json(summary)
        return 0
    print(task.headline(summary))
    title, values = task.per_class(summary)
    print(table([[k, percent(v)] for k, v in values.items()], ["class", title], "lr"))
    return 0
