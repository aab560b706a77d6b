"""Tests for judges.parsing on every recorded GPT-4 reply in the reference data and on synthetic messy replies."""

from __future__ import annotations

import json
import time

import pytest
from click.testing import CliRunner
from conftest import REFERENCE_DIR, missing_reference

from harness.cli.grades import parse_grade as parse_grade_command
from harness.core.errors import HarnessError
from judges.rubric import Score
from judges.styles import parse_grade
from judges.styles import read_reply as read_grade

GRADES_FILE = REFERENCE_DIR / "skillmix-gpt4-grades.jsonl"


def _reference_rows() -> list[dict]:
    if not GRADES_FILE.is_file():
        return []
    return [json.loads(line) for line in GRADES_FILE.read_text(encoding="utf-8").splitlines() if line.strip()]


_ROWS = _reference_rows()
_LINES = range(len(_ROWS)) if _ROWS else [None]  # None: the data is missing (skipped, or failed in CI)


def _row(line: int | None) -> dict:
    if line is None:
        missing_reference(GRADES_FILE)
    return _ROWS[line]


# Skill points read by hand from each reply where the reference parser failed (fewer than k values or
# none). Keyed by 0-based line number, with the topic as a guard against a reordered file. None: the
# reply gives no value for that skill (truncated before it, or no grading at all).
HAND_LABELLED_SKILL_POINTS: dict[int, tuple[str, list[float | None]]] = {
    # "Point earned for <skill>: 0" for all three skills (the answer was empty)
    0: ("Sewing", [0.0, 0.0, 0.0]),
    5: ("Sewing", [0.0, 0.0, 0.0]),
    10: ("Sewing", [0.0, 0.0, 0.0]),
    # bold headers; the reply stops mid-sentence inside "Metaphor" before its point
    1: ("Beekeeping", [0.0, 0.0, None]),
    6: ("Beekeeping", [0.0, 0.0, None]),
    11: ("Beekeeping", [0.0, 0.0, None]),
    # "- Skill: ... Point earned: 0"; the last item ends at "Point earned:" with no number
    3: ("Triathlons", [0.0, 0.0, None]),
    8: ("Triathlons", [0.0, 0.0, None]),
    13: ("Triathlons", [0.0, 0.0, None]),
    # "**Skill:**" headers; the reply stops inside "Emotional Self Regulation"
    4: ("Urbanism", [1.0, 0.0, None]),
    9: ("Urbanism", [1.0, 0.0, None]),
    14: ("Urbanism", [1.0, 0.0, None]),
    # the judge asks for the missing answer and grades nothing
    18: ("Triathlons", [None, None, None]),
    23: ("Triathlons", [None, None, None]),
    28: ("Triathlons", [None, None, None]),
    # numbered items with "'Point earned: 0'." in quotes; the third stops at "'Point earned"
    19: ("Urbanism", [0.0, 0.0, None]),
    24: ("Urbanism", [0.0, 0.0, None]),
    29: ("Urbanism", [0.0, 0.0, None]),
}


def _floats(values: list) -> list[float | None]:
    return [None if value is None else float(value) for value in values]


@pytest.mark.parametrize("line", _LINES)
def test_reference_reply(line: int) -> None:
    row = _row(line)
    k, skills, topic = row["k"], row["skills"], row["topic"]
    points = parse_grade(row["judge_reply"], skills, topic)
    assert len(points) == k + 3
    reference = _floats(row["reference_points"])
    if len(reference) == k + 3:
        assert points == reference
        return
    if len(reference) == k:
        # Older prompt: the rubric listed only the k skills, and the reference parser read all of them.
        assert points[:k] == reference
        assert line not in HAND_LABELLED_SKILL_POINTS
    else:
        expected_topic, expected_skills = HAND_LABELLED_SKILL_POINTS[line]
        assert topic == expected_topic
        assert points[:k] == expected_skills
    # None of these replies grade topic, sense or sentence count: those stay missing, never 0.
    assert points[k:] == [None, None, None]
    assert not Score.from_points(points).usable


