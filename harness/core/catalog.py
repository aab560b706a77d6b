"""Load and validate skill catalogs: our open format and the original SKILL-MIX format.

Two layouts are read:

- the open catalog, a directory with ``skills.csv`` (category, skill, definition,
  example), ``topics.csv`` (topic, split) and ``split.yaml`` (heldout_categories);
- the original SKILL-MIX files: a skills CSV with the columns category, skill,
  definition, example, comments, status, added by, and a topics ``.txt`` file with
  one topic per line (a ``topic,split`` CSV is accepted too, to carry a topic split).

Held-out skills are the skills whose category is listed as held out; held-out
topics come from the topics' ``split`` column. A catalog without that information
only supports the split "all". Every validation error names the file and line.
"""

from __future__ import annotations

import csv
import hashlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import yaml

from harness.core.errors import HarnessError

SPLITS = ("train", "heldout", "all")
TOPIC_SPLITS = ("train", "heldout")
OPEN_SKILL_COLUMNS = ("category", "skill", "definition", "example")
SKILLMIX_SKILL_COLUMNS = (
    "category",
    "skill",
    "definition",
    "example",
    "comments",
    "status",
    "added by",
)
# The SKILL-MIX sheet marks rows its authors had not accepted with one of these statuses.
DROPPED_STATUSES = frozenset({"remove", "in review", "maybe"})
SPLIT_YAML_KEYS = frozenset({"heldout_categories", "topic_split_seed"})


@dataclass(frozen=True)
class Skill:
    name: str
    category: str
    definition: str
    example: str


@dataclass(frozen=True)
class Topic:
    name: str
    split: str | None  # "train" | "heldout", or None when the source gives no split


@dataclass(frozen=True)
class Catalog:
    """Skills and topics plus what is needed to split them and to identify the source."""

    skills: tuple[Skill, ...]
    topics: tuple[Topic, ...]
    heldout_categories: tuple[str, ...] | None  # None: the source defines no skill split
    format: str  # "open" | "skillmix"
    sources: tuple[Path, ...]  # the files read, in a fixed order
    content_hash: str  # sha256 over the files' names and bytes

    def supports(self, split: str) -> bool:
        if split == "all":
            return True
        return self.heldout_categories is not None and all(t.split is not None for t in self.topics)

    def skills_in(self, split: str) -> tuple[Skill, ...]:
        """The skills of a split, sorted by name so that file order never matters."""
        self._check_split(split)
        if split == "all":
            chosen = self.skills
        else:
            heldout = set(self.heldout_categories or ())
            want_heldout = split == "heldout"
            chosen = tuple(s for s in self.skills if (s.category in heldout) == want_heldout)
        return tuple(sorted(chosen, key=lambda s: s.name))

    def topics_in(self, split: str) -> tuple[str, ...]:
        """The topic names of a split, sorted."""
        self._check_split(split)
        return tuple(sorted(t.name for t in self.topics if split == "all" or t.split == split))

    def skill(self, name: str) -> Skill:
        for skill in self.skills:
            if skill.name == name:
                return skill
        raise HarnessError(f"skill {name!r} is not in the catalog {self.describe()}")

    def describe(self) -> str:
        return " + ".join(str(path) for path in self.sources)

    def to_dict(self) -> dict[str, object]:
        return {
            "format": self.format,
            "sources": [str(path) for path in self.sources],
            "content_hash": self.content_hash,
            "heldout_categories": None if self.heldout_categories is None else list(self.heldout_categories),
        }

    def _check_split(self, split: str) -> None:
        if split not in SPLITS:
            raise HarnessError(f"unknown split {split!r}; use one of {', '.join(SPLITS)}")
        if self.supports(split):
            return
        if self.heldout_categories is None:
            missing = "no held-out skill categories (pass --heldout-category, or use split.yaml)"
        else:
            missing = "topics without a split column (give topics as a CSV with columns topic,split)"
        raise HarnessError(
            f"the catalog {self.describe()} has {missing}, so it cannot form the {split!r} split; "
            f"use the '-all' tasks instead"
        )


def load_open_catalog(directory: Path | str) -> Catalog:
    """Read our open catalog: skills.csv, topics.csv and split.yaml in one directory."""
    directory = Path(directory)
    if not directory.is_dir():
        raise HarnessError(f"catalog directory {directory} does not exist")
    skills_path = directory / "skills.csv"
    topics_path = directory / "topics.csv"
    split_path = directory / "split.yaml"
    skills = _read_skills(skills_path, OPEN_SKILL_COLUMNS)
    topics = _read_topics_csv(topics_path)
    heldout = _read_split_yaml(split_path, skills)
    sources = (skills_path.resolve(), topics_path.resolve(), split_path.resolve())
    return Catalog(skills, topics, heldout, "open", sources, _hash_files(sources))


def load_skillmix_catalog(
    skills_file: Path | str,
    topics_file: Path | str,
    heldout_categories: Sequence[str] | None = None,
) -> Catalog:
    """Read the original SKILL-MIX skills CSV and a topics file (.txt, or .csv with a split)."""
    skills_path = Path(skills_file)
    topics_path = Path(topics_file)
    skills = _read_skills(skills_path, SKILLMIX_SKILL_COLUMNS)
    if topics_path.suffix.lower() == ".csv":
        topics = _read_topics_csv(topics_path)
    else:
        topics = _read_topics_txt(topics_path)
    heldout = None
    if heldout_categories is not None:
        heldout = _check_categories(tuple(heldout_categories), skills, "--heldout-category")
    sources = (skills_path.resolve(), topics_path.resolve())
    return Catalog(skills, topics, heldout, "skillmix", sources, _hash_files(sources))


