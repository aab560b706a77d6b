"""The arithmetic of the SKILL-MIX reference code's aggregation, in float32 as it does it.

The public reference (github.com/LeoYu/skill-mix, ``aggregate_metrics.py``) stacks
the k + 3 points of every grading row into a float32 array of shape
(generation rounds, grading runs, combinations, k + 3) and reduces it axis by axis.
Its printed numbers depend on float32 rounding (a mean of thirds differs from the
float64 one by about 4e-8), so this module does the same reductions with numpy on
the same shapes and dtypes; tests/data/skillmix-reference/RULES.md (section 8.6)
describes them, and the `reference` scoring profile (harness.scoring) feeds them.

1. Grading runs: ``vote`` is the float32 mean over runs rounded half to even
   (1, 0.5, 0.5 -> 1; 1, 0, 0.5 -> 0), ``average`` the float32 mean itself.
2. Per round and combination, the ten metrics of ``METRICS`` from S (sum of the
   skill values) and T (sum of the other three). Values are not clipped: a point
   read as 10.5 counts as 10.5.
3. Generation rounds: ``max`` or ``average``.
4. Over combinations: the mean, the standard deviation with ddof 1, and the
   reference's uncertainty std / sqrt(n).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

# The reference's metric names (its --pts_agg_method), and ours for the three the papers report.
PAPER_METRICS = {
    "full_marks": "all_points_earned_binary",
    "all_skills": "all_skills_and_good_rest",
    "skill_fraction": "average_over_skills_filtered",
}
OVER_ROUNDS = ("max", "average")  # the reference's --gen_pts_agg_method; "max" is the best round


def _parts(points: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    return points[:, :, :k].sum(axis=2), points[:, :, k:].sum(axis=2)


def _full_marks(points: np.ndarray, k: int) -> np.ndarray:
    return np.where(points.sum(axis=2) == points.shape[2], 1, 0)


def _split_skills_vs_rest(points: np.ndarray, k: int) -> np.ndarray:
    skills, others = _parts(points, k)
    return np.where(skills == k, 1, 0) + np.where(others >= points.shape[2] - k - 1, 1, 0)


def _all_skills(points: np.ndarray, k: int) -> np.ndarray:
    skills, others = _parts(points, k)
    return np.where(skills == k, 1, 0) * np.where(others >= points.shape[2] - k - 1, 1, 0)


def _skill_fraction(points: np.ndarray, k: int) -> np.ndarray:
    skills, others = _parts(points, k)
    return np.where(others == points.shape[2] - k, skills / k, 0)


def _skills_sum_filtered(points: np.ndarray, k: int) -> np.ndarray:
    skills, others = _parts(points, k)
    return np.where(others == points.shape[2] - k, skills, 0)


# (rounds, combinations, k + 3) float32 -> (rounds, combinations); int64 for the yes/no metrics.
METRICS: dict[str, Callable[[np.ndarray, int], np.ndarray]] = {
    "all_points_earned_binary": _full_marks,
    "all_skills_and_good_rest": _all_skills,
    "average_over_skills_filtered": _skill_fraction,
    "split_skills_vs_rest_binary": _split_skills_vs_rest,
    "sum": lambda points, k: points.sum(axis=2),
    "average": lambda points, k: points.mean(axis=2),
    "rescaled_sum": lambda points, k: (points.sum(axis=2) / points.shape[2]) ** points.shape[2],
    "sum_over_skills": lambda points, k: points[:, :, :k].sum(axis=2),
    "average_over_skills": lambda points, k: points[:, :, :k].mean(axis=2),
    "sum_over_skills_filtered": _skills_sum_filtered,
}


def as_points(values: Sequence[Sequence[Sequence[Sequence[float]]]]) -> np.ndarray:
    """Nested values (rounds, runs, combinations, k + 3) as the float32 array the reference builds."""
    return np.asarray(values, dtype=np.float64).astype(np.float32)


def combine_runs(points: np.ndarray, method: str) -> np.ndarray:
    """(rounds, runs, combinations, k + 3) -> (rounds, combinations, k + 3): ``vote`` or ``average``."""
    mean = points.mean(axis=1)
    if method == "vote":
        return np.rint(mean)
    if method == "average":
        return mean
    raise ValueError(f"grading runs combine by vote or average, not {method!r}")


def over_rounds(values: np.ndarray, method: str) -> np.ndarray:
    """(rounds, combinations) -> (combinations,): the best round (``max``) or the mean over rounds."""
    if method == "max":
        return values.max(axis=0)
    if method == "average":
        return values.mean(axis=0)
    raise ValueError(f"generation rounds combine by max or average, not {method!r}")


@dataclass(frozen=True)
class Summary:
    """One metric over combinations, as the reference computes and prints it."""

    value: float  # the mean, computed in the metric's dtype and widened exactly
    std: float  # ddof = 1; nan for fewer than two combinations
    uncertainty: float  # std / sqrt(n), the number printed after the value
    per_combination: tuple[float, ...]  # what the mean is taken over, for a bootstrap CI

    def to_dict(self) -> dict[str, float]:
        return {"value": self.value, "std": self.std, "uncertainty": self.uncertainty}


def summarise(values: np.ndarray) -> Summary:
    """Mean, std (ddof 1) and std / sqrt(n) of per-combination values, in their own dtype."""
    n = values.shape[0]
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        # n = 0 or 1 gives nan, as the reference prints it; numpy warns about it, we do not.
        warnings.simplefilter("ignore", RuntimeWarning)
        mean, std = values.mean(), values.std(ddof=1)
        uncertainty = float(np.float64(std) / np.sqrt(n)) if n else math.nan
    return Summary(float(mean), float(std), uncertainty, tuple(float(value) for value in values))


def aggregate(
    points: np.ndarray, k: int, *, runs: str, valid: Sequence[int], metrics: Sequence[str] = tuple(METRICS)
) -> dict[str, dict[str, Summary]]:
    """Every metric, over the ``valid`` combinations, with the best round and the mean over rounds.

    ``points`` is (rounds, runs, combinations, k + 3) float32, each row already holding the
    sentence point and the name filter; ``valid`` are combination positions in that array.
    """
    if points.ndim != 4 or points.shape[3] != k + 3:
        raise ValueError(f"points must be (rounds, runs, combinations, {k + 3}), got {points.shape}")
    combined = combine_runs(points, runs)
    chosen = list(valid)
    result: dict[str, dict[str, Summary]] = {}
    for name in metrics:
        per_round = METRICS[name](combined, k)[:, chosen]
        result[name] = {method: summarise(over_rounds(per_round, method)) for method in OVER_ROUNDS}
    return result
