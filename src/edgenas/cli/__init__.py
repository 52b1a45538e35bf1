"""``edgenas <command>``: each command turns its arguments into one library call. Nothing imports cli/.

Every failure the user can cause (bad input, files, data, options) ends in one line on stderr,
``edgenas: error: <what and where>``, and exit status 1 (2 for a malformed command line); anything else is a
bug and keeps its traceback. ``--debug`` shows the traceback of user errors too.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from ..data.fashion_mnist import DEFAULT_DIR
from ..errors import EdgenasError
from ..export import FORMATS
from ..latency import DEFAULT_CACHE, TARGETS
from ..spec.errors import one_line


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        """argparse's usage errors as the same one line as every other error (not usage text plus a line)."""
        self.exit(2, f"edgenas: error: {one_line(message)} (see {self.prog} --help)\n")


TAIL_HELP = "segmentation: the serving tail, e.g. resize512,argmax (exact) or resize256,argmax,resize512 (fused)"

def _at_least(minimum: int):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if value < minimum:  # else 0 or -1 would reach the commands, where `x or default` reads 0 as "unset"
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {value}")
        return value
    return parse


_POSITIVE, _COUNT = _at_least(1), _at_least(0)


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not 0 <= value <= 1:  # NaN fails this too
        raise argparse.ArgumentTypeError(f"must be within [0, 1], got {text}")
    return value


def _fractions(text: str) -> str:
    """Checks a comma-separated list and returns it as given: ``latency calibrate`` splits it itself."""
    for part in text.split(","):
        _fraction(part)
    return text


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog="edgenas", description="Hardware-aware NAS for on-device vision.")
    p.add_argument("--debug", action="store_true", help="show a traceback for every error (also accepted after "
                                                         "the command)")
    sub = p.add_subparsers(dest="command", required=True, metavar="command")
    jsonp = argparse.ArgumentParser(add_help=False)
    jsonp.add_argument("--json", action="store_true", help="machine-readable output")

    m = sub.add_parser("models", parents=[jsonp], help="list the zoo with params, MACs and published figures")
    m.add_argument("pattern", nargs="?", default="*", help="shell-style name filter")
    m.add_argument("--time-forward", action="store_true",
                   help="also time each model's eager forward pass on a batch of Fashion-MNIST test images")
    m.add_argument("--data-dir", default=DEFAULT_DIR, help="folder with the Fashion-MNIST IDX files")
    m.add_argument("--batch", type=_POSITIVE, default=8)
    m.add_argument("--runs", type=_POSITIVE, default=5, help="timed runs per model (median reported)")
    m.add_argument("--threads", type=_POSITIVE, default=2)
    m.add_argument("--out", help="also write the report (with its environment) to this JSON file")
    m.set_defaults(func="commands:cmd_models")

    pr = sub.add_parser("profile", parents=[jsonp], help="per-layer shapes, params and MACs")
    pr.add_argument("ref", help="model name or arch file (.yaml/.json)")
    pr.add_argument("--input-size", type=_POSITIVE)
    pr.add_argument("--tail", help=TAIL_HELP)
    pr.set_defaults(func="commands:cmd_profile")

    a = sub.add_parser("arch", help="architecture files").add_subparsers(dest="arch_command", required=True)
    v = a.add_parser("validate", parents=[jsonp], help="check an arch file; one line says what is wrong")
    v.add_argument("file")
    v.set_defaults(func="commands:cmd_arch_validate")
    d = a.add_parser("dump", parents=[jsonp], help="write a model's arch as YAML or JSON")
    d.add_argument("ref", help="model name or arch file")
    d.add_argument("--format", choices=("yaml", "json"), default="yaml")
    d.add_argument("--out", help="file to write (.yaml or .json); stdout if absent")
    d.set_defaults(func="commands:cmd_arch_dump")

    s = sub.add_parser("space", help="search spaces").add_subparsers(dest="space_command", required=True)
    ss = s.add_parser("show", parents=[jsonp], help="choices, size and MACs range of a space")
    ss.add_argument("name")
    ss.add_argument("--samples", type=_POSITIVE, default=256, help="points drawn for the MACs range")
    ss.add_argument("--seed", type=_COUNT, default=0)
    ss.add_argument("--target", help="also print the predicted latency range on this target (e.g. edgetpu)")
    ss.add_argument("--target-samples", type=_POSITIVE, default=32, help="points drawn for the latency range")
    ss.add_argument("--cache-dir", help="latency cache (default ~/.cache/edgenas or $EDGENAS_CACHE)")
    ss.set_defaults(func="commands:cmd_space_show")
    _latency_parsers(sub, jsonp)
    _train_parsers(sub, jsonp)
    return p


