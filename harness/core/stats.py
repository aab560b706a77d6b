"""Small statistics shared by metrics and agreement reports: percentile bootstrap CIs and JSON-safe NaN."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


def percentile_interval(estimates: np.ndarray, confidence: float) -> tuple[float, float]:
    """The central ``confidence`` interval of bootstrap estimates; NaN estimates are skipped."""
    finite = estimates[~np.isnan(estimates)]
    if finite.size == 0:
        return (math.nan, math.nan)
    tail = (1 - confidence) / 2
    low, high = np.quantile(finite, [tail, 1 - tail])
    return (float(low), float(high))


def bootstrap_ci(
    values: Sequence[float],
    *,
    n_resamples: int = 2000,
    seed: int = 0,
    confidence: float = 0.95,
) -> tuple[float, float]:
    """Percentile-bootstrap confidence interval of the mean of ``values``."""
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must lie strictly between 0 and 1, got {confidence}")
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be positive, got {n_resamples}")
    data = np.asarray(values, dtype=float)
    if data.size == 0:
        return (math.nan, math.nan)
    if data.size == 1:
        return (float(data[0]), float(data[0]))
    rng = np.random.default_rng(seed)
    indices = rng.integers(0, data.size, size=(n_resamples, data.size))
    return percentile_interval(data[indices].mean(axis=1), confidence)


@dataclass(frozen=True)
class MetricValue:
    """An estimate with its bootstrap CI (all NaN where undefined, e.g. no combination scored)."""

    value: float
    ci_low: float
    ci_high: float

    @classmethod
    def mean_of(cls, values: Sequence[float], *, seed: int = 0) -> MetricValue:
        """The mean of ``values`` with its percentile-bootstrap 95% CI."""
        mean = sum(values) / len(values) if values else math.nan
        low, high = bootstrap_ci(values, seed=seed)
        return cls(value=mean, ci_low=low, ci_high=high)


def json_ready(value: object) -> object:
    """``value`` with every NaN replaced by None, since JSON has no NaN (undefined -> null)."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {key: json_ready(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_ready(item) for item in value]
    return value
