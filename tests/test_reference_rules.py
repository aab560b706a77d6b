"""The `reference` scoring profile's rules, one by one, on small hand-written cases.

Independent of the fixture trees (tests/test_reference_scoring.py checks those end to
end): the sentence rule, the substring name filter, zero-filling short parses, the vote
that rounds half to even, the float32 arithmetic, and how the two profiles differ on
the same grades.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from harness.core.store import AnswerKey, Generation, Grade, ReferenceGrade
from harness.scoring import GradedAnswer, scoring_profile
from harness.scoring_reference import aggregate, as_points, combine_runs, summarise
from harness.skillmix_tree import reference_points
from judges import reference_rules
from judges.rubric import Score

SKILLS = ("red herring", "self serving bias")  # k = 2: at most one sentence


@pytest.mark.parametrize(
    ("text", "sentences"),
    [
        ("", 1),
        ("One. Two.", 2),
        ("One.  Two after two spaces.", 1),
        ("One.\nTwo after a line break.", 1),
        ("Line one\nLine two", 1),
        ('"Why?" she asked.', 1),
        ('"Why?" She asked.', 2),
        ('"Stop." "Why?" he said.', 2),
        ("He said \u201cStop.\u201d Then he left.", 1),  # curly quotes are not in its set
        ("Dr. Ada came.", 1),
        ("Dr.  Ada came.", 2),  # the protection eats one space only
        ("DR. Ada came.", 2),  # case-sensitive
        ("Mrs. Ada and Prof. Bo met.", 1),
        ("St. Ives is far.", 2),  # St is not protected
        ("It cost 5. 6 more came.", 1),
        ("e.g. the rule.", 1),
        ("i.e. The rule.", 2),
        ("Wait... Then go.", 2),
        ("The end. lowercase follows.", 1),
        ("Is it? (Yes.) No.", 1),
        ("Is it Mr? No way.", 1),
    ],
)
def test_reference_sentence_rule(text: str, sentences: int) -> None:
    assert reference_rules.count_sentences(text) == sentences


@pytest.mark.parametrize(
    ("text", "skill", "named"),
    [
        ("Two red herrings swam by.", "red herring", True),  # plural: a substring
        ("Red Herring, said the cat.", "red herring", True),  # case
        ("Accidentally, he fell.", "accident (fallacy)", True),  # the part before "(" only
        ("a loaded question", "complex question (loaded question with implicit assumption )", False),
        ("self-serving bias", "self serving bias", False),  # a hyphen is not a space
        ("Self Serving Bias", "self serving bias", True),
        ("folk-physics", "folk physics (common knowledge physics)", False),
    ],
)
def test_reference_name_filter_is_a_substring_test(text: str, skill: str, named: bool) -> None:
    assert reference_rules.names_skill(text, skill) is named


def test_short_long_and_missing_values_are_read_by_position() -> None:
    # k = 2: five items. A reply that skipped the topic row has its sense value in the topic position.
    assert list(Score.by_position([1.0, 1.0, 1.0, 0.0], 2).points) == [1.0, 1.0, 1.0, 0.0, 0.0]
    assert list(Score.by_position([1, 1, 1, 1, 1, 6], 2).points) == [1.0, 1.0, 1.0, 1.0, 1.0]  # cut
    assert list(Score.by_position([], 2).points) == [0.0] * 5
    assert list(Score.by_position([1, None, 1, 1, None], 2).points) == [1.0, 0.0, 1.0, 1.0, 0.0]


def test_points_cells_as_the_reference_reads_a_file() -> None:
    # a file whose cells hold at most one value each is read as numbers: no points anywhere
    assert reference_points(["6.0", "", "1.0"]) == [(), (), ()]
    assert reference_points(["1.0,0.5", "6.0", ""]) == [(1.0, 0.5), (6.0,), ()]


@pytest.mark.parametrize(
    ("runs", "voted", "averaged"),
    [
        ([1, 0.5, 0.5], 1.0, 2 / 3),  # half points take part in the mean, and 2/3 rounds to 1
        ([1, 0, 0.5], 0.0, 0.5),  # exactly 0.5 rounds to the even neighbour, 0
        ([0.5, 0.5, 0.5], 0.0, 0.5),
        ([1, 0], 0.0, 0.5),  # a tie of two runs is 0
        ([10.5, 1, 1], 4.0, 12.5 / 3),  # no clipping: a cell read as 10.5 counts as 10.5
        ([2.5, 2.5, 2.5], 2.0, 2.5),  # 2.5 rounds to 2
        ([3.5], 4.0, 3.5),  # 3.5 rounds to 4
    ],
)
def test_vote_is_the_float32_mean_rounded_half_to_even(runs: list[float], voted: float, averaged: float) -> None:
    points = as_points([[[[value]] for value in runs]])  # one round, len(runs) runs, one combination, one item
    assert float(combine_runs(points, "vote")[0, 0, 0]) == voted
    assert float(combine_runs(points, "average")[0, 0, 0]) == pytest.approx(averaged, rel=1e-7)
    assert combine_runs(points, "average").dtype == np.float32


def test_aggregate_by_hand() -> None:
    # k = 2, one round, one run, four combinations: full marks [0, 0, 1, 1], skill fraction [0, 0.5, 1, 1]
    rows = [[0, 0, 1, 1, 1], [1, 0, 1, 1, 1], [1, 1, 1, 1, 1], [1, 1, 1, 1, 1]]
    result = aggregate(as_points([[rows]]), 2, runs="vote", valid=range(4))
    full = result["all_points_earned_binary"]["max"]
    assert full.value == 0.5 and full.std == pytest.approx(math.sqrt(1 / 3), abs=1e-15)
    assert full.uncertainty == pytest.approx(math.sqrt(1 / 3) / 2, abs=1e-15)
    fraction = result["average_over_skills_filtered"]["max"]
    assert fraction.value == 0.625 and fraction.per_combination == (0.0, 0.5, 1.0, 1.0)
    # the skill fraction is float32 all the way: its std is the float32 one, not the float64 one
    assert fraction.std == float(np.array([0, 0.5, 1, 1], dtype=np.float32).std(ddof=1))
    assert fraction.std != float(np.std([0, 0.5, 1, 1], ddof=1))
    # leaving combinations out: n = 1 has no std, n = 0 no value
    one = aggregate(as_points([[rows]]), 2, runs="vote", valid=[2])["all_points_earned_binary"]["max"]
    assert one.value == 1.0 and math.isnan(one.std) and math.isnan(one.uncertainty)
    none = summarise(np.array([], dtype=np.float32))
    assert math.isnan(none.value) and math.isnan(none.uncertainty)


def test_best_round_and_mean_over_rounds() -> None:
    # k = 1, two rounds of one combination: full marks in round 2 only
    rounds = [[[[0, 1, 1, 1]]], [[[1, 1, 1, 1]]]]
    result = aggregate(as_points(rounds), 1, runs="vote", valid=[0])["all_points_earned_binary"]
    assert (result["max"].value, result["average"].value) == (1.0, 0.5)


def _answer(answer: str, *grades: tuple[tuple[float | None, ...], bool, ReferenceGrade | None]) -> GradedAnswer:
    key = AnswerKey("t", 0, "s", 0)
    generation = Generation(key, "", "", "", "", answer, True, None)
    made = tuple(
        Grade(key, "j", run, "items", "", "", 1, points, usable, reference=reference)
        for run, (points, usable, reference) in enumerate(grades)
    )
    return GradedAnswer(generation, SKILLS, made)


def test_the_profiles_differ_on_the_same_grades() -> None:
    harness, reference = scoring_profile("harness"), scoring_profile("reference")
    full = (1.0, 1.0, 1.0, 1.0, 1.0)
    # half points: (1, 0.5, 0.5) is earned by the reference's vote, not by ours
    halves = _answer("Fine.", ((0.5, 1, 1, 1, 1), True, None), ((0.5, 1, 1, 1, 1), True, None), (full, True, None))
    assert harness.answer_score(halves).skills[0] == 0.0
    assert reference.answer_score(halves).skills[0] == 1.0
    # an unusable run: ours leaves it out (one usable run decides), the reference votes its zeros
    broken = _answer("Fine.", ((None,) * 5, False, None), ((None,) * 5, False, None), (full, True, None))
    assert list(harness.answer_score(broken).points) == [1.0] * 5
    assert list(reference.answer_score(broken).points) == [0.0, 0.0, 0.0, 0.0, 1.0]  # the sentence point stays
    # a line break: one sentence for the reference, two for us (at most one allowed at k = 2)
    lines = _answer("First line.\nSecond line.", (full, True, None))
    assert harness.answer_score(lines).sentences == 0.0 and reference.answer_score(lines).sentences == 1.0
    # the name filter: a plural is caught by the reference's substring test when it is on
    named = _answer("Red herrings everywhere.", (full, True, None))
    assert reference.answer_score(named).skills[0] == 1.0  # off by default
    assert scoring_profile("reference", name_penalty=True).answer_score(named).skills[0] == 0.0
    assert harness.answer_score(named).skills[0] == 1.0  # ours matches whole words: "herrings" is not "herring"


def test_the_reference_profile_scores_an_imported_grade_on_its_stored_points() -> None:
    # our parser read all five values; the reference's parser stored three (a row was cut off)
    stored = ReferenceGrade("1.0,1.0,1.0", (1.0, 1.0, 1.0), 1.0)
    answer = _answer("Fine.", ((1.0,) * 5, True, stored))
    assert list(scoring_profile("reference").answer_score(answer).points) == [1.0, 1.0, 1.0, 0.0, 1.0]
    assert list(scoring_profile("harness").answer_score(answer).points) == [1.0] * 5


def test_filter_skills_leaves_combinations_out() -> None:
    profile = scoring_profile("reference", filter_skills=("red herring",))
    assert profile.leaves_out(SKILLS) and not profile.leaves_out(("metaphor",))
    assert profile.to_dict() == {
        "profile": "reference", "name_penalty": False, "grading_runs": "vote", "filter_skills": ["red herring"]
    }  # fmt: skip
    assert "leaving out combinations with red herring" in profile.describe()


def test_a_combination_missing_a_grading_run_is_unscored_under_the_reference_profile() -> None:
    # The reference code cannot aggregate a tree with a hole; we score the complete combinations.
    full = (1.0, 1.0, 1.0, 1.0, 1.0)
    complete = _answer("Fine.", (full, True, None), (full, True, None))
    missing_run = _answer("Fine.", (full, True, None))
    metrics = scoring_profile("reference").task_metrics({0: [complete], 1: [missing_run]}, 2, rounds=1, runs=2, seed=0)
    assert (metrics.n, metrics.unscored, metrics.n_rounds_unscored) == (1, 1, 1)
    assert metrics.full_marks.value == 1.0 and math.isnan(metrics.full_marks.uncertainty)
