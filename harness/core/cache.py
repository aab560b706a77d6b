"""A SQLite cache of model replies, so a repeated call never reaches a server.

The key is a hash of the model identity, the messages, the sampling
parameters and the sample index. The sample index is what lets several
independent samples of one prompt (generation rounds, grading runs) be cached
side by side instead of colliding.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sqlite3
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from harness.core.errors import HarnessError, database_error


def default_cache_path() -> Path:
    if "SKILLMIX_CACHE" in os.environ:
        return Path(os.environ["SKILLMIX_CACHE"])
    base = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return base / "skillmix-harness" / "responses.sqlite"


def cache_key(
    identity: str, messages: Sequence[Mapping[str, str]], sampling: Mapping[str, object], sample_index: int
) -> str:
    payload = json.dumps(
        {"identity": identity, "messages": list(messages), "sampling": dict(sampling), "sample_index": sample_index},
        sort_keys=True,
        ensure_ascii=False,
        separators=(",", ":"),
    )
    return hashlib.sha256(payload.encode()).hexdigest()


@dataclass(frozen=True)
class CachedReply:
    text: str
    finish_reason: str | None


_DAMAGED_FIX = "Delete it (it only saves model calls: run stores keep every reply), or pass --no-cache, or --cache with another file"


class ResponseCache:
    """Key-value store of replies. Safe to share between processes (WAL mode).

    Every SQLite failure comes out as a HarnessError naming the file.
    """

    def __init__(self, path: Path | None = None):
        self.path = Path(path) if path else default_cache_path()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise HarnessError(
                f"cannot create the directory of the response cache {self.path}: {error.strerror}"
            ) from None
        with self._guard():
            self._db = sqlite3.connect(self.path, timeout=60, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS replies ("
                " key TEXT PRIMARY KEY, identity TEXT NOT NULL, text TEXT NOT NULL,"
                " finish_reason TEXT, created REAL NOT NULL)"
            )

    @contextlib.contextmanager
    def _guard(self) -> Iterator[None]:
        try:
            yield
        except sqlite3.DatabaseError as error:
            raise database_error(self.path, error, damaged_fix=_DAMAGED_FIX) from None

    def get(self, key: str) -> CachedReply | None:
        with self._guard():
            row = self._db.execute("SELECT text, finish_reason FROM replies WHERE key = ?", (key,)).fetchone()
        return CachedReply(text=row[0], finish_reason=row[1]) if row else None

    def put(self, key: str, identity: str, reply: CachedReply) -> None:
        with self._guard():
            self._db.execute(
                "INSERT OR REPLACE INTO replies (key, identity, text, finish_reason, created) VALUES (?, ?, ?, ?, ?)",
                (key, identity, reply.text, reply.finish_reason, time.time()),
            )

    def __len__(self) -> int:
        with self._guard():
            return self._db.execute("SELECT COUNT(*) FROM replies").fetchone()[0]

    def close(self) -> None:
        self._db.close()
