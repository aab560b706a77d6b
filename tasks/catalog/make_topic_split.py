"""One-off script that fixed the train/held-out split of the open topic list.

It was run once, when the catalog was written, and its result is stored in the
``split`` column of ``tasks/catalog/topics.csv``.  The harness reads that column
and never runs this script; it is kept so that anyone can check how the split
was made, and ``tests/test_catalog_data.py`` re-runs :func:`split_topics` to
confirm that the stored column still matches the rule.

The rule: each topic gets the key ``sha256(f"{seed}:{topic}")``; topics are
ordered by that key (ties, which do not occur in practice, fall back to the
topic text) and the first ``round(n * fraction)`` are held out.  Because the key
depends only on the seed and the topic, the split does not depend on the order
of the file, and adding a topic later does not reshuffle the others' keys.

Usage (stdlib only)::

    python tasks/catalog/make_topic_split.py            # rewrites topics.csv
    python tasks/catalog/make_topic_split.py --check    # exits 1 if it would change
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import sys
from collections.abc import Iterable
from pathlib import Path

# Must equal topic_split_seed in split.yaml; the catalog test checks that.
TOPIC_SPLIT_SEED = 2024
HELDOUT_FRACTION = 1 / 3
TOPICS_CSV = Path(__file__).resolve().parent / "topics.csv"


def topic_key(seed: int, topic: str) -> str:
    """The hex digest that orders a topic for the held-out draw."""
    return hashlib.sha256(f"{seed}:{topic}".encode()).hexdigest()


def split_topics(topics: Iterable[str], seed: int, fraction: float = HELDOUT_FRACTION) -> dict[str, str]:
    """Map each topic to "train" or "heldout", deterministically from the seed."""
    unique = sorted(set(topics))
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"fraction must be between 0 and 1, got {fraction}")
    by_key = sorted(unique, key=lambda topic: (topic_key(seed, topic), topic))
    n_heldout = round(len(unique) * fraction)
    heldout = set(by_key[:n_heldout])
    return {topic: ("heldout" if topic in heldout else "train") for topic in unique}


def read_topics(path: Path) -> list[str]:
    with path.open(newline="", encoding="utf-8") as handle:
        topics = [row["topic"].strip() for row in csv.DictReader(handle)]
    duplicates = sorted({t for t in topics if topics.count(t) > 1})
    if duplicates:
        raise SystemExit(f"{path}: duplicate topics {duplicates}; remove them first")
    return topics


def write_topics(path: Path, splits: dict[str, str]) -> None:
    # Alphabetical rows keep diffs readable when a topic is added by hand.
    ordered = sorted(splits, key=lambda topic: (topic.casefold(), topic))
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(["topic", "split"])
        writer.writerows([topic, splits[topic]] for topic in ordered)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--csv", type=Path, default=TOPICS_CSV)
    parser.add_argument("--seed", type=int, default=TOPIC_SPLIT_SEED)
    parser.add_argument("--check", action="store_true", help="only compare, do not write")
    args = parser.parse_args(argv)

    topics = read_topics(args.csv)
    splits = split_topics(topics, args.seed)
    if args.check:
        with args.csv.open(newline="", encoding="utf-8") as handle:
            stored = {row["topic"].strip(): row["split"] for row in csv.DictReader(handle)}
        if stored != splits:
            print(
                f"{args.csv}: stored split differs from seed {args.seed}",
                file=sys.stderr,
            )
            return 1
        print(f"{args.csv}: split matches seed {args.seed}")
        return 0
    write_topics(args.csv, splits)
    n_heldout = sum(1 for split in splits.values() if split == "heldout")
    print(f"wrote {args.csv}: {len(splits)} topics, {n_heldout} heldout (seed {args.seed})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
