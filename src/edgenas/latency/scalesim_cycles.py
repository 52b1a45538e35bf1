"""Per-layer compute cycles from SCALE-Sim v3's weight-stationary compute model, cached by content.

SCALE-Sim builds the operand and demand matrices a layer generates on an R x C systolic array; the number of
rows of the demand matrices, minus one, is the layer's compute cycle count. Its full memory simulation is not
used (slow, and broken on numpy >= 2.4). 'Same' padding is given to SCALE-Sim as a padded input (TF's SAME
rule), so its output size is ours. Dilation is not modelled (same MACs, same output size).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path

from ..io import write_atomic
from .base import LatencyError


@dataclass(frozen=True)
class ConvShape:
    """One conv on the array: a group's input channels and filters (a grouped conv is ``groups`` of these)."""

    in_h: int
    in_w: int
    kernel: int
    in_channels: int
    filters: int
    stride: int

    def out_hw(self) -> tuple[int, int]:
        return -(-self.in_h // self.stride), -(-self.in_w // self.stride)

    def key(self, rows: int, cols: int) -> str:
        text = json.dumps([self.in_h, self.in_w, self.kernel, self.in_channels, self.filters, self.stride, rows,
                           cols, "scalesim", version("scalesim"), "ws"])
        return hashlib.sha1(text.encode()).hexdigest()[:20]


def simulate(shape: ConvShape, rows: int = 64, cols: int = 64) -> int:
    """Compute cycles of one conv on a ``rows`` x ``cols`` weight-stationary array (SCALE-Sim v3)."""
    from scalesim.compute.operand_matrix import operand_matrix
    from scalesim.compute.systolic_compute_ws import systolic_compute_ws
    from scalesim.scale_config import scale_config
    from scalesim.topology_utils import topologies

    if min(shape.in_h, shape.in_w, shape.kernel, shape.in_channels, shape.filters, shape.stride) < 1:
        raise LatencyError(f"SCALE-Sim cannot map {shape}: every dimension must be positive")
    out_h, out_w = shape.out_hw()
    pad_h = max((out_h - 1) * shape.stride + shape.kernel - shape.in_h, 0)
    pad_w = max((out_w - 1) * shape.stride + shape.kernel - shape.in_w, 0)
    cfg = scale_config()
    # name, array rows/cols, SRAM kB (unused by the compute model), address offsets, dataflow, bandwidth mode
    cfg.update_from_list(["edgetpu", rows, cols, 1024, 1024, 1024, 0, 10_000_000, 20_000_000, "ws", "CALC", None])
    topo = topologies()
    topo.append_topo_entry_from_list(["layer", shape.in_h + pad_h, shape.in_w + pad_w, shape.kernel, shape.kernel,
                                      shape.in_channels, shape.filters, shape.stride])
    topo.topo_arrays[0] += [1, 1]  # sparsity ratio N:M = 1:1 (dense), which the entry helper leaves out
    operands = operand_matrix()
    operands.set_params(config_obj=cfg, topoutil_obj=topo, layoututil_obj=None, layer_id=0)
    operands.create_operand_matrices()
    if (operands.ofmap_rows, operands.ofmap_cols) != (out_h, out_w):
        raise LatencyError(f"SCALE-Sim maps {shape} to {operands.ofmap_rows}x{operands.ofmap_cols}, "
                           f"not {out_h}x{out_w}")
    array = systolic_compute_ws()
    array.set_params(config_obj=cfg, ifmap_op_mat=operands.ifmap_addr_matrix,
                     filter_op_mat=operands.filter_addr_matrix, ofmap_op_mat=operands.ofmap_addr_matrix)
    array.create_demand_matrices()
    return int(array.ifmap_demand_matrix.shape[0] - 1)


def bundled(rows: int, cols: int) -> dict[str, int]:
    """The cycles shipped with edgenas (``latency/data``): every layer of the named spaces and the zoo, made by
    ``edgenas latency warm``, so a search on a fresh machine simulates nothing it does not need to."""
    path = Path(__file__).parent / "data" / f"scalesim-{rows}x{cols}.json"
    if not path.is_file():
        return {}
    table = json.loads(path.read_text())
    return {str(k): int(v) for k, v in table["cycles"].items()} if table["simulator"] == _SIMULATOR else {}


_SIMULATOR = f"scalesim {version('scalesim')}"


class CycleCache:
    """Content-addressed cache of simulated layers: in memory, and in ``path`` (JSON) when one is given, on
    top of the bundled table (``bundled``).

    A search predicts thousands of architectures built from a few hundred distinct layers; no layer is
    simulated twice. The file is written atomically, and only by ``save`` (and only when something new was
    simulated).
    """

    def __init__(self, path: str | Path | None = None, rows: int = 64, cols: int = 64, use_bundled: bool = True):
        self.path = Path(path) if path else None
        self.rows, self.cols = rows, cols
        self._cycles: dict[str, int] | None = None
        self.use_bundled, self._bundled = use_bundled, None  # read on first use: constructors do no I/O
        self.simulated = self._saved = 0

    def _load(self) -> dict[str, int]:
        if self._cycles is None:
            self._cycles = {}
            if self.path and self.path.is_file():
                try:
                    self._cycles = {str(k): int(v) for k, v in json.loads(self.path.read_text())["cycles"].items()}
                except (ValueError, KeyError, TypeError) as err:
                    raise LatencyError(f"{self.path}: not a SCALE-Sim cycle cache ({err})") from None
        return self._cycles

    def cycles(self, shape: ConvShape) -> int:
        cache, key = self._load(), shape.key(self.rows, self.cols)
        if self._bundled is None:
            self._bundled = bundled(self.rows, self.cols) if self.use_bundled else {}
        if key in self._bundled and key not in cache:
            return self._bundled[key]
        if key not in cache:
            cache[key] = simulate(shape, self.rows, self.cols)
            self.simulated += 1
        return cache[key]

    def save(self) -> None:
        if self.path is None or self._cycles is None or (self.path.is_file() and self.simulated == self._saved):
            return
        self._saved = self.simulated
        write_atomic(self.path, json.dumps({"simulator": _SIMULATOR,
                                            "array": [self.rows, self.cols], "cycles": self._cycles}))
