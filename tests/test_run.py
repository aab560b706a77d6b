"""`harness run` and `harness report` through the real CLI, runner and SQLite store.

The models here are scripted OpenAI-compatible HTTP servers, so the expected
metrics follow from the protocol by hand; tests/test_run_vllm.py runs the
same command on real vLLM servers.
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

ANSWER = "Answer: The harbour master checked the tide table before dawn.\nExplanation: it shows both skills."


def student(body: dict) -> str:
    return ANSWER


def rubric_of(prompt: str) -> list[str]:
    """The numbered rubric lines of a grading prompt, in order."""
    block = prompt.split("Rubric (", 1)[1]
    return re.findall(r"^\d+\. (.+)$", block, flags=re.MULTILINE)


def judge_awarding(points_for: callable):
    """A judge in the per-item style that gives points_for(index, item) for each rubric item."""

    def respond(body: dict) -> str:
        items = rubric_of(body["messages"][-1]["content"])
        lines = []
        for index, item in enumerate(items):
            lines += [f"{index + 1}. {item}", "Looks fine.", f"Point earned: {points_for(index, item)}"]
        total = sum(points_for(i, item) for i, item in enumerate(items))
        return "\n".join(lines) + f"\nGrade: {total}"

    return respond


def invoke(*args: str, env: dict | None = None):
    result = CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)
    return result


@pytest.fixture
def cache(tmp_path: Path) -> str:
    return str(tmp_path / "cache.sqlite")


def run_task(out: Path, cache: str, student_url: str, *judges: str, extra: tuple[str, ...] = ()):
    judge_args = [arg for judge in judges for arg in ("--judge", judge)]
    return invoke(
        "run", "skillmix-small-k2-all", "--combinations", "5", "--out", str(out), "--cache", cache,
        "--student", student_url, *judge_args, *extra,
    )  # fmt: skip


def results(out: Path) -> list[dict]:
    return json.loads((out / "results.json").read_text())["results"]


def test_full_marks_when_the_judge_awards_every_point(tmp_path: Path, cache: str) -> None:
    with ScriptedServer(responder=student) as s, ScriptedServer(responder=judge_awarding(lambda i, item: 1)) as j:
        result = run_task(tmp_path / "run", cache, f"stu={s.endpoint.base_url}", f"jud={j.endpoint.base_url}")
    assert result.exit_code == 0, result.output
    (row,) = results(tmp_path / "run")
    assert (row["student"], row["judge"], row["k"]) == ("stu", "jud", 2)
    metrics = row["metrics"]
    assert metrics["n"] == 5 and metrics["unscored"] == 0
    assert metrics["full_marks"]["value"] == 1.0
    assert metrics["skill_fraction"]["value"] == 1.0
    # two student turns per answer, one grading run per answer (skillmix-small)
    assert len(s.requests) == 10 and len(j.requests) == 5
    # the second turn carries the first turn and the student's reply
    second_turn = [body for _, body in s.requests if len(body["messages"]) == 3]
    assert len(second_turn) == 5 and second_turn[0]["messages"][1]["content"] == ANSWER
    assert "full marks" in result.output and "skillmix-small-k2-all" in result.output
    assert (tmp_path / "run" / "report.md").is_file()


def test_one_missed_skill_gives_the_protocol_metrics(tmp_path: Path, cache: str) -> None:
    # Skill 1 of 2 missed, the other 3 points earned (the sentence point is recomputed: 1 sentence <= 1).
    # full marks: 0; all skills: 0 (a skill is missing); skill fraction: 1/2 (the 3 others are all earned).
    with ScriptedServer(responder=student) as s, ScriptedServer(responder=judge_awarding(lambda i, item: int(i != 0))) as j:
        result = run_task(tmp_path / "run", cache, s.endpoint.base_url, j.endpoint.base_url)
    assert result.exit_code == 0, result.output
    metrics = results(tmp_path / "run")[0]["metrics"]
    assert metrics["full_marks"]["value"] == 0.0
    assert metrics["all_skills"]["value"] == 0.0
    assert metrics["skill_fraction"]["value"] == 0.5


def test_unparseable_replies_are_retried_then_unscored_never_zero(tmp_path: Path, cache: str) -> None:
    with ScriptedServer(responder=student) as s, ScriptedServer(responder=lambda body: "I cannot grade this.") as j:
        result = run_task(
            tmp_path / "run", cache, s.endpoint.base_url, j.endpoint.base_url,
            extra=("--max-grade-attempts", "3", "--request-seeds"),
        )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert len(j.requests) == 5 * 3  # every grading run asked three times
    # retries sample warmer than a greedy first ask, with a new seed each time
    seeds = {body["seed"] for _, body in j.requests}
    assert len(seeds) == 15
    metrics = results(tmp_path / "run")[0]["metrics"]
    assert metrics["n"] == 0 and metrics["unscored"] == 5
    assert metrics["full_marks"]["value"] is None
    store = RunStore(tmp_path / "run", create=False)
    grades = list(store.grades())
    assert len(grades) == 5 and not any(g.usable for g in grades)
    assert all(g.reply == "I cannot grade this." and g.attempts == 3 for g in grades)


def test_finished_run_reruns_with_no_model_call_and_rescores_offline(tmp_path: Path, cache: str) -> None:
    named = "Answer: An appeal to authority settles nothing at the harbour.\nExplanation: -"

    def naming_student(body: dict) -> str:
        skills = re.findall(r"^\d+\. Skill: (.+)$", body["messages"][0]["content"], flags=re.MULTILINE)
        return f"Answer: The {skills[0].split(' (')[0]} was plain to see at the harbour.\nExplanation: -" if skills else named

    with ScriptedServer(responder=naming_student) as s, ScriptedServer(responder=judge_awarding(lambda i, item: 1)) as j:
        first = run_task(tmp_path / "run", cache, s.endpoint.base_url, j.endpoint.base_url)
        assert first.exit_code == 0, first.output
        student_calls, judge_calls = len(s.requests), len(j.requests)
        again = run_task(tmp_path / "run", cache, s.endpoint.base_url, j.endpoint.base_url)
        assert again.exit_code == 0, again.output
        assert (len(s.requests), len(j.requests)) == (student_calls, judge_calls)
    assert "nothing to do" in again.output
    # The answers name their first skill, so the penalty zeroes it: no full marks.
    assert results(tmp_path / "run")[0]["metrics"]["full_marks"]["value"] == 0.0
    # Re-scoring without the penalty needs no server at all (both are gone now).
    offline = invoke("report", str(tmp_path / "run"), "--no-name-penalty")
    assert offline.exit_code == 0, offline.output
    assert results(tmp_path / "run")[0]["metrics"]["full_marks"]["value"] == 1.0


def test_adding_a_judge_grades_only_what_is_missing(tmp_path: Path, cache: str) -> None:
    with (
        ScriptedServer(responder=student) as s,
        ScriptedServer(responder=judge_awarding(lambda i, item: 1)) as first_judge,
        ScriptedServer(responder=judge_awarding(lambda i, item: int(i != 1))) as second_judge,
    ):
        assert run_task(tmp_path / "run", cache, s.endpoint.base_url, f"a={first_judge.endpoint.base_url}").exit_code == 0
        generated = len(s.requests)
        both = run_task(
            tmp_path / "run", cache, s.endpoint.base_url, f"a={first_judge.endpoint.base_url}", f"b={second_judge.endpoint.base_url}"
        )
        assert both.exit_code == 0, both.output
        assert len(s.requests) == generated  # no answer regenerated
        assert len(first_judge.requests) == 5 and len(second_judge.requests) == 5
    by_judge = {row["judge"]: row["metrics"] for row in results(tmp_path / "run")}
    assert by_judge["a"]["full_marks"]["value"] == 1.0
    assert by_judge["b"]["full_marks"]["value"] == 0.0


def test_a_changed_task_is_refused_in_an_existing_run(tmp_path: Path, cache: str) -> None:
    with ScriptedServer(responder=student) as s, ScriptedServer(responder=judge_awarding(lambda i, item: 1)) as j:
        assert run_task(tmp_path / "run", cache, s.endpoint.base_url, j.endpoint.base_url).exit_code == 0
    from harness.core.errors import HarnessError

    with pytest.raises(HarnessError, match=r"different configuration \(combinations: 5 -> 6\)"):
        invoke(
            "run", "skillmix-small-k2-all", "--combinations", "6", "--out", str(tmp_path / "run"), "--cache", cache,
            "--student", "http://127.0.0.1:9/v1", "--judge", "http://127.0.0.1:9/v1",
        )  # fmt: skip


def test_a_resume_with_other_settings_is_refused_unless_accepted(tmp_path: Path, cache: str) -> None:
    from harness.core.errors import HarnessError

    out = tmp_path / "run"
    with ScriptedServer(responder=student) as s, ScriptedServer(responder=judge_awarding(lambda i, item: 1)) as j:
        judge = f"jud={j.endpoint.base_url}"
        assert run_task(out, cache, s.endpoint.base_url, judge).exit_code == 0
        with pytest.raises(HarnessError, match=r"other settings: max_grade_attempts: 3 -> 2.*--accept-changes"):
            run_task(out, cache, s.endpoint.base_url, judge, extra=("--max-grade-attempts", "2"))
        with pytest.raises(HarnessError, match=r"judges\.jud\.constrained: false -> true"):
            run_task(out, cache, s.endpoint.base_url, judge, extra=("--constrained-judges",))
        accepted = run_task(out, cache, s.endpoint.base_url, judge, extra=("--max-grade-attempts", "2", "--accept-changes"))
        assert accepted.exit_code == 0, accepted.output
    store = RunStore(out, create=False)
    sessions = store.sessions()
    # one session per invocation that ran, each with its own versions; the refused ones left none
    assert len(sessions) == 2 and all(session["versions"]["python"] for session in sessions)
    assert [session["settings"]["max_grade_attempts"] for session in sessions] == [3, 2]
    assert store.get_meta("evaluation")["judges"]["jud"]["style"] is None


def test_every_generation_and_grade_stores_the_sampling_it_sent(tmp_path: Path, cache: str) -> None:
    with ScriptedServer(responder=student) as s, ScriptedServer(responder=judge_awarding(lambda i, item: 1)) as j:
        assert run_task(tmp_path / "run", cache, s.endpoint.base_url, j.endpoint.base_url).exit_code == 0
    store = RunStore(tmp_path / "run", create=False)
    sent_to_judge = [{key: body[key] for key in ("temperature", "max_tokens", "top_p")} for _, body in j.requests]
    grades = list(store.grades())
    assert len(grades) == len(sent_to_judge) == 5
    assert all(grade.sampling in sent_to_judge for grade in grades)
    # the task's judge sampling: grading runs are independent samples, not greedy copies
    assert {grade.sampling["temperature"] for grade in grades} == {0.7}
    sent_to_student = [{key: body[key] for key in ("temperature", "max_tokens", "top_p")} for _, body in s.requests]
    for generation in store.generations():
        assert generation.sampling["turn1"] in sent_to_student and generation.sampling["turn2"] in sent_to_student


def test_a_grading_style_no_judge_offers_is_refused_before_any_call(tmp_path: Path, cache: str) -> None:
    from harness.core.errors import HarnessError

    tasks = tmp_path / "tasks"
    tasks.mkdir()
    (tasks / "odd.yaml").write_text("include: skillmix.yaml\nfamily: odd\nversion: 1\ngrading_style: essay\n")
    with pytest.raises(HarnessError, match="task odd-k2-all: unknown grading style 'essay'; use one of: table, items"):
        invoke("run", "odd-k2-all", "--tasks-dir", str(tasks), "--out", str(tmp_path / "x"), "--cache", cache,
               "--student", "http://127.0.0.1:9/v1", "--judge", "http://127.0.0.1:9/v1")  # fmt: skip
    assert not (tmp_path / "x").exists()


def test_report_compares_runs_side_by_side(tmp_path: Path, cache: str) -> None:
    with ScriptedServer(responder=student) as s, ScriptedServer(responder=judge_awarding(lambda i, item: 1)) as j:
        assert run_task(tmp_path / "a", cache, s.endpoint.base_url, j.endpoint.base_url).exit_code == 0
    with ScriptedServer(responder=student) as s, ScriptedServer(responder=judge_awarding(lambda i, item: int(i != 0))) as j:
        assert run_task(tmp_path / "b", cache + "2", s.endpoint.base_url, j.endpoint.base_url).exit_code == 0
    compared = invoke("report", str(tmp_path / "a"), str(tmp_path / "b"))
    assert compared.exit_code == 0, compared.output
    assert "1.00 / 1.00 / 1.00 (5)" in compared.output
    assert "0.00 / 0.00 / 0.50 (5)" in compared.output


def test_unknown_task_and_missing_model_are_clear_errors(tmp_path: Path) -> None:
    from harness.core.errors import HarnessError

    with pytest.raises(HarnessError, match="harness tasks list"):
        invoke("run", "skillmix-k9-heldout", "--out", str(tmp_path / "x"))
    with pytest.raises(HarnessError, match="does not exist"):
        invoke("run", "skillmix-small-k2-all", "--student", str(tmp_path / "nope"), "--out", str(tmp_path / "x"))
    with pytest.raises(HarnessError, match="OPENAI_API_KEY"):
        invoke("run", "skillmix-small-k2-all", "--judge", "openai:gpt-4o", "--student", "http://127.0.0.1:9/v1",
               "--out", str(tmp_path / "y"), env={"OPENAI_API_KEY": ""})  # fmt: skip


def test_constrained_judges_send_the_rubric_regex_and_their_replies_parse(tmp_path: Path, cache: str) -> None:
    replies: list[tuple[str, str]] = []

    def constrained_judge(body: dict) -> str:
        reply = judge_awarding(lambda i, item: int(i != 0))(body)
        replies.append((body["structured_outputs"]["regex"], reply))
        return reply

    with ScriptedServer(responder=student) as s, ScriptedServer(responder=constrained_judge) as j:
        result = run_task(tmp_path / "run", cache, s.endpoint.base_url, j.endpoint.base_url, extra=("--constrained-judges",))
        assert result.exit_code == 0, result.output
        assert all("structured_outputs" not in body for _, body in s.requests)  # students are never constrained
    assert len(replies) == 5
    for regex, reply in replies:
        assert re.fullmatch(regex, reply), reply
    assert results(tmp_path / "run")[0]["metrics"]["skill_fraction"]["value"] == 0.5


def test_constrained_openai_judge_is_refused(tmp_path: Path) -> None:
    from harness.core.errors import HarnessError

    with pytest.raises(HarnessError, match="judge gpt-4o is on the OpenAI API, which takes no regex"):
        invoke("run", "skillmix-small-k2-all", "--judge", "openai:gpt-4o", "--constrained-judges",
               "--student", "http://127.0.0.1:9/v1", "--out", str(tmp_path / "y"))  # fmt: skip


def test_one_model_name_through_two_base_urls_never_shares_a_cache_entry(tmp_path: Path, cache: str, monkeypatch) -> None:
    # Two OpenAI-compatible providers that both serve "gpt-4o": what one answered must never be
    # replayed as the other's answer, even with the same key and the same response cache.
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    with (
        ScriptedServer(responder=student) as first_provider,
        ScriptedServer(responder=student) as second_provider,
        ScriptedServer(responder=judge_awarding(lambda i, item: 1)) as j,
    ):
        monkeypatch.setenv("OPENAI_BASE_URL", first_provider.endpoint.base_url)
        first = run_task(tmp_path / "first", cache, "openai:gpt-4o", j.endpoint.base_url)
        assert first.exit_code == 0, first.output
        monkeypatch.setenv("OPENAI_BASE_URL", second_provider.endpoint.base_url)
        second = run_task(tmp_path / "second", cache, "openai:gpt-4o", j.endpoint.base_url)
        assert second.exit_code == 0, second.output
    assert len(first_provider.requests) == len(second_provider.requests) == 10  # 5 answers, 2 turns each
    assert {body["model"] for _, body in second_provider.requests} == {"gpt-4o"}
    assert "gpt-4o: 10 requests, 0 from cache" in second.output
    identities = [RunStore(tmp_path / run, create=False).models("student")[0].identity for run in ("first", "second")]
    assert identities == [f"openai:gpt-4o@{first_provider.endpoint.base_url}", f"openai:gpt-4o@{second_provider.endpoint.base_url}"]
