"""train and eval."""

from __future__ import annotations

from .output import emit_json, table


def run_config(args, base: dict | None = None):
    """The ``RunConfig`` of a train or search command: ``base`` <- --config <- --out, --data-dir, --set (the
    command line wins over the file)."""
    from ..config import load_config

    base = dict(base or {})
    if getattr(args, "model", None):
        base["model"] = {"name": args.model}
    if getattr(args, "arch", None):
        base["model"] = {"arch": args.arch}
    overrides = [f"out={args.out}"] if args.out else []
    overrides += list(args.set or [])
    if args.data_dir:
        overrides.append(f"data.data_dir={args.data_dir}")
    return load_config(args.config, overrides, base)


def cmd_train(args) -> int:
    from ..train.loop import fit_classification

    cfg = run_config(args)
    record = fit_classification(cfg, resume=args.resume)
    if args.json:
        emit_json(record)
    elif record:
        print(f"{cfg.out}: epoch {record['epoch'] + 1}/{cfg.train.epochs}, val top-1 {record['val_top1']:.2f}%, "
              f"checkpoint {cfg.out}/checkpoint.pt")
    return 0


def cmd_eval(args) -> int:
    import torch

    from ..config import load_config
    from ..errors import EdgenasError
    from ..train.loop import evaluate
    from ..train.setup import dataset, load_trained

    timm = bool(args.model or args.weights)
    if bool(args.checkpoint) == timm or (timm and not (args.model and args.weights)):
        raise EdgenasError("give a checkpoint, or --model NAME --weights FILE (one of the two)")
    if args.checkpoint:
        cfg, arch, model = load_trained(args.checkpoint, ema=args.ema, overrides=args.set or [])
    else:
        from ..models.timm_weights import from_timm

        if args.ema:
            raise EdgenasError("--ema: timm weights are one set of weights; --ema applies to a checkpoint")
        model = from_timm(args.model, args.weights)
        arch = model.arch
        cfg = load_config(base={"model": {"name": args.model}, "data": {"dataset": "imagefolder"},
                                "train": {"batch_size": 32}}, overrides=args.set or [])
    if args.data_dir:
        cfg = load_config(base=cfg.model_dump(mode="json"), overrides=[f"data.data_dir={args.data_dir}"])
    val_set = dataset(cfg, arch, "val")
    torch.set_num_threads(cfg.train.threads or torch.get_num_threads())
    meter = evaluate(model, val_set, cfg.train.batch_size, arch.head.num_classes)
    summary = meter.summary(getattr(val_set, "classes", None))
    if args.json:
        emit_json(summary)
        return 0
    print(f"{summary['images']} images: top-1 {summary['top1']:.2f}%, top-5 {summary['top5']:.2f}%, "
          f"loss {summary['loss']:.4f}")
    print(table([[k, f"{v:.2f}"] for k, v in summary["per_class"].items()], ["class", "accuracy %"], "lr"))
    return 0
