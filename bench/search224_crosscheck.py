"""The 224 px searches of bench/search_benchmarks.py (phase histogram224: one edgetpu-targeted and one
MACs-targeted search per RL learning rate) priced on both axes: each winner's predicted edgetpu latency and
its MACs, and its error against its own target. docs/benchmarks.md compares the searches on both; the search
record holds each winner only in its own unit. Seconds: the edgetpu model's cycles ship with the package.

    python bench/search224_crosscheck.py [--search bench/results/search_benchmarks.json]
"""

from __future__ import annotations

import json
from pathlib import Path

from common import parser  # bench/ is on the path when a bench script runs
from edgenas.env import write_record
from edgenas.latency import get_latency_model
from edgenas.models import get_arch
from edgenas.space import get_space
from edgenas.spec import count


def main() -> None:
    ap = parser(__doc__, record="bench/results/search224_crosscheck.json", record_flag="--json")
    ap.add_argument("--search", default="bench/results/search_benchmarks.json")
    args = ap.parse_args()
    searches = json.loads(Path(args.search).read_text())["histogram224"]
    space, edgetpu = get_space("edgetpu-v2-224"), get_latency_model("edgetpu")
    rows = {}
    for key, entry in searches.items():
        result = entry["result"]
        arch = space.fix(result["decision"])
        rows[key] = {"target_model": key.split("/")[0], "target": result["target"], "unit": result["unit"],
                     "result": result["predicted_latency"],
                     "target_error": result["predicted_latency"] / result["target"] - 1,
                     "edgetpu_ms": edgetpu.predict(arch).total, "macs": count(arch).macs}
        r = rows[key]
        print(f"{key:16} {r['target_error']:+7.1%} of its target; edgetpu {r['edgetpu_ms']:.3f} ms, "
              f"{r['macs'] / 1e6:,.0f} M MACs", flush=True)
    reference = get_arch("mobilenet_edgetpu_v2_s")
    rows["mobilenet_edgetpu_v2_s"] = {"edgetpu_ms": edgetpu.predict(reference).total,
                                      "macs": count(reference).macs}
    write_record(args.json, {"source": args.search, "searches": rows})


if __name__ == "__main__":
    main()