@pytest.mark.parametrize("line", _LINES)
def test_reference_reply_same_points_whichever_style_is_named(line: int) -> None:
    row = _row(line)
    by_table = parse_grade(row["judge_reply"], row["skills"], row["topic"], style="table")
    by_items = parse_grade(row["judge_reply"], row["skills"], row["topic"], style="items")
    assert by_table == by_items


def test_hand_labels_cover_exactly_the_failed_reference_parses() -> None:
    if not _ROWS:
        missing_reference(GRADES_FILE)
    failed = {line for line, row in enumerate(_ROWS) if len(row["reference_points"]) < row["k"]}
    assert failed == set(HAND_LABELLED_SKILL_POINTS)


SKILLS = [
    "spatial reasoning",
    "complex question (loaded question with implicit assumption )",
    "metaphor",
]
TOPIC = "Sewing"

CLEAN_TABLE = """Here's the grading table:

| Criteria | Points Earned |
|---|---|
| Correctly illustrates spatial reasoning | 1 |
| Correctly illustrates complex question (loaded question with implicit assumption ) | 0 |
| Correctly illustrates metaphor | 1 |
| Pertains to Sewing | 1 |
| Text makes sense | 1 |
| At most two sentences | 0 |
| Total Points Earned | 4 |

Explanation: the metaphor works; there is no loaded question.
"""


def test_clean_table() -> None:
    reading = read_grade(CLEAN_TABLE, SKILLS, TOPIC)
    assert reading.score.points == (1.0, 0.0, 1.0, 1.0, 1.0, 0.0)
    assert reading.total == 4.0
    assert reading.style == "table"
    assert Score.from_points(reading.score.points).usable


def test_table_rows_out_of_order_bold_paraphrased_half_points() -> None:
    reply = """| **Criteria** | **Points Earned** |
|:--|:--:|
| **Text makes sense** | **1** |
| Illustrates metaphor | 0.5 |
| Number of sentences | 1 |
| Relevance to the topic | 1 |
| Complex question | 1/1 |
| Uses Spatial-Reasoning | 0 |
| **Total Points Earned** | **4.5** |
"""
    assert parse_grade(reply, SKILLS, TOPIC) == [0.0, 1.0, 0.5, 1.0, 1.0, 1.0]


def test_table_skill_by_parenthetical_or_word_overlap() -> None:
    reply = """| Criteria | Points Earned |
|---|---|
| Loaded question with implicit assumption | 1 |
| Reasoning (spatial) | 0 |
| Metaphor | 1 |
| Pertains to Sewing | 1 |
| Makes sense | 0 |
| At most 2 sentences | 1 |
"""
    assert parse_grade(reply, SKILLS, TOPIC) == [0.0, 1.0, 1.0, 1.0, 0.0, 1.0]


def test_table_word_overlap_needs_more_than_half_the_name() -> None:
    skills = ["self serving bias", "emotional self regulation", "red herring"]
    reply = """| Criteria | Points Earned |
|---|---|
| Emotional regulation | 1 |
| Bias | 0 |
| Red herring | 1 |
| Pertains to Triathlons | 1 |
| Makes sense | 1 |
| At most two sentences | 1 |
"""
    # "Emotional regulation" covers 2 of 3 words of its skill; "Bias" only 1 of 3, so it stays
    # unmatched, and with a row out of place it is not read by position either.
    assert parse_grade(reply, skills, "Triathlons") == [None, 1.0, 1.0, 1.0, 1.0, 1.0]


def test_table_missing_rows_are_none() -> None:
    reply = """| Criteria | Points Earned |
|---|---|
| Correctly illustrates metaphor | 1 |
| Pertains to Sewing | 0 |
| Total Points Earned | 1 |
"""
    points = parse_grade(reply, SKILLS, TOPIC)
    assert points == [None, None, 1.0, 0.0, None, None]
    assert not Score.from_points(points).usable


