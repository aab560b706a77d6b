"""Tests for harness.skillmix_tree and harness.skillmix_import: importing a SKILL-MIX reference results tree into a run store.

Two trees: the hand-written one committed under tests/data/skillmix-tree, and one built at test time
from the real GPT-4 replies in the reference data (skipped when ../shared/reference is absent).
"""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from harness.cli.skillmix import import_skillmix as import_command
from harness.core.errors import HarnessError
from harness.core.store import RunStore
from harness.skillmix_import import import_skillmix
from harness.skillmix_tree import parse_graded_dir, parse_round_dir, split_skills
from judges.rubric import Score
from judges.styles import parse_grade

FIXTURE = Path(__file__).parent / "data" / "skillmix-tree"
TASK = "skillmix-import-k2-s7-vdefault"
GENERATION_HEADER = ["k", "skills", "topic", "system prompt", "user_0", "assistant_0", "model_input_0", "text_0",
                     "user_1", "assistant_1", "model_input_1", "text_1"]  # fmt: skip
GRADING_HEADER = ["k", "skills", "topic", "system prompt", "user_0", "assistant_0", "model_input_0", "score_0",
                  "score_extracted_0", "points_0", "num_sentences_manual_in_student_answer_0",
                  "true_sentence_lim_pt_0", "num_sentences_extracted_eq_num_sentences_model_0"]  # fmt: skip


