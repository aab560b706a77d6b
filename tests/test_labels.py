"""The human labelling sheet: writing, reading back, validation and derived outcomes."""

import csv

import pytest

from harness.core.errors import HarnessError
from judges.agreement import Rating
from judges.labels import (
    LabelRow,
    full_marks_outcomes,
    item_kinds,
    read_label_sheet,
    rubric_item_key,
    split_item_key,
    write_label_sheet,
)


def _rows():
    return [
        LabelRow.for_answer("c1-r1", "skillmix-k2", ["metaphor", "irony"], "sewing", "A stitch."),
        LabelRow.for_answer(
            "c2-r1",
            "skillmix-k3",
            ["hyperbole", "red herring", "modus ponens"],
            "dogs",
            'Dogs, "obviously", rule.\nSecond line.',
        ),
    ]


def _fill(path, cells):
    """Fill item cells: cells maps (row index, column) -> text."""
    with path.open(newline="", encoding="utf-8") as handle:
        table = list(csv.reader(handle))
    header = table[0]
    for (index, column), value in cells.items():
        table[index + 1][header.index(column)] = value
    with path.open("w", newline="", encoding="utf-8") as handle:
        csv.writer(handle).writerows(table)


def test_item_kinds_and_keys():
    assert item_kinds(2) == ("skill", "skill", "topic", "sense", "sentences")
    assert rubric_item_key("run/c1", 3) == "run/c1/item_3"
    assert split_item_key("run/c1/item_3") == ("run/c1", 3)
    with pytest.raises(ValueError):
        split_item_key("c1")


def test_sheet_layout(tmp_path):
    path = tmp_path / "sheet.csv"
    write_label_sheet(path, _rows())
    with path.open(newline="", encoding="utf-8") as handle:
        table = list(csv.DictReader(handle))
    # widest row has k = 3, so items run to 6
    assert [c for c in table[0] if c.startswith("item_")] == [f"item_{i}" for i in range(1, 7)]
    assert all(row[f"item_{i}"] == "" for row in table for i in range(1, 7))
    rubric = table[0]["rubric"]
    assert "item_1: correctly illustrates metaphor" in rubric
    assert "item_3: pertains to sewing" in rubric
    assert "item_5:" in rubric and "item_6" not in rubric
    assert table[1]["answer"] == 'Dogs, "obviously", rule.\nSecond line.'
    assert table[1]["skills"] == "hyperbole; red herring; modus ponens"


def test_round_trip_with_blanks(tmp_path):
    path = tmp_path / "sheet.csv"
    write_label_sheet(path, _rows())
    _fill(path, {(0, "item_1"): "1", (0, "item_2"): "0", (0, "item_4"): " 1 ", (1, "item_6"): "0"})
    ratings = read_label_sheet(path, {"c1-r1", "c2-r1"})
    assert ratings == [
        Rating("c1-r1/item_1", "skill", "human", 1),
        Rating("c1-r1/item_2", "skill", "human", 0),
        # item_3 (topic) left blank: missing, not a 0
        Rating("c1-r1/item_4", "sense", "human", 1),
        Rating("c2-r1/item_6", "sentences", "human", 0),
    ]
    assert read_label_sheet(path, None, rater="human-2")[0].rater == "human-2"


@pytest.mark.parametrize(
    "cells, message",
    [
        ({(0, "item_2"): "2"}, "row 2 (id 'c1-r1'): item_2 must be 0, 1 or blank, got '2'"),
        ({(1, "item_1"): "yes"}, "row 3 (id 'c2-r1'): item_1 must be 0, 1 or blank"),
        ({(1, "item_1"): "0.5"}, "row 3"),
        # row 2 has k = 2, so only items 1..5 apply
        ({(0, "item_6"): "1"}, "row 2 (id 'c1-r1'): item_6 is filled, but k=2"),
        ({(1, "k"): "x"}, "row 3 (id 'c2-r1'): k must be a positive whole number"),
        ({(1, "id"): "c1-r1"}, "row 3 (id 'c1-r1'): id already used on row 2"),
        ({(1, "id"): "c9"}, "row 3 (id 'c9'): unknown id"),
        ({(0, "id"): ""}, "row 2: empty id"),
    ],
)
def test_sheet_errors_name_the_row(tmp_path, cells, message):
    # row 3's answer spans two lines of the file; the row number still counts records
    path = tmp_path / "sheet.csv"
    write_label_sheet(path, _rows())
    _fill(path, cells)
    with pytest.raises(HarnessError) as error:
        read_label_sheet(path, {"c1-r1", "c2-r1"})
    assert str(path) in str(error.value) and message in str(error.value)


def test_sheet_structure_errors(tmp_path):
    path = tmp_path / "other.csv"
    path.write_text("item,label\nq,1\n", encoding="utf-8")
    with pytest.raises(HarnessError, match="row 1: missing column"):
        read_label_sheet(path, None)
    path.write_text("id,k,item_1,item_2,item_3\nc1,1,1,1,1\n", encoding="utf-8")
    with pytest.raises(HarnessError, match="k=1 needs column item_4"):
        read_label_sheet(path, None)
    with pytest.raises(HarnessError, match="cannot read"):
        read_label_sheet(tmp_path / "missing.csv", None)


def test_rows_of_empty_cells_are_skipped(tmp_path):
    path = tmp_path / "sheet.csv"
    path.write_text("id,k,item_1,item_2,item_3,item_4\nc1,1,1,,0,\n,,,,,\n", encoding="utf-8")
    assert len(read_label_sheet(path, ["c1"])) == 2


def test_write_refuses_to_overwrite(tmp_path):
    path = tmp_path / "sheet.csv"
    write_label_sheet(path, _rows())
    _fill(path, {(0, "item_1"): "1"})
    with pytest.raises(HarnessError, match="already exists"):
        write_label_sheet(path, _rows())
    assert read_label_sheet(path, None)  # the filled label survived
    write_label_sheet(path, _rows(), overwrite=True)
    assert read_label_sheet(path, None) == []


def test_label_row_validation():
    with pytest.raises(ValueError):
        LabelRow("x", "t", 2, ("a",), "topic", "text", ("1", "2", "3", "4", "5"))
    with pytest.raises(ValueError):
        LabelRow("x", "t", 1, ("a",), "topic", "text", ("1", "2", "3"))
    with pytest.raises(ValueError):
        write_label_sheet("/nonexistent/never-written.csv", [_rows()[0], _rows()[0]])


def test_full_marks_outcomes():
    def rating(answer, position, label, rater="human"):
        return Rating(rubric_item_key(answer, position), "any", rater, label)

    ratings = [
        # all four items of a k=1 answer earned -> 1
        *(rating("a", p, 1) for p in range(1, 5)),
        # one 0 decides even with items missing -> 0
        rating("b", 1, 0),
        # all present items earned but item 4 missing -> no outcome
        *(rating("c", p, 1) for p in range(1, 4)),
        # a second rater is kept apart
        *(rating("a", p, 1 if p < 4 else 0, rater="judge") for p in range(1, 5)),
    ]
    outcomes = full_marks_outcomes(ratings, {"a": 1, "b": 1, "c": 1})
    assert sorted(outcomes, key=lambda r: (r.item, r.rater)) == [
        Rating("a", "full_marks", "human", 1),
        Rating("a", "full_marks", "judge", 0),
        Rating("b", "full_marks", "human", 0),
    ]
    with pytest.raises(ValueError):
        full_marks_outcomes(ratings, {"a": 1})
