"""SKILL-MIX task metrics: vote grading runs, score combinations, and average over a task.

The pipeline for one task is:

1. ``majority_vote`` turns the grading runs of one answer into one Score of
   binary points (None where no grading run judged that point);
   ``earned_fraction`` instead gives each point the fraction of runs that earned it.
2. A generation round is *scored* when its combined Score is complete.
3. ``combination_scores`` gives the three SKILL-MIX metrics for one scored round.
4. ``score_combination`` takes the best round per metric (and the mean over rounds).
5. ``task_metrics`` averages over scored combinations, with percentile-bootstrap CIs.

Unscored rounds and combinations are counted and reported, never turned into zeros.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass

from harness.core.stats import MetricValue, json_ready
from judges.rubric import Score, is_earned

METRIC_NAMES = ("full_marks", "all_skills", "skill_fraction")


def majority_vote(grading_runs: Sequence[Score]) -> Score:
    """Vote each rubric point across grading runs.

    A point is 1 when a strict majority of the runs that judged it earned it, else 0.
    A tie (e.g. one run says 1, one says 0, the third run lost that point) gives 0:
    the conservative reading, so a point is never awarded on a split jury.
    A point that no run judged is None.
    """
    if not grading_runs:
        raise ValueError("majority_vote needs at least one grading run")
    first = grading_runs[0]
    if any(run.k != first.k for run in grading_runs):
        raise ValueError(f"grading runs disagree on k: {[run.k for run in grading_runs]}")
    voted: list[float | None] = []
    for values in zip(*(run.points for run in grading_runs), strict=True):
        present = [value for value in values if value is not None]
        if not present:
            voted.append(None)
            continue
        earned = sum(1 for value in present if is_earned(value))
        voted.append(1.0 if earned > len(present) - earned else 0.0)
    return first.with_points(voted)


def earned_fraction(grading_runs: Sequence[Score]) -> Score:
    """Each point's fraction of earned values among the runs that judged it (None where none did).

    Half points are not earned (``is_earned``), as in the vote; so with three runs a point
    is 0, 1/3, 2/3 or 1, and only a unanimous point counts as a whole one.
    """
    if not grading_runs:
        raise ValueError("earned_fraction needs at least one grading run")
    first = grading_runs[0]
    if any(run.k != first.k for run in grading_runs):
        raise ValueError(f"grading runs disagree on k: {[run.k for run in grading_runs]}")
    averaged: list[float | None] = []
    for values in zip(*(run.points for run in grading_runs), strict=True):
        present = [value for value in values if value is not None]
        averaged.append(sum(bool(is_earned(value)) for value in present) / len(present) if present else None)
    return first.with_points(averaged)


@dataclass(frozen=True)
class CombinationScores:
    """The three SKILL-MIX metrics for one set of k+3 binary points."""

    full_marks: float
    all_skills: float
    skill_fraction: float


# Sums of fractions such as 1/3 + 2/3 need not be exact in binary floating point.
_TOLERANCE = 1e-9


def combination_scores(score: Score) -> CombinationScores:
    """The three metrics of one scored generation round: a complete Score of combined points in [0, 1].

    S is the sum of the skill values and T that of the other three: full marks need
    S = k and T = 3, all skills S = k and T >= 2, and the skill fraction is S / k when
    T = 3, else 0. With voted (0/1) points these count points earned; with points
    averaged over grading runs a point counts by the fraction of runs that earned it.
    """
    if not score.complete or any(not 0 <= value <= 1 for value in score.points):
        raise ValueError(
            f"a round's score must be complete with values in [0, 1] (combine runs first), got {list(score.points)}"
        )
    k, skills, others = score.k, score.skills_total(), score.others_total()
    all_others = len(score.others)
    every_skill = skills >= k - _TOLERANCE
    every_other = others >= all_others - _TOLERANCE
    return CombinationScores(
        full_marks=float(every_skill and every_other),
        all_skills=float(every_skill and others >= all_others - 1 - _TOLERANCE),
        skill_fraction=skills / k if every_other else 0.0,
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


def score_combination(rounds: Sequence[Score | None]) -> CombinationResult | None:
    """Best-of-rounds and mean-over-rounds scores; None when no round is scored."""
    scored = [combination_scores(score) for score in rounds if score is not None and score.complete]
    if not scored:
        return None
    columns = {name: [getattr(s, name) for s in scored] for name in METRIC_NAMES}
    return CombinationResult(
        best=CombinationScores(**{name: max(values) for name, values in columns.items()}),
        mean=CombinationScores(**{name: sum(values) / len(values) for name, values in columns.items()}),
        rounds_scored=len(scored),
        rounds_unscored=len(rounds) - len(scored),
    )


@dataclass(frozen=True)
class MetricEstimate(MetricValue):
    """A task metric with its bootstrap CI, and the SKILL-MIX reference code's own uncertainty,
    std / sqrt(n) over combinations, where the scoring profile reports it (else None)."""

    uncertainty: float | None = None


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
    full_marks: MetricEstimate
    all_skills: MetricEstimate
    skill_fraction: MetricEstimate
    full_marks_mean: MetricEstimate
    all_skills_mean: MetricEstimate
    skill_fraction_mean: MetricEstimate
    # The `reference` profile's ten metrics of the SKILL-MIX reference code, by its names, each
    # with the best round ("max") and the mean over rounds ("average"): value, std, uncertainty.
    reference_metrics: dict[str, dict[str, dict[str, float]]] | None = None

    def to_dict(self) -> dict[str, object]:
        return json_ready(asdict(self))  # type: ignore[return-value]


def task_metrics(
    rounds_by_combination: Mapping[int, Sequence[Score | None]],
    k: int,
    *,
    seed: int = 0,
) -> TaskMetrics:
    """Metrics for one task from each combination's per-round voted scores.

    A round is None when it has no usable grade. Every metric's CI uses the same
    seed, so the resampled combinations are the same across metrics.
    """
    results: list[CombinationResult] = []
    unscored = 0
    rounds_unscored = 0
    for index in sorted(rounds_by_combination):
        rounds = rounds_by_combination[index]
        result = score_combination(rounds)
        if result is None:
            unscored += 1
            rounds_unscored += len(rounds)
        else:
            results.append(result)
            rounds_unscored += result.rounds_unscored
    fields: dict[str, MetricEstimate] = {}
    for name in METRIC_NAMES:
        fields[name] = MetricEstimate.mean_of([getattr(r.best, name) for r in results], seed=seed)
        fields[f"{name}_mean"] = MetricEstimate.mean_of([getattr(r.mean, name) for r in results], seed=seed)
    return TaskMetrics(
        k=k,
        n=len(results),
        unscored=unscored,
        n_rounds_unscored=rounds_unscored,
        **fields,
    )
