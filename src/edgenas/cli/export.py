"""export: a checkpoint to ONNX or LiteRT, fp32 or int8, parity-checked on the run's own test images."""

from __future__ import annotations

from .output import emit_json


def cmd_export(args) -> int:
    from ..export import ExportError, export
    from ..export.api import parity_data
    from ..io import writable
    from ..train.setup import load_trained

    if args.format.endswith("int8") and args.calibration_images < 1:
        raise ExportError(f"--calibration-images {args.calibration_images}: {args.format} needs at least one "
                          "training image for its int8 ranges")
    out = writable(args.out or str(args.checkpoint).rsplit(".", 1)[0] + {
        "onnx": ".onnx", "onnx-int8": ".int8.onnx", "tflite": ".tflite", "tflite-int8": ".int8.tflite"}[args.format])
    cfg, arch, model = load_trained(args.checkpoint, ema=args.ema, gc_mode=args.gc_mode,
                                    overrides=[f"data.data_dir={args.data_dir}"] if args.data_dir else [])
    images, labels, calib = parity_data(cfg, arch, args.check_images, args.calibration_images)
    report = export(model, args.format, out, images, labels, calib)
    if args.json:
        emit_json(report.to_dict())
        return 0
    checks = (f"max |diff| vs PyTorch {report.max_abs_diff:.2e} ({report.max_rel_diff:.1e} of the largest logit)"
              if report.max_abs_diff is not None else
              f"top-1 {report.top1:.2f}% (fp32 {report.reference_top1:.2f}%), agreement {report.top1_agreement:.2f}%")
    print(f"wrote {report.path} ({report.size_bytes / 1e6:.2f} MB): {checks} on {report.images} test images")
    return 0
