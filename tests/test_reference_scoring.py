"""`harness import-skillmix` + `harness report --scoring reference` against what the reference code printed.

tests/data/skillmix-reference holds result trees written by the public SKILL-MIX
reference code and, in expected.json, every number its aggregate_metrics.py computed
for them under 62 option sets (see that folder's README.md). Each option set is
translated into our options and run through the real CLI; every value and every
std / sqrt(n) must agree to 1e-9, for every tree, student, k and metric.

How the reference's options map onto ours:

| reference option | ours |
|---|---|
| ``--filter_explicit_name`` | ``--name-penalty`` (the reference profile's default is off, as the reference's) |
| ``--indiv_pt_agg_method majority_vote / average`` | ``--grading-runs vote / average`` |
| ``--gen_pts_agg_method max / average`` | results' best round / mean over rounds (both always reported) |
| ``--pts_agg_method`` (ten metrics) | ``metrics.reference_metrics`` in results.json (three also as our metrics) |
| ``--filter_skills`` | ``--filter-skills``; ours strips each name, so only the names the reference matches are passed |
| ``--num_grading_rounds`` / ``--num_generation_rounds`` N | a copy of the tree holding the first N grading runs / rounds |
| ``--k_range`` with a k the tree lacks | nothing: we report each k under its own k (the reference shifts later rows' headers) |
"""

from __future__ import annotations

import json
import math
import shutil
from collections.abc import Iterator
from functools import cache
from pathlib import Path

import pytest
from click.testing import CliRunner

import harness.report as report_module
from harness.cli import cli
from harness.core.store import RunStore
from harness.scoring import GradedAnswer, graded_answers, scoring_profile
from harness.skillmix_tree import parse_graded_dir, parse_round_dir
from judges import reference_rules
from judges.rubric import sentence_point

DATA = Path(__file__).parent / "data" / "skillmix-reference"
EXPECTED = json.loads((DATA / "expected.json").read_text(encoding="utf-8"))
PAPER = {"all_points_earned_binary": "full_marks", "all_skills_and_good_rest": "all_skills",
         "average_over_skills_filtered": "skill_fraction"}  # fmt: skip
DEFAULT_METRICS = ",".join(PAPER)
TOLERANCE = 1e-9


def _options(argv: list[str]) -> dict[str, str | bool]:
    options: dict[str, str | bool] = {}
    index = 0
    while index < len(argv):
        name = argv[index].removeprefix("--")
        if name == "filter_explicit_name":
            options[name] = True
            index += 1
        else:
            options[name] = argv[index + 1]
            index += 2
    return options


def _cases() -> list[tuple[str, str, str]]:
    return [
        (tree, set_name, student)
        for tree, tree_doc in EXPECTED["trees"].items()
        for set_name, set_doc in tree_doc["option_sets"].items()
        for student in set_doc["students"]
    ]


