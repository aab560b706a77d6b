"""`harness agreement` and `harness labels` on runs made by the real `harness run` with scripted judges.

The judges are scripted OpenAI-compatible servers whose disagreements are laid out by
hand, so the expected agreement follows from the script, not from the code under test.
"""

from __future__ import annotations

import csv
import json
import re
import shutil
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner
from scripted_server import ScriptedServer

from harness.cli import cli
from harness.cli.agreement import agreement, labels
from harness.core.errors import HarnessError
from harness.core.models import Model
from harness.core.store import AnswerKey, Generation, Grade, RunStore
from judges.rubric import Score
from judges.styles import parse_grade

DATA = Path(__file__).parent / "data" / "agreement"
TASK = "skillmix-small-k2-all"  # k = 2: items are skill, skill, topic, sense, sentences
HARBOUR = "Answer: The harbour master checked the tide table before dawn.\nExplanation: it shows both skills."
BAKERY = "Answer: The baker shaped the loaves while the oven warmed.\nExplanation: it shows both skills."


def rubric_of(prompt: str) -> list[str]:
    block = prompt.split("Rubric (", 1)[1]
    return re.findall(r"^\d+\. (.+)$", block, flags=re.MULTILINE)


class Judge:
    """A per-item judge: points(request number, grading prompt) gives the k+3 points it awards.

    Requests are numbered from 1 in the order they arrive, so "the first two requests"
    are two distinct answers whichever answers they happen to be.
    """

    def __init__(self, points: Callable[[int, str], list[int]]):
        self.points = points
        self.count = 0
        self.lock = threading.Lock()

    def __call__(self, body: dict) -> str:
        with self.lock:
            self.count += 1
            number = self.count
        prompt = body["messages"][-1]["content"]
        items = rubric_of(prompt)
        points = self.points(number, prompt)
        assert len(points) == len(items)
        lines = []
        for index, (item, point) in enumerate(zip(items, points, strict=True)):
            lines += [f"{index + 1}. {item}", "Checked.", f"Point earned: {point}"]
        return "\n".join(lines + [f"Grade: {sum(points)}"])


# Judge a: skill 1 earned, skill 2 not, topic and sense earned (its sentence value is overridden anyway).
A_POINTS = [1, 0, 1, 1, 1]


def judge_b_points(number: int, prompt: str) -> list[int]:
    # Like a, except: request 1 flips both skills, request 2 flips skill 1, request 3 denies the topic.
    points = list(A_POINTS)
    if number == 1:
        points[0], points[1] = 0, 1
    if number == 2:
        points[0] = 0
    if number == 3:
        points[2] = 0
    return points


def invoke(command, *args: str):
    return CliRunner().invoke(command, list(args), catch_exceptions=False)


def run_task(out: Path, cache: Path, students: list[str], judges: list[str]) -> None:
    args = ["run", TASK, "--combinations", "5", "--out", str(out), "--cache", str(cache)]
    args += [arg for student in students for arg in ("--student", student)]
    args += [arg for judge in judges for arg in ("--judge", judge)]
    result = invoke(cli, *args)
    assert result.exit_code == 0, result.output


