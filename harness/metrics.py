"""SKILL-MIX task metrics: vote grading runs, score combinations, and average over a task.

The pipeline for one task is:

1. ``majority_vote`` turns the grading runs of one answer into k+3 binary points
   (None where no grading run judged that point).
2. A generation round is *scored* when its voted points hold no None.
3. ``combination_scores`` gives the three SKILL-MIX metrics for one scored round.
4. ``score_combination`` takes the best round per metric (and the mean over rounds).
5. ``task_metrics`` averages over scored combinations, with percentile-bootstrap CIs.

Unscored rounds and combinations are counted and reported, never turned into zeros.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass

import numpy as np

# The three rubric points after the k skill points: topic, sense, sentence limit.
NON_SKILL_POINTS = 3
METRIC_NAMES = ("full_marks", "all_skills", "skill_fraction")


def _is_earned(value: float) -> bool:
    # Judges sometimes give half points; SKILL-MIX counts only a full point as earned.
    return value >= 1


def majority_vote(grading_runs: Sequence[Sequence[float | None]]) -> list[int | None]:
    """Vote each rubric point across grading runs.

    A point is 1 when a strict majority of the runs that judged it earned it, else 0.
    A tie (e.g. one run says 1, one says 0, the third run lost that point) gives 0:
    the conservative reading, so a point is never awarded on a split jury.
    A point that no run judged is None.
    """
    if not grading_runs:
        raise ValueError("majority_vote needs at least one grading run")
    width = len(grading_runs[0])
    if any(len(run) != width for run in grading_runs):
        raise ValueError(
            f"grading runs disagree on the number of points: {[len(r) for r in grading_runs]}"
        )
    voted: list[int | None] = []
    for position in range(width):
        present = [run[position] for run in grading_runs if run[position] is not None]
        if not present:
            voted.append(None)
            continue
        earned = sum(1 for value in present if _is_earned(value))
        voted.append(1 if earned > len(present) - earned else 0)
    return voted


@dataclass(frozen=True)
class CombinationScores:
    """The three SKILL-MIX metrics for one set of k+3 binary points."""

    full_marks: float
    all_skills: float
    skill_fraction: float


def combination_scores(points: Sequence[int], k: int) -> CombinationScores:
    """Score one scored generation round: ``points`` are k skill points, then topic, sense, sentences."""
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    if len(points) != k + NON_SKILL_POINTS:
        raise ValueError(f"expected {k + NON_SKILL_POINTS} points for k={k}, got {len(points)}")
    if any(point not in (0, 1) for point in points):
        raise ValueError(f"points must be 0 or 1 (vote first), got {list(points)}")
    skills = sum(points[:k])
    others = sum(points[k:])
    return CombinationScores(
        full_marks=float(skills == k and others == NON_SKILL_POINTS),
        all_skills=float(skills == k and others >= NON_SKILL_POINTS - 1),
        skill_fraction=skills / k if others == NON_SKILL_POINTS else 0.0,
    )


@dataclass(frozen=True)
class CombinationResult:
    """One combination's score over its generation rounds.

    ``best`` takes the maximum over scored rounds *per metric*: each metric is the
    combination's best showing on that metric, so the three may come from different
    rounds (a round with full marks always also has the best all-skills and skill
    fraction, so this only matters for combinations without full marks).
    """

    best: CombinationScores
    mean: CombinationScores
    rounds_scored: int
    rounds_unscored: int


def _round_is_scored(points: Sequence[int | None] | None) -> bool:
    return points is not None and all(point is not None for point in points)


def score_combination(
    rounds: Sequence[Sequence[int | None] | None], k: int
) -> CombinationResult | None:
    """Best-of-rounds and mean-over-rounds scores; None when no round is scored."""
    scored = [combination_scores(points, k) for points in rounds if _round_is_scored(points)]  # type: ignore[arg-type]
    if not scored:
        return None
    columns = {name: [getattr(s, name) for s in scored] for name in METRIC_NAMES}
    return CombinationResult(
        best=CombinationScores(**{name: max(values) for name, values in columns.items()}),
        mean=CombinationScores(
            **{name: sum(values) / len(values) for name, values in columns.items()}
        ),
        rounds_scored=len(scored),
        rounds_unscored=len(rounds) - len(scored),
    )


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
    """A task-level metric with its bootstrap CI (all NaN when no combination was scored)."""

    value: float
    ci_low: float
    ci_high: float


def _metric_value(values: list[float], seed: int) -> MetricValue:
    mean = sum(values) / len(values) if values else math.nan
    low, high = bootstrap_ci(values, seed=seed)
    return MetricValue(value=mean, ci_low=low, ci_high=high)


def json_ready(value: object) -> object:
    """``value`` with every NaN replaced by None, since JSON has no NaN (undefined -> null)."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {key: json_ready(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_ready(item) for item in value]
    return value


@dataclass(frozen=True)
class TaskMetrics:
    """SKILL-MIX metrics of one task, averaged over scored combinations.

    ``full_marks`` etc. use each combination's best round; the ``*_mean`` fields use
    each combination's mean over its scored rounds. ``n`` counts scored combinations;
    ``unscored`` counts combinations with no scored round, which are left out of ``n``.
    """

    k: int
    n: int
    unscored: int
    n_rounds_unscored: int
    full_marks: MetricValue
    all_skills: MetricValue
    skill_fraction: MetricValue
    full_marks_mean: MetricValue
    all_skills_mean: MetricValue
    skill_fraction_mean: MetricValue

    def to_dict(self) -> dict[str, object]:
        return json_ready(asdict(self))  # type: ignore[return-value]


def task_metrics(
    rounds_by_combination: Mapping[int, Sequence[Sequence[int | None] | None]],
    k: int,
    *,
    seed: int = 0,
) -> TaskMetrics:
    """Metrics for one task from each combination's per-round voted points.

    A round is None when it has no usable grade. Every metric's CI uses the same
    seed, so the resampled combinations are the same across metrics.
    """
    results: list[CombinationResult] = []
    unscored = 0
    rounds_unscored = 0
    for index in sorted(rounds_by_combination):
        rounds = rounds_by_combination[index]
        result = score_combination(rounds, k)
        if result is None:
            unscored += 1
            rounds_unscored += len(rounds)
        else:
            results.append(result)
            rounds_unscored += result.rounds_unscored
    fields: dict[str, MetricValue] = {}
    for name in METRIC_NAMES:
        fields[name] = _metric_value([getattr(r.best, name) for r in results], seed)
        fields[f"{name}_mean"] = _metric_value([getattr(r.mean, name) for r in results], seed)
    return TaskMetrics(
        k=k,
        n=len(results),
        unscored=unscored,
        n_rounds_unscored=rounds_unscored,
        **fields,
    )
