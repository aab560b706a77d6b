"""Checks on the open catalog data files under tasks/catalog, read with the csv module only."""

from __future__ import annotations

import csv
import importlib.util
import random
import re
from collections import Counter
from pathlib import Path
from types import ModuleType

import pytest
import yaml

CATALOG_DIR = Path(__file__).resolve().parents[1] / "tasks" / "catalog"
SKILLS_CSV = CATALOG_DIR / "skills.csv"
TOPICS_CSV = CATALOG_DIR / "topics.csv"
SPLIT_YAML = CATALOG_DIR / "split.yaml"
SPLIT_SCRIPT = CATALOG_DIR / "make_topic_split.py"

MIN_SKILLS = 100
MIN_CATEGORIES = 7
MIN_PER_CATEGORY = 10
MIN_TOPICS = 100
HELDOUT_SHARE = (0.25, 0.45)


def read_rows(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        rows = list(reader)
        return list(reader.fieldnames or []), rows


@pytest.fixture(scope="module")
def skills() -> list[dict[str, str]]:
    header, rows = read_rows(SKILLS_CSV)
    assert header == ["category", "skill", "definition", "example"]
    return rows


@pytest.fixture(scope="module")
def topics() -> list[dict[str, str]]:
    header, rows = read_rows(TOPICS_CSV)
    assert header == ["topic", "split"]
    return rows


@pytest.fixture(scope="module")
def split_config() -> dict[str, object]:
    return yaml.safe_load(SPLIT_YAML.read_text(encoding="utf-8"))


def load_split_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("make_topic_split", SPLIT_SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def base_name(skill: str) -> str:
    """The part of a skill name the explicit-name penalty looks for."""
    return skill.split("(", 1)[0].strip().lower()


def aliases(skill: str) -> list[str]:
    return [alias.strip().lower() for alias in re.findall(r"\(([^)]*)\)", skill)]


def mentions(text: str, phrase: str) -> bool:
    return re.search(rf"(?<!\w){re.escape(phrase)}(?!\w)", text.lower()) is not None


# --- skills -----------------------------------------------------------------


def test_enough_skills_and_categories(skills: list[dict[str, str]]) -> None:
    per_category = Counter(row["category"] for row in skills)
    assert len(skills) >= MIN_SKILLS
    assert len(per_category) >= MIN_CATEGORIES
    small = {category: n for category, n in per_category.items() if n < MIN_PER_CATEGORY}
    assert not small, f"categories with fewer than {MIN_PER_CATEGORY} skills: {small}"


def test_category_names_are_lower_snake_case(skills: list[dict[str, str]]) -> None:
    bad = sorted({row["category"] for row in skills if not re.fullmatch(r"[a-z]+(_[a-z]+)*", row["category"])})
    assert not bad


def test_no_field_is_empty(skills: list[dict[str, str]]) -> None:
    for line, row in enumerate(skills, start=2):
        for column in ("category", "skill", "definition", "example"):
            value = row[column]
            assert value and value.strip() == value, f"skills.csv line {line}: {column} is empty or padded"


def test_skill_names_are_unique_and_lower_case(skills: list[dict[str, str]]) -> None:
    names = [row["skill"] for row in skills]
    assert all(name == name.lower() for name in names)
    assert len(set(names)) == len(names), [n for n, c in Counter(names).items() if c > 1]
    # The penalty compares base names, so two skills must not share one.
    bases = [base_name(name) for name in names]
    assert len(set(bases)) == len(bases), [n for n, c in Counter(bases).items() if c > 1]


def test_definitions_are_one_sentence_on_one_line(skills: list[dict[str, str]]) -> None:
    for row in skills:
        definition = row["definition"]
        assert "\n" not in definition and "\r" not in definition, row["skill"]
        assert definition[0].isupper() and definition.endswith("."), row["skill"]
        # A full stop, question or exclamation mark followed by a new capitalised
        # word inside the text would mean a second sentence.
        assert not re.search(r"[.!?]\s+[A-Z]", definition), row["skill"]


def test_examples_are_one_line(skills: list[dict[str, str]]) -> None:
    for row in skills:
        assert "\n" not in row["example"] and "\r" not in row["example"], row["skill"]


def test_no_example_names_its_own_skill(skills: list[dict[str, str]]) -> None:
    offenders = [row["skill"] for row in skills if mentions(row["example"], base_name(row["skill"]))]
    assert not offenders


def test_no_example_names_its_skill_alias(skills: list[dict[str, str]]) -> None:
    offenders = [
        (row["skill"], alias) for row in skills for alias in aliases(row["skill"]) if mentions(row["example"], alias)
    ]
    assert not offenders


def test_name_check_catches_a_named_example() -> None:
    # Guards the helper the two tests above rely on.
    assert mentions("That was a Red Herring, plainly.", base_name("red herring"))
    assert not mentions("A metaphorical remark.", base_name("metaphor"))


# --- topics -----------------------------------------------------------------


def test_enough_unique_topics(topics: list[dict[str, str]]) -> None:
    names = [row["topic"] for row in topics]
    assert len(names) >= MIN_TOPICS
    assert all(name and name.strip() == name for name in names)
    lowered = [name.lower() for name in names]
    assert len(set(lowered)) == len(lowered), [n for n, c in Counter(lowered).items() if c > 1]


def test_topic_splits_are_valid(topics: list[dict[str, str]]) -> None:
    assert {row["split"] for row in topics} == {"train", "heldout"}


def test_no_topic_is_a_skill(topics: list[dict[str, str]], skills: list[dict[str, str]]) -> None:
    skill_names = {base_name(row["skill"]) for row in skills}
    skill_names |= {alias for row in skills for alias in aliases(row["skill"])}
    clashes = [row["topic"] for row in topics if row["topic"].lower() in skill_names]
    assert not clashes


def test_heldout_topic_share(topics: list[dict[str, str]]) -> None:
    share = sum(row["split"] == "heldout" for row in topics) / len(topics)
    assert HELDOUT_SHARE[0] <= share <= HELDOUT_SHARE[1]


# --- split.yaml and the split script ----------------------------------------


def test_split_yaml_keys(split_config: dict[str, object]) -> None:
    assert set(split_config) == {"heldout_categories", "topic_split_seed"}
    assert isinstance(split_config["topic_split_seed"], int)
    assert "#" in SPLIT_YAML.read_text(encoding="utf-8"), "split.yaml should say why in a comment"


def test_heldout_categories_exist_and_hold_a_third(
    split_config: dict[str, object], skills: list[dict[str, str]]
) -> None:
    heldout = split_config["heldout_categories"]
    assert isinstance(heldout, list) and len(heldout) >= 2
    assert len(set(heldout)) == len(heldout)
    categories = {row["category"] for row in skills}
    assert set(heldout) <= categories
    assert categories - set(heldout), "at least one category must stay in training"
    share = sum(row["category"] in heldout for row in skills) / len(skills)
    assert HELDOUT_SHARE[0] <= share <= HELDOUT_SHARE[1]


def test_stored_topic_split_matches_the_script(split_config: dict[str, object], topics: list[dict[str, str]]) -> None:
    script = load_split_script()
    assert script.TOPIC_SPLIT_SEED == split_config["topic_split_seed"]
    stored = {row["topic"]: row["split"] for row in topics}
    assert script.split_topics(stored, split_config["topic_split_seed"]) == stored


def test_split_rule_ignores_order_and_depends_on_seed(
    topics: list[dict[str, str]],
) -> None:
    script = load_split_script()
    names = [row["topic"] for row in topics]
    shuffled = names[:]
    random.Random(0).shuffle(shuffled)
    assert script.split_topics(shuffled, 2024) == script.split_topics(names, 2024)
    assert script.split_topics(names, 2024) != script.split_topics(names, 2025)
    held = sum(split == "heldout" for split in script.split_topics(names, 7).values())
    assert held == round(len(names) / 3)
