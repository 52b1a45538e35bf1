"""What the bench scripts share: their common command-line arguments and reading a run's epochs (the timed,
resumable training run is in timed_fit.py: it loads torch, which a script that only predicts must not, since
the record's environment names the libraries the measurement loaded).

A bench script runs as ``python bench/<name>.py`` from the repository root, so bench/ is on the import path
and the scripts import this module as ``common`` (the way quickstart_seeds.py imports quickstart).

Each flag keeps the name and default it had in its script, so the commands in the records and the docs still
run: a record is ``--out`` in the latency and zoo scripts and ``--json`` where ``--out`` is a run folder.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from edgenas.models import MODELS, get_arch, list_models

CACHE = str(Path.home() / ".cache" / "edgenas")  # the measured lookup tables' default home


def parser(doc: str | None, *, record: str | None = None, record_flag: str = "--out", work: str | None = None,
           work_flag: str = "--out", cache_dir: str | None | bool = False,
           data_dir: str | None | bool = False, shared: bool = False, threads: int | None = None,
           rounds: int | None = None, runs: int | None = None) -> argparse.ArgumentParser:
    """The script's parser, its docstring as the help, with the common arguments it takes: ``record`` (the
    JSON record it writes, under ``record_flag``), ``work`` (the folder its runs keep their files in,
    resumable), ``cache_dir`` and ``data_dir`` (their default; False: the script takes none), ``shared``
    (the project's shared folder) and the timing repetitions ``threads``, ``rounds``, ``runs`` (their
    default; None: none)."""
    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    if record is not None:
        ap.add_argument(record_flag, default=record, help="the JSON record this writes (default %(default)s)")
    if work is not None:
        ap.add_argument(work_flag, default=work, help="folder for the runs' files; a rerun resumes there "
                                                      "(default %(default)s)")
    if cache_dir is not False:
        ap.add_argument("--cache-dir", default=cache_dir, help="simulated cycles and measured lookup tables "
                        "(default: " + (cache_dir or "the package's and ~/.cache/edgenas") + ")")
    if data_dir is not False:
        ap.add_argument("--data-dir", default=data_dir, help="the dataset's folder (default: the config's)"
                        if data_dir is None else "the dataset's folder (default %(default)s)")
    if shared:
        ap.add_argument("--shared", default="../shared", help="the project's shared folder: data and "
                        "Google's released models (default %(default)s)")
    for flag, default, what in (("--threads", threads, "CPU threads"), ("--rounds", rounds, "timing rounds"),
                                ("--runs", runs, "timed runs per round")):
        if default is not None:
            ap.add_argument(flag, type=int, default=default, help=f"{what} (default %(default)s)")
    return ap


def epochs(metrics: Path, key: str) -> list[dict]:
    """The lines of a training run's metrics.jsonl that carry ``key`` (its epochs); none before it exists."""
    if not metrics.is_file():
        return []
    return [r for r in map(json.loads, metrics.read_text().splitlines()) if key in r]



def zoo(task: str | None = None) -> list[tuple[str, object, object]]:
    """(name, spec, published figures or None) of every zoo model (of ``task``), in the registry's order."""
    return [(name, get_arch(name), MODELS[name].published) for name in list_models(task=task)]
