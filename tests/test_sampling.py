"""Deterministic combination sampling: pinned draws, distinctness and clear limits."""

from __future__ import annotations

import hashlib
import json
import math
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from harness.core.catalog import load_open_catalog
from harness.core.errors import HarnessError
from harness.core.sampling import HashStream, count_combinations, sample_combinations

FIXTURE = load_open_catalog(Path(__file__).resolve().parent / "data" / "catalog")
SKILLS = [s.name for s in FIXTURE.skills]  # file order, deliberately unsorted
TOPICS = [t.name for t in FIXTURE.topics]
REPO = Path(__file__).resolve().parents[1]


def draw(
    k: int,
    count: int,
    *,
    seed: int = 13,
    stream: str | None = None,
    skills=SKILLS,
    topics=TOPICS,
):
    return sample_combinations(skills, topics, k=k, count=count, seed=seed, stream=stream or f"fixture:{k}:all")


def test_first_combinations_are_pinned() -> None:
    # Worked out outside Python from the rule in harness/sampling.py:
    #   printf '13:fixture:2:all:N' | sha256sum, then the digest mod 14, 13 and 8 with bc,
    # for N = 0..8 gives (6, 5, 6), (4, 12, 6), (4, 4, 6) as (skill, second skill, topic) picks,
    # indices into the sorted skills (14), the remaining 13 skills, and the sorted topics (8).
    first = draw(2, 3)
    assert [(c.index, c.skills, c.topic) for c in first] == [
        (0, ("modus ponens", "metaphor"), "Sewing"),
        (1, ("hyperbole", "straw man"), "Sewing"),
        (2, ("hyperbole", "metaphor"), "Sewing"),
    ]


def spec_combinations(skills, topics, k, count, seed, stream):
    """A second, plain transcription of the module docstring's rule."""
    skills, topics = sorted(skills), sorted(topics)
    blocks = (int.from_bytes(hashlib.sha256(f"{seed}:{stream}:{n}".encode()).digest(), "big") for n in range(10**9))

    def below(m):
        for value in blocks:
            if value < 2**256 - 2**256 % m:
                return value % m

    result, seen = [], []
    while len(result) < count:
        pool = list(skills)
        chosen = []
        for _ in range(k):
            chosen.append(pool.pop(below(len(pool))))
        topic = topics[below(len(topics))]
        if (sorted(chosen), topic) not in seen:
            seen.append((sorted(chosen), topic))
            result.append((tuple(chosen), topic))
    return result


@pytest.mark.parametrize("k", [1, 3, 5])
def test_matches_the_documented_rule(k: int) -> None:
    got = [(c.skills, c.topic) for c in draw(k, 60, seed=99, stream=f"other:{k}:all")]
    assert got == spec_combinations(SKILLS, TOPICS, k, 60, 99, f"other:{k}:all")


def test_same_seed_same_combinations_and_file_order_does_not_matter() -> None:
    first = draw(3, 50)
    assert draw(3, 50) == first
    assert draw(3, 50, skills=list(reversed(SKILLS)), topics=list(reversed(TOPICS))) == first
    assert draw(3, 50, seed=14) != first
    assert draw(3, 50, stream="fixture:3:train") != first


def test_same_combinations_in_a_fresh_process_with_another_hash_seed() -> None:
    # String hashing is salted per process; a sampler that leaned on set or dict order would differ.
    code = (
        "import json\nfrom harness.core.sampling import sample_combinations\n"
        f"c = sample_combinations({SKILLS!r}, {TOPICS!r}, k=4, count=40, seed=13, stream='fixture:4:all')\n"
        "print(json.dumps([x.to_dict() for x in c]))\n"
    )
    outputs = []
    for hash_seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": hash_seed}
        done = subprocess.run(
            [sys.executable, "-c", code],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        outputs.append(json.loads(done.stdout))
    assert outputs[0] == outputs[1] == [c.to_dict() for c in draw(4, 40, stream="fixture:4:all")]


@pytest.mark.parametrize("k", [1, 2, 3, 4, 5])
def test_skills_are_distinct_and_combinations_never_repeat(k: int) -> None:
    combinations = draw(k, 100)
    assert [c.index for c in combinations] == list(range(100))
    for combination in combinations:
        assert len(combination.skills) == k == len(set(combination.skills))
        assert set(combination.skills) <= set(SKILLS) and combination.topic in TOPICS
    identities = {(frozenset(c.skills), c.topic) for c in combinations}
    assert len(identities) == 100


def test_asking_for_every_combination_yields_each_once() -> None:
    skills, topics = ["a", "b", "c", "d"], ["x", "y"]
    total = count_combinations(4, 2, 2)
    assert total == math.comb(4, 2) * 2 == 12
    combinations = draw(2, total, skills=skills, topics=topics, stream="tiny:2:all")
    assert {(frozenset(c.skills), c.topic) for c in combinations} == {
        (frozenset(pair), topic)
        for pair in [
            ("a", "b"),
            ("a", "c"),
            ("a", "d"),
            ("b", "c"),
            ("b", "d"),
            ("c", "d"),
        ]
        for topic in topics
    }


def test_k_larger_than_the_split_is_an_error() -> None:
    with pytest.raises(HarnessError, match="k=6 needs 6 distinct skills but the split has only 5"):
        draw(6, 1, skills=SKILLS[:5])


def test_more_combinations_than_exist_is_an_error() -> None:
    with pytest.raises(
        HarnessError,
        match=r"13 combinations asked for, but only 12 distinct ones exist",
    ):
        draw(2, 13, skills=["a", "b", "c", "d"], topics=["x", "y"])


def test_bad_inputs_are_errors() -> None:
    with pytest.raises(HarnessError, match="k must be at least 1"):
        draw(0, 1)
    with pytest.raises(HarnessError, match="skill 'a' appears twice"):
        draw(1, 1, skills=["a", "b", "a"])
    with pytest.raises(HarnessError, match="no topics"):
        draw(1, 1, topics=[])


def test_below_rejects_values_in_the_biased_tail() -> None:
    # With bound 2**255 + 1, every block at or above the bound lies in the tail that modulo
    # would fold unevenly, so below() must return the first block smaller than the bound.
    bound = 2**255 + 1
    raw = HashStream(3, "tail")
    blocks = [raw.block() for _ in range(10)]
    assert blocks[0] >= bound  # this seed's first block is rejected, so the test exercises rejection
    expected = next(v for v in blocks if v < bound)
    assert HashStream(3, "tail").below(bound) == expected


def test_below_is_roughly_uniform() -> None:
    stream = HashStream(0, "uniformity")
    counts = Counter(stream.below(7) for _ in range(7000))
    assert set(counts) == set(range(7))
    assert all(850 <= n <= 1150 for n in counts.values())  # mean 1000, sd about 29
