"""The run store's schema upgrades: a store written by an older harness opens, keeps its rows and gains the new columns."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from harness.core.store import SCHEMA_VERSION, AnswerKey, Generation, Grade, RunStore

KEY = AnswerKey("skillmix-k2-all", 0, "stu", 0)


def _store_with_one_answer(run_dir: Path) -> None:
    store = RunStore(run_dir)
    store.add_generation(Generation(KEY, "t1", "r1", "t2", "r2", "answer", True, "stop", {"turn1": {}}, (3, 4)))
    store.add_grade(Grade(KEY, "jud", 0, "items", "prompt", "reply", 2, (1.0, 0.0, 1.0, 1.0, 1.0), True, {}, (5, 6)))
    store.close()


def _downgrade(run_dir: Path, version: int) -> None:
    """Make the store look as an older harness left it."""
    with sqlite3.connect(run_dir / "run.sqlite") as db:
        dropped = {"generations": ["output_tokens"], "grades": ["output_tokens"], "models": []}
        if version <= 2:
            dropped["grades"].append("reference")
        if version == 1:
            dropped["generations"].append("sampling")
            dropped["grades"].append("sampling")
            dropped["models"].append("kind")
            db.execute("DROP TABLE sessions")
        for table, columns in dropped.items():
            for column in columns:
                db.execute(f"ALTER TABLE {table} DROP COLUMN {column}")
        db.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(version),))


def test_a_schema_3_store_gains_the_token_counts_and_keeps_its_rows(tmp_path: Path) -> None:
    _store_with_one_answer(tmp_path)
    _downgrade(tmp_path, 3)
    store = RunStore(tmp_path, create=False)
    assert store.get_meta("schema_version") == SCHEMA_VERSION == 4
    (generation,) = store.generations()
    (grade,) = store.grades()
    assert (generation.answer, generation.sampling, generation.output_tokens) == ("answer", {"turn1": {}}, None)
    assert (grade.reply, grade.attempts, grade.output_tokens) == ("reply", 2, None)


def test_a_schema_1_store_is_upgraded_step_by_step(tmp_path: Path) -> None:
    _store_with_one_answer(tmp_path)
    _downgrade(tmp_path, 1)
    store = RunStore(tmp_path, create=False)
    assert store.get_meta("schema_version") == SCHEMA_VERSION
    (generation,) = store.generations()
    (grade,) = store.grades()
    assert (generation.sampling, generation.output_tokens) == (None, None)
    assert (grade.sampling, grade.reference, grade.output_tokens) == (None, None, None)
    assert store.sessions() == []


def test_token_counts_round_trip(tmp_path: Path) -> None:
    _store_with_one_answer(tmp_path)
    store = RunStore(tmp_path, create=False)
    assert next(store.generations()).output_tokens == (3, 4)
    assert next(store.grades()).output_tokens == (5, 6)
