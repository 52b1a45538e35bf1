"""export: a checkpoint to ONNX or LiteRT, fp32 or int8, parity-checked on the run's own test images."""

from __future__ import annotations

from ..export import TABLE, ExportError
from ..io import writable
from ..tasks import get_task
from ..train.checkpoint import load_trained
from .output import emit_json


def cmd_export(args) -> int:
    if args.format.endswith("int8") and args.calibration_images < 1:
        raise ExportError(f"--calibration-images {args.calibration_images}: {args.format} needs at least one "
                          "training image for its int8 ranges")
    out = writable(args.out or str(args.checkpoint).rsplit(".", 1)[0] + TABLE[args.format].suffix)
    cfg, arch, model = load_trained(args.checkpoint, ema=args.ema, gc_mode=args.gc_mode,
                                    overrides=[f"data.data_dir={args.data_dir}"] if args.data_dir else [])
    record, line = get_task(cfg).export(model, args.format, out, cfg, arch, check=args.check_images,
                                        calibration=args.calibration_images, tail=args.tail)
    if args.json:
        emit_json(record)
        return 0
    print(line)
    return 0
