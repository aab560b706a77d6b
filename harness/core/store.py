"""The run store: one SQLite file per run directory holding everything a run did.

Every student conversation and every grading run is one row, written in one
transaction when it completes, under a primary key that names exactly what it
is (task, combination, student, generation round[, judge, grading run]). A run
killed at any moment therefore resumes by skipping the rows that exist: no
record is lost beyond the requests in flight (whose replies the response cache
usually still holds), and none can be written twice.

Besides the work rows the store keeps what is needed to resume faithfully: each
task's resolved configuration and combinations, each model's identity, the
resolved evaluation settings (judges with their styles and sampling, retries,
serving options that change outputs), and one ``sessions`` row per invocation
with its command line and package versions.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from harness.core.errors import HarnessError
from harness.core.models import Model

STORE_NAME = "run.sqlite"
SCHEMA_VERSION = 3

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS tasks (name TEXT PRIMARY KEY, config TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS models (
    name TEXT PRIMARY KEY, role TEXT NOT NULL, identity TEXT NOT NULL, reference TEXT NOT NULL, kind TEXT);
CREATE TABLE IF NOT EXISTS combinations (
    task TEXT NOT NULL, combination INTEGER NOT NULL, skills TEXT NOT NULL, topic TEXT NOT NULL,
    PRIMARY KEY (task, combination));
CREATE TABLE IF NOT EXISTS generations (
    task TEXT NOT NULL, combination INTEGER NOT NULL, student TEXT NOT NULL, generation_round INTEGER NOT NULL,
    turn1_prompt TEXT NOT NULL, turn1_reply TEXT NOT NULL, turn2_prompt TEXT NOT NULL, turn2_reply TEXT NOT NULL,
    answer TEXT NOT NULL, answer_marked INTEGER NOT NULL, finish_reason TEXT, created REAL NOT NULL,
    sampling TEXT,
    PRIMARY KEY (task, combination, student, generation_round));
CREATE TABLE IF NOT EXISTS grades (
    task TEXT NOT NULL, combination INTEGER NOT NULL, student TEXT NOT NULL, generation_round INTEGER NOT NULL,
    judge TEXT NOT NULL, grading_run INTEGER NOT NULL, style TEXT NOT NULL, prompt TEXT NOT NULL,
    reply TEXT NOT NULL, attempts INTEGER NOT NULL, points TEXT NOT NULL, usable INTEGER NOT NULL,
    created REAL NOT NULL, sampling TEXT, reference TEXT,
    PRIMARY KEY (task, combination, student, generation_round, judge, grading_run));
CREATE TABLE IF NOT EXISTS sessions (
    id INTEGER PRIMARY KEY, started REAL NOT NULL, command TEXT NOT NULL, versions TEXT NOT NULL,
    settings TEXT NOT NULL);
"""
# Older stores are upgraded in place, one schema step after the other: schema 1 lacks the sampling
# and kind columns and the sessions table (created by SCHEMA), schema 2 the grades' reference column.
_UPGRADES = {
    1: [
        "ALTER TABLE generations ADD COLUMN sampling TEXT",
        "ALTER TABLE grades ADD COLUMN sampling TEXT",
        "ALTER TABLE models ADD COLUMN kind TEXT",
    ],
    2: ["ALTER TABLE grades ADD COLUMN reference TEXT"],
}


class AnswerKey(NamedTuple):
    """Which answer: one generation round of one student on one combination of one task."""

    task: str
    combination: int
    student: str
    generation_round: int


@dataclass(frozen=True)
class Generation:
    key: AnswerKey
    turn1_prompt: str
    turn1_reply: str
    turn2_prompt: str
    turn2_reply: str
    answer: str
    answer_marked: bool  # False when the reply had no `Answer:` and the whole reply is graded
    finish_reason: str | None
    sampling: Mapping[str, Any] | None = None  # what was sent for each turn; None: nothing sent (imported, rules)


