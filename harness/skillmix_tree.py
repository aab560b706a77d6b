"""Import a results tree written by the public SKILL-MIX reference code into a run store.

The reference code (github.com/LeoYu/skill-mix) keeps everything in CSV files
named ``records.csv``, one data row per combination, under an experiment root:

* Generation: ``<root>/k<K>_s<SEED>_v<VERSION>_r<ROUND>/<student>/records.csv``.
  K is the number of skills, SEED the sampling seed of the combinations,
  VERSION the generation prompt's name (free text, may hold underscores, e.g.
  ``default``), ROUND the generation round counted from 1. The directory
  ``<student>`` is the student's short name (``llama2-7b-chat``, ``gpt-4``).
  Columns, in this order: ``k``, ``skills``, ``topic``, ``system prompt``,
  then per conversation turn i (0, 1, ...): ``<user role>_i``,
  ``<assistant role>_i``, ``model_input_i``, ``text_i``. The role names come
  from the student's chat template (``user``/``assistant``,
  ``[INST]``/``[/INST]``, ...), so they are found by position: the two
  columns right before ``model_input_i``. ``text_i`` is the text the code cut
  out of that turn's reply (after ``Answer:``, before ``Explanation``). The
  graded answer is the last turn's text. ``skills`` holds the skill names
  joined by a comma and a line break.
* Grading: ``.../<student>/graded/by_<JUDGE>_on_<COLUMN>_<RUN>_<GVERSION>/records.csv``.
  COLUMN is the generation column that was graded (``text_1`` for two turns),
  RUN the grading run counted from 1, GVERSION the grading prompt's name
  (``gpt``). Columns: ``k``, ``skills``, ``topic``, ``system prompt``, the
  judge prompt and reply as ``<user role>_0``, ``<assistant role>_0``, then
  ``model_input_0``, ``score_0`` (the total the reference read),
  ``score_extracted_0``, ``points_0``, ``num_sentences_manual_in_student_answer_0``,
  ``true_sentence_lim_pt_0``, ``num_sentences_extracted_eq_num_sentences_model_0``.
  Data row n of a grading file grades data row n of its student's generation
  file; the row number is the combination's index. The reference fills the
  grading ``k`` by counting commas in ``skills``, and adds a space after each
  comma, so its ``skills`` text differs from the generation file's.

Each (K, SEED, VERSION) becomes one task named ``skillmix-import-k<K>-s<SEED>-v<VERSION>``.
Judge replies are re-read by our own parser (the ``harness`` scoring profile scores
those values). Each grade also keeps what the reference's own parser stored, its
``points_0`` as the reference's aggregation reads it, and its sentence point
(``store.ReferenceGrade``), which the ``reference`` profile scores. ``TreeReader``
reads and checks a whole tree; harness.skillmix_import writes what it read into a
run store.
"""

from __future__ import annotations

import csv
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.core.errors import HarnessError
from harness.core.store import AnswerKey, Generation, Grade, ReferenceGrade
from judges.styles import read_reply

FAMILY = "skillmix-import"
IMPORTED = "imported"  # the kind of a model known only from an imported tree
GRADE_STYLE = "imported"
RECORDS = "records.csv"
LAYOUT = (
    "k<k>_s<seed>_v<version>_r<round>/<student>/records.csv for answers and "
    "k<k>_s<seed>_v<version>_r<round>/<student>/graded/by_<judge>_on_<column>_<run>_<version>/records.csv for grades"
)

_ROUND_DIR = re.compile(r"k(?P<k>\d+)_s(?P<seed>-?\d+)_v(?P<version>.+)_r(?P<round>\d+)")
_GRADED_DIR = re.compile(r"by_(?P<judge>.+?)_on_(?P<column>.+?_\d+)_(?P<run>\d+)_(?P<version>.+)")
_TEXT_COLUMN = re.compile(r"text_(\d+)")
# Reference skill lists break the line after each separating comma; a comma without one is part of a name.
_SKILL_SEPARATOR = re.compile(r",[ \t]*\r?\n")
_FIELD_LIMIT = 1 << 26  # a reply plus its whole conversation can exceed csv's default 128 KiB per field


@dataclass(frozen=True)
class RoundDir:
    """What a ``k<K>_s<SEED>_v<VERSION>_r<ROUND>`` directory name says."""

    k: int
    seed: int
    version: str
    generation_round: int

    @property
    def task(self) -> str:
        return f"{FAMILY}-k{self.k}-s{self.seed}-v{self.version}"


