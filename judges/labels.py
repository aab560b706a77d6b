"""The human labelling sheet: write answers to a CSV for people to grade, read their labels back.

One row per graded answer. Columns ``item_1`` .. ``item_{k+3}`` hold the rubric
points in rubric order (k skills, then topic, sense, sentences); the ``rubric``
column spells out what each item means for that row. A person fills each item
cell with 1 (earned), 0 (not earned) or leaves it blank (not judged, which stays
missing and is never read as 0). ``comment`` is free text and is not read.

Row numbers in error messages count the header as row 1, as a spreadsheet does.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from harness.core.errors import HarnessError
from judges.agreement import FULL_MARKS, Rating, csv_rows
from judges.rubric import item_count, item_kinds, rubric_items

HUMAN = "human"
FIXED_COLUMNS = ("id", "task", "k", "topic", "skills", "answer", "rubric")
ITEM_COLUMN = re.compile(r"item_(\d+)")


def rubric_item_key(answer_id: str, position: int) -> str:
    """The ``Rating.item`` of one rubric item (1-based position) of one answer.

    Judge ratings built from the run store must use the same key so they line up
    with human labels.
    """
    return f"{answer_id}/item_{position}"


def split_item_key(item: str) -> tuple[str, int]:
    """Inverse of ``rubric_item_key``."""
    answer_id, sep, position = item.rpartition("/item_")
    if not sep or not position.isdigit():
        raise ValueError(f"{item!r} is not a rubric item key (answer/item_N)")
    return answer_id, int(position)


@dataclass(frozen=True)
class LabelRow:
    """One answer to be labelled; ``rubric`` holds the wording of its k+3 rubric items in order
    (e.g. "correctly illustrates metaphor", "pertains to sewing", ...)."""

    id: str
    task: str
    k: int
    skills: tuple[str, ...]
    topic: str
    answer: str
    rubric: tuple[str, ...]

    def __post_init__(self) -> None:
        if self.k < 1 or len(self.skills) != self.k or len(self.rubric) != item_count(self.k):
            raise ValueError(
                f"label row {self.id!r}: k={self.k} needs {self.k} skills and {item_count(self.k)} rubric "
                f"items, got {len(self.skills)} and {len(self.rubric)}"
            )

    @classmethod
    def for_answer(cls, id: str, task: str, skills: Sequence[str], topic: str, answer: str) -> LabelRow:
        """A row whose rubric wording comes from ``judges.rubric.rubric_items``."""
        items = rubric_items(skills, topic)
        wording = tuple(item.criterion for item in items)
        return cls(id, task, len(skills), tuple(skills), topic, answer, wording)

    def explanation(self) -> str:
        """The ``rubric`` cell: what each item column means for this row."""
        return "; ".join(f"item_{position}: {text}" for position, text in enumerate(self.rubric, 1))


def write_label_sheet(path: str | Path, rows: Sequence[LabelRow], *, overwrite: bool = False) -> None:
    """Write a sheet with empty item cells; refuses to replace an existing sheet unless told to."""
    path = Path(path)
    if path.exists() and not overwrite:
        raise HarnessError(f"{path} already exists and may hold labels; choose another path or overwrite it")
    ids = [row.id for row in rows]
    if len(set(ids)) != len(ids):
        raise ValueError("label rows must have distinct ids")
    width = max((item_count(row.k) for row in rows), default=0)
    item_columns = [f"item_{position}" for position in range(1, width + 1)]
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle = path.open("w", newline="", encoding="utf-8")
    except OSError as error:
        raise HarnessError(f"cannot write the label sheet {path}: {error.strerror}; choose another path") from None
    with handle:
        writer = csv.writer(handle)
        writer.writerow([*FIXED_COLUMNS, *item_columns, "comment"])
        for row in rows:
            fixed = [
                row.id,
                row.task,
                row.k,
                row.topic,
                "; ".join(row.skills),
                row.answer,
                row.explanation(),
            ]
            writer.writerow([*fixed, *([""] * width), ""])


def _row_ratings(
    row: dict[str, str | None],
    where: str,
    answer_id: str,
    k: int,
    item_columns: dict[int, str],
    rater: str,
) -> list[Rating]:
    for position, column in item_columns.items():
        if position > item_count(k) and (row.get(column) or "").strip():
            raise HarnessError(f"{where}: {column} is filled, but k={k} has only items 1..{item_count(k)}")
    ratings = []
    for position, kind in enumerate(item_kinds(k), 1):
        if position not in item_columns:
            raise HarnessError(f"{where}: k={k} needs column item_{position}, which the sheet lacks")
        value = (row.get(item_columns[position]) or "").strip()
        if value == "":
            continue
        if value not in ("0", "1"):
            raise HarnessError(f"{where}: item_{position} must be 0, 1 or blank, got {value!r}")
        ratings.append(Rating(rubric_item_key(answer_id, position), kind, rater, int(value)))
    return ratings


def read_label_sheet(path: str | Path, known_ids: Collection[str] | None, *, rater: str = HUMAN) -> list[Rating]:
    """Ratings from a filled sheet; blank cells are missing labels.

    ``known_ids`` lists the answer ids the sheet may name (None accepts any id).
    """
    path = Path(path)
    with csv_rows(path, "label sheet") as reader:
        header = reader.fieldnames or []
        missing = [column for column in ("id", "k") if column not in header]
        if missing:
            raise HarnessError(f"{path} row 1: missing column(s) {', '.join(missing)}; is this a label sheet?")
        item_columns = {int(match.group(1)): column for column in header if (match := ITEM_COLUMN.fullmatch(column))}
        ratings: list[Rating] = []
        seen: dict[str, int] = {}
        for number, row in enumerate(reader, start=2):
            if not any((value or "").strip() for value in row.values() if isinstance(value, str)):
                continue  # spreadsheets leave rows of empty cells behind
            answer_id = (row["id"] or "").strip()
            where = f"{path} row {number} (id {answer_id!r})"
            if not answer_id:
                raise HarnessError(f"{path} row {number}: empty id")
            if known_ids is not None and answer_id not in known_ids:
                raise HarnessError(f"{where}: unknown id; it names no answer in this run")
            if answer_id in seen:
                raise HarnessError(f"{where}: id already used on row {seen[answer_id]}")
            seen[answer_id] = number
            k_text = (row["k"] or "").strip()
            if not k_text.isdecimal() or int(k_text) < 1:
                raise HarnessError(f"{where}: k must be a positive whole number, got {k_text!r}")
            ratings += _row_ratings(row, where, answer_id, int(k_text), item_columns, rater)
    return ratings


def full_marks_outcomes(ratings: Sequence[Rating], k_by_answer: Mapping[str, int]) -> list[Rating]:
    """Combination-level outcomes (criterion "full_marks") from per-item ratings.

    Per answer and rater: 0 as soon as one item is 0; 1 when all k+3 items are 1;
    no outcome when the labelled items are all 1 but some are missing.
    """
    labels: dict[tuple[str, str], dict[int, int]] = {}
    for rating in ratings:
        answer_id, position = split_item_key(rating.item)
        labels.setdefault((answer_id, rating.rater), {})[position] = rating.label
    outcomes = []
    for (answer_id, rater), by_position in labels.items():
        if answer_id not in k_by_answer:
            raise ValueError(f"no k given for answer {answer_id!r}")
        if 0 in by_position.values():
            outcome = 0
        elif len(by_position) == item_count(k_by_answer[answer_id]):
            outcome = 1
        else:
            continue
        outcomes.append(Rating(answer_id, FULL_MARKS, rater, outcome))
    return outcomes
