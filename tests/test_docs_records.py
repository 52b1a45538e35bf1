"""Every figure the docs publish comes from a record: a JSON file in bench/results/ that the script which
measured it wrote, or a publication the docs cite.

What is checked
  - every number in the body rows of the markdown tables in README.md and docs/*.md (a header row names
    columns; its numbers are labels, never figures);
  - every number a command prints in a shell transcript (a fenced block with "$ command" lines; the command
    lines themselves are settings);
  - the prose figures in PROSE: each entry is a fragment of a doc, which must still be there (so the list
    cannot go stale silently) and whose every number must match. Prose says a direction in words ("7.8%
    under its target"), so there a number matches by magnitude; in tables signs count.

What a number is
  A run of digits with optional thousands commas, decimals, exponent and sign ("1,198.0", "-6.6%",
  "1.8e-4"). Not numbers: digits inside a name or an index ("mobilenet_edgetpu_075", "small-28", "e4",
  "stages[2]"), shapes ("3x3", "224x224"), and anything in a `code span` (commands, paths and config keys are
  settings, not results). "+-10%" is a tolerance, matched by magnitude; "0.5-5" is a range of two positives.

When a number matches
  Some value v in a source, times one of SCALES (fractions as percent, ms as us, MACs as millions, ...),
  rounds to the doc's number at the decimals the doc shows: 92.67 matches 92.6712 and 0.926712; 1,198.0
  matches 1198003968; 481 matches 480.78. Sources: every number in every JSON file under bench/results/
  (numbers inside its strings too: settings are recorded as text like "search.steps=500"), the published
  figures of the model registry (edgenas.models.MODELS), and CITED. A percentage only matches a percentage or
  a fraction (scales 1 and 100). Two raw-data shapes are summarized rather than read whole, because matching
  against every entry would let almost any figure through: a list of more than MAX_SAMPLES numbers gives its
  min, median and max; a string longer than MAX_TEXT (a serialized arch) gives nothing.

  How strong that is: against the records at the time of writing, a random figure with 4 significant
  digits matches by chance about 5% of the time, one with 3 about a third, one with 2 almost always. The check
  is for the figures that get copied wrong or go stale, which have 3 or more; small integers (counts,
  settings) pass by construction.

Exempt
  Cells in the columns named in SETTINGS (a header, lower case, markup removed): labels and what a benchmark
  was run with (a stage, a sweep's setting), not what it measured. Keep that list short and say why for each
  entry.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
SCALES = (1.0, 100.0, 1e-3, 1e3, 1e-6, 1e6)
MAX_SAMPLES = 12  # a longer list of numbers is raw samples: docs quote its range and median, not entries
MAX_TEXT = 200  # a longer string is serialized data (an arch's JSON), not a setting

# Figures quoted from a publication that the model registry does not hold; each says where it comes from.
CITED = {
    "80.12": "timm's published ImageNet top-1 of mobilenet_edgetpu_v2_m (timm results CSV, 224 px)",
    "6,069,657": "parameters of MobilenetEdgeTPUV2() asserted by Google's mobilenet_edgetpu_v2_model_test.py",
    "219": "MobileNetV3-Large 1.0 MAdds, Howard et al. 2019, Table 3",
    "56": "MobileNetV3-Small 1.0 MAdds, Howard et al. 2019, Table 3",
}

# Column names (a header cell, lower case, markup removed) whose cells are settings, not results.
# None is needed for the docs to pass today: these are exempt because they are labels, so that a figure there
# never has to be "found" in a record by the luck of small integers.
SETTINGS = {
    "stage": "which searchable stage a row counts block types for",
    "stage (px at 224)": "the stage and its input -> output resolution",
    "dw_packing": "the packing each calibration of the sweep was run at",
}

PROSE = [
    ("docs/benchmarks.md", "3,478,933 / 4,169,829 / 5,758,389"),
    ("docs/latency.md", "about 2% of the S prediction (0.022 ms)"),
    ("docs/models.md", "hold 59% of the parameters and 34% of the MACs"),
    ("README.md", "optimizer state, 2,395,041,442 bytes"),
    ("README.md", "record are kept, 715,783 bytes"),
    ("README.md", "timm publishes 80.12% top-1 for v2_m"),
    ("README.md", "leave-one-out MAPE 3.9%, Kendall tau 1.0"),
    ("README.md", "cpu-ort: 94% of 100 random small-28 archs and 99% of 100 edgetpu-v2-224 archs"),
    ("README.md", "MobileNetV3-Small at 28x28, 92.67% after 26"),
    ("docs/latency.md", "Fitted: 0.669 ms per Mcycle (an effective 1.49 GHz)"),
    ("docs/latency.md", "no per-layer overhead, 0.137 ms fixed per inference"),
    ("docs/latency.md", "**MAPE 3.07%, leave-one-out MAPE 3.91% (worst 9.0%, Tiny), Kendall tau 1.000**"),
    ("docs/latency.md", "we predict 1.78-2.46x"),
    ("docs/latency.md", "The fused tails cost 0.07-0.27 ms over the logits"),
    ("docs/latency.md", "(XS: 1.2 of 3.2 ms"),
    ("docs/models.md", "ours fall 0.32 M (XS), 0.44 M (S) and 0.58 M (M) below the README, and 0.10 M for"),
    ("docs/models.md", "(0.25, 0.33 and 0.43 M) but is larger than MobileNetV2's (0.41 M)"),
    ("docs/latency.md", "architectures: **0.818**; edgetpu, the same 100 architectures predicted: **0.612**"),
    ("docs/latency.md", "cpu-litert, 30 measured small-28 architectures: **0.894**"),
    ("docs/latency.md", "(75.2% at 3.4 ms on LiteRT against V2-Tiny's 74.7%"),
    ("docs/benchmarks.md", "ONNX Runtime is 2.79x faster than eager PyTorch at batch 1"),
    ("docs/benchmarks.md", "(92.67% in 51.6 min)"),
    ("docs/benchmarks.md", "`small-28` spans 0.22-0.53 ms on edgetpu"),
    ("docs/benchmarks.md", "0.55-5.0 ms measured on cpu-ort"),
    ("docs/benchmarks.md", "One-shot accuracies range 0.526-0.684, stand-alone 0.756-0.847."),
    ("docs/benchmarks.md", "**Kendall tau 0.29 (p = 0.29)**"),
    ("docs/benchmarks.md", "MobileNetEdgeTPUV2-Tiny at 0.458 ms and MobileNetV2 at 0.465 ms"),
    ("docs/benchmarks.md", "the MACs searches end 11% and 27% off their targets"),
    ("docs/search.md", "at 0.05 it ended 7.8% under its target, at 0.1 1.7% over"),
    ("README.md", "(734-990 s over five seeds,\nmedian 825 s"),
    ("README.md", "target (-4.5% to +2.7%)"),
    ("README.md", "retrained to 86.06-87.08% test top-1"),
    ("docs/benchmarks.md", "The job takes 734-990 s (median 825 s); the search alone 475-638 s."),
    ("docs/benchmarks.md", "reach 86.06-87.08% test top-1"),
    ("docs/benchmarks.md", "within\n  1.9e-06 to 3.9e-06 of PyTorch's"),
    ("docs/benchmarks.md", "reaches 163.6 with Google's rule (99th percentile 58.5, median 3.9) and 5.2"),
    ("docs/benchmarks.md", "goes from 84.56% to 87.08%"),
    ("docs/training.md", "from 1.18x the median image's after the stem to 97x at the head"),
]

_NUMBER = re.compile(r"([+-]?)(\d{1,3}(?:,\d{3})+|\d+)(\.\d+)?(?:e([+-]?\d+))?")
_CODE = re.compile(r"`[^`]*`")
_TABLE_RULE = re.compile(r"^\|[\s:|-]+\|?\s*$")


class Figure(NamedTuple):
    text: str  # as written
    value: float
    half: float  # half the doc's last shown digit: how far a rounded value may be from it
    magnitude: bool  # "+-10%": the sign is not part of the figure
    percent: bool  # "92.67%": a percentage in the record, or a fraction


def figures(text: str) -> list[Figure]:
    """The numbers of a piece of markdown."""
    text = _CODE.sub(" ", text).replace("**", "")
    out = []
    for m in _NUMBER.finditer(text):
        sign, whole, frac, exp = m.groups()
        start = m.start(2)
        before = text[start - 1] if start else " "
        after = text[m.end():m.end() + 2]
        percent = after[:1] == "%"
        if re.match(r"x\d", after):
            continue  # a shape
        tolerance = text[max(0, start - 2):start] == "+-"
        if sign == "-" and not tolerance and m.start() > 0 and text[m.start() - 1].isalnum():
            if text[m.start() - 1].isdigit():
                sign = ""  # "0.5-5": a range
            else:
                continue  # "small-28": a name
        elif not sign and (before.isalnum() or before in "_.[/"):
            continue  # part of a name, a version, an index or a path
        decimals = len(frac) - 1 if frac else 0
        power = int(exp) if exp else 0
        value = float(whole.replace(",", "") + (frac or "")) * 10.0 ** power
        value = -value if sign == "-" and not tolerance else value
        written = ("-" if value < 0 else "+" if sign == "+" else "") + m.group(0).lstrip("+-")
        out.append(Figure(written, value, 0.5 * 10.0 ** (power - decimals), tolerance, percent))
    return out


def _numbers_in(obj, out: list[float]) -> None:
    if isinstance(obj, bool) or obj is None:
        return
    if isinstance(obj, (int, float)):
        out.append(float(obj))
    elif isinstance(obj, str):
        if len(obj) <= MAX_TEXT:
            out.extend(float(x) for x in re.findall(r"-?\d+(?:\.\d+)?(?:e[-+]?\d+)?", obj))
    elif isinstance(obj, dict):
        for k, v in obj.items():
            _numbers_in(k, out)
            _numbers_in(v, out)
    elif isinstance(obj, list):
        if len(obj) > MAX_SAMPLES and all(isinstance(v, (int, float)) for v in obj):
            out.extend([min(obj), float(np.median(obj)), max(obj)])
        else:
            for v in obj:
                _numbers_in(v, out)


class Sources:
    """Every source value, sorted once per scale, so that a doc number is a binary search per scale."""

    def __init__(self, values: list[float], cited: list[float] = ()):
        base = np.asarray([v for v in values if np.isfinite(v)], dtype=np.float64)
        self.scaled = [np.sort(base * s) for s in SCALES]
        self.cited = np.sort(np.asarray(list(cited), dtype=np.float64))

    @classmethod
    def from_files(cls, paths, extra: list[float] = (), cited: list[float] = ()) -> Sources:
        values = list(extra)
        for path in paths:
            _numbers_in(json.loads(Path(path).read_text()), values)
        return cls(values, cited)

    def holds(self, f: Figure, magnitude: bool = False) -> bool:
        slack = f.half + 1e-9 * max(1.0, abs(f.value))
        targets = (f.value, -f.value) if magnitude or f.magnitude else (f.value,)
        # a percentage is a percentage or a fraction, never a rescaled time or count
        scaled = [a for s, a in zip(SCALES, self.scaled) if not f.percent or s in (1.0, 100.0)]
        for arr in [*scaled, self.cited]:
            for v in targets:
                i = np.searchsorted(arr, v - slack)
                if i < len(arr) and arr[i] <= v + slack:
                    return True
        return False


def registry_figures() -> list[float]:
    from edgenas.models import MODELS

    out = []
    for card in MODELS.values():
        p = card.published
        if p:
            out += [x for x in (p.top1, p.params, p.macs, p.latency_ms) if x is not None]
    return out


def transcript_lines(lines: list[str]):
    """(line number, output line) of every fenced block that shows a shell session ("$ command" lines): what
    the commands printed. The command lines are settings, and "..." marks an elision."""
    start = None
    for i, line in enumerate(lines, 1):
        if not line.lstrip().startswith("```"):
            continue
        if start is None:
            start = i
            continue
        body = list(enumerate(lines[start:i - 1], start + 1))
        if any(text.startswith("$ ") for _, text in body):
            yield from ((n, text) for n, text in body if not text.startswith(("$ ", "...")))
        start = None


def checked_text(path: Path):
    """(line number, column name, text) of every table body cell outside fenced code, and every line of output
    in a shell transcript (column None)."""
    lines = path.read_text().splitlines()
    for n, text in transcript_lines(lines):
        yield n, None, text
    fenced, header = False, None
    for i, line in enumerate(lines, 1):
        if line.lstrip().startswith("```"):
            fenced = not fenced
            continue
        if fenced or not line.lstrip().startswith("|"):
            header = None
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if header is None:
            header = [re.sub(r"[*`]", "", c).strip().lower() for c in cells]
        elif _TABLE_RULE.match(line.strip()):
            continue
        else:
            for j, cell in enumerate(cells):
                yield i, header[j] if j < len(header) else "", cell


def unbacked(paths, sources: Sources, prose=()) -> list[str]:
    """file:line and number of every checked figure no source holds (relative to ROOT where possible)."""
    missing = []

    def name(p: Path) -> str:
        return str(p.relative_to(ROOT)) if p.is_relative_to(ROOT) else str(p)

    for path in paths:
        for line, column, text in checked_text(path):
            if column in SETTINGS:
                continue
            where = "command output" if column is None else f"column {column!r}"
            for f in figures(text):
                if not sources.holds(f):
                    missing.append(f"{name(path)}:{line}: {f.text} ({where}) is in no record")
    for path, fragment in prose:
        text = path.read_text()
        at = text.find(fragment)
        if at < 0:
            missing.append(f"{name(path)}: the prose figure {fragment!r} is gone; update PROSE")
            continue
        line = text.count("\n", 0, at) + 1
        for f in figures(fragment):
            if not sources.holds(f, magnitude=True):
                missing.append(f"{name(path)}:{line}: {f.text} (in {fragment!r}) is in no record")
    return missing


def _cited() -> list[float]:
    return [figures(k)[0].value for k in CITED]


@pytest.fixture(scope="module")
def sources() -> Sources:
    return Sources.from_files(sorted(RESULTS.glob("*.json")), registry_figures(), _cited())


def test_every_docs_figure_has_a_record(sources):
    docs = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    missing = unbacked(docs, sources, [(ROOT / f, frag) for f, frag in PROSE])
    assert not missing, "figures without a record:\n" + "\n".join(missing)


def test_an_invented_figure_is_caught(tmp_path):
    record = tmp_path / "bench.json"
    record.write_text(json.dumps({"top1": 0.926712, "macs": 1198003968, "error": -0.0661, "ms": 0.7286}))
    doc = tmp_path / "doc.md"
    doc.write_text("# Results\n\n| model | top-1 | MACs (M) | error | ms |\n|---|---|---|---|---|\n"
                   "| a | 92.67% | 1,198.0 | -6.6% | 0.7286 |\n| b | 87.31% | 1,198.0 | +6.6% | 0.729 |\n\n"
                   "Prose: top-1 92.67%, and a claim of 41.5 ms.\n\n"
                   "```\n$ bench --runs 5\nms 0.7286, MACs 1,234.5 M\n```\n")
    src = Sources.from_files([record])
    missing = unbacked([doc], src, [(doc, "top-1 92.67%, and a claim of 41.5 ms")])
    assert [m.split(" (")[0] for m in missing] == [
        f"{doc}:12: 1,234.5", f"{doc}:6: 87.31", f"{doc}:6: +6.6", f"{doc}:8: 41.5"]
    assert unbacked([doc], src, [(doc, "a sentence no longer there")])[-1].endswith("is gone; update PROSE")
    settings = tmp_path / "settings.md"
    settings.write_text("| dw_packing | ms |\n|---|---|\n| 0.33 | 0.7286 |\n| 0.66 | 0.7311 |\n")
    assert [m.split(" (")[0] for m in unbacked([settings], src)] == [f"{settings}:4: 0.7311"]


@pytest.mark.parametrize("text, expected", [
    ("92.67%", [92.67]), ("1,198.0 M", [1198.0]), ("-6.6% and +1.7%", [-6.6, 1.7]), ("1.8e-4", [1.8e-4]),
    ("0.5-5 ms", [0.5, 5.0]), ("small-28 at 3x3 in stages[2], e4", []), ("+-10%", [10.0]),
    ("`--batch 8` mobilenet_edgetpu_075", []),
])
def test_what_counts_as_a_figure(text, expected):
    assert [f.value for f in figures(text)] == pytest.approx(expected)


def test_rounding_to_the_shown_decimals():
    src = Sources([0.926712, 1198003968, 480.78, 0.0318])
    for text in ("92.67%", "1,198.0", "1,198", "481", "3.2", "+3.2%", "31.8"):
        assert src.holds(*figures(text)), text
    # 31.8% would be 0.0318 scaled as if ms to us: a percentage only matches a percentage or a fraction
    for text in ("92.68%", "1,199", "480", "-3.2", "3.3", "31.8%"):
        assert not src.holds(*figures(text)), text


def test_write_record_adds_the_environment(tmp_path, monkeypatch):
    from edgenas.env import git_commit, write_record

    path = write_record(tmp_path / "sub" / "r.json", {"top1": np.float32(92.5), "rows": np.arange(2),
                                                      "environment": {"device": "a GPU"}})
    doc = json.loads(path.read_text())
    assert doc["top1"] == 92.5 and doc["rows"] == [0, 1]
    env = doc["environment"]
    assert {"git_commit", "command", "date", "cpu", "python", "edgenas"} <= set(env) and env["device"] == "a GPU"
    assert env["git_commit"] is None or re.fullmatch(r"[0-9a-f]{4,40}(-dirty)?", env["git_commit"])
    assert not list(path.parent.glob(".*.tmp"))  # written under a temporary name, then renamed
    monkeypatch.setenv("PATH", str(tmp_path))  # no git at all: the record still goes out, without a commit
    assert git_commit() is None


# what a record must not hold: where the machine it ran on keeps things (a path string, or one inside a command)
MACHINE_PATHS = ("/tmp/", "/work/", "/root/", "/home/")


def machine_paths(obj, where: str = "") -> list[str]:
    """The place and text of every string in a record that names a path of the machine it ran on."""
    if isinstance(obj, dict):
        return [p for k, v in obj.items() for p in machine_paths(k, where) + machine_paths(v, f"{where}.{k}")]
    if isinstance(obj, list):
        return [p for i, v in enumerate(obj) for p in machine_paths(v, f"{where}[{i}]")]
    if isinstance(obj, str) and (obj.startswith("/") or any(m in obj for m in MACHINE_PATHS)):
        return [f"{where.lstrip('.') or '(top)'}: {obj[:120]!r}"]
    return []


@pytest.mark.parametrize("path", sorted(RESULTS.glob("*.json")), ids=lambda p: p.name)
def test_a_record_holds_no_machine_path(path):
    found = machine_paths(json.loads(path.read_text()))
    assert not found, f"{path.name} holds machine paths:\n" + "\n".join(found)


# Measured on 2026-11-28 (commits 156cb53, d47c23c), before `edgenas latency check` stored its environment, so
# their machine is unrecorded; docs/latency.md cites their figures. Only a re-measurement on a quiet machine can
# give them one (bench/run_latency_benchmarks.sh; a try on 2026-12-06 found this machine varying 14% on one
# unchanged model, and was discarded). These three are held to having none, so a re-run fails here until its
# name leaves this list; any other record without an environment fails outright.
PREDATES_ENVIRONMENT = {"latency_check_cpu-ort-int8_small-28.json", "latency_check_cpu-ort_edgetpu-v2-224.json",
                        "latency_check_cpu-ort_small-28.json"}


@pytest.mark.parametrize("path", sorted(RESULTS.glob("*.json")), ids=lambda p: p.name)
def test_a_record_carries_its_environment(path):
    env = json.loads(path.read_text()).get("environment")
    if path.name in PREDATES_ENVIRONMENT:
        assert env is None, f"{path.name} has its environment now: take it off PREDATES_ENVIRONMENT"
        return
    # what every record's environment holds (three older ones predate its "command")
    assert isinstance(env, dict) and {"date", "cpu", "python"} <= set(env), \
        f"{path.name}: no environment (write it with edgenas.env.write_record)"


def test_a_machine_path_is_caught():
    record = {"environment": {"command": "bench/x.py --data /work/shared/data"}, "runs": [{"out": "/opt/runs/a"}],
              "note": "wrote /tmp/abc/s.yaml", "/home/u/k": 1, "fine": "<shared>/data ms/step 3 / 4"}
    assert machine_paths(record) == ["environment.command: 'bench/x.py --data /work/shared/data'",
                                     "runs[0].out: '/opt/runs/a'", "note: 'wrote /tmp/abc/s.yaml'",
                                     "(top): '/home/u/k'"]


def test_the_record_writer_stores_no_machine_path(tmp_path, monkeypatch):
    from edgenas.env import write_record

    repo, shared, home, tmp = (tmp_path / name for name in ("repo", "shared", "home", "tmp"))
    for folder in (repo, shared, home, tmp):
        folder.mkdir()
    monkeypatch.chdir(repo)
    monkeypatch.setattr("tempfile.tempdir", str(tmp))
    monkeypatch.setenv("EDGENAS_SHARED", str(shared))
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setattr("sys.argv", [str(repo / "bench/x.py"), "--camvid", str(shared / "data/camvid")])
    path = write_record(repo / "r.json", {
        "overrides": [f"model.pretrained={repo}/tests/w.tflite", f"out={tmp_path}/runs/a"],
        "data_dir": "/usr/share/datasets/fashion-mnist", "cache": f"{home}/.cache/edgenas", "temp": f"wrote {tmp}/abc/s.yaml",
        "error": f"edgenas: error: {repo}/s.yaml: stages[1]: bad", "url": "https://example.org/a/b", "ms": 0.5})
    doc = json.loads(path.read_text())
    assert doc["overrides"] == ["model.pretrained=tests/w.tflite", "out=../runs/a"]
    assert doc["data_dir"] == "<datasets>/fashion-mnist" and doc["cache"] == "~/.cache/edgenas"
    assert doc["temp"] == "wrote <tmp>/abc/s.yaml"
    assert doc["error"] == "edgenas: error: s.yaml: stages[1]: bad" and doc["url"] == "https://example.org/a/b"
    assert doc["environment"]["command"] == "bench/x.py --camvid <shared>/data/camvid" and doc["ms"] == 0.5
    assert machine_paths(doc) == []
