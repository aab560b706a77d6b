"""`--prompts-from DIR`: a user's copy of the reference code's prompts/ directory as a prompt version.

The reference's own wording is never in this repository: these tests write stand-in
files in its format (JSON lists of Python format strings, with its field names).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from click.testing import CliRunner
from scripted_server import ScriptedServer

from harness.cli import cli
from harness.core.errors import HarnessError
from harness.core.reference_prompts import import_reference_prompts, number_words, sentences_words
from harness.core.store import RunStore
from judges.reference_rules import rubric_items

GENERATION = [
    "[stand-in] Write about {topic}, showing {num_skills_str} skills: {skills_str}.\n"
    "{skills_defs_and_examples_simple}\nIt costs $5 and {{braces}} stay. Start with 'Answer:'.",
    "[stand-in] Now improve it in at most {num_sentences_str}, still about {topic}.",
]
GRADE_ITEMS = [
    '[stand-in] The answer was: "{student_answer}"\nSkills:\n{skills_defs}\n'
    "Criteria: {rubric_items}.\nOne 'Point earned: 0/1' line per criterion, then 'Grade:'."
]
GRADE_TABLE = ['[stand-in] Table please for "{student_answer}". Criteria: {rubric_items}.']
ANSWER = "Answer: A calm harbour greets the fleet.\nExplanation: -"


def write_prompts(root: Path, generation=GENERATION, items=GRADE_ITEMS, table=GRADE_TABLE) -> Path:
    for name, turns in (
        ("generation/default.json", generation),
        ("grade/llama.json", items),
        ("grade/gpt.json", table),
    ):
        if turns is not None:
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            (root / name).write_text(json.dumps(turns), encoding="utf-8")
    return root


def criteria_judge(body: dict) -> str:
    """A per-item reply for every criterion the stand-in prompt lists."""
    criteria = re.search(r"Criteria: (.+)\.\n", body["messages"][-1]["content"])[1].split(", ")
    lines = [line for number, item in enumerate(criteria, 1) for line in (f"{number}. {item}", "Point earned: 1")]
    return "\n".join(lines) + f"\nGrade: {len(criteria)}"


def test_numbers_in_words() -> None:
    assert [number_words(n) for n in (1, 2, 13, 20, 21, 99, 100)] == [
        "one", "two", "thirteen", "twenty", "twenty-one", "ninety-nine", "100"
    ]  # fmt: skip
    assert (sentences_words(1), sentences_words(3)) == ("one sentence", "three sentences")


def test_rubric_items_in_the_reference_form() -> None:
    assert rubric_items(["Red Herring", "metaphor"], "Sailing", "items") == (
        "Contains red herring, Contains metaphor, Pertains to Sailing, Text makes sense, At most one sentence"
    )
    assert rubric_items(["a", "b", "c"], "T", "table").startswith("Correctly illustrates a, ")
    assert rubric_items(["a", "b", "c"], "T", "table").endswith("At most two sentences")


def test_conversion_to_templates(tmp_path: Path) -> None:
    version, directory = import_reference_prompts(write_prompts(tmp_path / "prompts"), tmp_path / "run" / "prompts")
    assert version.startswith("reference-") and directory == tmp_path / "run" / "prompts" / version
    turn1 = (directory / "student_turn1.txt").read_text()
    assert "${topic}" in turn1 and "$$5" in turn1 and "{braces}" in turn1 and "{{" not in turn1
    assert sorted(p.name for p in directory.iterdir()) == [
        "grade_items.txt", "grade_table.txt", "source.json", "student_turn1.txt", "student_turn2.txt"
    ]  # fmt: skip
    source = json.loads((directory / "source.json").read_text())
    assert set(source["sha256"]) == {"generation/default.json", "grade/llama.json", "grade/gpt.json"}
    # the same files give the same version; a changed file a new one
    assert import_reference_prompts(tmp_path / "prompts", tmp_path / "other")[0] == version
    write_prompts(tmp_path / "prompts", generation=[GENERATION[0], GENERATION[1] + " Thanks."])
    assert import_reference_prompts(tmp_path / "prompts", tmp_path / "other")[0] != version


@pytest.mark.parametrize(
    ("generation", "items", "message"),
    [
        ([GENERATION[0]], GRADE_ITEMS, "1 turn\\(s\\).*needs exactly 2"),
        (["{topik}", "x"], GRADE_ITEMS, r"unknown field \{topik\}"),
        (["{topic:>10}", "x"], GRADE_ITEMS, r"unknown field \{topic:>10\}"),
        (["{", "x"], GRADE_ITEMS, "not a valid format string"),
        (GENERATION, ["{student_answer}", "again"], "needs exactly 1"),
        ("not a list", GRADE_ITEMS, "JSON list of strings"),
    ],
)
def test_malformed_prompt_files_are_refused(tmp_path: Path, generation, items, message: str) -> None:
    with pytest.raises(HarnessError, match=message):
        import_reference_prompts(write_prompts(tmp_path, generation, items), tmp_path / "out")


def test_missing_files_are_refused(tmp_path: Path) -> None:
    with pytest.raises(HarnessError, match="no generation/default.json"):
        import_reference_prompts(tmp_path, tmp_path / "out")
    with pytest.raises(HarnessError, match="neither grade/gpt.json nor grade/llama.json"):
        import_reference_prompts(write_prompts(tmp_path, items=None, table=None), tmp_path / "out")


def test_a_run_with_prompts_from_sends_the_user_wording(tmp_path: Path) -> None:
    prompts = write_prompts(tmp_path / "skill-mix" / "prompts")
    out = tmp_path / "run"
    command = ["run", "skillmix-small-k2-all", "--combinations", "2", "--out", str(out), "--cache",
               str(tmp_path / "cache"), "--prompts-from", str(prompts.parent)]  # fmt: skip
    with ScriptedServer(responder=lambda body: ANSWER) as s, ScriptedServer(responder=criteria_judge) as j:
        result = CliRunner().invoke(
            cli, [*command, "--student", s.endpoint.base_url, "--judge", j.endpoint.base_url], catch_exceptions=False
        )
        assert result.exit_code == 0, result.output
    store = RunStore(out, create=False)
    try:
        config = store.task_configs()["skillmix-small-k2-all"]
        combinations = store.combinations("skillmix-small-k2-all")
        grades = list(store.grades())
    finally:
        store.close()
    assert config["prompt_version"].startswith("reference-") and (Path(config["prompt_dir"]) / "source.json").is_file()
    first_turns = [body["messages"] for _, body in s.requests if len(body["messages"]) == 1]
    second_turns = [body["messages"][-1]["content"] for _, body in s.requests if len(body["messages"]) == 3]
    assert len(first_turns) == 2 and len(second_turns) == 2
    skills, topic = combinations[0]
    turn1 = next(m[0]["content"] for m in first_turns if f"Write about {topic}," in m[0]["content"])
    assert turn1.startswith(
        f"[stand-in] Write about {topic}, showing two skills: {skills[0]}, {skills[1]}.\n**{skills[0]}**: "
    )
    assert " For example, " in turn1 and turn1.endswith("It costs $5 and {braces} stay. Start with 'Answer:'.")
    assert f"[stand-in] Now improve it in at most one sentence, still about {topic}." in second_turns
    judged = [body["messages"][-1]["content"] for _, body in j.requests]
    assert all(text.startswith('[stand-in] The answer was: "A calm harbour greets the fleet."') for text in judged)
    expected_items = f"Contains {skills[0].lower()}, Contains {skills[1].lower()}, Pertains to {topic}, "
    assert any(f"Criteria: {expected_items}Text makes sense, At most one sentence." in text for text in judged)
    assert len(grades) == 2 and all(grade.usable for grade in grades)
    assert json.loads((out / "results.json").read_text())["results"][0]["metrics"]["full_marks"]["value"] == 1.0
    # the prompts are part of the task: a changed file is a changed task, refused on resume
    write_prompts(prompts, generation=[GENERATION[0], "[stand-in] Shorter, {topic}."])
    with pytest.raises(HarnessError, match="different configuration"):
        CliRunner().invoke(cli, [*command, "--student", "http://127.0.0.1:9/v1", "--judge", "http://127.0.0.1:9/v1"],
                           catch_exceptions=False)  # fmt: skip