@dataclass(frozen=True)
class ReferenceGrade:
    """What the SKILL-MIX reference code's grading row said about a grade (imported trees only).

    ``points`` is what the reference's aggregation reads from the row's ``points_0`` cell:
    its values in order, or none when the cell is empty or when every cell of the file
    holds at most one value (pandas then reads the column as numbers, and the reference
    treats a number as no points). ``sentence_point`` is its ``true_sentence_lim_pt_0``.
    """

    points_0: str
    points: tuple[float, ...]
    sentence_point: float | None

    def to_dict(self) -> dict[str, Any]:
        return {"points_0": self.points_0, "points": list(self.points), "sentence_point": self.sentence_point}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ReferenceGrade:
        return cls(data["points_0"], tuple(float(value) for value in data["points"]), data["sentence_point"])


@dataclass(frozen=True)
class Grade:
    key: AnswerKey
    judge: str
    grading_run: int
    style: str
    prompt: str
    reply: str  # the last reply; for an unusable grade, the raw text that could not be parsed
    attempts: int
    points: tuple[float | None, ...]  # judges.rubric.Score.points: the judge's own values, before corrections
    usable: bool
    sampling: Mapping[str, Any] | None = None  # what the last ask sent; None: nothing sent (imported, rules)
    reference: ReferenceGrade | None = None  # the reference code's own reading; imported rows only