def test_table_position_fallback_only_for_k_plus_3_uninformative_rows() -> None:
    rows = "".join(f"| Item {n} | {value} |\n" for n, value in enumerate([1, 0, 1, 1, 0, 1], start=1))
    reply = f"| Criteria | Points Earned |\n|---|---|\n{rows}| Total Points Earned | 4 |\n"
    assert parse_grade(reply, SKILLS, TOPIC) == [1.0, 0.0, 1.0, 1.0, 0.0, 1.0]
    # one row fewer: no position fallback, nothing is guessed
    fewer = "| Criteria | Points Earned |\n|---|---|\n" + "".join(rows.splitlines(keepends=True)[:5])
    assert parse_grade(fewer, SKILLS, TOPIC) == [None] * 6


def test_table_position_fills_a_vague_row_when_the_others_sit_in_place() -> None:
    reply = """| Criteria | Points Earned |
|---|---|
| Correctly illustrates spatial reasoning | 1 |
| The second skill | 0 |
| Correctly illustrates metaphor | 1 |
| Pertains to Sewing | 1 |
| Text makes sense | 1 |
| At most two sentences | 1 |
"""
    assert parse_grade(reply, SKILLS, TOPIC) == [1.0, 0.0, 1.0, 1.0, 1.0, 1.0]
    # the same vague row, but an informative row is out of place: no position fallback
    swapped = reply.replace(
        "| Text makes sense | 1 |\n| At most two sentences | 1 |",
        "| At most two sentences | 1 |\n| Text makes sense | 1 |",
    )
    assert parse_grade(swapped, SKILLS, TOPIC) == [1.0, None, 1.0, 1.0, 1.0, 1.0]


def test_table_with_extra_column_and_bad_values() -> None:
    reply = """| Criteria | Comment | Points Earned |
|---|---|---|
| Correctly illustrates spatial reasoning | the fabric is folded over | 1 |
| Correctly illustrates complex question | none | N/A |
| Correctly illustrates metaphor | 3 metaphors | 2 |
| Pertains to Sewing | yes | 1 point |
| Text makes sense | yes | ½ |
| At most two sentences | two | 1 |
"""
    # the comment column's "3" is not read; "N/A" and the out-of-range 2 are missing, not 0
    assert parse_grade(reply, SKILLS, TOPIC) == [1.0, None, None, 1.0, 0.5, 1.0]


def test_table_conflicting_duplicate_rows_are_none() -> None:
    reply = """| Criteria | Points Earned |
|---|---|
| Correctly illustrates metaphor | 1 |
| Metaphor | 0 |
| Pertains to Sewing | 1 |
| On topic (Sewing) | 1 |
"""
    assert parse_grade(reply, SKILLS, TOPIC) == [None, None, None, 1.0, None, None]


def test_longer_skill_name_wins_over_the_one_it_contains() -> None:
    skills = ["metaphor", "extended metaphor", "common sense reasoning"]
    reply = """| Criteria | Points Earned |
|---|---|
| Correctly illustrates extended metaphor | 0 |
| Correctly illustrates metaphor | 1 |
| Correctly illustrates common sense reasoning | 1 |
| Pertains to Knots | 1 |
| Text makes sense | 0 |
| At most two sentences | 1 |
"""
    assert parse_grade(reply, skills, "Knots") == [1.0, 0.0, 1.0, 1.0, 0.0, 1.0]


def test_reply_without_a_table_read_as_criterion_lines() -> None:
    reply = """Here's the grading:

Correctly illustrates spatial reasoning: 1
Correctly illustrates complex question: 0
Correctly illustrates metaphor: 1
Pertains to Sewing: 1
Text makes sense: 1
At most two sentences - 1
Total Points Earned: 5
"""
    reading = read_grade(reply, SKILLS, TOPIC, style="table")
    assert reading.score.points == (1.0, 0.0, 1.0, 1.0, 1.0, 1.0)
    assert reading.total == 5.0