@dataclass(frozen=True)
class GradedDir:
    """What a ``by_<JUDGE>_on_<COLUMN>_<RUN>_<VERSION>`` directory name says."""

    judge: str
    column: str
    grading_run: int
    grading_version: str


@dataclass(frozen=True)
class _Row:
    file: Path
    line: int  # where the record starts; a quoted field may span lines
    index: int  # 0-based data row: the combination's index
    values: dict[str, str]

    @property
    def where(self) -> str:
        return f"{self.file}:{self.line}"


@dataclass
class _TaskDraft:
    round_dir: RoundDir  # the first round seen; only its k, seed and version describe the task
    combinations: dict[int, tuple[tuple[str, ...], str, str]] = field(default_factory=dict)  # skills, topic, where
    rounds: set[int] = field(default_factory=set)
    runs: set[int] = field(default_factory=set)
    grading_versions: set[str] = field(default_factory=set)

    def config(self, source: Path) -> dict[str, Any]:
        return {
            "imported_from": str(source),
            "family": FAMILY,
            "k": self.round_dir.k,
            "seed": self.round_dir.seed,
            "version": self.round_dir.version,
            "prompt_version": self.round_dir.version,
            "split": "all",
            "n_combinations": len(self.combinations),
            # Rounds and runs are numbered from 1; the highest seen counts the missing ones as incomplete.
            "generation_rounds": max(self.rounds),
            "grading_runs": max(self.runs, default=0),
            "grading_style": GRADE_STYLE,
            "grading_prompt_versions": sorted(self.grading_versions),
        }


def parse_round_dir(name: str) -> RoundDir | None:
    match = _ROUND_DIR.fullmatch(name)
    if match is None:
        return None
    return RoundDir(int(match["k"]), int(match["seed"]), match["version"], int(match["round"]))


def parse_graded_dir(name: str) -> GradedDir | None:
    match = _GRADED_DIR.fullmatch(name)
    if match is None:
        return None
    return GradedDir(match["judge"], match["column"], int(match["run"]), match["version"])


def split_skills(text: str) -> tuple[str, ...]:
    """The skill names of a reference ``skills`` cell, in the order the student saw them."""
    pieces = _SKILL_SEPARATOR.split(text) if "\n" in text else text.split(",")
    return tuple(piece.strip() for piece in pieces if piece.strip())


def _read_records(path: Path) -> tuple[list[str], list[_Row]]:
    csv.field_size_limit(max(csv.field_size_limit(), _FIELD_LIMIT))
    rows: list[_Row] = []
    start = 1
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.reader(handle)
            header = next(reader, None)
            if not header:
                raise HarnessError(f"{path}:1: no header row; a reference {RECORDS} starts with its column names")
            start = reader.line_num + 1
            for fields in reader:
                if fields:
                    if len(fields) != len(header):
                        raise HarnessError(
                            f"{path}:{start}: row has {len(fields)} fields but the header has {len(header)}; "
                            "the file is cut short or was edited by hand"
                        )
                    rows.append(_Row(path, start, len(rows), dict(zip(header, fields, strict=True))))
                start = reader.line_num + 1
    except UnicodeDecodeError as error:
        raise HarnessError(f"{path}: not UTF-8 text ({error.reason}); the reference writes UTF-8 CSV") from error
    except csv.Error as error:
        raise HarnessError(f"{path}:{start}: not valid CSV ({error})") from error
    except OSError as error:
        raise HarnessError(f"cannot read {path}: {error.strerror}") from error
    return header, rows


def _require(path: Path, header: list[str], columns: list[str], kind: str) -> None:
    missing = [column for column in columns if column not in header]
    if missing:
        raise HarnessError(
            f"{path}:1: missing column(s) {', '.join(missing)}; a reference {kind} {RECORDS} has "
            f"k, skills, topic, then per turn i: <user role>_i, <assistant role>_i, model_input_i"
            + (", text_i" if kind == "generation" else ", score_i, ...")
        )


def _message_columns(header: list[str], turn: int) -> tuple[str, str] | None:
    """The (prompt, reply) columns of a turn: the two right before ``model_input_<turn>``."""
    name = f"model_input_{turn}"
    if name not in header or header.index(name) < 2:
        return None
    prompt, reply = header[header.index(name) - 2 : header.index(name)]
    suffix = f"_{turn}"
    return (prompt, reply) if prompt.endswith(suffix) and reply.endswith(suffix) else None