@cache
def _tree_copy(root: Path, tree: str, rounds: int, runs: int) -> Path:
    """The tree with only generation rounds 1..rounds and grading runs 1..runs, imported into a run."""
    source = DATA / tree
    copy = root / f"{tree}-r{rounds}-g{runs}"
    for path in source.rglob("records.csv"):
        relative = path.relative_to(source)
        round_dir = parse_round_dir(relative.parts[0])
        graded = parse_graded_dir(relative.parts[-2]) if "graded" in relative.parts else None
        if round_dir.generation_round > rounds or (graded is not None and graded.grading_run > runs):
            continue
        (copy / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, copy / relative)
    run = root / f"run-{copy.name}"
    result = CliRunner().invoke(cli, ["import-skillmix", str(copy), "--out", str(run)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return run


@cache
def _report(run: Path, args: tuple[str, ...]) -> dict:
    result = CliRunner().invoke(cli, ["report", str(run), "--scoring", "reference", *args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "scoring: reference" in result.output
    return json.loads((run / "results.json").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    _tree_copy.cache_clear()
    _report.cache_clear()
    # Drawing report.png takes most of a report's time and none of its numbers; ~40 reports run here.
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(report_module, "plot", lambda results, path: None)
        yield tmp_path_factory.mktemp("reference-scoring")


def _same(ours: float | None, theirs: float | str) -> bool:
    if theirs == "nan":
        return ours is None or math.isnan(ours)
    return ours is not None and abs(ours - theirs) <= TOLERANCE


@pytest.mark.parametrize(("tree", "set_name", "student"), _cases())
def test_report_reproduces_the_reference_aggregation(workdir: Path, tree: str, set_name: str, student: str) -> None:
    tree_doc = EXPECTED["trees"][tree]
    expected = tree_doc["option_sets"][set_name]["students"][student]
    options = _options(expected["argv"])
    run = _tree_copy(workdir, tree, int(options["num_generation_rounds"]), int(options["num_grading_rounds"]))
    args = [
        "--grading-runs",
        "vote" if options.get("indiv_pt_agg_method", "majority_vote") == "majority_vote" else "average",
    ]
    if options.get("filter_explicit_name"):
        args.append("--name-penalty")
    # The reference splits --filter_skills at commas and strips nothing, so " red herring" matches no skill.
    exact_names = [name for name in str(options.get("filter_skills", "")).split(",") if name and name == name.strip()]
    if exact_names:
        args += ["--filter-skills", ",".join(exact_names)]
    document = _report(run, tuple(args))
    assert document["scoring"]["profile"] == "reference"
    over_rounds = options.get("gen_pts_agg_method", "max")
    metrics = str(options.get("pts_agg_method", DEFAULT_METRICS)).split(",")
    rows = {(row["k"], row["student"]): row for row in document["results"] if row["judge"] == tree_doc["judge"]}
    assert expected["results"], "every option set computes at least one k"
    checked = 0
    for k, want in expected["results"].items():
        row = rows[(int(k), student)]
        assert row["metrics"]["n"] == want["n"] == len(want["valid_combinations"])
        for metric in metrics:
            theirs = want["metrics"][metric]
            ours = row["metrics"]["reference_metrics"][metric][over_rounds]
            for field in ("value", "std", "uncertainty"):
                assert _same(ours[field], theirs[field]), (k, metric, field, ours[field], theirs[field])
                checked += 1
            if metric in PAPER:
                name = PAPER[metric] + ("" if over_rounds == "max" else "_mean")
                headline = row["metrics"][name]
                assert _same(headline["value"], theirs["value"]) and _same(
                    headline["uncertainty"], theirs["uncertainty"]
                )
    assert checked == 3 * len(metrics) * len(expected["results"])


@pytest.mark.parametrize("tree", list(EXPECTED["trees"]))
@pytest.mark.parametrize("which", ["filter_off", "filter_on"])
def test_every_grading_row_gets_the_reference_points(workdir: Path, tree: str, which: str) -> None:
    """Per grading row, before runs combine: points_0 read by position, the sentence point, the name filter."""
    tree_doc = EXPECTED["trees"][tree]
    run = _tree_copy(workdir, tree, tree_doc["generation_rounds"], tree_doc["grading_runs"])
    profile = scoring_profile("reference", name_penalty=which == "filter_on")
    store = RunStore(run, create=False)
    try:
        skills = {(task, index): combination_skills for task in store.task_configs()
                  for index, (combination_skills, _) in store.combinations(task).items()}  # fmt: skip
        answers = graded_answers(store.generations(), store.grades(), skills)
    finally:
        store.close()
    by_row = {
        (answer.k, key.student, key.generation_round, grade.grading_run, key.combination): list(
            profile.run_score(answer, grade).points
        )
        for (key, _), answer in answers.items()
        for grade in answer.grades
    }
    expected_rows = [(student, row) for student, rows in tree_doc["row_points"][which].items() for row in rows]
    assert len(expected_rows) == len(by_row)
    for student, row in expected_rows:
        key = (row["k"], student, row["generation_round"], row["grading_run"], row["combination"])
        assert by_row[key] == row["points"], key


@pytest.mark.parametrize("tree", list(EXPECTED["trees"]))
def test_the_recomputed_sentence_point_is_the_one_the_reference_stored(workdir: Path, tree: str) -> None:
    tree_doc = EXPECTED["trees"][tree]
    run = _tree_copy(workdir, tree, tree_doc["generation_rounds"], tree_doc["grading_runs"])
    store = RunStore(run, create=False)
    try:
        answers = {generation.key: generation.answer for generation in store.generations()}
        grades = list(store.grades())
    finally:
        store.close()
    assert grades and all(grade.reference is not None for grade in grades)
    for grade in grades:
        k = int(grade.key.task.split("-k", 1)[1].split("-", 1)[0])
        recomputed = sentence_point(reference_rules.count_sentences(answers[grade.key]), k)
        assert recomputed == grade.reference.sentence_point, (grade.key, answers[grade.key])


def test_the_name_filter_on_the_stored_answer_equals_the_filter_on_the_judge_prompt(workdir: Path) -> None:
    """The reference cuts the answer out of the judge prompt; we test the stored answer. Same verdicts."""
    start, end = "The student's answer was: ", "For reference, here are the definitions for the skills"
    compared = 0
    for tree, tree_doc in EXPECTED["trees"].items():
        run = _tree_copy(workdir, tree, tree_doc["generation_rounds"], tree_doc["grading_runs"])
        store = RunStore(run, create=False)
        try:
            skills = {(task, index): combination_skills for task in store.task_configs()
                      for index, (combination_skills, _) in store.combinations(task).items()}  # fmt: skip
            answers: dict = graded_answers(store.generations(), store.grades(), skills)
        finally:
            store.close()
        for answer in answers.values():
            assert isinstance(answer, GradedAnswer)
            for grade in answer.grades:
                from_prompt = grade.prompt.split(end)[0].split(start)[1].strip().lower()
                for skill in answer.skills:
                    name = skill.split("(")[0].strip().lower()
                    assert (name in from_prompt) == reference_rules.names_skill(answer.generation.answer, skill)
                    compared += 1
    assert compared > 500
