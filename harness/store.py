"""The run store: one SQLite file per run directory holding everything a run did.

Every student conversation and every grading run is one row, written in one
transaction when it completes, under a primary key that names exactly what it
is (task, combination, student, generation round[, judge, grading run]). A run
killed at any moment therefore resumes by skipping the rows that exist: no
record is lost beyond the requests in flight (whose replies the response cache
usually still holds), and none can be written twice.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.errors import HarnessError

STORE_NAME = "run.sqlite"
SCHEMA_VERSION = 1

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS tasks (name TEXT PRIMARY KEY, config TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS models (
    name TEXT PRIMARY KEY, role TEXT NOT NULL, identity TEXT NOT NULL, reference TEXT NOT NULL,
    chat_template_hash TEXT);
CREATE TABLE IF NOT EXISTS combinations (
    task TEXT NOT NULL, combination INTEGER NOT NULL, skills TEXT NOT NULL, topic TEXT NOT NULL,
    PRIMARY KEY (task, combination));
CREATE TABLE IF NOT EXISTS generations (
    task TEXT NOT NULL, combination INTEGER NOT NULL, student TEXT NOT NULL, generation_round INTEGER NOT NULL,
    turn1_prompt TEXT NOT NULL, turn1_reply TEXT NOT NULL, turn2_prompt TEXT NOT NULL, turn2_reply TEXT NOT NULL,
    answer TEXT NOT NULL, answer_marked INTEGER NOT NULL, finish_reason TEXT, created REAL NOT NULL,
    PRIMARY KEY (task, combination, student, generation_round));
CREATE TABLE IF NOT EXISTS grades (
    task TEXT NOT NULL, combination INTEGER NOT NULL, student TEXT NOT NULL, generation_round INTEGER NOT NULL,
    judge TEXT NOT NULL, grading_run INTEGER NOT NULL, style TEXT NOT NULL, prompt TEXT NOT NULL,
    reply TEXT NOT NULL, attempts INTEGER NOT NULL, points TEXT NOT NULL, usable INTEGER NOT NULL,
    created REAL NOT NULL,
    PRIMARY KEY (task, combination, student, generation_round, judge, grading_run));
"""


@dataclass(frozen=True)
class ModelRecord:
    name: str
    role: str  # student | judge | teacher
    identity: str
    reference: str  # what the user gave: a path, URLs, openai:NAME
    chat_template_hash: str | None = None


@dataclass(frozen=True)
class Generation:
    task: str
    combination: int
    student: str
    generation_round: int
    turn1_prompt: str
    turn1_reply: str
    turn2_prompt: str
    turn2_reply: str
    answer: str
    answer_marked: bool  # False when the reply had no `Answer:` and the whole reply is graded
    finish_reason: str | None


@dataclass(frozen=True)
class Grade:
    task: str
    combination: int
    student: str
    generation_round: int
    judge: str
    grading_run: int
    style: str
    prompt: str
    reply: str  # the last reply; for an unusable grade, the raw text that could not be parsed
    attempts: int
    points: tuple[float | None, ...]  # the judge's own values, k+3, before sentence override and penalty
    usable: bool


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
        self._db.executescript(SCHEMA)
        version = self.get_meta("schema_version")
        if version is None:
            self.set_meta("schema_version", SCHEMA_VERSION)
        elif version != SCHEMA_VERSION:
            raise HarnessError(f"{path} has store schema {version}; this harness reads schema {SCHEMA_VERSION}")

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
                raise HarnessError(
                    f"task {name} in {self.run_dir} was run with a different configuration (catalog, prompts, "
                    "seed or sampling changed); use a new --out directory to run the changed task"
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

    def record_model(self, model: ModelRecord) -> None:
        """Record a model; refuse one whose files changed since the run started under the same name."""
        row = self._db.execute("SELECT role, identity FROM models WHERE name = ?", (model.name,)).fetchone()
        if row is not None:
            if row[1] != model.identity:
                raise HarnessError(
                    f"model {model.name!r} in {self.run_dir} was {row[1]} and is now {model.identity} "
                    "(its files changed); use a new --out directory, or give the new model another name"
                )
            return
        self._db.execute(
            "INSERT INTO models VALUES (?, ?, ?, ?, ?)",
            (model.name, model.role, model.identity, model.reference, model.chat_template_hash),
        )

    def models(self, role: str | None = None) -> list[ModelRecord]:
        rows = self._db.execute("SELECT name, role, identity, reference, chat_template_hash FROM models ORDER BY rowid")
        records = [ModelRecord(*row) for row in rows]
        return [record for record in records if role is None or record.role == role]

    # -- work rows --------------------------------------------------------------
    def transaction(self) -> _Transaction:
        return _Transaction(self._db)

    def add_generation(self, generation: Generation) -> None:
        self._db.execute(
            "INSERT INTO generations VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                generation.task, generation.combination, generation.student, generation.generation_round,
                generation.turn1_prompt, generation.turn1_reply, generation.turn2_prompt, generation.turn2_reply,
                generation.answer, int(generation.answer_marked), generation.finish_reason, time.time(),
            ),
        )  # fmt: skip

    def add_grade(self, grade: Grade) -> None:
        self._db.execute(
            "INSERT INTO grades VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                grade.task, grade.combination, grade.student, grade.generation_round, grade.judge,
                grade.grading_run, grade.style, grade.prompt, grade.reply, grade.attempts,
                json.dumps(list(grade.points)), int(grade.usable), time.time(),
            ),
        )  # fmt: skip

    def generations(self, task: str | None = None) -> Iterator[Generation]:
        query = "SELECT task, combination, student, generation_round, turn1_prompt, turn1_reply, turn2_prompt, " \
                "turn2_reply, answer, answer_marked, finish_reason FROM generations"  # fmt: skip
        rows = self._db.execute(query + (" WHERE task = ?" if task else "") + " ORDER BY rowid", (task,) if task else ())
        for row in rows:
            yield Generation(*row[:9], answer_marked=bool(row[9]), finish_reason=row[10])

    def grades(self, task: str | None = None) -> Iterator[Grade]:
        query = "SELECT task, combination, student, generation_round, judge, grading_run, style, prompt, reply, " \
                "attempts, points, usable FROM grades"  # fmt: skip
        rows = self._db.execute(query + (" WHERE task = ?" if task else "") + " ORDER BY rowid", (task,) if task else ())
        for row in rows:
            yield Grade(*row[:10], points=tuple(json.loads(row[10])), usable=bool(row[11]))

    def generation_keys(self) -> set[tuple[str, int, str, int]]:
        return set(self._db.execute("SELECT task, combination, student, generation_round FROM generations"))

    def grade_keys(self) -> set[tuple[str, int, str, int, str, int]]:
        return set(
            self._db.execute("SELECT task, combination, student, generation_round, judge, grading_run FROM grades")
        )

    def counts(self) -> dict[str, int]:
        return {
            table: self._db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]
            for table in ("combinations", "generations", "grades")
        }


class _Transaction:
    def __init__(self, db: sqlite3.Connection):
        self._db = db

    def __enter__(self) -> None:
        self._db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: object, *rest: object) -> None:
        self._db.execute("ROLLBACK" if exc_type else "COMMIT")