def _row_skills(row: _Row, k: int, *, comma_count: bool = False) -> tuple[tuple[str, ...], str]:
    skills = split_skills(row.values["skills"])
    topic = row.values["topic"].strip()
    stated = row.values["k"].strip()
    if not stated.isdigit():
        raise HarnessError(f"{row.where}: k is {stated!r}, not a whole number")
    # The reference's grading files count skills by commas, which overcounts names holding a comma.
    counts = {len(skills), len(row.values["skills"].split(","))} if comma_count else {len(skills)}
    if int(stated) not in counts or len(skills) != k:
        raise HarnessError(
            f"{row.where}: k is {stated} and the directory says k={k}, but the row lists {len(skills)} "
            f"skill(s): {'; '.join(skills) or '(none)'}"
        )
    if not topic:
        raise HarnessError(f"{row.where}: the topic is empty")
    return skills, topic


def _is_number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True


def reference_points(cells: list[str]) -> list[tuple[float, ...]]:
    """The values the reference's aggregation reads from each ``points_0`` cell of one file.

    It reads the file with pandas, which types a column at once: when every non-empty
    cell is a single number, the column becomes numbers, and the aggregation takes a
    number for "no points". Otherwise each non-empty cell is split at commas.
    """
    if all(cell == "" or _is_number(cell) for cell in cells):
        return [() for _ in cells]
    return [tuple(float(value) for value in cell.split(",")) if cell else () for cell in cells]


