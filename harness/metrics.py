"""SKILL-MIX task metrics: vote grading runs, score combinations, and average over a task.

The pipeline for one task is:

1. ``majority_vote`` turns the grading runs of one answer into one Score of
   binary points (None where no grading run judged that point).
2. A generation round is *scored* when its voted Score is complete.
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


@dataclass(frozen=True)
class CombinationScores:
    """The three SKILL-MIX metrics for one set of k+3 binary points."""

    full_marks: float
    all_skills: float
    skill_fraction: float


def combination_scores(score: Score) -> CombinationScores:
    """The three metrics of one scored generation round (a complete, voted Score of 0/1 values)."""
    if not score.complete or any(value not in (0, 1) for value in score.points):
        raise ValueError(f"a round's score must be complete and binary (vote first), got {list(score.points)}")
    k, skills, others = score.k, score.skills_earned(), score.others_earned()
    all_others = len(score.others)
    return CombinationScores(
        full_marks=float(skills == k and others == all_others),
        all_skills=float(skills == k and others >= all_others - 1),
        skill_fraction=skills / k if others == all_others else 0.0,
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
        mean=CombinationScores(
            **{name: sum(values) / len(values) for name, values in columns.items()}
        ),
        rounds_scored=len(scored),
        rounds_unscored=len(rounds) - len(scored),
    )


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
    fields: dict[str, MetricValue] = {}
    for name in METRIC_NAMES:
        fields[name] = MetricValue.mean_of([getattr(r.best, name) for r in results], seed=seed)
        fields[f"{name}_mean"] = MetricValue.mean_of([getattr(r.mean, name) for r in results], seed=seed)
    return TaskMetrics(
        k=k,
        n=len(results),
        unscored=unscored,
        n_rounds_unscored=rounds_unscored,
        **fields,
    )
