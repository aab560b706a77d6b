"""Tests for judges.rubric: rubric order, the sentence-counting rule and the code-side corrections."""

from __future__ import annotations

import json
import re

import pytest

from harness.core.errors import HarnessError
from harness.core.names import names_skill, skill_name
from judges.rubric import (
    RUBRIC_KINDS,
    RubricItem,
    Score,
    count_sentences,
    is_earned,
    item_count,
    item_kinds,
    rubric_items,
    sentence_limit,
)


def final_points(points, answer, skills, *, name_penalty=True):
    """The corrected values of a judge's reading, in rubric order."""
    return list(Score.from_points(points).corrected(answer, skills, name_penalty=name_penalty).points)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", 0),
        ("   \n\t ", 0),
        ("One sentence.", 1),
        ("One. Two! Three?", 3),
        ("No end punctuation at all", 1),
        ("First sentence. And a trailing fragment", 2),
        # abbreviations are not ends
        ("Dr. Smith met Mr. Jones and Mrs. Lee. They talked.", 2),
        ("Ms. Park lives on St. Mark's Place. Prof. Ito visits.", 2),
        ("Bring tools, e.g. a needle, i.e. the small one. Then sew.", 2),
        ("Apples, pears, etc. are fruit. Carrots vs. beets is harder.", 2),
        ("Martin Luther King Jr. spoke. Sammy Davis Sr. sang.", 2),
        # single capital initials are not ends
        ("J. K. Rowling wrote it. It sold well.", 2),
        ("George R. R. Martin writes slowly.", 1),
        # decimals are not ends
        ("Pi is about 3.14 and e is 2.72. Both are irrational.", 2),
        ("The price rose by 0.5 percent", 1),
        # an ellipsis is one end, however many dots
        ("Wait... what happened?", 2),
        ("Well.... fine.", 2),
        ("He paused\u2026 then left.", 2),
        ("And then...", 1),
        # runs of ! and ? count once
        ("Really?! Yes!!!", 2),
        # closing quotes and brackets after the end mark
        ('He said, "Stop." Then he left.', 2),
        ("She whispered \u201cgo now.\u201d He went.", 2),
        ("(This is an aside.) The main point follows.", 2),
        ('Sarah: "Align it properly. Emily: "Have you tried measuring?"', 2),
        # no whitespace after the mark: not an end
        ("Visit example.com today", 1),
        ('"Stop."Then he left.', 1),
        # stray punctuation alone is not a sentence
        ("...", 0),
        ("Hi! ! Bye.", 2),
        # line breaks alone do not end sentences
        ("First line\nsecond line.", 1),
    ],
)
def test_count_sentences(text: str, expected: int) -> None:
    assert count_sentences(text) == expected


def test_dotted_initialism_is_not_an_end_documented_tradeoff() -> None:
    # A dotted initialism at a sentence end is read as an abbreviation (see the module docstring).
    assert count_sentences("They moved to the U.S. Today they are happy.") == 1
    assert count_sentences("They moved to the US. Today they are happy.") == 2


@pytest.mark.parametrize(("k", "limit"), [(1, 1), (2, 1), (3, 2), (4, 3), (5, 4)])
def test_sentence_limit(k: int, limit: int) -> None:
    assert sentence_limit(k) == limit


def test_sentence_limit_rejects_k_below_one() -> None:
    with pytest.raises(HarnessError, match="at least 1"):
        sentence_limit(0)


def test_rubric_items_order_and_labels() -> None:
    items = rubric_items(["metaphor", "red herring (distraction)", "modus ponens"], "Sewing")
    assert items == [
        RubricItem("skill", "metaphor"),
        RubricItem("skill", "red herring (distraction)"),
        RubricItem("skill", "modus ponens"),
        RubricItem("topic", "Sewing"),
        RubricItem("sense", "makes sense"),
        RubricItem("sentences", "at most 2 sentences"),
    ]
    assert [item.kind for item in items[-4:]] == list(RUBRIC_KINDS)
    assert [item.criterion for item in items[2:]] == [
        "correctly illustrates modus ponens",
        "pertains to Sewing",
        "text makes sense",
        "at most 2 sentences",
    ]


def test_rubric_items_singular_sentence_limit() -> None:
    assert rubric_items(["metaphor"], "Knots")[-1].label == "at most 1 sentence"
    assert rubric_items(["metaphor", "irony"], "Knots")[-1].label == "at most 1 sentence"


@pytest.mark.parametrize(("skills", "topic"), [([], "Sewing"), (["metaphor"], "  "), ("metaphor", "Sewing")])
def test_rubric_items_rejects_bad_input(skills: object, topic: str) -> None:
    with pytest.raises(HarnessError):
        rubric_items(skills, topic)  # type: ignore[arg-type]


SKILLS = ["metaphor", "folk physics (common knowledge physics)", "self serving bias"]