@pytest.fixture(scope="module")
def two_judge_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One student, five answers, judges a and b (read-only for the tests that use it)."""
    root = tmp_path_factory.mktemp("two-judges")
    with (
        ScriptedServer(responder=lambda body: HARBOUR) as student,
        ScriptedServer(responder=Judge(lambda number, prompt: list(A_POINTS))) as judge_a,
        ScriptedServer(responder=Judge(judge_b_points)) as judge_b,
    ):
        run_task(
            root / "run", root / "cache.sqlite", [f"stu={student.endpoint.base_url}"],
            [f"a={judge_a.endpoint.base_url}", f"b={judge_b.endpoint.base_url}"],
        )  # fmt: skip
        assert len(judge_b.requests) == 5  # one grading run per answer, none retried
    return root / "run"


def groups(document: dict) -> dict[str, dict]:
    return {group["criterion"]: group for group in document["groups"]}


def pair(group: dict, rater_a: str, rater_b: str) -> dict:
    (found,) = [p for p in group["pairs"] if (p["rater_a"], p["rater_b"]) == (rater_a, rater_b)]
    return found


# -- two judges of one run ------------------------------------------------------------
def test_two_judges_give_the_scripted_agreement(two_judge_run: Path, tmp_path: Path) -> None:
    result = invoke(agreement, str(two_judge_run), "--out", str(tmp_path), "--resamples", "200")
    assert result.exit_code == 0, result.output
    document = json.loads((tmp_path / "agreement.json").read_text())
    by_kind = groups(document)
    assert list(by_kind) == ["skill", "topic", "sense", "sentences", "overall", "full_marks"]
    for group in by_kind.values():
        assert group["raters"] == ["a", "b"]
        assert set(group["alpha"]) == {"value", "ci_low", "ci_high"}
        assert {"percent", "kappa", "confusion", "n"} <= set(group["pairs"][0])

    # Skill items, 5 answers x 2: a says (1, 0) on every answer. b agrees except on request 1
    # (both skills flipped) and request 2 (skill 1 flipped): 7 of 10 agree.
    # a: five 1s of 10; b: 1s = 3 (skill 1) + 1 (skill 2) = 4 of 10.
    # p_e = 0.5 * 0.4 + 0.5 * 0.6 = 0.5, kappa = (0.7 - 0.5) / 0.5 = 0.4.
    # alpha: 20 values, nine 1s and eleven 0s, 3 disagreeing units add 2 each to the observed mass:
    # 1 - 6 / ((400 - 81 - 121) / 19) = 1 - 114 / 198 = 14 / 33.
    skill = pair(by_kind["skill"], "a", "b")
    assert skill["n"] == 10
    assert skill["percent"]["value"] == pytest.approx(0.7)
    assert skill["kappa"]["value"] == pytest.approx(0.4)
    assert skill["confusion"] == [[4, 1], [2, 3]]  # rows a's label 0/1, columns b's
    assert by_kind["skill"]["alpha"]["value"] == pytest.approx(14 / 33)
    assert by_kind["skill"]["n_units"] == 10
    low, high = skill["kappa"]["ci_low"], skill["kappa"]["ci_high"]
    assert low is not None and low <= 0.4 <= high

    # Topic: b denies it once, a never: 4 of 5 agree; a is constant, so kappa is 0 (chance agreement 0.8).
    topic = pair(by_kind["topic"], "a", "b")
    assert (topic["n"], topic["percent"]["value"]) == (5, pytest.approx(0.8))
    assert topic["kappa"]["value"] == pytest.approx(0.0, abs=1e-12)
    # Sense and sentences: all 1 on both sides, so kappa and alpha are undefined (null), not a number.
    for kind in ("sense", "sentences"):
        same = pair(by_kind[kind], "a", "b")
        assert same["percent"]["value"] == 1.0 and same["kappa"]["value"] is None
        assert by_kind[kind]["alpha"]["value"] is None
    # Overall: 7 + 4 + 5 + 5 of 25 items agree.
    assert pair(by_kind["overall"], "a", "b")["percent"]["value"] == pytest.approx(21 / 25)
    # Full marks: a never gives skill 2; b's one skill-2 point comes with a lost skill 1: no full marks anywhere.
    full = pair(by_kind["full_marks"], "a", "b")
    assert (full["n"], full["confusion"]) == (5, [[5, 0], [0, 0]])

    notes = " ".join(document["notes"])
    assert "recomputes the sentence point" in notes
    assert "kappa for a vs b is undefined" in notes
    assert document["source"]["run"] == str(two_judge_run) and document["source"]["name_penalty"] is True
    assert document["ranks"] == []  # one student: nothing to rank
    markdown = (tmp_path / "agreement.md").read_text()
    assert "## Pairwise agreement" in markdown and "recomputes the sentence point" in markdown
    assert "Krippendorff" in result.output and "0.400" in result.output


def test_the_report_defaults_to_the_run_directory(two_judge_run: Path, tmp_path: Path) -> None:
    run = Path(shutil.copytree(two_judge_run, tmp_path / "run"))
    assert invoke(agreement, str(run), "--resamples", "100").exit_code == 0
    assert (run / "agreement.json").is_file() and (run / "agreement.md").is_file()


def test_scoring_options_choose_the_labels(two_judge_run: Path, tmp_path: Path) -> None:
    store = RunStore(two_judge_run, create=False)
    combinations = store.combinations(TASK)
    store.close()
    skill = combinations[0][0][0]
    holding = sum(skill in skills for skills, _ in combinations.values())
    result = invoke(agreement, str(two_judge_run), "--out", str(tmp_path), "--resamples", "100",
                    "--scoring", "reference", "--filter-skills", skill)  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "scoring: reference (the SKILL-MIX reference code's rules); name penalty off" in result.output
    document = json.loads((tmp_path / "agreement.json").read_text())
    assert document["source"]["scoring"].startswith("reference") and document["source"]["name_penalty"] is False
    # the combinations holding the filtered skill give no labels: two skill items per remaining answer
    assert pair(groups(document)["skill"], "a", "b")["n"] == 2 * (5 - holding)
    with pytest.raises(HarnessError, match="--scoring, --filter-skills work"):
        invoke(agreement, "--from-csv", str(DATA / "two_raters.csv"), "--scoring", "reference",
               "--filter-skills", skill)  # fmt: skip


def test_judge_selection_errors(two_judge_run: Path, tmp_path: Path) -> None:
    with pytest.raises(HarnessError, match=r"no grades by judge\(s\) zed; its judges are a, b"):
        invoke(agreement, str(two_judge_run), "--judges", "a,zed", "--out", str(tmp_path))
    with pytest.raises(HarnessError, match="--per-run") as error:
        invoke(agreement, str(two_judge_run), "--judges", "a", "--out", str(tmp_path))
    assert "--judge A --judge B" in str(error.value) and "--human" in str(error.value)
    with pytest.raises(HarnessError, match="either a RUN directory or --from-csv"):
        invoke(agreement, "--out", str(tmp_path))
    with pytest.raises(HarnessError, match="not both"):
        invoke(agreement, str(two_judge_run), "--from-csv", str(DATA / "two_raters.csv"))


def test_several_students_get_rank_agreement(tmp_path: Path) -> None:
    def full_marks_for(word: str) -> Callable[[int, str], list[int]]:
        # all five points when the answer holds `word`, else skill 1 denied
        return lambda number, prompt: [1, 1, 1, 1, 1] if word in prompt else [0, 1, 1, 1, 1]

    with (
        ScriptedServer(responder=lambda body: HARBOUR) as first,
        ScriptedServer(responder=lambda body: BAKERY) as second,
        ScriptedServer(responder=Judge(full_marks_for("harbour"))) as judge_a,
        ScriptedServer(responder=Judge(full_marks_for("baker"))) as judge_b,
    ):
        run_task(
            tmp_path / "run", tmp_path / "cache.sqlite",
            [f"harbour={first.endpoint.base_url}", f"bakery={second.endpoint.base_url}"],
            [f"a={judge_a.endpoint.base_url}", f"b={judge_b.endpoint.base_url}"],
        )  # fmt: skip
    assert invoke(agreement, str(tmp_path / "run"), "--resamples", "100").exit_code == 0
    document = json.loads((tmp_path / "run" / "agreement.json").read_text())
    # a: harbour 1.0, bakery 0.0; b: the reverse. Two models ranked in opposite order: tau = -1.
    (rank,) = document["ranks"]
    assert (rank["rater_a"], rank["rater_b"], rank["n_models"]) == ("a", "b", 2)
    assert rank["tau"] == pytest.approx(-1.0)


# -- long-format CSV ------------------------------------------------------------------
def test_from_csv_reproduces_a_kappa_worked_by_hand(tmp_path: Path) -> None:
    # tests/data/agreement/two_raters.csv, 10 skill items:
    #   rater-1: 1 1 1 1 1 1 0 0 0 0
    #   rater-2: 1 1 1 1 1 0 0 0 0 1
    # (1,1) x5, (1,0) x1, (0,0) x3, (0,1) x1: p_o = 8/10.
    # Both raters give six 1s: p_e = 0.6 * 0.6 + 0.4 * 0.4 = 0.52.
    # kappa = (0.8 - 0.52) / (1 - 0.52) = 0.28 / 0.48 = 7/12.
    result = invoke(agreement, "--from-csv", str(DATA / "two_raters.csv"), "--out", str(tmp_path), "--resamples", "200")
    assert result.exit_code == 0, result.output
    document = json.loads((tmp_path / "agreement.json").read_text())
    skill = pair(groups(document)["skill"], "rater-1", "rater-2")
    assert skill["kappa"]["value"] == pytest.approx(7 / 12)
    assert skill["percent"]["value"] == pytest.approx(0.8)
    assert skill["confusion"] == [[3, 1], [1, 5]]
    assert document["source"]["csv"].endswith("two_raters.csv")
    assert "0.583" in result.output


def test_from_csv_prints_only_unless_told_where_to_write(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    result = invoke(agreement, "--from-csv", str(DATA / "two_raters.csv"), "--resamples", "100")
    assert result.exit_code == 0 and "Pairwise agreement" in result.output
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(HarnessError, match="raters present: rater-1, rater-2"):
        invoke(agreement, "--from-csv", str(DATA / "two_raters.csv"), "--judges", "rater-1,rater-9")
    with pytest.raises(HarnessError, match="--human, --per-run"):
        invoke(agreement, "--from-csv", str(DATA / "two_raters.csv"), "--human", "x.csv", "--per-run")


# -- human label sheets ---------------------------------------------------------------
def read_sheet(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def write_sheet(path: Path, rows: list[dict[str, str]]) -> None:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def export(run: Path, out: Path, n: int, seed: int):
    return invoke(labels, "export", str(run), "--n", str(n), "--seed", str(seed), "--out", str(out))


def test_export_samples_reproducibly_with_a_column_per_rubric_item(two_judge_run: Path, tmp_path: Path) -> None:
    assert export(two_judge_run, tmp_path / "first.csv", 3, 0).exit_code == 0
    assert export(two_judge_run, tmp_path / "again.csv", 3, 0).exit_code == 0
    first = read_sheet(tmp_path / "first.csv")
    assert [row["id"] for row in first] == [row["id"] for row in read_sheet(tmp_path / "again.csv")]
    # Other seeds pick other samples: 5 answers give 10 possible sets of 3, so six seeds
    # all landing on one set would mean the seed is ignored.
    samples = set()
    for seed in range(6):
        assert export(two_judge_run, tmp_path / f"seed{seed}.csv", 3, seed).exit_code == 0
        samples.add(frozenset(row["id"] for row in read_sheet(tmp_path / f"seed{seed}.csv")))
    assert len(samples) > 1

    assert len(first) == 3
    assert [column for column in first[0] if column.startswith("item_")] == [f"item_{i}" for i in range(1, 6)]
    store = RunStore(two_judge_run, create=False)
    by_id = {"/".join(map(str, g.key)): g for g in store.generations()}
    for row in first:
        generation = by_id[row["id"]]
        assert row["task"] == generation.turn1_prompt and row["answer"] == generation.answer
        skills, topic = store.combinations(TASK)[generation.key.combination]
        assert row["k"] == "2" and f"item_3: pertains to {topic}" in row["rubric"]
        assert f"item_1: correctly illustrates {skills[0]}" in row["rubric"]
        assert all(row[f"item_{i}"] == "" for i in range(1, 6))

    everything = export(two_judge_run, tmp_path / "all.csv", 50, 0)
    assert "only 5 answers" in everything.output and len(read_sheet(tmp_path / "all.csv")) == 5
    with pytest.raises(HarnessError, match="already exists"):
        export(two_judge_run, tmp_path / "first.csv", 3, 1)
    assert [row["id"] for row in read_sheet(tmp_path / "first.csv")] == [row["id"] for row in first]


def test_filled_sheet_adds_a_human_rater(two_judge_run: Path, tmp_path: Path) -> None:
    sheet = tmp_path / "labels.csv"
    assert export(two_judge_run, sheet, 3, 0).exit_code == 0
    rows = read_sheet(sheet)
    for row in rows:
        row.update({f"item_{i}": "1" for i in range(1, 6)})
    rows[0]["item_4"] = ""  # one sense item left blank: a missing label, not a 0
    write_sheet(sheet, rows)

    checked = invoke(labels, "check", str(two_judge_run), str(sheet))
    assert checked.exit_code == 0, checked.output
    assert "3 answers, 14 of 15 items labelled, 1 blank" in checked.output

    result = invoke(agreement, str(two_judge_run), "--human", str(sheet), "--out", str(tmp_path), "--resamples", "100")
    assert result.exit_code == 0, result.output
    by_kind = groups(json.loads((tmp_path / "agreement.json").read_text()))
    assert by_kind["skill"]["raters"] == ["a", "b", "human"]
    # The human gives every skill point on 3 answers; a gives skill 1 and never skill 2: 3 of 6 agree.
    skill = pair(by_kind["skill"], "a", "human")
    assert (skill["n"], skill["percent"]["value"]) == (6, pytest.approx(0.5))
    assert skill["confusion"] == [[0, 3], [0, 3]]
    assert pair(by_kind["sense"], "a", "human")["n"] == 2  # the blank is left out
    assert pair(by_kind["skill"], "a", "b")["n"] == 10  # the judges still compare on every answer


def test_bad_sheets_are_errors_naming_the_row(two_judge_run: Path, tmp_path: Path) -> None:
    sheet = tmp_path / "labels.csv"
    assert export(two_judge_run, sheet, 3, 0).exit_code == 0
    rows = read_sheet(sheet)
    original_ids = [row["id"] for row in rows]

    rows[1]["item_2"] = "yes"
    write_sheet(sheet, rows)
    with pytest.raises(HarnessError, match=r"row 3 \(id '[^']+'\): item_2 must be 0, 1 or blank, got 'yes'"):
        invoke(agreement, str(two_judge_run), "--human", str(sheet), "--out", str(tmp_path))
    with pytest.raises(HarnessError, match="row 3"):
        invoke(labels, "check", str(two_judge_run), str(sheet))

    rows[1]["item_2"] = "1"
    rows[2]["id"] = "skillmix-small-k2-all/99/stu/1"
    write_sheet(sheet, rows)
    with pytest.raises(HarnessError, match=r"row 4 \(id 'skillmix-small-k2-all/99/stu/1'\): unknown id"):
        invoke(labels, "check", str(two_judge_run), str(sheet))

    rows[2]["id"] = original_ids[2]
    rows[0]["k"] = "1"  # the sheet would then read item_3 as sense, not topic
    write_sheet(sheet, rows)
    with pytest.raises(HarnessError, match=r"row 2 \(id '[^']+'\): k is 1, but that answer has 2 skills"):
        invoke(labels, "check", str(two_judge_run), str(sheet))


# -- inter-run agreement on real GPT-4 replies ------------------------------------------
def reference_store(reference_dir: Path, run_dir: Path) -> list[dict]:
    """A run store holding the recorded GPT-4 grading replies: three grading runs of the same answers."""
    records = [
        json.loads(line)
        for line in (reference_dir / "skillmix-gpt4-grades.jsonl").read_text(encoding="utf-8").splitlines()
        if line.strip()
    ]
    task = "reference-k3"
    combinations = {r["combination_index"]: (r["skills"], r["topic"]) for r in records}
    store = RunStore(run_dir)
    store.record_task(task, {"k": 3, "split": "all", "generation_rounds": 3, "grading_runs": 3},
                      [(index, skills, topic) for index, (skills, topic) in sorted(combinations.items())])  # fmt: skip
    for name, role in (("llama2-7b-chat", "student"), ("gpt-4", "judge")):
        store.record_model(Model(name, role, "imported", ("reference",), "reference", identity="recorded"))
    answers = {(r["generation_round"], r["combination_index"]): r["student_answer"] for r in records}
    for (generation_round, index), answer in sorted(answers.items()):
        store.add_generation(
            Generation(AnswerKey(task, index, "llama2-7b-chat", generation_round), "", "", "", "", answer, True, None)
        )
    for r in records:
        points = tuple(parse_grade(r["judge_reply"], r["skills"], r["topic"]))
        store.add_grade(
            Grade(AnswerKey(task, r["combination_index"], "llama2-7b-chat", r["generation_round"]), "gpt-4",
                  r["grading_run"], "recorded", r["judge_prompt"], r["judge_reply"], 1, points, Score.from_points(points).usable)
        )  # fmt: skip
    store.close()
    return records


def test_grading_runs_of_real_gpt4_replies_agree(reference_dir: Path, tmp_path: Path) -> None:
    records = reference_store(reference_dir, tmp_path / "run")
    # The skill values our parser reads, per answer and grading run.
    readings: dict[tuple[int, int], dict[int, list]] = {}
    for r in records:
        points = parse_grade(r["judge_reply"], r["skills"], r["topic"])
        readings.setdefault((r["generation_round"], r["combination_index"]), {})[r["grading_run"]] = points[: r["k"]]
    assert all(sorted(runs) == [1, 2, 3] for runs in readings.values())
    # Every recorded answer was graded alike by its three runs (checked here on the data itself),
    # so each pair of runs agrees on every skill item both read.
    assert all(runs[1] == runs[2] == runs[3] for runs in readings.values())
    expected_n = sum(value is not None for runs in readings.values() for value in runs[1])
    assert expected_n > 0

    # The old prompt's replies grade only the skills, so none is usable and the judge alone gives no rater.
    with pytest.raises(HarnessError, match="--per-run"):
        invoke(agreement, str(tmp_path / "run"), "--out", str(tmp_path / "judge"))

    result = invoke(
        agreement, str(tmp_path / "run"), "--per-run", "--out", str(tmp_path / "report"), "--resamples", "200"
    )
    assert result.exit_code == 0, result.output
    by_kind = groups(json.loads((tmp_path / "report" / "agreement.json").read_text()))
    assert by_kind["skill"]["raters"] == ["gpt-4#run1", "gpt-4#run2", "gpt-4#run3"]
    assert len(by_kind["skill"]["pairs"]) == 3
    for found in by_kind["skill"]["pairs"]:
        assert found["n"] == expected_n
        assert found["percent"]["value"] == 1.0
    assert "topic" not in by_kind and "sense" not in by_kind  # no reply graded them
    assert by_kind["skill"]["n_units"] == expected_n
