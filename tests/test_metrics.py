"""SKILL-MIX metrics: voting, per-combination scores, best-of-rounds and task averages."""

import json
import math

import numpy as np
import pytest

from harness.core.stats import bootstrap_ci
from harness.metrics import CombinationScores, combination_scores, earned_fraction, score_combination, task_metrics
from harness.metrics import majority_vote as vote_scores
from judges.rubric import Score


def S(points):
    return None if points is None else Score.from_points(points)


def majority_vote(runs):
    """Vote runs given as value lists (padded with None to a k=1 score); the voted values, as given."""
    width = len(runs[0]) if runs else 0
    padded = [S(list(run) + [None] * (4 - len(run))) for run in runs]
    voted = list(vote_scores(padded).points)
    return [None if v is None else int(v) for v in voted[:width]]


def _rounds(rounds):
    return [S(points) for points in rounds]


# ---------------------------------------------------------------- majority_vote


def test_majority_vote_per_point():
    runs = [
        [1, 0, 1, None],
        [1, 1, 0, None],
        [0, 1, 1, None],
    ]
    # each of the first three points is earned by 2 of 3 runs; nobody judged the last
    assert majority_vote(runs) == [1, 1, 1, None]


def test_majority_vote_unanimous_zero_and_one():
    assert majority_vote([[1, 0], [1, 0], [1, 0]]) == [1, 0]


def test_half_points_are_not_earned():
    # 0.5 counts as not earned: 1 earned vs 2 not earned -> 0
    assert majority_vote([[0.5], [0.5], [1]]) == [0]
    # a point above 1 (a judge's typo such as 2) still counts as earned
    assert majority_vote([[2.0], [1.0], [0.0]]) == [1]


def test_tie_is_not_earned():
    # one run lost the point: 1 earned vs 1 not earned is a tie -> 0
    assert majority_vote([[1], [0], [None]]) == [0]
    # four runs split 2-2 -> 0
    assert majority_vote([[1], [1], [0], [0]]) == [0]


def test_vote_uses_only_runs_that_judged_the_point():
    # only one run judged the point and earned it: 1 of 1 is a strict majority
    assert majority_vote([[1], [None], [None]]) == [1]
    assert majority_vote([[0.5], [None], [None]]) == [0]


def test_majority_vote_rejects_bad_input():
    with pytest.raises(ValueError):
        majority_vote([])
    with pytest.raises(ValueError):
        vote_scores([S([1, 1, 1, 1]), S([1, 1, 1, 1, 1])])


# ---------------------------------------------------------------- combination_scores


@pytest.mark.parametrize(
    "points, expected",
    [
        # k = 3: three skill points, then topic, sense, sentences
        ([1, 1, 1, 1, 1, 1], (1.0, 1.0, 1.0)),
        # all skills, only 2 of 3 others: no full marks, all skills yes, fraction needs all 3 -> 0
        ([1, 1, 1, 1, 1, 0], (0.0, 1.0, 0.0)),
        ([1, 1, 1, 0, 1, 1], (0.0, 1.0, 0.0)),
        # 2 of 3 skills with all others: fraction 2/3, all skills no
        ([1, 1, 0, 1, 1, 1], (0.0, 0.0, 2 / 3)),
        # all skills but only 1 of 3 others: all skills needs >= 2 others
        ([1, 1, 1, 0, 0, 1], (0.0, 0.0, 0.0)),
        ([0, 0, 0, 1, 1, 1], (0.0, 0.0, 0.0)),
        ([0, 0, 0, 0, 0, 0], (0.0, 0.0, 0.0)),
    ],
)
def test_combination_scores_k3(points, expected):
    assert combination_scores(S(points)) == CombinationScores(*expected)


def test_combination_scores_k1():
    assert combination_scores(S([1, 1, 1, 1])) == CombinationScores(1.0, 1.0, 1.0)
    assert combination_scores(S([0, 1, 1, 1])) == CombinationScores(0.0, 0.0, 0.0)
    assert combination_scores(S([1, 0, 1, 1])) == CombinationScores(0.0, 1.0, 0.0)


def test_combination_scores_rejects_uncombined_points():
    with pytest.raises(ValueError):
        combination_scores(S([1, None, 1, 1, 1]))
    with pytest.raises(ValueError):
        combination_scores(S([1, 2, 1, 1, 1]))  # a raw judge value outside [0, 1]


def test_combination_scores_of_points_averaged_over_runs():
    # k = 2; a point earned by 2 of 3 runs counts 2/3: no full marks, and the skill fraction is (1 + 2/3) / 2
    assert combination_scores(S([1, 2 / 3, 1, 1, 1])) == CombinationScores(0.0, 0.0, (1 + 2 / 3) / 2)
    # others 1 + 1/3 + 2/3 = 2: all skills yes (T >= 2), skill fraction no (T < 3)
    assert combination_scores(S([1, 1, 1 / 3, 2 / 3, 1])) == CombinationScores(0.0, 1.0, 0.0)
    assert combination_scores(S([1, 1, 1, 1, 1])) == CombinationScores(1.0, 1.0, 1.0)


def test_earned_fraction_counts_half_points_as_not_earned():
    runs = [S([1, 0.5, 1, None, 1]), S([1, 1, 0, None, 1]), S([0, 1, 1, None, 1])]
    assert list(earned_fraction(runs).points) == [2 / 3, 2 / 3, 2 / 3, None, 1.0]
    with pytest.raises(ValueError):
        earned_fraction([])