def _run_config_args(p, example: str, out_help: str, checkpoint: str) -> None:
    """The arguments of a command driven by a ``RunConfig`` (train, search)."""
    p.add_argument("--config", help="run config YAML (only what differs from the defaults)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help=f"override a config value, e.g. {example}")
    p.add_argument("--data-dir")
    p.add_argument("--out", help=out_help)
    p.add_argument("--resume", action="store_true", help=f"continue from OUT/{checkpoint}")


def _train_parsers(sub, jsonp) -> None:
    t = sub.add_parser("train", parents=[jsonp], help="train a model (torchrun --nproc_per_node N for data "
                                                       "parallel)")
    src = t.add_mutually_exclusive_group()
    src.add_argument("--model", help="registered model name")
    src.add_argument("--arch", help="arch file (.yaml/.json)")
    _run_config_args(t, "train.lr=0.05", "run folder (checkpoint.pt, metrics.jsonl, config.yaml, arch.yaml)",
                     "checkpoint.pt")
    t.set_defaults(func="train:cmd_train")

    r = sub.add_parser("search", parents=[jsonp], help="search for a latency target: TuNAS one-shot, or a random / "
                                                       "evolution baseline")
    _run_config_args(r, "search.latency_target=1.2", "result folder (result.json, arch.yaml, trace.jsonl, "
                     "report.html, search_checkpoint.pt or trials.jsonl)", "search_checkpoint.pt (trials.jsonl)")
    r.add_argument("--strategy", choices=("tunas", "random", "evolution"),
                   help="search.strategy: TuNAS (default), or a multi-trial baseline (search.trials, trial_steps)")
    r.add_argument("--ray", nargs="?", const="", metavar="ADDRESS",
                   help="run the baseline's trials as Ray tasks (on the cluster at ADDRESS, else a local one)")
    r.set_defaults(func="search:cmd_search")
    rep = sub.add_parser("report", help="rebuild a search folder's report.html from its result.json and trace")
    rep.add_argument("dir")
    rep.set_defaults(func="search:cmd_report")

    e = sub.add_parser("eval", parents=[jsonp], help="a checkpoint's (or timm weights') quality: top-1 and per-class "
                       "accuracy, or mIoU, pixel accuracy and per-class IoU")
    e.add_argument("checkpoint", nargs="?")
    e.add_argument("--model", help="with --weights: a timm-layout model name")
    e.add_argument("--weights", help="timm state dict (.safetensors or torch file)")
    e.add_argument("--ema", action="store_true", help="evaluate the EMA weights of a checkpoint")
    e.add_argument("--pretrained", metavar="FILE", help="zero-shot: score a network started from FILE (Google's "
                   "TFLite) with no training, at --config's data and model (epoch 0 of a fine-tune from it)")
    e.add_argument("--class-map", metavar="MAP", help="with --pretrained: the data's classes from the file's")
    e.add_argument("--config", help="with --pretrained: the run config (model, data) to score at")
    e.add_argument("--tail", help="segmentation: score the class map a serving tail gives (e.g. the exact "
                   "resize512,argmax or the fused resize256,argmax,resize512), as the shipped graph computes it")
    e.add_argument("--data-dir")
    e.add_argument("--set", action="append", metavar="KEY=VALUE")
    e.set_defaults(func="train:cmd_eval")

    x = sub.add_parser("export", parents=[jsonp], help="checkpoint -> onnx | onnx-int8 | tflite | tflite-int8, parity-checked")
    x.add_argument("checkpoint")
    x.add_argument("--format", choices=FORMATS, default="onnx")
    x.add_argument("--out", help="file to write (default: beside the checkpoint)")
    x.add_argument("--gc-mode", choices=("native", "split"), default="native",
                   help="GC-IBN convs as native grouped convs or slice -> conv -> concat")
    x.add_argument("--ema", action="store_true", help="export the EMA weights")
    x.add_argument("--check-images", type=_POSITIVE, default=1000, help="test images for the parity check")
    x.add_argument("--calibration-images", type=_COUNT, default=256, help="training images for int8 ranges")
    x.add_argument("--data-dir")
    x.add_argument("--tail", help=TAIL_HELP + "; default: the network's own, else resize<input>,argmax")
    x.set_defaults(func="export:cmd_export")


def _latency_parsers(sub, jsonp) -> None:
    """``latency`` and its sub-commands, and ``lut``; ``common`` holds the arguments every target needs."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--target", required=True, help=f"one of {', '.join(TARGETS)}")
    common.add_argument("--cache-dir", default=DEFAULT_CACHE,
                        help="simulated layers and lookup tables (default ~/.cache/edgenas or $EDGENAS_CACHE)")
    lat = sub.add_parser("latency", parents=[jsonp, common], help="predicted latency of a model or arch file; "
                         "also `latency calibrate`, `latency check` and `latency warm`")
    lat.add_argument("ref", help="model name or arch file")
    lat.add_argument("--input-size", type=_POSITIVE)
    lat.add_argument("--lut", help="a lookup table file (e.g. from `lut import`) instead of the cache's")
    lat.add_argument("--tail", help=TAIL_HELP)
    lat.set_defaults(func="latency:cmd_latency")

    # `latency calibrate` and `latency check` are rewritten to these names by main(); given no help=, argparse
    # leaves them out of the command list, where `latency` already mentions them.
    cal = sub.add_parser("latency-calibrate", parents=[jsonp, common], prog="edgenas latency calibrate")
    cal.add_argument("--dw-packing", type=_fraction, default=None, help="depthwise packing (default: the model's)")
    cal.add_argument("--sweep", type=_fractions, default="0,0.25,0.5,0.75,0.8,0.9,1",
                     help="comma-separated packings to compare")
    cal.set_defaults(func="latency:cmd_calibrate")
    _check_parser(sub, jsonp, common)
    _warm_parser(sub, jsonp)
    _lut_parsers(sub, common)


def _check_parser(sub, jsonp, common) -> None:
    chk = sub.add_parser("latency-check", parents=[jsonp, common], prog="edgenas latency check")
    chk.add_argument("--space", help="sample architectures from this space (and fit the overhead on others)")
    chk.add_argument("--models", help="check these zoo models instead (names or globs, comma-separated, e.g. "
                     "'autoseg_*,deeplabv3plus_*'); the overhead is fitted on --space samples if given")
    chk.add_argument("--tail", help="serving tail for networks checked with --models; " + TAIL_HELP)
    chk.add_argument("--input-size", type=_POSITIVE, help="check --models at this input size instead of theirs")
    chk.add_argument("--samples", type=_POSITIVE, default=100)
    chk.add_argument("--fit-samples", type=_COUNT, default=20, help="other archs the overhead is fitted on")
    chk.add_argument("--seed", type=_COUNT, default=0)
    chk.add_argument("--threads", type=_POSITIVE, default=1)
    chk.add_argument("--out", help="also write every prediction and measurement to this JSON file")
    chk.set_defaults(func="latency:cmd_check")


def _warm_parser(sub, jsonp) -> None:
    warm = sub.add_parser("latency-warm", parents=[jsonp], prog="edgenas latency warm")
    warm.add_argument("--space", required=True, help="the space whose layers to simulate ahead (with the zoo of "
                      "its task), for the edgetpu model; comma-separated for several")
    warm.add_argument("--samples", type=_POSITIVE, default=800, help="points drawn per space")
    warm.add_argument("--seed", type=_COUNT, default=0)
    warm.add_argument("--cache-dir", default=DEFAULT_CACHE, help="where the simulated layers go (default "
                      "~/.cache/edgenas or $EDGENAS_CACHE)")
    warm.add_argument("--bundle", action="store_true", help="write them into the table edgenas ships "
                      "(latency/data) instead: for maintainers, so a fresh install simulates nothing")
    warm.set_defaults(func="latency:cmd_warm")


def _lut_parsers(sub, common) -> None:
    lut = sub.add_parser("lut", help="latency lookup tables").add_subparsers(dest="lut_command", required=True)
    build = lut.add_parser("build", parents=[common], help="measure (simulate, for edgetpu) a space's layers into "
                           "a table ahead of time")
    build.add_argument("--space", required=True)
    build.add_argument("--samples", type=_POSITIVE, default=50, help="architectures whose layers are measured")
    build.add_argument("--all", action="store_true", help="every distinct layer of the space (SearchSpace.covering)")
    build.add_argument("--zoo", action="store_true", help="and every classification model of the zoo")
    build.add_argument("--fit-samples", type=_COUNT, default=20, help="whole models the overhead is fitted on")
    build.add_argument("--seed", type=_COUNT, default=0)
    build.add_argument("--threads", type=_POSITIVE, default=1)
    build.set_defaults(func="latency:cmd_lut_build")

    kit = lut.add_parser("kit", help="one .tflite per distinct layer and an adb script, for your own phone")
    kit.add_argument("--space", required=True)
    kit.add_argument("--out", required=True)
    kit.add_argument("--samples", type=_POSITIVE, default=10, help="architectures whose layers go in the kit")
    kit.add_argument("--fit-samples", type=_COUNT, default=5, help="of those, whole models to fit the overhead on")
    kit.add_argument("--seed", type=_COUNT, default=0)
    kit.set_defaults(func="latency:cmd_lut_kit")

    imp = lut.add_parser("import", help="turn a kit's device results into a lookup table")
    imp.add_argument("kit")
    imp.add_argument("--device", required=True, help="a name for the device, e.g. pixel8")
    imp.add_argument("--out", help="table file (default: KIT/lut-cpu-litert-DEVICE.json)")
    imp.set_defaults(func="latency:cmd_lut_import")


def _command(name: str):
    """A command's function from its ``module:function`` name: a command's module (and torch, scipy, the
    runtimes it needs) loads only when that command runs, so ``--help`` and a usage error stay quick."""
    module, function = name.split(":")
    return getattr(importlib.import_module(f"{__name__}.{module}"), function)


_SPLIT = {("latency", "calibrate"): "latency-calibrate", ("latency", "check"): "latency-check",
          ("latency", "warm"): "latency-warm"}


def user_error(err: BaseException) -> str | None:
    """The one line for an error the user caused and can fix; None for a bug (which keeps its traceback)."""
    if isinstance(err, EdgenasError):
        return str(err)
    if isinstance(err, UnicodeDecodeError):  # a reader that did not name its file; better than a traceback
        return f"a file is not UTF-8 text ({err.reason} at byte {err.start}); is it a binary file?"
    if isinstance(err, OSError) and not isinstance(err, BrokenPipeError):  # missing, a folder, no permission...
        if err.filename is None:
            return str(err)  # raised with a message of its own (`FileNotFoundError(f"{path}: no such ...")`)
        other = f" -> {err.filename2}" if err.filename2 is not None else ""
        why = err.strerror or str(err)
        if isinstance(err, FileExistsError) and os.path.isfile(err.filename):  # `--out` names a file, not a folder
            why = "already exists as a file"
        return f"{err.filename}{other}: {why}"
    return None


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    argv = [a for a in argv if a != "--debug"]  # a global flag, but users add it at the end of a command line
    if len(argv) >= 2 and tuple(argv[:2]) in _SPLIT:  # `latency calibrate|check` beside `latency NAME`
        argv = [_SPLIT[tuple(argv[:2])], *argv[2:]]
    try:
        args = _parser().parse_args(argv)
    except SystemExit as done:  # --help, or a usage error already reported on one line
        return done.code if isinstance(done.code, int) else 1
    try:
        return _command(args.func)(args)
    except BrokenPipeError:
        return 0
    except KeyboardInterrupt:
        if debug:
            raise
        print("edgenas: interrupted", file=sys.stderr)
        return 130
    except Exception as err:
        message = user_error(err)
        if message is None or debug:
            raise
        print(f"edgenas: error: {one_line(message)}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
