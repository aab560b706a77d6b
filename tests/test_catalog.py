"""Catalog loaders: the open format, the SKILL-MIX format, splits and validation errors."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from harness.core.catalog import load_open_catalog, load_skillmix_catalog
from harness.core.errors import HarnessError

DATA = Path(__file__).resolve().parent / "data"
FIXTURE_CATALOG = DATA / "catalog"
SKILLMIX_FIXTURE = DATA / "skillmix-format"
OPEN_HEADER = "category,skill,definition,example\n"


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def open_catalog_dir(tmp_path: Path, skills: str, topics: str = "topic,split\nA,train\nB,heldout\n") -> Path:
    write(tmp_path / "skills.csv", skills)
    write(tmp_path / "topics.csv", topics)
    write(tmp_path / "split.yaml", "heldout_categories: [logic]\n")
    return tmp_path


def test_open_catalog_splits_by_category_and_topic_column() -> None:
    catalog = load_open_catalog(FIXTURE_CATALOG)
    assert len(catalog.skills) == 14 and len(catalog.topics) == 8
    heldout = catalog.skills_in("heldout")
    train = catalog.skills_in("train")
    assert {s.category for s in heldout} == {"logical", "theory of mind"}
    assert not {s.category for s in train} & {"logical", "theory of mind"}
    assert {s.name for s in train} | {s.name for s in heldout} == {s.name for s in catalog.skills}
    assert catalog.topics_in("heldout") == ("Lighthouses", "Origami", "Volcanoes")
    assert catalog.topics_in("train") == (
        "Beekeeping",
        "Chess",
        "Gardening",
        "Rowing",
        "Sewing",
    )
    assert len(catalog.topics_in("all")) == 8


def test_splits_come_back_sorted_whatever_the_file_order() -> None:
    catalog = load_open_catalog(FIXTURE_CATALOG)
    names = [s.name for s in catalog.skills_in("all")]
    assert names == sorted(names)
    assert [s.name for s in catalog.skills] != names  # the fixture file is deliberately unsorted


def test_quoted_fields_are_unescaped() -> None:
    simile = load_open_catalog(FIXTURE_CATALOG).skill("simile")
    assert simile.definition == 'A comparison of two unlike things that uses "like" or "as".'


def test_skillmix_format_drops_unaccepted_statuses() -> None:
    catalog = load_skillmix_catalog(SKILLMIX_FIXTURE / "skills.csv", SKILLMIX_FIXTURE / "topics.txt")
    # pun (remove), circular reasoning (In Review) and base rate neglect (" maybe ") are dropped.
    assert [s.name for s in catalog.skills] == [
        "metaphor",
        "red herring",
        "modus ponens",
        "folk physics",
        "buoyancy",
    ]
    assert catalog.skill("modus ponens").example == (
        "If it rains, the match is cancelled.\nIt is raining, so the match is cancelled."
    )
    assert catalog.skill("buoyancy").example == ""
    assert [t.name for t in catalog.topics] == [
        "Sewing",
        "Chess",
        "Beekeeping",
        "Origami",
    ]
    assert catalog.format == "skillmix"


def test_skillmix_catalog_without_split_only_supports_all() -> None:
    catalog = load_skillmix_catalog(SKILLMIX_FIXTURE / "skills.csv", SKILLMIX_FIXTURE / "topics.txt")
    assert catalog.supports("all") and not catalog.supports("train")
    assert len(catalog.skills_in("all")) == 5
    with pytest.raises(HarnessError, match="held-out skill categories.*-all"):
        catalog.skills_in("train")
    with_categories = load_skillmix_catalog(
        SKILLMIX_FIXTURE / "skills.csv",
        SKILLMIX_FIXTURE / "topics.txt",
        heldout_categories=["logical"],
    )
    with pytest.raises(HarnessError, match="topics without a split"):
        with_categories.topics_in("heldout")


def test_skillmix_catalog_with_heldout_categories_and_topic_csv(tmp_path: Path) -> None:
    topics = write(tmp_path / "topics.csv", "topic,split\nSewing,train\nChess,heldout\n")
    catalog = load_skillmix_catalog(SKILLMIX_FIXTURE / "skills.csv", topics, heldout_categories=["logical"])
    assert [s.name for s in catalog.skills_in("heldout")] == ["modus ponens"]
    assert "modus ponens" not in {s.name for s in catalog.skills_in("train")}
    assert catalog.topics_in("train") == ("Sewing",)


def test_unknown_heldout_category_is_named() -> None:
    with pytest.raises(HarnessError, match="'poetry' not found"):
        load_skillmix_catalog(SKILLMIX_FIXTURE / "skills.csv", SKILLMIX_FIXTURE / "topics.txt", ["poetry"])


def test_holding_out_every_category_is_refused(tmp_path: Path) -> None:
    directory = open_catalog_dir(tmp_path, OPEN_HEADER + "logic,modus ponens,If P then Q; P; so Q.,x\n")
    with pytest.raises(HarnessError, match="no training skills"):
        load_open_catalog(directory)


def test_missing_column_names_file_and_line(tmp_path: Path) -> None:
    directory = open_catalog_dir(tmp_path, "category,skill,example\nlogic,a,x\n")
    with pytest.raises(HarnessError) as error:
        load_open_catalog(directory)
    message = str(error.value)
    assert "skills.csv, line 1" in message and "'definition'" in message


def test_skillmix_format_requires_its_status_column(tmp_path: Path) -> None:
    skills = write(tmp_path / "s.csv", OPEN_HEADER + "logic,a,def,x\n")
    with pytest.raises(HarnessError, match=r"s\.csv, line 1: missing column.*'status'"):
        load_skillmix_catalog(skills, SKILLMIX_FIXTURE / "topics.txt")


def test_duplicate_skill_names_both_lines(tmp_path: Path) -> None:
    text = OPEN_HEADER + "logic,a,one,x\nart,b,two,y\nart,A,three,z\n"
    with pytest.raises(
        HarnessError,
        match=r"skills\.csv, line 4: duplicate skill 'A' \(first defined on line 2\)",
    ):
        load_open_catalog(open_catalog_dir(tmp_path, text))


def test_line_numbers_count_multiline_records(tmp_path: Path) -> None:
    # The example on line 2 spans three physical lines, so the next record starts on line 5.
    text = OPEN_HEADER + 'logic,a,one,"first\nsecond\nthird"\nart,b,,y\n'
    with pytest.raises(HarnessError, match=r"skills\.csv, line 5: empty definition for skill 'b'"):
        load_open_catalog(open_catalog_dir(tmp_path, text))


def test_empty_definition_names_file_and_line(tmp_path: Path) -> None:
    text = "category,skill,definition,example,comments,status,added by\nlogic,a,   ,x,,,\n"
    skills = write(tmp_path / "skills.csv", text)
    with pytest.raises(HarnessError, match=r"skills\.csv, line 2: empty definition"):
        load_skillmix_catalog(skills, SKILLMIX_FIXTURE / "topics.txt")


def test_dropped_rows_are_not_validated(tmp_path: Path) -> None:
    # A row marked for removal may be unfinished; it must not block the rest of the sheet.
    text = "category,skill,definition,example,comments,status,added by\nlogic,a,def,x,,,\nlogic,b,,x,,remove,\n"
    catalog = load_skillmix_catalog(write(tmp_path / "skills.csv", text), SKILLMIX_FIXTURE / "topics.txt")
    assert [s.name for s in catalog.skills] == ["a"]


def test_topic_errors_name_file_and_line(tmp_path: Path) -> None:
    bad_split = open_catalog_dir(
        tmp_path,
        OPEN_HEADER + "logic,a,d,x\nart,b,d,y\n",
        "topic,split\nA,train\nB,test\n",
    )
    with pytest.raises(HarnessError, match=r"topics\.csv, line 3: split must be train or heldout"):
        load_open_catalog(bad_split)
    topics = write(tmp_path / "topics.txt", "Sewing\n\nChess\nsewing\n")
    with pytest.raises(
        HarnessError,
        match=r"topics\.txt, line 4: duplicate topic 'sewing' \(first on line 1\)",
    ):
        load_skillmix_catalog(SKILLMIX_FIXTURE / "skills.csv", topics)


def test_split_yaml_rejects_unknown_keys_and_categories(tmp_path: Path) -> None:
    directory = open_catalog_dir(tmp_path, OPEN_HEADER + "logic,a,d,x\nart,b,d,y\n")
    write(directory / "split.yaml", "heldout_category: [logic]\n")
    with pytest.raises(
        HarnessError,
        match=r"split\.yaml: expected a mapping with the key heldout_categories",
    ):
        load_open_catalog(directory)
    write(directory / "split.yaml", "heldout_categories: [logic]\nheldout_topics: [A]\n")
    with pytest.raises(HarnessError, match="unknown key.*heldout_topics"):
        load_open_catalog(directory)
    write(directory / "split.yaml", "heldout_categories: [logics]\n")
    with pytest.raises(HarnessError, match=r"split\.yaml.*'logics' not found"):
        load_open_catalog(directory)


def test_missing_files_and_directories_are_reported(tmp_path: Path) -> None:
    with pytest.raises(HarnessError, match="does not exist"):
        load_open_catalog(tmp_path / "nowhere")
    with pytest.raises(HarnessError, match=r"topics\.txt: file not found"):
        load_skillmix_catalog(SKILLMIX_FIXTURE / "skills.csv", tmp_path / "topics.txt")


def test_byte_order_mark_is_ignored(tmp_path: Path) -> None:
    skills = tmp_path / "skills.csv"
    skills.write_bytes(("\ufeff" + OPEN_HEADER + "logic,a,d,x\nart,b,d,y\n").encode("utf-8"))
    write(tmp_path / "topics.csv", "topic,split\nA,train\nB,heldout\n")
    write(tmp_path / "split.yaml", "heldout_categories: [logic]\n")
    assert [s.category for s in load_open_catalog(tmp_path).skills] == ["logic", "art"]


def test_content_hash_follows_file_content(tmp_path: Path) -> None:
    directory = open_catalog_dir(tmp_path, OPEN_HEADER + "logic,a,d,x\nart,b,d,y\n")
    before = load_open_catalog(directory).content_hash
    assert load_open_catalog(directory).content_hash == before
    write(directory / "topics.csv", "topic,split\nA,train\nB,heldout\nC,train\n")
    assert load_open_catalog(directory).content_hash != before


def test_public_skillmix_sample_loads(reference_dir: Path) -> None:
    skills_file = reference_dir / "skillmix-public-skills.csv"
    topics_file = reference_dir / "skillmix-public-topics.txt"
    catalog = load_skillmix_catalog(skills_file, topics_file)
    with skills_file.open(encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    kept = [r["skill"].strip() for r in rows if r["status"].strip().lower() not in {"remove", "in review", "maybe"}]
    assert [s.name for s in catalog.skills] == kept
    assert len(catalog.skills) == 10
    assert catalog.skill("metaphor").definition.startswith("a figure of speech")
    assert catalog.skill("folk physics (common knowledge physics)").category == "physical knowledge"
    topics = [t.name for t in catalog.topics]
    assert len(topics) == 10 and topics[0] == "Sewing" and topics[-1] == "Knots"
