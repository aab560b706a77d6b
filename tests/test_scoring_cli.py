"""Scoring profiles and judge sampling through the real CLI, runner and store, with scripted HTTP servers.

* a registered judge (gpt-4o, pointed at a scripted server through OPENAI_BASE_URL) sends
  the judge temperature the README states, for every grading run, and the store says so;
* re-scoring a finished run under another profile makes no model call;
* every report names the profile it used.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from click.testing import CliRunner
from scripted_server import ScriptedServer

from harness.cli import cli
from harness.core.store import RunStore

README = Path(__file__).resolve().parents[1] / "README.md"
# A line break, not a sentence end for the reference's rule: 1 sentence for it, 2 for ours (k = 2 allows 1).
TWO_LINES = "Answer: The tide came in over the harbour wall.\nThe boats rose with it.\nExplanation: -"


def rubric_of(prompt: str) -> list[str]:
    block = prompt.split("Rubric (", 1)[1]
    return re.findall(r"^\d+\. (.+)$", block, flags=re.MULTILINE)


def table_judge(body: dict) -> str:
    """A GPT-4-style table awarding every rubric item."""
    items = rubric_of(body["messages"][-1]["content"])
    rows = [f"| {item} | 1 |" for item in items]
    return "\n".join(["| Criteria | Points Earned |", "|---|---|", *rows, f"| Total Points Earned | {len(items)} |"])


def items_judge(body: dict) -> str:
    items = rubric_of(body["messages"][-1]["content"])
    lines = [line for index, item in enumerate(items) for line in (f"{index + 1}. {item}", "Fine.", "Point earned: 1")]
    return "\n".join(lines) + f"\nGrade: {len(items)}"


def invoke(*args: str, env: dict | None = None):
    return CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)


def readme_judge_temperature() -> float:
    match = re.search(r"grading runs per answer, sampled at\s+temperature ([0-9.]+)", README.read_text())
    assert match, "the README states the judge temperature"
    return float(match[1])


def test_a_registered_judge_sends_the_temperature_the_readme_states(tmp_path: Path) -> None:
    stated = readme_judge_temperature()
    with ScriptedServer(responder=lambda body: TWO_LINES) as student, ScriptedServer(responder=table_judge) as judge:
        env = {"OPENAI_API_KEY": "sk-test", "OPENAI_BASE_URL": judge.endpoint.base_url}
        result = invoke(
            "run", "skillmix-k2-all", "--combinations", "2", "--out", str(tmp_path / "run"),
            "--cache", str(tmp_path / "cache.sqlite"), "--student", student.endpoint.base_url, "--judge", "gpt-4o",
            env=env,
        )  # fmt: skip
        assert result.exit_code == 0, result.output
    bodies = [body for _, body in judge.requests]
    # 2 combinations x 3 generation rounds x 3 grading runs, all parsed at the first ask
    assert len(bodies) == 18
    assert {body["model"] for body in bodies} == {"gpt-4o"}
    assert {body["temperature"] for body in bodies} == {stated} == {0.7}
    # every grading run is its own sample: a seed of its own (seeds are sent to the OpenAI API)
    assert len({body["seed"] for body in bodies}) == 18
    store = RunStore(tmp_path / "run", create=False)
    try:
        grades = list(store.grades())
        generations = list(store.generations())
    finally:
        store.close()
    assert len(grades) == 18 and {grade.sampling["temperature"] for grade in grades} == {stated}
    assert {generation.sampling["turn2"]["temperature"] for generation in generations} == {0.7}
    assert "temperature 0" not in result.output  # no copies warning for a registered judge


def test_a_greedy_judge_with_several_grading_runs_is_warned_about(tmp_path: Path) -> None:
    judges_dir = tmp_path / "judges"
    judges_dir.mkdir()
    with ScriptedServer(responder=lambda body: TWO_LINES) as student, ScriptedServer(responder=items_judge) as judge:
        (judges_dir / "greedy.yaml").write_text(f"model: {judge.endpoint.base_url}\nsampling: {{temperature: 0.0}}\n")
        result = invoke(
            "run", "skillmix-k2-all", "--combinations", "1", "--out", str(tmp_path / "run"),
            "--cache", str(tmp_path / "cache.sqlite"), "--student", student.endpoint.base_url,
            "--judge", "greedy", "--judges-dir", str(judges_dir),
        )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "judge greedy samples at temperature 0 for skillmix-k2-all" in result.output
    assert {body["temperature"] for _, body in judge.requests} == {0.0}


def test_rescoring_under_another_profile_makes_no_model_call_and_every_report_names_it(tmp_path: Path) -> None:
    out = tmp_path / "run"
    command = ["run", "skillmix-small-k2-all", "--combinations", "3", "--out", str(out), "--cache", str(tmp_path / "c")]
    with ScriptedServer(responder=lambda body: TWO_LINES) as student, ScriptedServer(responder=items_judge) as judge:
        models = ["--student", student.endpoint.base_url, "--judge", f"jud={judge.endpoint.base_url}"]
        first = invoke(*command, *models)
        assert first.exit_code == 0, first.output
        calls = (len(student.requests), len(judge.requests))
        again = invoke(*command, *models, "--scoring", "reference")
        assert again.exit_code == 0, again.output
        assert (len(student.requests), len(judge.requests)) == calls
    assert "nothing to do" in again.output
    # Our sentence rule counts two sentences (over the limit of one); the reference's counts one.
    assert "scoring: harness" in first.output and "scoring: reference" in again.output
    reference = json.loads((out / "results.json").read_text())
    assert reference["scoring"] == {"profile": "reference", "name_penalty": False, "grading_runs": "vote",
                                    "filter_skills": []}  # fmt: skip
    (row,) = reference["results"]
    assert row["metrics"]["full_marks"]["value"] == 1.0
    assert row["metrics"]["full_marks"]["uncertainty"] == 0.0  # the reference's std / sqrt(n)
    assert "reference_metrics" in row["metrics"] and "± 0.000" in again.output
    assert "- scoring: reference (the SKILL-MIX reference code's rules)" in (out / "report.md").read_text()
    # Back to ours, offline (the servers are gone): the two-line answer fails the sentence point.
    offline = invoke("report", str(out))
    assert offline.exit_code == 0, offline.output
    harness = json.loads((out / "results.json").read_text())
    assert harness["scoring"]["profile"] == "harness" and harness["scoring"]["name_penalty"] is True
    assert harness["results"][0]["metrics"]["full_marks"]["value"] == 0.0
    assert harness["results"][0]["metrics"]["full_marks"]["uncertainty"] is None
    assert "- scoring: harness (this harness's rules); name penalty on" in (out / "report.md").read_text()
    assert "scoring: harness" in offline.output and "±" not in offline.output


def test_filter_skills_and_name_penalty_options_on_report(tmp_path: Path) -> None:
    out = tmp_path / "run"
    with ScriptedServer(responder=lambda body: TWO_LINES) as student, ScriptedServer(responder=items_judge) as judge:
        result = invoke("run", "skillmix-small-k2-all", "--combinations", "4", "--out", str(out), "--cache",
                        str(tmp_path / "c"), "--student", student.endpoint.base_url, "--judge", judge.endpoint.base_url)  # fmt: skip
        assert result.exit_code == 0, result.output
    store = RunStore(out, create=False)
    try:
        combinations = store.combinations("skillmix-small-k2-all")
    finally:
        store.close()
    skill = combinations[0][0][0]
    holding = sum(skill in skills for skills, _ in combinations.values())
    filtered = invoke("report", str(out), "--scoring", "reference", "--filter-skills", skill, "--no-name-penalty")
    assert filtered.exit_code == 0, filtered.output
    document = json.loads((out / "results.json").read_text())
    assert document["scoring"]["filter_skills"] == [skill]
    assert document["results"][0]["metrics"]["n"] == 4 - holding
    assert document["results"][0]["combinations_left_out"] == holding
    assert f"leaving out combinations with {skill}" in filtered.output
    from harness.core.errors import HarnessError

    with pytest.raises(HarnessError, match="has no skill named 'no such skill'"):
        invoke("report", str(out), "--filter-skills", "no such skill")