def _sentence_point(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def _spaced(skills: tuple[str, ...]) -> tuple[str, ...]:
    # The reference rewrites every comma in a grading row's skills as ", ", names included.
    return tuple(re.sub(r",\s*", ", ", skill) for skill in skills)


class TreeReader:
    """Reads every records.csv under one root into store records, checking them as it goes."""

    def __init__(self, root: Path):
        self.root = root
        self.tasks: dict[str, _TaskDraft] = {}
        self.students: dict[str, Path] = {}
        self.judges: dict[str, Path] = {}
        self.generations: dict[AnswerKey, tuple[Generation, _Row]] = {}
        self.final_columns: dict[tuple[str, str, int], str] = {}  # task, student, round -> graded column
        self.grades: dict[tuple[AnswerKey, str, int], tuple[Grade, _Row]] = {}
        self.grading_rows = 0
        self.skipped: Counter[str] = Counter()
        self.reference_scores: dict[str, list[float]] = {}

    def read(self) -> None:
        files = sorted(path for path in self.root.rglob(RECORDS) if path.is_file())
        if not files:
            raise HarnessError(f"no {RECORDS} under {self.root}; the reference writes {LAYOUT}")
        located = [(path, *self._locate(path)) for path in files]
        # Grades are matched to answers by row, so every answer file is read before any grading file.
        for path, round_dir, student, graded in located:
            if graded is None:
                self._read_generations(path, round_dir, student)
        for path, round_dir, student, graded in located:
            if graded is not None:
                self._read_grades(path, round_dir, student, graded)

    def _locate(self, path: Path) -> tuple[RoundDir, str, GradedDir | None]:
        parts = path.parts
        is_graded = len(parts) >= 5 and parts[-3] == "graded"
        round_name, student = (parts[-5], parts[-4]) if is_graded else (parts[-3], parts[-2])
        round_dir = parse_round_dir(round_name)
        if round_dir is None:
            raise HarnessError(
                f"{path}: cannot read k, seed, prompt version and round from the directory name {round_name!r}; "
                f"the reference writes {LAYOUT}"
            )
        graded = parse_graded_dir(parts[-2]) if is_graded else None
        if is_graded and graded is None:
            raise HarnessError(
                f"{path}: cannot read judge, graded column, grading run and prompt version from the directory name "
                f"{parts[-2]!r}; expected by_<judge>_on_<column>_<run>_<version>, e.g. by_gpt-4_on_text_1_1_gpt"
            )
        return round_dir, student, graded

    def _task(self, round_dir: RoundDir) -> _TaskDraft:
        return self.tasks.setdefault(round_dir.task, _TaskDraft(round_dir))

    def _combination(self, draft: _TaskDraft, row: _Row, skills: tuple[str, ...], topic: str) -> None:
        known = draft.combinations.setdefault(row.index, (skills, topic, row.where))
        if known[:2] != (skills, topic):
            raise HarnessError(
                f"{row.where}: combination {row.index} is {'; '.join(skills)} on {topic!r}, but {known[2]} gives "
                f"{'; '.join(known[0])} on {known[1]!r} for the same k, seed and version; the files do not come "
                "from one reference experiment"
            )

    def _read_generations(self, path: Path, round_dir: RoundDir, student: str) -> None:
        header, rows = _read_records(path)
        turns = sorted(int(match[1]) for column in header if (match := _TEXT_COLUMN.fullmatch(column)))
        _require(path, header, ["k", "skills", "topic"] + ([] if turns else ["text_0"]), "generation")
        first, last = _message_columns(header, turns[0]), _message_columns(header, turns[-1])
        draft = self._task(round_dir)
        draft.rounds.add(round_dir.generation_round)
        self.students.setdefault(student, path.parent)
        self.final_columns[(round_dir.task, student, round_dir.generation_round)] = f"text_{turns[-1]}"
        for row in rows:
            skills, topic = _row_skills(row, round_dir.k)
            self._combination(draft, row, skills, topic)
            final_reply = row.values[last[1]] if last else ""
            generation = Generation(
                key=AnswerKey(round_dir.task, row.index, student, round_dir.generation_round),
                turn1_prompt=row.values[first[0]] if first else "",
                turn1_reply=row.values[first[1]] if first else "",
                turn2_prompt=row.values[last[0]] if last and len(turns) > 1 else "",
                turn2_reply=final_reply if len(turns) > 1 else "",
                answer=row.values[f"text_{turns[-1]}"],
                # Like our runner, "unmarked" means the reply had no Answer: and the whole reply was graded.
                answer_marked="Answer:" in final_reply if last else True,
                finish_reason=None,
            )
            key = generation.key
            if key in self.generations:
                raise HarnessError(
                    f"{row.where}: {self.generations[key][1].where} already gives combination {row.index} of "
                    f"{student} in round {round_dir.generation_round}; import one experiment root at a time"
                )
            self.generations[key] = (generation, row)

    def _read_grades(self, path: Path, round_dir: RoundDir, student: str, graded: GradedDir) -> None:
        header, rows = _read_records(path)
        _require(path, header, ["k", "skills", "topic", "model_input_0"], "grading")
        messages = _message_columns(header, 0)
        if messages is None:
            raise HarnessError(
                f"{path}:1: the two columns before model_input_0 are not the judge prompt and reply (<role>_0)"
            )
        self.grading_rows += len(rows)
        task = round_dir.task
        final_column = self.final_columns.get((task, student, round_dir.generation_round))
        if final_column is None:
            self.skipped["no generation records.csv for its student and round"] += len(rows)
            return
        if graded.column != final_column:
            self.skipped[f"graded column is not the final answer ({final_column})"] += len(rows)
            return
        draft = self._task(round_dir)
        draft.runs.add(graded.grading_run)
        draft.grading_versions.add(graded.grading_version)
        self.judges.setdefault(graded.judge, path.parent)
        scores = self.reference_scores.setdefault(f"{task}/{student}/{graded.judge}", [])
        points_cells = [row.values.get("points_0", "") for row in rows]
        try:
            read_points = reference_points(points_cells)
        except ValueError as error:
            raise HarnessError(f"{path}: a points_0 cell is not a comma-separated list of numbers ({error})") from None
        for row, reference_values in zip(rows, read_points, strict=True):
            answer = self.generations.get(AnswerKey(task, row.index, student, round_dir.generation_round))
            if answer is None:
                self.skipped["grading row without a generation row"] += 1
                continue
            skills, topic = _row_skills(row, round_dir.k, comma_count=True)
            known = draft.combinations[row.index]
            if _spaced(skills) != _spaced(known[0]) or topic != known[1]:
                raise HarnessError(
                    f"{row.where}: grades {'; '.join(skills)} on {topic!r}, but the answer it should grade "
                    f"({answer[1].where}) is for {'; '.join(known[0])} on {known[1]!r}"
                )
            skills = known[0]
            score = read_reply(row.values[messages[1]], skills, topic).score
            grade = Grade(
                key=AnswerKey(task, row.index, student, round_dir.generation_round),
                judge=graded.judge,
                grading_run=graded.grading_run,
                style=GRADE_STYLE,
                prompt=row.values[messages[0]],
                reply=row.values[messages[1]],
                attempts=1,
                points=score.points,
                usable=score.usable,
                reference=ReferenceGrade(
                    points_0=row.values.get("points_0", ""),
                    points=reference_values,
                    sentence_point=_sentence_point(row.values.get("true_sentence_lim_pt_0", "")),
                ),
            )
            key = (grade.key, graded.judge, graded.grading_run)
            if key in self.grades:
                raise HarnessError(
                    f"{row.where}: {self.grades[key][1].where} already gives grading run {graded.grading_run} of "
                    f"{graded.judge} for this answer (two grading prompt versions?); move one directory aside"
                )
            self.grades[key] = (grade, row)
            try:
                scores.append(float(row.values.get("score_0", "")))
            except ValueError:
                pass