def test_per_item_reply_with_all_k_plus_3_items() -> None:
    reply = """Here is my grading of the student's answer about Sewing.

**Spatial Reasoning**: The fabric is folded over the edge of the table. Point earned: 1

**Complex Question (Loaded Question with Implicit Assumption)**: There is a question, "Why did you ruin
the hem again?", which assumes the hem was ruined before.
Point earned: 1

**Metaphor**: No metaphor appears. Point earned: 0

**Pertains to Sewing**: The text is about hemming. Point earned: 1

**Text makes sense**: It reads naturally. Point earned: 0.5

**At most two sentences**: The text has two sentences. Point earned: 1

Grade: 4.5
"""
    reading = read_grade(reply, SKILLS, TOPIC)
    assert reading.score.points == (1.0, 1.0, 0.0, 1.0, 0.5, 1.0)
    assert reading.total == 4.5
    assert reading.style == "items"


def test_per_item_reply_out_of_order_with_labels_after_for() -> None:
    reply = """Point earned for metaphor: 1
Point earned for pertaining to the topic: 0
Point earned for Spatial reasoning: 0.5
Point earned for making sense: 1
Point earned for the sentence limit: 0
Point earned for complex question: 1
Grade: 3.5
"""
    assert parse_grade(reply, SKILLS, TOPIC) == [0.5, 1.0, 1.0, 0.0, 1.0, 0.0]


def test_per_item_prefers_headings_over_mentions_in_explanations() -> None:
    reply = """Here is my grading of the answer about Sewing, judged on the topic and length too.

1) The student's text illustrates 'spatial reasoning'.
The answer about sewing places the fabric over the machine, which makes sense spatially.
Point earned: 1
The spatial layout is clear.

2) The student's text illustrates 'complex question'.
There is no question; the metaphor of the river is not a question either.
Point earned: 0

3) The student's text illustrates 'metaphor'.
Point earned: 1

Grade: 2
"""
    assert parse_grade(reply, SKILLS, TOPIC) == [1.0, 0.0, 1.0, None, None, None]


def test_per_item_topic_name_in_passing_is_not_a_label() -> None:
    reply = """Grading the Sewing answer now.
The student's text shows spatial reasoning well. Point earned: 1
The student's text has no complex question. Point earned: 0
The student's text uses a metaphor. Point earned: 1
Grade: 2
"""
    # "Sewing" comes first in the opening line, but a bare topic name outside a heading is the
    # answer's subject, not a criterion.
    assert parse_grade(reply, SKILLS, TOPIC) == [1.0, 0.0, 1.0, None, None, None]


def test_per_item_remark_after_a_point_does_not_label_the_next_item() -> None:
    reply = """Spatial reasoning is shown. Point earned: 1 The metaphor comes later.
The text has no complex question. Point earned: 0
Metaphor: none. Point earned: 0
"""
    assert parse_grade(reply, SKILLS, TOPIC) == [1.0, 0.0, 0.0, None, None, None]


def test_per_item_position_fallback_only_for_k_plus_3_uninformative_items() -> None:
    values = [1, 1, 0, 1, 1, 0]
    reply = "".join(f"Point earned: {value}\n" for value in values) + "Grade: 4\n"
    assert parse_grade(reply, SKILLS, TOPIC) == [float(value) for value in values]
    # only k values with no labels (the older k-item prompt): nothing can be placed safely
    short = "".join(f"Point earned: {value}\n" for value in values[:3])
    assert parse_grade(short, SKILLS, TOPIC) == [None] * 6


def test_per_item_total_lines_are_not_items() -> None:
    reply = """Spatial reasoning: shown. Point earned: 1
Complex question: absent. Point earned: 0
Metaphor: shown. Point earned: 1
Pertains to Sewing: yes. Point earned: 1
Makes sense: yes. Point earned: 1
At most two sentences: yes. Point earned: 1
Total points earned: 5
"""
    reading = read_grade(reply, SKILLS, TOPIC)
    assert reading.score.points == (1.0, 0.0, 1.0, 1.0, 1.0, 1.0)
    assert reading.total == 5.0


def test_per_item_missing_value_and_odd_formatting() -> None:
    reply = """- Spatial reasoning: **Point earned:** 1/1
- Complex question: 'Point earned: 0'.
- Metaphor: Point earned:
- Topic (Sewing): Point earned = 1
- Sense: Point Earned: 2
"""
    assert parse_grade(reply, SKILLS, TOPIC) == [1.0, 0.0, None, 1.0, None, None]


