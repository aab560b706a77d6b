"""The run store: one SQLite file per run directory holding everything a run did.

Every student conversation and every grading run is one row, written in one
transaction when it completes, under a primary key that names exactly what it
is (task, combination, student, generation round[, judge, grading run]). A run
killed at any moment therefore resumes by skipping the rows that exist: no
record is lost beyond the requests in flight (whose replies the response cache
usually still holds), and none can be written twice. A row keeps the sampling
it sent and how many tokens each reply took (what `harness bench` replays).

Besides the work rows the store keeps what is needed to resume faithfully: each
task's resolved configuration and combinations, each model's identity, the
resolved evaluation settings (judges with their styles and sampling, retries,
serving options that change outputs), and one ``sessions`` row per invocation
with its command line and package versions.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from harness.core.errors import HarnessError, database_error
from harness.core.models import Model
from harness.core.rundir import STORE_NAME, RunLock, check_not_a_file, make_dirs

SCHEMA_VERSION = 4

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
    sampling TEXT, output_tokens TEXT,
    PRIMARY KEY (task, combination, student, generation_round));
CREATE TABLE IF NOT EXISTS grades (
    task TEXT NOT NULL, combination INTEGER NOT NULL, student TEXT NOT NULL, generation_round INTEGER NOT NULL,
    judge TEXT NOT NULL, grading_run INTEGER NOT NULL, style TEXT NOT NULL, prompt TEXT NOT NULL,
    reply TEXT NOT NULL, attempts INTEGER NOT NULL, points TEXT NOT NULL, usable INTEGER NOT NULL,
    created REAL NOT NULL, sampling TEXT, reference TEXT, output_tokens TEXT,
    PRIMARY KEY (task, combination, student, generation_round, judge, grading_run));
CREATE TABLE IF NOT EXISTS sessions (
    id INTEGER PRIMARY KEY, started REAL NOT NULL, command TEXT NOT NULL, versions TEXT NOT NULL,
    settings TEXT NOT NULL);
"""
# Older stores are upgraded in place, one schema step after the other: schema 1 lacks the sampling
# and kind columns and the sessions table (created by SCHEMA), schema 2 the grades' reference column,
# schema 3 the output token counts.
_UPGRADES = {
    1: [
        "ALTER TABLE generations ADD COLUMN sampling TEXT",
        "ALTER TABLE grades ADD COLUMN sampling TEXT",
        "ALTER TABLE models ADD COLUMN kind TEXT",
    ],
    2: ["ALTER TABLE grades ADD COLUMN reference TEXT"],
    3: [
        "ALTER TABLE generations ADD COLUMN output_tokens TEXT",
        "ALTER TABLE grades ADD COLUMN output_tokens TEXT",
    ],
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
    # Tokens the server generated for (turn 1, turn 2); None where a reply came from the cache or an import.
    output_tokens: tuple[int | None, int | None] | None = None


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
    output_tokens: tuple[int | None, ...] | None = None  # tokens generated per ask, as for Generation
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


_DAMAGED_FIX = (
    "Restore it from a copy, or run into a new --out directory (with the response cache on, replies already "
    "fetched are not asked again)"
)


def _schema_version(db: sqlite3.Connection) -> int | None:
    if not db.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name='meta'").fetchone():
        return None
    row = db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    return json.loads(row[0]) if row else None


def _read_only_connection(path: Path) -> sqlite3.Connection:
    """Open a store without writing to it or to its directory.

    A WAL database opened read-only still needs its -shm file, which SQLite cannot create in
    a read-only directory; a store closed cleanly has no WAL content, so it is then opened as
    immutable. One with rows still in its -wal file (a run killed hard) cannot be read that
    way without losing them, and is refused.
    """
    uri = path.resolve().as_uri()
    db = sqlite3.connect(f"{uri}?mode=ro", uri=True, timeout=60, isolation_level=None)
    try:
        db.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()
        return db
    except sqlite3.OperationalError:
        db.close()
    wal = path.with_name(path.name + "-wal")
    if wal.is_file() and wal.stat().st_size > 0:
        raise HarnessError(
            f"{path} has rows not yet written back from {wal.name} (the run was stopped hard), and reading them needs "
            "a writable directory; copy the run directory somewhere writable and use the copy"
        )
    return sqlite3.connect(f"{uri}?immutable=1", uri=True, isolation_level=None)


class RunStore:
    """Read and write one run's SQLite store.

    ``create`` makes a new store when there is none; ``read_only`` opens an existing one
    without writing anything, even in a read-only directory; ``exclusive`` takes the run's
    lock (harness.core.rundir), so that one process at a time writes it. Every SQLite
    failure comes out as a HarnessError naming the file.
    """

    def __init__(self, run_dir: Path, *, create: bool = True, read_only: bool = False, exclusive: bool = False):
        self.run_dir = Path(run_dir)
        self.read_only = read_only
        self.created = False  # True when this process made the store (see abandon)
        self.warnings: list[str] = []
        self._made: list[Path] = []
        self._db: sqlite3.Connection | None = None
        self._lock = RunLock(self.run_dir) if exclusive else None
        path = self.path
        if (read_only or not create) and not path.is_file():
            check_not_a_file(self.run_dir)
            raise HarnessError(
                f"{self.run_dir} is not a run directory (no {STORE_NAME}); pass the --out of a `harness run`"
            )
        try:
            if not read_only:
                self._made = make_dirs(self.run_dir)
            if self._lock is not None:
                self._lock.acquire()
                if self._lock.unsupported:
                    self.warnings.append(self._lock.unsupported)
            self.created = not path.exists()
            with self._guard():
                self._db = self._connect(path) if read_only else self._connect_writable(path)
        except BaseException:
            self.abandon()
            raise

    def _connect_writable(self, path: Path) -> sqlite3.Connection:
        db = sqlite3.connect(path, timeout=60, isolation_level=None)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            # In WAL mode NORMAL loses no committed row when the process is killed, only (at worst) the
            # last ones on a power cut, and a resume redoes those; FULL would fsync every row, which
            # blocked the event loop for milliseconds per answer and grade.
            db.execute("PRAGMA synchronous=NORMAL")
            version = _schema_version(db)
            if version is not None and version > SCHEMA_VERSION:
                raise HarnessError(
                    f"{path} has store schema {version}; this harness reads schema {SCHEMA_VERSION} or older"
                )
            for step in range(version or SCHEMA_VERSION, SCHEMA_VERSION):
                for statement in _UPGRADES.get(step, []):
                    db.execute(statement)
            db.executescript(SCHEMA)
            if version != SCHEMA_VERSION:
                db.execute("INSERT OR REPLACE INTO meta VALUES ('schema_version', ?)", (json.dumps(SCHEMA_VERSION),))
        except BaseException:
            db.close()
            raise
        return db

    def _connect(self, path: Path) -> sqlite3.Connection:
        """A read-only connection; an older schema is first upgraded in place (which needs write access)."""
        db = _read_only_connection(path)
        version = _schema_version(db)
        if version is None or version > SCHEMA_VERSION:
            db.close()
            raise HarnessError(
                f"{path} is not a run store this harness can read "
                + (
                    f"(store schema {version}; this harness reads {SCHEMA_VERSION} or older)"
                    if version
                    else "(no meta table)"
                )
            )
        if version < SCHEMA_VERSION:
            db.close()
            self._connect_writable(path).close()
            db = _read_only_connection(path)
        return db

    @contextlib.contextmanager
    def _guard(self) -> Iterator[None]:
        """Turn SQLite failures into HarnessErrors naming the store (a broken key stays a bug)."""
        try:
            yield
        except sqlite3.IntegrityError:
            raise
        except sqlite3.DatabaseError as error:
            raise database_error(self.path, error, damaged_fix=_DAMAGED_FIX) from None

    def _execute(self, sql: str, parameters: Sequence[Any] = ()) -> sqlite3.Cursor:
        with self._guard():
            return self._db.execute(sql, parameters)

    def _executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        with self._guard():
            self._db.executemany(sql, rows)

    def _rows(self, sql: str, parameters: Sequence[Any] = ()) -> Iterator[tuple]:
        """A query's rows, read lazily; a failure while reading is a HarnessError too."""
        with self._guard():
            cursor = self._db.execute(sql, parameters)
            while batch := cursor.fetchmany(1000):
                yield from batch

    @property
    def path(self) -> Path:
        return self.run_dir / STORE_NAME

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None
        if self._lock is not None:
            self._lock.release()

    def abandon(self) -> bool:
        """Close after a failure. A store this process created that holds no work is deleted,
        with its lock file and the directories made for it while they are empty, so a start
        that failed leaves nothing behind. Returns whether the store was deleted."""
        empty = self.created
        if self.created and self._db is not None:
            try:
                empty = not any(self.counts()[table] for table in ("generations", "grades"))
            except HarnessError:
                empty = False  # when in doubt, keep it
        if self._db is not None:
            self._db.close()
            self._db = None
        if empty:
            for name in (STORE_NAME, STORE_NAME + "-wal", STORE_NAME + "-shm"):
                with contextlib.suppress(FileNotFoundError):
                    (self.run_dir / name).unlink()
        if self._lock is not None:
            # Only the lock file of a store that goes is deleted: deleting one that others may have
            # opened would let two processes each hold "the" lock, on two different files.
            self._lock.release(remove=empty)
        if empty or not self.created:
            for directory in reversed(self._made):
                try:
                    directory.rmdir()
                except OSError:
                    break  # not empty (the server logs of a failed start stay to be read): keep it and its parents
        return empty

    # -- metadata ---------------------------------------------------------------
    def get_meta(self, key: str) -> Any:
        row = self._execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return json.loads(row[0]) if row else None

    def set_meta(self, key: str, value: Any) -> None:
        self._execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, json.dumps(value, sort_keys=True)))

    def record_task(self, name: str, config: Mapping[str, Any], combinations: list[tuple[int, list[str], str]]) -> None:
        """Record a task's resolved config and combinations; refuse a changed task on resume."""
        encoded = json.dumps(config, sort_keys=True)
        row = self._execute("SELECT config FROM tasks WHERE name = ?", (name,)).fetchone()
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
            self._execute("INSERT INTO tasks VALUES (?, ?)", (name, encoded))
            self._executemany(
                "INSERT INTO combinations VALUES (?, ?, ?, ?)",
                [(name, index, json.dumps(skills), topic) for index, skills, topic in combinations],
            )

    def task_configs(self) -> dict[str, dict[str, Any]]:
        return {name: json.loads(config) for name, config in self._rows("SELECT name, config FROM tasks ORDER BY name")}

    def combinations(self, task: str) -> dict[int, tuple[list[str], str]]:
        rows = self._rows(
            "SELECT combination, skills, topic FROM combinations WHERE task = ? ORDER BY combination", (task,)
        )
        return {index: (json.loads(skills), topic) for index, skills, topic in rows}

    def record_model(self, model: Model) -> None:
        """Record a model; refuse one whose files changed since the run started under the same name."""
        if model.identity is None:
            raise ValueError(f"model {model.name} has no identity yet")
        row = self._execute("SELECT role, identity FROM models WHERE name = ?", (model.name,)).fetchone()
        if row is not None:
            if row[1] != model.identity:
                raise HarnessError(
                    f"model {model.name!r} in {self.run_dir} was {row[1]} and is now {model.identity} "
                    "(its files or its server changed); use a new --out directory, or give the new model another name"
                )
            return
        self._execute(
            "INSERT INTO models (name, role, identity, reference, kind) VALUES (?, ?, ?, ?, ?)",
            (model.name, model.role, model.identity, model.reference, model.kind),
        )

    def models(self, role: str | None = None) -> list[Model]:
        """The recorded models (not connected: no endpoints), in the order they were recorded."""
        rows = self._rows("SELECT name, role, identity, reference, kind FROM models ORDER BY rowid")
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
        self._execute(
            "INSERT INTO sessions (started, command, versions, settings) VALUES (?, ?, ?, ?)",
            (time.time(), json.dumps(command), json.dumps(dict(versions), sort_keys=True),
             json.dumps(self.get_meta("evaluation"), sort_keys=True)),
        )  # fmt: skip

    def sessions(self) -> list[dict[str, Any]]:
        rows = self._rows("SELECT started, command, versions, settings FROM sessions ORDER BY id")
        return [
            {"started": started, "command": json.loads(command), "versions": json.loads(versions),
             "settings": json.loads(settings)}
            for started, command, versions, settings in rows
        ]  # fmt: skip

    # -- work rows --------------------------------------------------------------
    def transaction(self) -> _Transaction:
        return _Transaction(self)

    def add_generation(self, generation: Generation) -> None:
        self._execute(
            "INSERT INTO generations (task, combination, student, generation_round, turn1_prompt, turn1_reply, "
            "turn2_prompt, turn2_reply, answer, answer_marked, finish_reason, created, sampling, output_tokens) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                *generation.key,
                generation.turn1_prompt, generation.turn1_reply, generation.turn2_prompt, generation.turn2_reply,
                generation.answer, int(generation.answer_marked), generation.finish_reason, time.time(),
                _encode(generation.sampling), _encode_tokens(generation.output_tokens),
            ),
        )  # fmt: skip

    def add_grade(self, grade: Grade) -> None:
        self._execute(
            "INSERT INTO grades (task, combination, student, generation_round, judge, grading_run, style, prompt, "
            "reply, attempts, points, usable, created, sampling, reference, output_tokens) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                *grade.key, grade.judge, grade.grading_run, grade.style, grade.prompt, grade.reply, grade.attempts,
                json.dumps(list(grade.points)), int(grade.usable), time.time(), _encode(grade.sampling),
                None if grade.reference is None else _encode(grade.reference.to_dict()),
                _encode_tokens(grade.output_tokens),
            ),
        )  # fmt: skip

    def generations(self, task: str | None = None) -> Iterator[Generation]:
        query = "SELECT task, combination, student, generation_round, turn1_prompt, turn1_reply, turn2_prompt, " \
                "turn2_reply, answer, answer_marked, finish_reason, sampling, output_tokens FROM generations"  # fmt: skip
        rows = self._rows(query + (" WHERE task = ?" if task else "") + " ORDER BY rowid", (task,) if task else ())
        for row in rows:
            yield Generation(AnswerKey(*row[:4]), *row[4:9], answer_marked=bool(row[9]), finish_reason=row[10],
                             sampling=_decode(row[11]), output_tokens=_decode_tokens(row[12]))  # fmt: skip

    def grades(self, task: str | None = None) -> Iterator[Grade]:
        query = "SELECT task, combination, student, generation_round, judge, grading_run, style, prompt, reply, " \
                "attempts, points, usable, sampling, reference, output_tokens FROM grades"  # fmt: skip
        rows = self._rows(query + (" WHERE task = ?" if task else "") + " ORDER BY rowid", (task,) if task else ())
        for row in rows:
            reference = _decode(row[13])
            yield Grade(AnswerKey(*row[:4]), *row[4:10], points=tuple(json.loads(row[10])), usable=bool(row[11]),
                        sampling=_decode(row[12]), output_tokens=_decode_tokens(row[14]),
                        reference=None if reference is None else ReferenceGrade.from_dict(reference))  # fmt: skip

    def generation_keys(self) -> set[AnswerKey]:
        return {
            AnswerKey(*row)
            for row in self._rows("SELECT task, combination, student, generation_round FROM generations")
        }

    def grade_keys(self) -> set[tuple[AnswerKey, str, int]]:
        rows = self._rows("SELECT task, combination, student, generation_round, judge, grading_run FROM grades")
        return {(AnswerKey(*row[:4]), row[4], row[5]) for row in rows}

    def counts(self) -> dict[str, int]:
        return {
            table: self._execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]
            for table in ("combinations", "generations", "grades")
        }


def _encode(value: Mapping[str, Any] | None) -> str | None:
    return None if value is None else json.dumps(dict(value), sort_keys=True)


def _decode(text: str | None) -> dict[str, Any] | None:
    return None if text is None else json.loads(text)


def _encode_tokens(counts: Sequence[int | None] | None) -> str | None:
    return None if counts is None else json.dumps(list(counts))


def _decode_tokens(text: str | None) -> tuple[int | None, ...] | None:
    return None if text is None else tuple(json.loads(text))


class _Transaction:
    def __init__(self, store: RunStore):
        self._store = store

    def __enter__(self) -> None:
        self._store._execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: object, *rest: object) -> None:
        self._store._execute("ROLLBACK" if exc_type else "COMMIT")
