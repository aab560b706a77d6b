"""Draw a task's skill/topic combinations deterministically, the same on every machine.

The algorithm is a specification, not an implementation detail: runs record the
combinations they graded, and a change here silently changes every task. So it
uses nothing whose output may vary across Python versions or processes (no
`random`, no numpy, no set or dict iteration order):

1. Sort the skill names and the topic names (code-point order), so that the order
   of rows in the catalog files does not matter.
2. A stream of 256-bit integers: block ``c`` (c = 0, 1, 2, ...) is
   ``int.from_bytes(sha256(f"{seed}:{stream}:{c}".encode("utf-8")).digest(), "big")``,
   where ``stream`` is ``f"{family}:{k}:{split}"``.
3. ``below(m)`` takes the next block ``v``; if ``v >= 2**256 - 2**256 % m`` it is
   rejected and the next block taken (no modulo bias); otherwise it returns ``v % m``.
4. One candidate combination: k times, ``j = below(len(pool))`` and remove ``pool[j]``
   (pool starts as the sorted skill list), giving k distinct skills in drawn order;
   then the topic is ``topics[below(len(topics))]``.
5. A candidate whose skill set and topic equal an earlier combination's is
   discarded (the stream moves on); otherwise it becomes combination ``index``.
"""

from __future__ import annotations

import hashlib
import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

from harness.core.errors import HarnessError

_BLOCK_BITS = 256


@dataclass(frozen=True)
class Combination:
    index: int
    skills: tuple[str, ...]  # in drawn order; identity compares them as a set
    topic: str

    def to_dict(self) -> dict[str, object]:
        return {"index": self.index, "skills": list(self.skills), "topic": self.topic}


class HashStream:
    """Counter-mode integer stream over sha256; see the module docstring for the exact rule."""

    def __init__(self, seed: int, stream: str) -> None:
        self._prefix = f"{seed}:{stream}:"
        self._counter = 0

    def block(self) -> int:
        data = f"{self._prefix}{self._counter}".encode()
        self._counter += 1
        return int.from_bytes(hashlib.sha256(data).digest(), "big")

    def below(self, bound: int) -> int:
        """A uniform integer in [0, bound)."""
        if bound < 1:
            raise ValueError(f"bound must be positive, got {bound}")
        limit = (1 << _BLOCK_BITS) - (1 << _BLOCK_BITS) % bound
        while True:
            value = self.block()
            if value < limit:
                return value % bound


def count_combinations(n_skills: int, k: int, n_topics: int) -> int:
    """How many distinct (skill set, topic) combinations exist."""
    return math.comb(n_skills, k) * n_topics


def sample_combinations(
    skills: Sequence[str],
    topics: Sequence[str],
    *,
    k: int,
    count: int,
    seed: int,
    stream: str,
) -> list[Combination]:
    """Draw ``count`` distinct combinations of k distinct skills and one topic."""
    skill_pool = _sorted_unique(skills, "skill")
    topic_pool = _sorted_unique(topics, "topic")
    if k < 1:
        raise HarnessError(f"k must be at least 1, got {k} ({stream})")
    if k > len(skill_pool):
        raise HarnessError(
            f"k={k} needs {k} distinct skills but the split has only {len(skill_pool)} ({stream}); lower k"
        )
    if not topic_pool:
        raise HarnessError(f"the split has no topics ({stream})")
    available = count_combinations(len(skill_pool), k, len(topic_pool))
    if count > available:
        raise HarnessError(
            f"{count} combinations asked for, but only {available} distinct ones exist "
            f"(C({len(skill_pool)}, {k}) skill sets x {len(topic_pool)} topics; {stream}); "
            f"lower 'combinations' in the task YAML"
        )

    draws = HashStream(seed, stream)
    seen: set[tuple[tuple[str, ...], str]] = set()  # membership only; never iterated
    combinations: list[Combination] = []
    while len(combinations) < count:
        pool = list(skill_pool)
        chosen = tuple(pool.pop(draws.below(len(pool))) for _ in range(k))
        topic = topic_pool[draws.below(len(topic_pool))]
        identity = (tuple(sorted(chosen)), topic)
        if identity in seen:
            continue
        seen.add(identity)
        combinations.append(Combination(len(combinations), chosen, topic))
    return combinations


def _sorted_unique(names: Sequence[str], what: str) -> tuple[str, ...]:
    ordered = tuple(sorted(names))
    for previous, current in itertools.pairwise(ordered):
        if previous == current:
            raise HarnessError(f"{what} {current!r} appears twice; {what} names must be unique")
    return ordered