# ---------------------------------------------------------------- rounds and tasks


def test_best_round_is_taken_per_metric():
    # round 1: all skills, 2/3 others -> (0, 1, 0); round 2: 1/2 skills, all others -> (0, 0, 0.5)
    result = score_combination(_rounds([[1, 1, 1, 1, 0], [0, 1, 1, 1, 1]]))
    assert result.best == CombinationScores(0.0, 1.0, 0.5)
    assert result.mean == CombinationScores(0.0, 0.5, 0.25)


def test_round_with_missing_point_is_unscored():
    result = score_combination(_rounds([[1, None, 1, 1, 1], None, [0, 0, 1, 1, 1]]))
    assert (result.rounds_scored, result.rounds_unscored) == (1, 2)
    # only the third round counts, so a None is never read as a zero or a one
    assert result.best == CombinationScores(0.0, 0.0, 0.0)
    assert score_combination(_rounds([None, [1, 1, None, 1, 1]])) is None
    assert score_combination([]) is None


def _task():
    # k = 2, five points per round
    return {
        # rounds: (1,1,1) and (0,0,0.5); third unscored. best (1,1,1); mean (.5,.5,.75)
        0: [[1, 1, 1, 1, 1], [1, 0, 1, 1, 1], None],
        # rounds: (0,1,0) and (0,0,.5); third has a None. best (0,1,.5); mean (0,.5,.25)
        1: [[1, 1, 1, 1, 0], [0, 1, 1, 1, 1], [1, None, 1, 1, 1]],
        # nothing usable: combination unscored, 3 unscored rounds
        2: [None, None, None],
        # every round (0,0,0)
        3: [[0, 0, 1, 1, 1]] * 3,
    }


def test_task_metrics_by_hand():
    metrics = task_metrics({c: _rounds(r) for c, r in _task().items()}, 2, seed=1)
    assert (metrics.n, metrics.unscored, metrics.n_rounds_unscored) == (3, 1, 5)
    # best of rounds averaged over the three scored combinations
    assert metrics.full_marks.value == pytest.approx((1 + 0 + 0) / 3)
    assert metrics.all_skills.value == pytest.approx((1 + 1 + 0) / 3)
    assert metrics.skill_fraction.value == pytest.approx((1 + 0.5 + 0) / 3)
    # mean over rounds averaged over combinations
    assert metrics.full_marks_mean.value == pytest.approx((0.5 + 0 + 0) / 3)
    assert metrics.all_skills_mean.value == pytest.approx((0.5 + 0.5 + 0) / 3)
    assert metrics.skill_fraction_mean.value == pytest.approx((0.75 + 0.25 + 0) / 3)
    for name in ("full_marks", "all_skills", "skill_fraction", "skill_fraction_mean"):
        value = getattr(metrics, name)
        assert value.ci_low <= value.value <= value.ci_high
        # a mean of values in [0, 1] resamples to [0, 1]
        assert 0 <= value.ci_low and value.ci_high <= 1


def test_task_metrics_json_and_empty_task():
    data = task_metrics({c: _rounds(r) for c, r in _task().items()}, 2).to_dict()
    assert json.loads(json.dumps(data))["full_marks"]["value"] == pytest.approx(1 / 3)
    empty = task_metrics({0: [None], 1: []}, 2)
    assert (empty.n, empty.unscored, empty.n_rounds_unscored) == (0, 2, 1)
    assert math.isnan(empty.full_marks.value)
    # JSON has no NaN, so undefined values become null
    assert json.loads(json.dumps(empty.to_dict(), allow_nan=False))["full_marks"]["value"] is None


# ---------------------------------------------------------------- bootstrap_ci


def test_bootstrap_small_cases():
    assert all(math.isnan(v) for v in bootstrap_ci([]))
    assert bootstrap_ci([0.4]) == (0.4, 0.4)
    assert bootstrap_ci([1.0, 1.0, 1.0]) == (1.0, 1.0)


def test_bootstrap_is_seeded():
    # continuous values, so two seeds cannot land on the same percentiles by chance
    values = [0.1, 0.93, 0.5, 0.27, 0.66, 0.08, 0.41, 0.79, 0.35, 0.52, 0.14, 0.88]
    assert bootstrap_ci(values, seed=3) == bootstrap_ci(values, seed=3)
    assert bootstrap_ci(values, seed=3) != bootstrap_ci(values, seed=4)
    low, high = bootstrap_ci(values)
    assert low <= np.mean(values) <= high


def test_bootstrap_width_matches_normal_theory():
    # 400 values, 30% ones: standard error sqrt(.3 * .7 / 400) = 0.0229, so a 95% interval
    # is about 2 * 1.96 * 0.0229 = 0.090 wide
    values = [1] * 120 + [0] * 280
    low, high = bootstrap_ci(values, n_resamples=4000)
    assert high - low == pytest.approx(0.0898, rel=0.15)
    assert low < 0.3 < high
    narrow_low, narrow_high = bootstrap_ci(values, n_resamples=4000, confidence=0.5)
    assert low < narrow_low < narrow_high < high


def test_bootstrap_rejects_bad_settings():
    with pytest.raises(ValueError):
        bootstrap_ci([1, 0], confidence=1.0)
    with pytest.raises(ValueError):
        bootstrap_ci([1, 0], n_resamples=0)