def test_reply_with_no_grades_at_all() -> None:
    reply = "I'm sorry, but the student's answer is missing. Could you share it so I can grade it?"
    reading = read_grade(reply, SKILLS, TOPIC)
    assert reading.score.points == (None,) * 6
    assert reading.style is None
    assert not Score.from_points(reading.score.points).usable
    assert parse_grade("", SKILLS, TOPIC) == [None] * 6


def test_named_style_falls_back_to_the_other() -> None:
    assert parse_grade(CLEAN_TABLE, SKILLS, TOPIC, style="items") == [
        1.0,
        0.0,
        1.0,
        1.0,
        1.0,
        0.0,
    ]
    reading = read_grade(CLEAN_TABLE, SKILLS, TOPIC, style="items")
    assert reading.style == "table"


def test_unknown_style_is_a_user_error() -> None:
    with pytest.raises(HarnessError, match="table, items"):
        parse_grade(CLEAN_TABLE, SKILLS, TOPIC, style="json")


def test_a_score_is_usable_when_skills_topic_and_sense_are_present() -> None:
    assert Score.from_points([1, 0, 1, 1, 0, None]).usable
    assert not Score.from_points([1, None, 1, 1, 0, 1]).usable
    assert not Score.from_points([1, 0, 1, None, 0, 1]).usable
    assert not Score.from_points([1, 0, 1, 1, None, 1]).usable
    with pytest.raises(HarnessError, match="got 3 values"):
        Score.from_points([1, 0, 1])


def test_cli_parse_grade_on_a_reference_reply(reference_dir) -> None:
    rows = [json.loads(line) for line in (reference_dir / "skillmix-gpt4-grades.jsonl").read_text().splitlines()]
    row = next(row for row in rows if len(row["reference_points"]) == row["k"])
    result = CliRunner().invoke(
        parse_grade_command,
        ["--skills", ";".join(row["skills"]), "--topic", row["topic"]],
        input=row["judge_reply"],
    )
    assert result.exit_code == 0, result.output
    points = json.loads(result.output)["points"]
    assert points == _floats(row["reference_points"]) + [None, None, None]


def test_cli_parse_grade_table_style() -> None:
    result = CliRunner().invoke(
        parse_grade_command,
        ["--skills", ";".join(SKILLS), "--topic", TOPIC, "--style", "table"],
        input=CLEAN_TABLE,
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == {"points": [1.0, 0.0, 1.0, 1.0, 1.0, 0.0]}


def test_cli_parse_grade_rejects_empty_skills() -> None:
    result = CliRunner().invoke(parse_grade_command, ["--skills", " ; ", "--topic", TOPIC], input="x")
    assert result.exit_code != 0
    assert isinstance(result.exception, HarnessError)


def _long_reply(markers: int) -> str:
    """A per-item reply that rambles on: one justification line that mentions rubric items, then a
    point, ``markers`` times over, and no grade of the topic or sense (so every parser reads it)."""
    lines = []
    for number in range(markers):
        lines += [
            f"{number}. **Metaphor**: the text uses spatial reasoning and a metaphor; it is about {TOPIC}.",
            f"Point earned: {number % 2}",
        ]
    return "\n".join(lines) + "\nGrade: 1"


def _fastest_parse(reply: str, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        parse_grade(reply, SKILLS, TOPIC)
        times.append(time.perf_counter() - start)
    return min(times)


def test_parsing_time_grows_linearly_with_the_reply() -> None:
    # 4,000 lines against 200: a linear parser takes about 20 times as long; the quadratic one it
    # replaced took about 400 times as long (8k lines: 96 s). The bound leaves room for a noisy machine.
    small, large = _long_reply(100), _long_reply(2000)
    assert parse_grade(large, SKILLS, TOPIC)[0] is None  # one skill given many different values: no value
    small_time = _fastest_parse(small, repeats=5)
    large_time = _fastest_parse(large, repeats=2)
    assert large_time < 100 * small_time, (small_time, large_time)
