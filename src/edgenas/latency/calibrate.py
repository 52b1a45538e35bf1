"""Fit the ``edgetpu`` time parameters to Google's published Pixel 6 Edge TPU latencies.

Ten numbers (MobileNetEdgeTPU v1 dm 0.75-1.75, MobileNetEdgeTPUV2 Tiny-L; reference 1.5) against three
features per model: simulated compute Mcycles (at the assumed depthwise packing), the number of conv/linear
layers, and a constant. Non-negative least squares, leave-one-out error and Kendall tau are reported, with
the block-level check that the fitted model keeps Google's finding.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace

import numpy as np
from scipy.optimize import nnls
from scipy.stats import kendalltau

from ..models import MODELS, get_arch
from ..spec import FusedIBN, IBN, GCIBN
from .edgetpu import ARRAY_OPS, EdgeTPUModel, EdgeTPUParams

CALIBRATION_MODELS = [n for n, card in MODELS.items()
                      if card.published and card.published.latency_device == "Pixel 6 Edge TPU"]

# Google's block-level claim, at shapes from the MobileNetEdgeTPUV2 tables: (name, in=out channels, size).
BLOCK_SHAPES = {"early": (32, 56), "late": (160, 7)}


@dataclass
class CalibrationResult:
    params: EdgeTPUParams
    models: list[str]
    published: list[float]
    predicted: list[float]
    loo_predicted: list[float]
    blocks: dict = field(default_factory=dict)  # shape -> block type -> ms

    @property
    def mape(self) -> float:
        return _mape(self.predicted, self.published)

    @property
    def loo_mape(self) -> float:
        return _mape(self.loo_predicted, self.published)

    @property
    def loo_max(self) -> float:
        return float(np.max(np.abs(np.subtract(self.loo_predicted, self.published)) / self.published) * 100)

    @property
    def kendall_tau(self) -> float:
        return float(kendalltau(self.predicted, self.published).statistic)

    @property
    def finding_holds(self) -> bool:
        early, late = self.blocks["early"], self.blocks["late"]
        return early["fused_ibn"] < early["ibn"] and late["ibn"] < late["fused_ibn"]

    def to_dict(self) -> dict:
        return {"params": asdict(self.params), "mape": self.mape, "loo_mape": self.loo_mape,
                "loo_max_error": self.loo_max, "kendall_tau": self.kendall_tau, "finding_holds": self.finding_holds,
                "blocks_ms": self.blocks,
                "models": [{"model": m, "published_ms": p, "predicted_ms": q, "loo_predicted_ms": r}
                           for m, p, q, r in zip(self.models, self.published, self.predicted, self.loo_predicted)]}


def _mape(pred, true) -> float:
    return float(np.mean(np.abs(np.subtract(pred, true)) / np.asarray(true)) * 100)


def features(model: EdgeTPUModel, archs, packing: float) -> tuple[np.ndarray, np.ndarray]:
    """Per arch: [array and vector Mcycles, conv/linear layers, 1], and the off-chip and CPU-fallback ms the
    fit does not touch."""
    rows, offchip = [], []
    for arch in archs:
        terms = model.layer_terms(arch)
        array_layers = sum(1 for x, _, _ in terms if x.op in ARRAY_OPS)
        rows.append([sum(c.total(packing) for _, c, _ in terms) / 1e6, array_layers, 1.0])
        offchip.append(sum(b for _, _, b in terms) / (model.params.offchip_gbps * 1e6)
                       + sum(ms for _, ms in model.cpu_fallback_ms(arch)))
    return np.array(rows), np.array(offchip)


def fit(x: np.ndarray, y: np.ndarray, base: EdgeTPUParams) -> EdgeTPUParams:
    coef, _ = nnls(x, y)
    return replace(base, ms_per_mcycle=float(coef[0]), layer_overhead_ms=float(coef[1]), fixed_ms=float(coef[2]))


def _apply(params: EdgeTPUParams, x: np.ndarray, offchip: np.ndarray) -> np.ndarray:
    return x @ np.array([params.ms_per_mcycle, params.layer_overhead_ms, params.fixed_ms]) + offchip


def block_latencies(model: EdgeTPUModel) -> dict:
    """ms of one IBN, fused-IBN and GC-IBN block (expansion 4, 3x3, stride 1) at each of BLOCK_SHAPES."""
    out = {}
    for name, (ch, size) in BLOCK_SHAPES.items():
        blocks = {"ibn": IBN(expand_ratio=4), "fused_ibn": FusedIBN(expand_ratio=4),
                  "gc_ibn": GCIBN(expand_ratio=4, group_size=64)}
        out[name] = {}
        for kind, block in blocks.items():
            layers = block.layers("block", ch, ch, (size, size), 1, 1)
            out[name][kind] = sum(model.layer_ms(x) for x in layers if x.op == "conv")
    return out


def calibrate(model: EdgeTPUModel | None = None, dw_packing: float | None = None) -> CalibrationResult:
    model = model or EdgeTPUModel()
    base = model.params if dw_packing is None else replace(model.params, dw_packing=dw_packing)
    archs = [get_arch(n) for n in CALIBRATION_MODELS]
    y = np.array([MODELS[n].published.latency_ms for n in CALIBRATION_MODELS])
    x, offchip = features(model, archs, base.dw_packing)
    params = fit(x, y - offchip, base)
    loo = []
    for i in range(len(y)):
        keep = np.arange(len(y)) != i
        loo.append(float(_apply(fit(x[keep], (y - offchip)[keep], base), x[i:i + 1], offchip[i:i + 1])[0]))
    fitted = EdgeTPUModel(params, model.cache)
    result = CalibrationResult(params, CALIBRATION_MODELS, y.tolist(), _apply(params, x, offchip).tolist(), loo,
                               block_latencies(fitted))
    model.cache.save()
    return result