def _changes(before: Mapping[str, Any], after: Mapping[str, Any], prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two nested mappings."""
    changed = []
    for key in sorted(set(before) | set(after), key=str):
        old, new = before.get(key), after.get(key)
        if isinstance(old, Mapping) and isinstance(new, Mapping):
            changed += _changes(old, new, f"{prefix}{key}.")
        elif old != new:
            changed.append(f"{prefix}{key}: {json.dumps(old)} -> {json.dumps(new)}")
    return changed


class RunStore:
    """Read and write one run's SQLite store."""

    def __init__(self, run_dir: Path, *, create: bool = True):
        self.run_dir = Path(run_dir)
        path = self.run_dir / STORE_NAME
        if not create and not path.is_file():
            raise HarnessError(f"{self.run_dir} is not a run directory (no {STORE_NAME}); pass the --out of a `harness run`")
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, timeout=60, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        version = self._schema_version()
        if version is not None and version > SCHEMA_VERSION:
            raise HarnessError(f"{path} has store schema {version}; this harness reads schema {SCHEMA_VERSION} or older")
        for step in range(version or SCHEMA_VERSION, SCHEMA_VERSION):
            for statement in _UPGRADES.get(step, []):
                self._db.execute(statement)
        self._db.executescript(SCHEMA)
        if version != SCHEMA_VERSION:
            self.set_meta("schema_version", SCHEMA_VERSION)

    def _schema_version(self) -> int | None:
        if not self._db.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name='meta'").fetchone():
            return None
        row = self._db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        return json.loads(row[0]) if row else None

    @property
    def path(self) -> Path:
        return self.run_dir / STORE_NAME

    def close(self) -> None:
        self._db.close()

    # -- metadata ---------------------------------------------------------------
    def get_meta(self, key: str) -> Any:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return json.loads(row[0]) if row else None

    def set_meta(self, key: str, value: Any) -> None:
        self._db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, json.dumps(value, sort_keys=True)))

    def record_task(self, name: str, config: Mapping[str, Any], combinations: list[tuple[int, list[str], str]]) -> None:
        """Record a task's resolved config and combinations; refuse a changed task on resume."""
        encoded = json.dumps(config, sort_keys=True)
        row = self._db.execute("SELECT config FROM tasks WHERE name = ?", (name,)).fetchone()
        if row is not None:
            if row[0] != encoded:
                changed = _changes(json.loads(row[0]), json.loads(encoded))
                raise HarnessError(
                    f"task {name} in {self.run_dir} was run with a different configuration "
                    f"({'; '.join(changed[:4])}{'; ...' if len(changed) > 4 else ''}); use a new --out directory "
                    "to run the changed task, or run it unchanged to resume"
                )
            return
        with self.transaction():
            self._db.execute("INSERT INTO tasks VALUES (?, ?)", (name, encoded))
            self._db.executemany(
                "INSERT INTO combinations VALUES (?, ?, ?, ?)",
                [(name, index, json.dumps(skills), topic) for index, skills, topic in combinations],
            )

    def task_configs(self) -> dict[str, dict[str, Any]]:
        return {name: json.loads(config) for name, config in self._db.execute("SELECT name, config FROM tasks ORDER BY name")}

    def combinations(self, task: str) -> dict[int, tuple[list[str], str]]:
        rows = self._db.execute("SELECT combination, skills, topic FROM combinations WHERE task = ? ORDER BY combination", (task,))
        return {index: (json.loads(skills), topic) for index, skills, topic in rows}

    def record_model(self, model: Model) -> None:
        """Record a model; refuse one whose files changed since the run started under the same name."""
        if model.identity is None:
            raise ValueError(f"model {model.name} has no identity yet")
        row = self._db.execute("SELECT role, identity FROM models WHERE name = ?", (model.name,)).fetchone()
        if row is not None:
            if row[1] != model.identity:
                raise HarnessError(
                    f"model {model.name!r} in {self.run_dir} was {row[1]} and is now {model.identity} "
                    "(its files or its server changed); use a new --out directory, or give the new model another name"
                )
            return
        self._db.execute(
            "INSERT INTO models (name, role, identity, reference, kind) VALUES (?, ?, ?, ?, ?)",
            (model.name, model.role, model.identity, model.reference, model.kind),
        )

    def models(self, role: str | None = None) -> list[Model]:
        """The recorded models (not connected: no endpoints), in the order they were recorded."""
        rows = self._db.execute("SELECT name, role, identity, reference, kind FROM models ORDER BY rowid")
        models = [
            Model(name=name, role=model_role, kind=kind or "unknown", source=(reference,), reference=reference,
                  identity=identity)
            for name, model_role, identity, reference, kind in rows
        ]  # fmt: skip
        return [model for model in models if role is None or model.role == role]

    # -- the resolved evaluation and its sessions ---------------------------------
    def record_evaluation(self, settings: Mapping[str, Any], *, accept_changes: bool = False) -> None:
        """Record the settings a run is made with; refuse different ones on resume unless accepted.

        ``settings`` maps sections ("students", "judges", ...) to values. A model that
        is new to the run is simply added; a model present in both, or a run-wide
        setting, that changed is refused with a message naming every change.
        """
        stored = self.get_meta("evaluation")
        settings = json.loads(json.dumps(settings, sort_keys=True))
        if stored is not None:
            comparable = {
                section: ({name: value for name, value in settings.get(section, {}).items() if name in stored.get(section, {})}
                          if section in ("students", "judges") else settings.get(section))
                for section in stored
            }  # fmt: skip
            changed = _changes(stored, comparable)
            if changed and not accept_changes:
                raise HarnessError(
                    f"{self.run_dir} was run with other settings: {'; '.join(changed)}. Rerun with the settings it "
                    "was made with to resume, use a new --out directory, or pass --accept-changes to go on with the "
                    "new settings (rows already stored keep the settings they were made with)"
                )
            merged = dict(stored)
            for section, value in settings.items():
                merged[section] = {**stored.get(section, {}), **value} if section in ("students", "judges") else value
            settings = merged
        self.set_meta("evaluation", settings)

    def add_session(self, command: list[str], versions: Mapping[str, str]) -> None:
        """Append one invocation: when, how and with which package versions it ran."""
        self._db.execute(
            "INSERT INTO sessions (started, command, versions, settings) VALUES (?, ?, ?, ?)",
            (time.time(), json.dumps(command), json.dumps(dict(versions), sort_keys=True),
             json.dumps(self.get_meta("evaluation"), sort_keys=True)),
        )  # fmt: skip

    def sessions(self) -> list[dict[str, Any]]:
        rows = self._db.execute("SELECT started, command, versions, settings FROM sessions ORDER BY id")
        return [
            {"started": started, "command": json.loads(command), "versions": json.loads(versions),
             "settings": json.loads(settings)}
            for started, command, versions, settings in rows
        ]  # fmt: skip

    # -- work rows --------------------------------------------------------------
    def transaction(self) -> _Transaction:
        return _Transaction(self._db)

    def add_generation(self, generation: Generation) -> None:
        self._db.execute(
            "INSERT INTO generations (task, combination, student, generation_round, turn1_prompt, turn1_reply, "
            "turn2_prompt, turn2_reply, answer, answer_marked, finish_reason, created, sampling) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                *generation.key,
                generation.turn1_prompt, generation.turn1_reply, generation.turn2_prompt, generation.turn2_reply,
                generation.answer, int(generation.answer_marked), generation.finish_reason, time.time(),
                _encode(generation.sampling),
            ),
        )  # fmt: skip

    def add_grade(self, grade: Grade) -> None:
        self._db.execute(
            "INSERT INTO grades (task, combination, student, generation_round, judge, grading_run, style, prompt, "
            "reply, attempts, points, usable, created, sampling, reference) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                *grade.key, grade.judge, grade.grading_run, grade.style, grade.prompt, grade.reply, grade.attempts,
                json.dumps(list(grade.points)), int(grade.usable), time.time(), _encode(grade.sampling),
                None if grade.reference is None else _encode(grade.reference.to_dict()),
            ),
        )  # fmt: skip

    def generations(self, task: str | None = None) -> Iterator[Generation]:
        query = "SELECT task, combination, student, generation_round, turn1_prompt, turn1_reply, turn2_prompt, " \
                "turn2_reply, answer, answer_marked, finish_reason, sampling FROM generations"  # fmt: skip
        rows = self._db.execute(query + (" WHERE task = ?" if task else "") + " ORDER BY rowid", (task,) if task else ())
        for row in rows:
            yield Generation(AnswerKey(*row[:4]), *row[4:9], answer_marked=bool(row[9]), finish_reason=row[10],
                             sampling=_decode(row[11]))  # fmt: skip

    def grades(self, task: str | None = None) -> Iterator[Grade]:
        query = "SELECT task, combination, student, generation_round, judge, grading_run, style, prompt, reply, " \
                "attempts, points, usable, sampling, reference FROM grades"  # fmt: skip
        rows = self._db.execute(query + (" WHERE task = ?" if task else "") + " ORDER BY rowid", (task,) if task else ())
        for row in rows:
            reference = _decode(row[13])
            yield Grade(AnswerKey(*row[:4]), *row[4:10], points=tuple(json.loads(row[10])), usable=bool(row[11]),
                        sampling=_decode(row[12]),
                        reference=None if reference is None else ReferenceGrade.from_dict(reference))  # fmt: skip

    def generation_keys(self) -> set[AnswerKey]:
        return {AnswerKey(*row) for row in self._db.execute("SELECT task, combination, student, generation_round FROM generations")}

    def grade_keys(self) -> set[tuple[AnswerKey, str, int]]:
        rows = self._db.execute("SELECT task, combination, student, generation_round, judge, grading_run FROM grades")
        return {(AnswerKey(*row[:4]), row[4], row[5]) for row in rows}

    def counts(self) -> dict[str, int]:
        return {
            table: self._db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]
            for table in ("combinations", "generations", "grades")
        }


def _encode(value: Mapping[str, Any] | None) -> str | None:
    return None if value is None else json.dumps(dict(value), sort_keys=True)


def _decode(text: str | None) -> dict[str, Any] | None:
    return None if text is None else json.loads(text)


class _Transaction:
    def __init__(self, db: sqlite3.Connection):
        self._db = db

    def __enter__(self) -> None:
        self._db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: object, *rest: object) -> None:
        self._db.execute("ROLLBACK" if exc_type else "COMMIT")