def _read_skills(path: Path, columns: Sequence[str]) -> tuple[Skill, ...]:
    skills: list[Skill] = []
    first_line: dict[str, int] = {}
    filter_status = "status" in columns
    for line, row in _csv_rows(path, columns):
        if filter_status and row["status"].strip().lower() in DROPPED_STATUSES:
            continue
        name = row["skill"].strip()
        for column in ("skill", "category", "definition"):
            if not row[column].strip():
                raise HarnessError(f"{path}, line {line}: empty {column}" + (f" for skill {name!r}" if name else ""))
        key = name.lower()
        if key in first_line:
            raise HarnessError(
                f"{path}, line {line}: duplicate skill {name!r} (first defined on line {first_line[key]}); "
                f"skill names must be unique"
            )
        first_line[key] = line
        skills.append(
            Skill(
                name,
                row["category"].strip(),
                row["definition"].strip(),
                row["example"].strip(),
            )
        )
    if not skills:
        raise HarnessError(f"{path}: no skills found")
    return tuple(skills)


def _read_topics_csv(path: Path) -> tuple[Topic, ...]:
    topics: list[Topic] = []
    first_line: dict[str, int] = {}
    for line, row in _csv_rows(path, ("topic", "split")):
        name = row["topic"].strip()
        split = row["split"].strip().lower()
        if not name:
            raise HarnessError(f"{path}, line {line}: empty topic")
        if split not in TOPIC_SPLITS:
            raise HarnessError(f"{path}, line {line}: split must be train or heldout, not {row['split']!r}")
        _check_new_topic(path, line, name, first_line)
        topics.append(Topic(name, split))
    if not topics:
        raise HarnessError(f"{path}: no topics found")
    return tuple(topics)


def _read_topics_txt(path: Path) -> tuple[Topic, ...]:
    text = _read_text(path)
    topics: list[Topic] = []
    first_line: dict[str, int] = {}
    for line, raw in enumerate(text.splitlines(), start=1):
        name = raw.strip()
        if not name:
            continue
        _check_new_topic(path, line, name, first_line)
        topics.append(Topic(name, None))
    if not topics:
        raise HarnessError(f"{path}: no topics found (expected one topic per line)")
    return tuple(topics)


def _check_new_topic(path: Path, line: int, name: str, first_line: dict[str, int]) -> None:
    key = name.lower()
    if key in first_line:
        raise HarnessError(f"{path}, line {line}: duplicate topic {name!r} (first on line {first_line[key]})")
    first_line[key] = line


def _read_split_yaml(path: Path, skills: Sequence[Skill]) -> tuple[str, ...]:
    try:
        data = yaml.safe_load(_read_text(path))
    except yaml.YAMLError as error:
        raise HarnessError(f"{path}: not valid YAML: {error}") from None
    if not isinstance(data, dict) or "heldout_categories" not in data:
        raise HarnessError(f"{path}: expected a mapping with the key heldout_categories")
    unknown = sorted(str(key) for key in set(data) - SPLIT_YAML_KEYS)
    if unknown:
        raise HarnessError(
            f"{path}: unknown key(s) {', '.join(unknown)}; allowed: {', '.join(sorted(SPLIT_YAML_KEYS))}"
        )
    categories = data["heldout_categories"]
    if not isinstance(categories, list) or not all(isinstance(c, str) for c in categories):
        raise HarnessError(f"{path}: heldout_categories must be a list of category names")
    return _check_categories(tuple(categories), skills, str(path))


def _check_categories(categories: tuple[str, ...], skills: Sequence[Skill], where: str) -> tuple[str, ...]:
    known = sorted({s.category for s in skills})
    unknown = [c for c in categories if c not in known]
    if unknown:
        raise HarnessError(
            f"{where}: held-out categor{'y' if len(unknown) == 1 else 'ies'} {', '.join(map(repr, unknown))} "
            f"not found among the skills' categories: {', '.join(known)}"
        )
    if set(categories) == set(known):
        raise HarnessError(f"{where}: every category is held out, which leaves no training skills")
    return categories


def _csv_rows(path: Path, columns: Sequence[str]) -> Iterator[tuple[int, dict[str, str]]]:
    """Yield (line where the record starts, row by lower-cased column name), skipping blank rows."""
    text = _read_text(path)
    reader = csv.reader(text.splitlines(keepends=True))
    try:
        header = next(reader, None)
        if header is None:
            raise HarnessError(f"{path}: the file is empty; expected a header line with {', '.join(columns)}")
        names = [name.strip().lower() for name in header]
        missing = [c for c in columns if c not in names]
        if missing:
            raise HarnessError(
                f"{path}, line 1: missing column(s) {', '.join(map(repr, missing))}; "
                f"the header must include {', '.join(columns)}"
            )
        index = {c: names.index(c) for c in columns}
        start = reader.line_num + 1
        for cells in reader:
            line, start = start, reader.line_num + 1
            if not any(cell.strip() for cell in cells):
                continue
            # Short rows are missing trailing cells, which mean empty values.
            yield (
                line,
                {c: cells[i] if i < len(cells) else "" for c, i in index.items()},
            )
    except csv.Error as error:
        raise HarnessError(f"{path}, line {reader.line_num}: malformed CSV: {error}") from None


def _read_text(path: Path) -> str:
    try:
        # utf-8-sig: spreadsheets often export a byte-order mark.
        return path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise HarnessError(f"{path}: file not found") from None
    except UnicodeDecodeError as error:
        raise HarnessError(f"{path}: not UTF-8 text ({error})") from None


def _hash_files(paths: Sequence[Path]) -> str:
    digest = hashlib.sha256()
    for path in paths:
        digest.update(path.name.encode() + b"\0")
        digest.update(path.read_bytes())
        digest.update(b"\0")
    return digest.hexdigest()
