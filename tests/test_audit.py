"""The held-out audit: clean training data passes, and a planted skill name, topic or combination fails."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from harness.cli.data import data
from harness.core.audit import HeldoutTerms, audit_dataset, heldout_tasks
from harness.core.errors import HarnessError
from harness.core.prompts import render_student_turn1
from harness.core.registry import load_registry

TEXT = "The harbour master checked the tide table before dawn."


@pytest.fixture(scope="module")
def registry():
    return load_registry()


@pytest.fixture(scope="module")
def heldout(registry):
    return heldout_tasks(registry)


def training_rows(registry, n: int = 5) -> list[dict]:
    """Rows shaped like `harness generate-data` output, from real train combinations."""
    from dataclasses import replace

    task = replace(registry.get("skillmix-k2-train"), n_combinations=n)
    return [
        {
            "messages": [
                {"role": "user", "content": render_student_turn1(task, combination)},
                {"role": "assistant", "content": f"Answer: {TEXT}"},
            ],
            "k": 2,
            "skills": list(combination.skills),
            "topic": combination.topic,
        }
        for combination in task.combinations()
    ]


def save(rows: list[dict], directory: Path) -> Path:
    import datasets

    datasets.Dataset.from_list(rows).save_to_disk(str(directory))
    return directory


def test_clean_training_data_passes(tmp_path: Path, registry, heldout) -> None:
    path = save(training_rows(registry), tmp_path / "clean")
    report = audit_dataset(path, heldout)
    assert report.ok and report.rows == 5 and report.texts == 10
    assert report.columns == ("skills", "topic")
    assert len(report.terms.tasks) == 5  # skillmix-k1..5-heldout
    result = CliRunner().invoke(data, ["audit", str(path)], catch_exceptions=False)
    assert result.exit_code == 0 and "audit OK: 5 rows" in result.output


def test_a_planted_heldout_skill_name_fails_naming_the_row(tmp_path: Path, registry, heldout) -> None:
    rows = training_rows(registry)
    rows[3]["messages"][1]["content"] = "Answer: She showed real Empathy for the harbour master."
    path = save(rows, tmp_path / "leak")
    with pytest.raises(HarnessError) as caught:
        audit_dataset(path, heldout)
    message = str(caught.value)
    assert "row 3 (assistant turn): held-out skill name 'empathy'" in message
    assert "row 0" not in message and "row 4" not in message
    with pytest.raises(HarnessError, match="row 3"):
        CliRunner().invoke(data, ["audit", str(path)], catch_exceptions=False)


def test_a_planted_heldout_topic_fails(tmp_path: Path, registry, heldout) -> None:
    rows = training_rows(registry)
    rows[1]["messages"][1]["content"] = "Answer: The harbour master sang at the Opera before dawn."
    report = audit_dataset(save(rows, tmp_path / "leak"), heldout, strict=False)
    assert [(f.row, f.kind, f.term, f.where) for f in report.findings] == [(1, "topic", "opera", "assistant turn")]


def test_a_planted_heldout_combination_fails(tmp_path: Path, registry, heldout) -> None:
    task = registry.get("skillmix-k2-heldout")
    combination = task.combinations()[7]
    rows = training_rows(registry)
    rows[2]["skills"], rows[2]["topic"] = list(reversed(combination.skills)), combination.topic  # order does not matter
    report = audit_dataset(save(rows, tmp_path / "leak"), [task], strict=False)
    kinds = {(f.row, f.kind) for f in report.findings}
    assert (2, "combination") in kinds and (2, "topic column") in kinds and (2, "skills column") in kinds
    assert {f.row for f in report.findings} == {2}  # the messages were left clean


def test_matching_is_by_whole_words_with_hyphen_and_case_variants(registry, heldout) -> None:
    terms = HeldoutTerms.from_tasks(heldout)
    assert terms.skills_named_in("a frictionless, inertial puck") == []
    assert terms.skills_named_in("Face saving  Politeness") == ["face-saving politeness"]
    assert terms.skills_named_in("her sense of folk physics") == ["folk physics (naive physics)"]
    assert terms.topics_named_in("a history of the spice trade and spice-trade routes") == ["the spice trade"]
    assert terms.topics_named_in("operatic voices") == []


def test_open_catalog_training_material_never_names_heldout_terms(registry, heldout) -> None:
    # The user turn of every row carries training skills' definitions and examples,
    # so the strict text check is only usable if those are clean.
    terms = HeldoutTerms.from_tasks(heldout)
    train = registry.get("skillmix-k1-train")
    for skill in train.skills():
        text = f"{skill.name}\n{skill.definition}\n{skill.example}"
        assert terms.text_findings(text, 0, "user turn") == [], skill.name
    for topic in train.topics():
        assert terms.text_findings(topic, 0, "user turn") == [], topic


def test_allow_exempts_a_common_word_from_text_checks_only(tmp_path: Path, registry, heldout) -> None:
    rows = training_rows(registry)
    rows[0]["messages"][1]["content"] = "Answer: Friction slowed the harbour master's cart."
    path = save(rows, tmp_path / "friction")
    with pytest.raises(HarnessError, match="held-out skill name 'friction'"):
        audit_dataset(path, heldout)
    report = audit_dataset(path, heldout, allow=["friction"])
    assert report.ok and "allowed in text: friction" in report.summary()
    with pytest.raises(HarnessError, match="neither a held-out skill nor a held-out topic"):
        audit_dataset(path, heldout, allow=["metaphor"])  # a training skill


def test_bad_paths_and_tasks_are_clear_errors(tmp_path: Path, registry, heldout) -> None:
    with pytest.raises(HarnessError, match="does not exist"):
        audit_dataset(tmp_path / "missing", heldout)
    (tmp_path / "empty").mkdir()
    with pytest.raises(HarnessError, match="not a dataset"):
        audit_dataset(tmp_path / "empty", heldout)
    path = save(training_rows(registry), tmp_path / "clean")
    with pytest.raises(HarnessError, match="audit against held-out tasks"):
        audit_dataset(path, [registry.get("skillmix-k2-train")])
    with pytest.raises(HarnessError, match="does not exist"):
        CliRunner().invoke(data, ["audit", str(tmp_path / "missing")], catch_exceptions=False)