def test_final_points_overrides_the_judge_sentence_point() -> None:
    two_sentences = "The thread is a river. It never ends."
    three_sentences = "The thread is a river. It never ends. Ever."
    # k = 3 allows 2 sentences: the judge's 0 becomes 1 and its 1 becomes 0.
    assert final_points([1, 1, 1, 1, 1, 0], two_sentences, SKILLS)[-1] == 1.0
    assert final_points([1, 1, 1, 1, 1, 1], three_sentences, SKILLS)[-1] == 0.0
    # computed even where the judge gave no sentence value
    assert final_points([1, 1, 1, 1, 1, None], two_sentences, SKILLS)[-1] == 1.0


def test_final_points_name_penalty_on_and_off() -> None:
    answer = "Her Metaphor was a river, and the folk physics of water held. Nothing more."
    judge = [1, 1, 1, 1, 1, 1]
    assert final_points(judge, answer, SKILLS) == [0.0, 0.0, 1.0, 1.0, 1.0, 1.0]
    assert final_points(judge, answer, SKILLS, name_penalty=False) == [
        1.0,
        1.0,
        1.0,
        1.0,
        1.0,
        1.0,
    ]


def test_name_penalty_uses_the_part_before_the_parenthesis() -> None:
    assert skill_name("folk physics (common knowledge physics)") == "folk physics"
    assert skill_name("  Complex Question (loaded question )") == "complex question"
    # the parenthetical alone does not trigger the penalty
    assert not names_skill("This is common knowledge physics.", "folk physics (common knowledge physics)")
    assert names_skill("FOLK PHYSICS says so.", "folk physics (common knowledge physics)")


def test_name_penalty_matches_whole_words_with_spaces_or_hyphens() -> None:
    assert names_skill("A self-serving bias, clearly.", "self serving bias")
    assert names_skill("A self  serving\nbias.", "self serving bias")
    assert not names_skill("Metaphors abound.", "metaphor")
    assert not names_skill("A metaphorical river.", "metaphor")
    assert not names_skill("Its ironyx is odd.", "irony")
    assert names_skill("Occam\u2019s razor cuts.", "Occam's razor")


def test_final_points_keeps_missing_values_missing() -> None:
    answer = "A metaphor, plainly."
    points = final_points([None, 0.5, None, None, None, None], answer, SKILLS)
    # the named skill stays None (unscored), not 0; the sentence point is still computed
    assert points == [None, 0.5, None, None, None, 1.0]


def test_final_points_penalises_half_points_too() -> None:
    assert final_points([0.5, 1, 1, 1, 1, 1], "A metaphor.", SKILLS)[0] == 0.0


def test_final_points_rejects_wrong_length() -> None:
    with pytest.raises(HarnessError, match="cannot be corrected against 3 skills"):
        final_points([1, 1, 1, 1, 1], "text", SKILLS)


def test_a_score_knows_its_parts_and_layout() -> None:
    score = Score.from_points([1, 0.5, None, 1, 0, 1])
    assert score.k == 3 and score.skills == (1.0, 0.5, None)
    assert (score.topic, score.sense, score.sentences) == (1.0, 0.0, 1.0) == score.others
    assert score.points == (1.0, 0.5, None, 1.0, 0.0, 1.0)
    assert not score.complete and score.usable is False
    assert (score.skills_earned(), score.others_earned(), score.earned()) == (1, 2, 3)
    assert Score.empty(2).points == (None,) * 5 and not Score.empty(2).usable
    assert item_count(3) == 6 == len(item_kinds(3)) == len(rubric_items(["a", "b", "c"], "t"))
    assert item_kinds(2) == ("skill", "skill", "topic", "sense", "sentences")
    with pytest.raises(HarnessError, match="expected 6 values"):
        score.with_points([1, 1, 1, 1, 1])


@pytest.mark.parametrize(
    ("value", "earned"),
    [(None, None), (1, True), (1.0, True), (0, False), (0.5, False), (0.0, False)],
)
def test_is_earned(value: float | None, earned: bool | None) -> None:
    assert is_earned(value) is earned


_ABBREVIATION_LIKE = re.compile(r"\b(?:Dr|Mr|Mrs|Ms|St|Prof|Jr|Sr|vs|etc)\.|\b[A-Z]\.|\b(?:[A-Za-z]\.){2,}")


def test_sentence_counts_against_the_reference(reference_dir) -> None:
    rows = [json.loads(line) for line in (reference_dir / "skillmix-gpt4-grades.jsonl").read_text().splitlines()]
    counted = [row for row in rows if row.get("reference_sentence_count") is not None]
    assert counted, "no reference sentence counts found"
    agree = 0
    for row in counted:
        answer, theirs = row["student_answer"], row["reference_sentence_count"]
        ours = count_sentences(answer)
        agree += ours == theirs
        if not answer.strip():
            # Intended difference: the reference counts an empty answer as 1 sentence; we count 0.
            # The sentence point is the same either way (both are within any limit).
            assert (ours, theirs) == (0, 1)
        elif not _ABBREVIATION_LIKE.search(answer):
            assert ours == theirs, answer
        if row.get("reference_sentence_point") is not None:
            ours_point = 1.0 if ours <= sentence_limit(row["k"]) else 0.0
            assert ours_point == row["reference_sentence_point"], answer
    empty = sum(not row["student_answer"].strip() for row in counted)
    # 36 rows: we agree on every non-empty answer (33) and differ on the 3 empty ones.
    assert agree == len(counted) - empty
