"""How good is a lookup-table predictor? nn-Meter's metrics over architectures drawn from a space:
the share of predictions within +-10% of the measured end-to-end latency, RMSE and Kendall tau.

A shared machine moves every measurement: the same check gave 95% and then 88% within the hour. So the check
re-measures one probe architecture (the first) between the others and reports the spread of those
probe timings; above ``BUSY_CV`` the machine was busy and the figure says so instead of passing as a result."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
from scipy.stats import kendalltau

from ..spec import Arch

BUSY_CV = 0.05  # a probe spread above 5% moves a +-10% verdict for a good share of architectures


@dataclass
class CheckResult:
    target: str
    space: str
    seed: int
    predicted: list[float] = field(default_factory=list)
    measured: list[float] = field(default_factory=list)
    archs: list[str] = field(default_factory=list)
    fit_samples: int = 0
    probe_ms: list[float] = field(default_factory=list)  # the probe arch, re-measured between the others

    @property
    def probe_cv(self) -> float | None:
        """Coefficient of variation of the probe's timings: what the machine did to one unchanged model."""
        if len(self.probe_ms) < 2:
            return None
        return float(np.std(self.probe_ms) / np.mean(self.probe_ms))

    @property
    def busy(self) -> bool:
        cv = self.probe_cv
        return cv is not None and cv > BUSY_CV

    @property
    def errors(self) -> np.ndarray:
        return np.array(self.predicted) / np.array(self.measured) - 1.0

    def summary(self) -> dict:
        e = self.errors
        pred, meas = np.array(self.predicted), np.array(self.measured)
        return {"samples": len(e), "within_10pct": float(np.mean(np.abs(e) <= 0.10)),
                "within_5pct": float(np.mean(np.abs(e) <= 0.05)), "rmse_ms": float(np.sqrt(np.mean((pred - meas) ** 2))),
                "rmspe": float(np.sqrt(np.mean(e**2))), "kendall_tau": float(kendalltau(pred, meas).statistic) if len(e) > 1 else None,
                "median_abs_error": float(np.median(np.abs(e))), "probe_samples": len(self.probe_ms),
                "probe_cv": self.probe_cv, "machine_busy": self.busy}

    def to_dict(self) -> dict:
        return {**asdict(self), "summary": self.summary()}


def check(model, archs: list[Arch], *, target: str, space: str, seed: int, fit_archs: list[Arch] = (),
          progress=None, probe_every: int = 5) -> CheckResult:
    """Fit the overhead on ``fit_archs`` (disjoint from ``archs``) if given, then predict and measure each arch;
    every ``probe_every`` archs (0: never) the first arch is measured again as the machine's noise probe."""
    if fit_archs:
        model.fit_overhead(list(fit_archs))
    result = CheckResult(target, space, seed, fit_samples=len(fit_archs))
    for i, arch in enumerate(archs):
        result.predicted.append(model.predict(arch).total)
        result.measured.append(model.measure(arch))
        result.archs.append(arch.to_json(indent=None))
        if i == 0:
            result.probe_ms.append(result.measured[0])
        elif probe_every and (i % probe_every == 0 or i == len(archs) - 1):
            result.probe_ms.append(model.measure(archs[0]))
        if progress:
            progress(i + 1, len(archs), result)
    return result