def _write_records(path: Path, header: list[str], rows: list[list[object]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)


def _read_records(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """A private copy of the committed fixture tree, safe to edit."""
    return Path(shutil.copytree(FIXTURE, tmp_path / "tree"))


# -- directory names and skills cells --------------------------------------------
def test_round_dir_names():
    parsed = parse_round_dir("k4_s10_vllama_k_greater_2_r3")
    assert (parsed.k, parsed.seed, parsed.version, parsed.generation_round) == (4, 10, "llama_k_greater_2", 3)
    assert parse_round_dir("k3_s10_v-1_r1").version == "-1"
    assert parse_round_dir("k3_s10_vdefault_r1").task == "skillmix-import-k3-s10-vdefault"
    assert parse_round_dir("k3_s10_r1") is None
    assert parse_round_dir("k3_sten_vdefault_r1") is None


def test_graded_dir_names():
    parsed = parse_graded_dir("by_gpt-4_on_text_1_2_gpt")
    assert (parsed.judge, parsed.column, parsed.grading_run, parsed.grading_version) == ("gpt-4", "text_1", 2, "gpt")
    parsed = parse_graded_dir("by_llama2-70b-chat_on_assistant_1_3_14")
    assert (parsed.judge, parsed.column, parsed.grading_run, parsed.grading_version) == (
        "llama2-70b-chat",
        "assistant_1",
        3,
        "14",
    )
    assert parse_graded_dir("by_gpt-4_on_text_1") is None
    assert parse_graded_dir("gpt-4_on_text_1_1_gpt") is None


def test_skills_cells_of_both_file_kinds():
    # generation files join with ", \n"; grading files with ",  \n"; a comma inside a name survives
    assert split_skills("metaphor, \nred herring") == ("metaphor", "red herring")
    assert split_skills("metaphor,  \nred herring") == ("metaphor", "red herring")
    assert split_skills("irony, dramatic, \nmetaphor") == ("irony, dramatic", "metaphor")
    assert split_skills("metaphor") == ("metaphor",)


# -- the committed hand-written tree ---------------------------------------------
def test_fixture_tree_counts_and_config(tmp_path: Path):
    summary = import_skillmix(FIXTURE, tmp_path / "run")
    # 2 rounds x 2 combinations; grading rows: round 1 two runs x 2, round 2 one run x 2 plus a text_0 run x 2
    assert summary.tasks == (TASK,)
    assert (summary.combinations, summary.generations_read, summary.generations_imported) == (2, 4, 4)
    assert (summary.grades_read, summary.grades_imported) == (8, 6)
    assert summary.skipped == {"graded column is not the final answer (text_1)": 2}
    assert summary.grades_unusable == 1  # the refusal in round 2, combination 1

    store = RunStore(tmp_path / "run", create=False)
    config = store.task_configs()[TASK]
    assert config["imported_from"] == str(FIXTURE.resolve())
    assert (config["k"], config["seed"], config["version"]) == (2, 7, "default")
    assert (config["generation_rounds"], config["grading_runs"]) == (2, 2)
    assert (config["grading_style"], config["family"], config["split"]) == ("imported", "skillmix-import", "all")
    assert store.combinations(TASK) == {
        0: (["metaphor", "red herring"], "Sailing"),
        1: (["modus ponens", "hyperbole"], "Baking"),
    }
    models = {model.name: model for model in store.models()}
    assert models["tiny-student"].role == "student" and models["tiny-judge"].role == "judge"
    assert models["tiny-judge"].identity == "imported:tiny-judge"
    assert store.counts() == {"combinations": 2, "generations": 4, "grades": 6}


def test_fixture_generations_carry_the_final_answer_and_both_turns(tmp_path: Path):
    import_skillmix(FIXTURE, tmp_path / "run")
    store = RunStore(tmp_path / "run", create=False)
    generations = {(g.key.generation_round, g.key.combination): g for g in store.generations()}
    rows = _read_records(FIXTURE / "k2_s7_vdefault_r1" / "tiny-student" / "records.csv")
    first = generations[(1, 0)]
    assert first.answer == rows[0]["text_1"]
    assert (first.turn1_prompt, first.turn1_reply) == (rows[0]["user_0"], rows[0]["assistant_0"])
    assert (first.turn2_prompt, first.turn2_reply) == (rows[0]["user_1"], rows[0]["assistant_1"])
    assert first.key.student == "tiny-student" and first.answer_marked
    # round 2, combination 1: the final reply has no "Answer:", so the whole reply was the answer
    assert not generations[(2, 1)].answer_marked
    assert sum(g.answer_marked for g in generations.values()) == 3


def test_fixture_grades_are_our_parser_reading_of_the_raw_reply(tmp_path: Path):
    import_skillmix(FIXTURE, tmp_path / "run")
    store = RunStore(tmp_path / "run", create=False)
    grades = {(g.key.generation_round, g.grading_run, g.key.combination): g for g in store.grades()}
    assert len(grades) == 6
    reply_file = (
        FIXTURE / "k2_s7_vdefault_r1" / "tiny-student" / "graded" / "by_tiny-judge_on_text_1_1_gpt" / "records.csv"
    )
    reply = _read_records(reply_file)[0]["assistant_0"]
    known = grades[(1, 1, 0)]
    assert known.reply == reply
    assert list(known.points) == parse_grade(reply, ["metaphor", "red herring"], "Sailing")
    # the table we wrote gives metaphor 1, red herring 0, then topic, sense and length 1
    assert known.points == (1.0, 0.0, 1.0, 1.0, 1.0)
    for grade in grades.values():
        skills, topic = store.combinations(TASK)[grade.key.combination]
        assert list(grade.points) == parse_grade(grade.reply, skills, topic)
        assert grade.usable == Score.from_points(grade.points).usable
        assert (grade.style, grade.attempts, grade.judge) == ("imported", 1, "tiny-judge")
    assert grades[(1, 2, 1)].points == (1.0, 1.0, 1.0, 0.0, 1.0)  # the per-item reply: sense 0
    assert grades[(2, 1, 1)].points == (None,) * 5 and not grades[(2, 1, 1)].usable


def test_fixture_meta_counts_and_reference_totals(tmp_path: Path):
    import_skillmix(FIXTURE, tmp_path / "run")
    meta = RunStore(tmp_path / "run", create=False).get_meta("import")
    assert meta["rows_read"] == {"generation": 4, "grading": 8}
    assert meta["imported"] == {"generations": 4, "grades": 6}
    assert meta["skipped"] == {"graded column is not the final answer (text_1)": 2}
    scores = [
        float(row["score_0"])
        for path in FIXTURE.glob("*/tiny-student/graded/by_tiny-judge_on_text_1_*/records.csv")
        for row in _read_records(path)
    ]
    reference = meta["reference_scores"][f"{TASK}/tiny-student/tiny-judge"]
    assert reference["grading_rows"] == len(scores) == 6
    assert reference["mean_score"] == pytest.approx(sum(scores) / len(scores))


def test_reimport_adds_nothing(tmp_path: Path):
    first = import_skillmix(FIXTURE, tmp_path / "run")
    store = RunStore(tmp_path / "run", create=False)
    before = (store.counts(), store.generation_keys(), store.grade_keys(), store.models())
    store.close()
    second = import_skillmix(FIXTURE, tmp_path / "run")
    store = RunStore(tmp_path / "run", create=False)
    assert (store.counts(), store.generation_keys(), store.grade_keys(), store.models()) == before
    assert (second.generations_imported, second.grades_imported, second.grades_unusable) == (0, 0, 0)
    assert (second.generations_present, second.grades_present) == (first.generations_imported, first.grades_imported)
    assert store.get_meta("import")["already_present"] == {"generations": 4, "grades": 6}


def test_reimport_of_a_grown_tree_is_refused(tree: Path, tmp_path: Path):
    import_skillmix(tree, tmp_path / "run")
    shutil.copytree(tree / "k2_s7_vdefault_r2", tree / "k2_s7_vdefault_r3")
    with pytest.raises(HarnessError, match="generation_rounds.*new --out"):
        import_skillmix(tree, tmp_path / "run")


def test_a_model_that_answers_and_grades_is_recorded_as_judge(tree: Path, tmp_path: Path):
    # The reference's own tree has gpt-4 as both; the store holds one role per name, scoring reads judges.
    for round_dir in tree.glob("k2_*"):
        (round_dir / "tiny-student").rename(round_dir / "tiny-judge")
    import_skillmix(tree, tmp_path / "run")
    store = RunStore(tmp_path / "run", create=False)
    assert [model.name for model in store.models("judge")] == ["tiny-judge"]
    assert {g.key.student for g in store.generations()} == {"tiny-judge"}
    assert store.counts()["grades"] == 6


def test_cli_prints_summary_and_next_step(tmp_path: Path):
    result = CliRunner().invoke(import_command, [str(FIXTURE), "--out", str(tmp_path / "run")])
    assert result.exit_code == 0, result.output
    assert "tasks:        1 (skillmix-import-k2-s7-vdefault)" in result.output
    assert "combinations: 2" in result.output
    assert "generations:  4 new" in result.output
    assert "grades:       6 new (1 unusable" in result.output
    assert "skipped:      2 grading row(s)" in result.output
    assert f"harness report {tmp_path / 'run'} --scoring reference" in result.output


def test_each_grade_keeps_what_the_reference_parser_stored(tmp_path: Path):
    import_skillmix(FIXTURE, tmp_path / "run")
    store = RunStore(tmp_path / "run", create=False)
    grades = {(g.key.generation_round, g.grading_run, g.key.combination): g for g in store.grades()}
    rows = _read_records(
        FIXTURE / "k2_s7_vdefault_r1" / "tiny-student" / "graded" / "by_tiny-judge_on_text_1_1_gpt" / "records.csv"
    )
    stored = grades[(1, 1, 0)].reference
    assert stored.points_0 == rows[0]["points_0"]
    assert stored.points == tuple(float(value) for value in rows[0]["points_0"].split(","))
    assert stored.sentence_point == float(rows[0]["true_sentence_lim_pt_0"])
    assert all(grade.reference is not None for grade in grades.values())


def test_a_sentence_point_the_reference_rule_does_not_give_is_reported(tree: Path, tmp_path: Path):
    path = tree / "k2_s7_vdefault_r1" / "tiny-student" / "graded" / "by_tiny-judge_on_text_1_1_gpt" / "records.csv"
    rows = _read_records(path)
    rows[0]["true_sentence_lim_pt_0"] = str(1.0 - float(rows[0]["true_sentence_lim_pt_0"]))
    _write_records(path, list(rows[0]), [list(row.values()) for row in rows])
    result = CliRunner().invoke(import_command, [str(tree), "--out", str(tmp_path / "run")])
    assert result.exit_code == 0, result.output
    assert "1 grading row(s) hold a sentence point that the reference's sentence rule does not give" in result.output
    assert RunStore(tmp_path / "run", create=False).get_meta("import")["sentence_points_differing"] == 1


def test_a_schema_2_store_is_upgraded_in_place(tmp_path: Path):
    import sqlite3

    import_skillmix(FIXTURE, tmp_path / "run")
    # Make it a schema-2 store: no reference column (SQLite >= 3.35 drops columns).
    db = sqlite3.connect(tmp_path / "run" / "run.sqlite")
    db.execute("ALTER TABLE grades DROP COLUMN reference")
    db.execute("UPDATE meta SET value = '2' WHERE key = 'schema_version'")
    db.commit()
    db.close()
    store = RunStore(tmp_path / "run", create=False)
    assert store.get_meta("schema_version") == 3
    grades = list(store.grades())
    assert len(grades) == 6 and all(grade.reference is None for grade in grades)


# -- malformed trees -------------------------------------------------------------
def test_empty_directory_says_no_records(tmp_path: Path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(HarnessError, match=r"no records\.csv under .*empty"):
        import_skillmix(tmp_path / "empty", tmp_path / "run")


def test_missing_source_directory(tmp_path: Path):
    with pytest.raises(HarnessError, match="not a directory"):
        import_skillmix(tmp_path / "nowhere", tmp_path / "run")


def test_unreadable_round_directory_name(tree: Path, tmp_path: Path):
    (tree / "k2_s7_vdefault_r1").rename(tree / "k2_seven_vdefault_r1")
    with pytest.raises(
        HarnessError, match=r"k2_seven_vdefault_r1/tiny-student/\S*records\.csv: .*'k2_seven_vdefault_r1'"
    ):
        import_skillmix(tree, tmp_path / "run")


def test_unreadable_graded_directory_name(tree: Path, tmp_path: Path):
    graded = tree / "k2_s7_vdefault_r1" / "tiny-student" / "graded"
    (graded / "by_tiny-judge_on_text_1_2_gpt").rename(graded / "tiny-judge_text_1")
    with pytest.raises(HarnessError, match=r"tiny-judge_text_1/records\.csv: .*by_<judge>_on_<column>_<run>_<version>"):
        import_skillmix(tree, tmp_path / "run")


def _answer_row(skills: str, topic: str, k: object = 2) -> list[object]:
    return [k, skills, topic, "", "ask", "Answer: hi", "in", "hi", "ask again", "Answer: hello", "in", "hello"]


def test_missing_column_names_file_and_header_line(tmp_path: Path):
    path = tmp_path / "tree" / "k2_s7_vdefault_r1" / "student" / "records.csv"
    header = [column for column in GENERATION_HEADER if column != "topic"]
    _write_records(path, header, [[2, "metaphor, \nirony", "", "a", "b", "c", "d", "e", "f", "g", "h"][: len(header)]])
    with pytest.raises(HarnessError) as error:
        import_skillmix(tmp_path / "tree", tmp_path / "run")
    assert f"{path}:1: missing column(s) topic" in str(error.value)


def test_k_that_does_not_match_the_skills_names_file_and_line(tmp_path: Path):
    path = tmp_path / "tree" / "k2_s7_vdefault_r1" / "student" / "records.csv"
    # header on line 1; the first row spans lines 2-3 (its skills cell holds a line break); the second starts on 4
    _write_records(
        path, GENERATION_HEADER, [_answer_row("metaphor, \nirony", "Sailing"), _answer_row("metaphor", "Sailing")]
    )
    assert path.read_text(encoding="utf-8").splitlines()[3].startswith("2,metaphor,Sailing")
    with pytest.raises(HarnessError) as error:
        import_skillmix(tmp_path / "tree", tmp_path / "run")
    assert f"{path}:4: " in str(error.value)
    assert "k is 2" in str(error.value) and "1 skill(s): metaphor" in str(error.value)


def test_k_column_that_disagrees_with_the_directory(tmp_path: Path):
    path = tmp_path / "tree" / "k3_s7_vdefault_r1" / "student" / "records.csv"
    _write_records(path, GENERATION_HEADER, [_answer_row("metaphor, \nirony", "Sailing")])
    with pytest.raises(HarnessError, match=rf"{path}:2: .*directory says k=3"):
        import_skillmix(tmp_path / "tree", tmp_path / "run")


def test_short_row_names_file_and_line(tmp_path: Path):
    path = tmp_path / "tree" / "k1_s7_vdefault_r1" / "student" / "records.csv"
    path.parent.mkdir(parents=True)
    path.write_text(",".join(GENERATION_HEADER) + "\n1,metaphor,Sailing\n", encoding="utf-8")
    with pytest.raises(HarnessError, match=rf"{path}:2: row has 3 fields but the header has 12"):
        import_skillmix(tmp_path / "tree", tmp_path / "run")


def test_grading_row_for_another_combination_names_file_and_line(tree: Path, tmp_path: Path):
    path = tree / "k2_s7_vdefault_r2" / "tiny-student" / "graded" / "by_tiny-judge_on_text_1_1_gpt" / "records.csv"
    rows = _read_records(path)
    rows[0]["topic"] = "Knitting"
    _write_records(path, GRADING_HEADER, [[row[column] for column in GRADING_HEADER] for row in rows])
    with pytest.raises(HarnessError) as error:
        import_skillmix(tree, tmp_path / "run")
    assert f"{path}:2: " in str(error.value) and "'Knitting'" in str(error.value)
    assert "'Sailing'" in str(error.value)


def test_conflicting_combination_between_rounds(tree: Path, tmp_path: Path):
    path = tree / "k2_s7_vdefault_r2" / "tiny-student" / "records.csv"
    rows = _read_records(path)
    rows[0]["skills"] = "metaphor, \nirony"
    _write_records(path, GENERATION_HEADER, [[row[column] for column in GENERATION_HEADER] for row in rows])
    with pytest.raises(HarnessError, match=rf"{path}:2: combination 0 is metaphor; irony .*not come"):
        import_skillmix(tree, tmp_path / "run")


def test_failed_import_writes_nothing(tree: Path, tmp_path: Path):
    (tree / "k2_s7_vdefault_r2").rename(tree / "k2_s7_r2")
    with pytest.raises(HarnessError):
        import_skillmix(tree, tmp_path / "run")
    assert not (tmp_path / "run").exists()


# -- a tree built from the real GPT-4 replies in the reference data ------------------
def _reference_tree(reference_dir: Path, root: Path) -> list[dict]:
    """Lay the recorded replies out as the reference code would have: one row per combination index."""
    records = [
        json.loads(line)
        for line in (reference_dir / "skillmix-gpt4-grades.jsonl").read_text(encoding="utf-8").splitlines()
        if line.strip()
    ]
    answers: dict[int, dict[int, dict]] = {}
    grading: dict[tuple[int, int], dict[int, dict]] = {}
    for record in records:
        answers.setdefault(record["generation_round"], {})[record["combination_index"]] = record
        grading.setdefault((record["generation_round"], record["grading_run"]), {})[record["combination_index"]] = (
            record
        )
    for round_, by_index in answers.items():
        student = root / f"k3_s10_vdefault_r{round_}" / "llama2-7b-chat"
        assert sorted(by_index) == list(range(len(by_index)))  # rows are positional
        rows = [
            _answer_row(", \n".join(r["skills"]), r["topic"], r["k"])[:11] + [r["student_answer"]]
            for _, r in sorted(by_index.items())
        ]  # fmt: skip
        _write_records(student / "records.csv", GENERATION_HEADER, rows)
    for (round_, run), by_index in grading.items():
        path = (
            root
            / f"k3_s10_vdefault_r{round_}"
            / "llama2-7b-chat"
            / "graded"
            / f"by_gpt-4_on_text_1_{run}_gpt"
            / "records.csv"
        )
        rows = [
            [r["k"], ",  \n".join(r["skills"]), r["topic"], "You are a helpful assistant.", r["judge_prompt"],
             r["judge_reply"], "", r["reference_total"], "", "", r["reference_sentence_count"],
             r["reference_sentence_point"], ""]
            for _, r in sorted(by_index.items())
        ]  # fmt: skip
        _write_records(path, GRADING_HEADER, rows)
    return records


def test_reference_replies_import_and_parse(reference_dir: Path, tmp_path: Path):
    records = _reference_tree(reference_dir, tmp_path / "tree")
    summary = import_skillmix(tmp_path / "tree", tmp_path / "run")
    answers = {(r["generation_round"], r["combination_index"]) for r in records}
    assert summary.tasks == ("skillmix-import-k3-s10-vdefault",)
    assert summary.generations_imported == len(answers)
    assert summary.grades_read == summary.grades_imported == len(records)
    assert summary.skipped == {}

    store = RunStore(tmp_path / "run", create=False)
    grades = {(g.key.generation_round, g.grading_run, g.key.combination): g for g in store.grades()}
    generations = {(g.key.generation_round, g.key.combination): g for g in store.generations()}
    for record in records:
        grade = grades[(record["generation_round"], record["grading_run"], record["combination_index"])]
        assert grade.reply == record["judge_reply"] and grade.prompt == record["judge_prompt"]
        assert list(grade.points) == parse_grade(record["judge_reply"], record["skills"], record["topic"])
        assert grade.usable == Score.from_points(grade.points).usable
        assert generations[(record["generation_round"], record["combination_index"])].answer == record["student_answer"]
    assert summary.grades_unusable == sum(not g.usable for g in grades.values())
    # "Point earned for <skill>: 0" for each of the three skills of the empty Sewing answer
    sewing = grades[(1, 1, 0)]
    assert store.combinations(sewing.key.task)[0][1] == "Sewing"
    assert sewing.points[:3] == (0.0, 0.0, 0.0)
    totals = [r["reference_total"] for r in records]
    reference = store.get_meta("import")["reference_scores"]["skillmix-import-k3-s10-vdefault/llama2-7b-chat/gpt-4"]
    assert reference["mean_score"] == pytest.approx(sum(totals) / len(totals))

    again = import_skillmix(tmp_path / "tree", tmp_path / "run")
    assert (again.generations_imported, again.grades_imported) == (0, 0)
    assert RunStore(tmp_path / "run", create=False).counts()["grades"] == len(records)
