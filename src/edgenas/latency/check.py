"""How good is a lookup-table predictor? nn-Meter's metrics over architectures drawn from a space:
the share of predictions within +-10% of the measured end-to-end latency, RMSE and Kendall tau."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
from scipy.stats import kendalltau

from ..spec import Arch


@dataclass
class CheckResult:
    target: str
    space: str
    seed: int
    predicted: list[float] = field(default_factory=list)
    measured: list[float] = field(default_factory=list)
    archs: list[str] = field(default_factory=list)
    fit_samples: int = 0

    @property
    def errors(self) -> np.ndarray:
        return np.array(self.predicted) / np.array(self.measured) - 1.0

    def summary(self) -> dict:
        e = self.errors
        pred, meas = np.array(self.predicted), np.array(self.measured)
        return {"samples": len(e), "within_10pct": float(np.mean(np.abs(e) <= 0.10)),
                "within_5pct": float(np.mean(np.abs(e) <= 0.05)), "rmse_ms": float(np.sqrt(np.mean((pred - meas) ** 2))),
                "rmspe": float(np.sqrt(np.mean(e**2))), "kendall_tau": float(kendalltau(pred, meas).statistic),
                "median_abs_error": float(np.median(np.abs(e)))}

    def to_dict(self) -> dict:
        return {**asdict(self), "summary": self.summary()}


def check(model, archs: list[Arch], *, target: str, space: str, seed: int, fit_archs: list[Arch] = (),
          progress=None) -> CheckResult:
    """Fit the overhead on ``fit_archs`` (disjoint from ``archs``) if given, then predict and measure each arch."""
    if fit_archs:
        model.fit_overhead(list(fit_archs))
    result = CheckResult(target, space, seed, fit_samples=len(fit_archs))
    for i, arch in enumerate(archs):
        result.predicted.append(model.predict(arch).total)
        result.measured.append(model.measure(arch))
        result.archs.append(arch.to_json(indent=None))
        if progress:
            progress(i + 1, len(archs), result)
    return result
