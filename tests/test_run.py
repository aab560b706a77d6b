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
    with (
        ScriptedServer(responder=student) as s,
        ScriptedServer(responder=judge_awarding(lambda i, item: int(i != 0))) as j,
    ):
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
        return (
            f"Answer: The {skills[0].split(' (')[0]} was plain to see at the harbour.\nExplanation: -"
            if skills
            else named
        )

    with (
        ScriptedServer(responder=naming_student) as s,
        ScriptedServer(responder=judge_awarding(lambda i, item: 1)) as j,
    ):
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
        assert (
            run_task(tmp_path / "run", cache, s.endpoint.base_url, f"a={first_judge.endpoint.base_url}").exit_code == 0
        )
        generated = len(s.requests)
        both = run_task(
            tmp_path / "run",
            cache,
            s.endpoint.base_url,
            f"a={first_judge.endpoint.base_url}",
            f"b={second_judge.endpoint.base_url}",
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
        accepted = run_task(
            out, cache, s.endpoint.base_url, judge, extra=("--max-grade-attempts", "2", "--accept-changes")
        )
        assert accepted.exit_code == 0, accepted.output
    store = RunStore(out, create=False)
    sessions = store.sessions()
    # one session per invocation that ran, each with its own versions; the refused ones left none
    assert len(sessions) == 2 and all(session["versions"]["python"] for session in sessions)
    assert [session["settings"]["max_grade_attempts"] for session in sessions] == [3, 2]
    assert store.get_meta("evaluation")["judges"]["jud"]["style"] is None


def test_every_generation_and_grade_stores_the_sampling_it_sent_and_the_tokens_it_got(
    tmp_path: Path, cache: str
) -> None:
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
        # and the tokens each turn generated, as the server counted them (here: words)
        assert generation.output_tokens == (len(ANSWER.split()), len(ANSWER.split()))
    assert all(grade.output_tokens == (len(grade.reply.split()),) for grade in grades)


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
    with (
        ScriptedServer(responder=student) as s,
        ScriptedServer(responder=judge_awarding(lambda i, item: int(i != 0))) as j,
    ):
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
        result = run_task(
            tmp_path / "run", cache, s.endpoint.base_url, j.endpoint.base_url, extra=("--constrained-judges",)
        )
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


def test_run_keeps_every_conversation_in_flight_up_to_the_endpoint_limit(tmp_path: Path, cache: str) -> None:
    # The servers hold each request until 12 are in flight together (or 2 s pass): a runner that
    # sends all 12 conversations at once is released at once and seen at 12; one that awaits one
    # request at a time is seen at 1.
    combinations = ("--combinations", "12")
    with ScriptedServer(responder=student) as s, ScriptedServer(responder=judge_awarding(lambda i, item: 1)) as j:
        s.hold_until = j.hold_until = 12
        result = invoke("run", "skillmix-small-k2-all", *combinations, "--out", str(tmp_path / "all"), "--no-cache",
                        "--student", s.endpoint.base_url, "--judge", j.endpoint.base_url)  # fmt: skip
        assert result.exit_code == 0, result.output
        assert (len(s.requests), len(j.requests)) == (24, 12)
        assert (s.max_in_flight, j.max_in_flight) == (12, 12)  # turn 1, turn 2 and the grading runs in waves of 12
    with ScriptedServer(responder=student) as s, ScriptedServer(responder=judge_awarding(lambda i, item: 1)) as j:
        s.hold_until = j.hold_until = 4
        result = invoke("run", "skillmix-small-k2-all", *combinations, "--out", str(tmp_path / "limited"), "--no-cache",
                        "--student", s.endpoint.base_url, "--judge", j.endpoint.base_url, "--max-concurrency", "4")  # fmt: skip
        assert result.exit_code == 0, result.output
        assert (s.max_in_flight, j.max_in_flight) == (4, 4)  # the per-endpoint limit, reached and never passed


def test_a_run_the_cache_answers_serves_nothing_and_a_partly_cached_one_serves_only_what_missed(
    tmp_path: Path, cache: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import harness.evaluation

    served: list[list[str]] = []  # the models each call of connect() served or attached to

    def recording_connect(models, *args, **kwargs):
        served.append(sorted(model.name for model in models))
        return real_connect(models, *args, **kwargs)

    real_connect = harness.evaluation.connect
    monkeypatch.setattr(harness.evaluation, "connect", recording_connect)
    with (
        ScriptedServer(responder=student) as s,
        ScriptedServer(responder=judge_awarding(lambda i, item: 1)) as j,
        ScriptedServer(responder=judge_awarding(lambda i, item: int(i != 0))) as k,
    ):
        stu, jud, other = f"stu={s.endpoint.base_url}", f"jud={j.endpoint.base_url}", f"other={k.endpoint.base_url}"
        assert run_task(tmp_path / "first", cache, stu, jud).exit_code == 0
        assert served == [["jud", "stu"]] and (len(s.requests), len(j.requests)) == (10, 5)

        # A new run directory, the same cache: every answer and grade comes from the cache.
        again = run_task(tmp_path / "second", cache, stu, jud)
        assert again.exit_code == 0, again.output
        assert served == [["jud", "stu"]], "a fully cached run connected to a model"
        assert (len(s.requests), len(j.requests)) == (10, 5)
        assert "from the response cache: 5 answers, 5 grading runs" in again.output
        assert "no server started" in again.output
        assert results(tmp_path / "second")[0]["metrics"] == results(tmp_path / "first")[0]["metrics"]
        store = RunStore(tmp_path / "second", create=False)
        assert store.counts() == {"combinations": 5, "generations": 5, "grades": 5}
        assert {model.name for model in store.models()} == {"stu", "jud"}

        # Another judge: the answers come from the cache; only the new judge is connected and asked.
        partial = run_task(tmp_path / "third", cache, stu, other)
        assert partial.exit_code == 0, partial.output
        assert served[1:] == [["other"]]
        assert (len(s.requests), len(j.requests), len(k.requests)) == (10, 5, 5)
        assert "from the response cache: 5 answers, 0 grading runs" in partial.output
    assert results(tmp_path / "third")[0]["metrics"]["skill_fraction"]["value"] == 0.5


def test_second_turns_go_before_waiting_first_turns_so_grading_starts_early(tmp_path: Path, cache: str) -> None:
    # One request in flight per endpoint: the order the student server sees is the runner's choice.
    with ScriptedServer(responder=student) as s, ScriptedServer(responder=judge_awarding(lambda i, item: 1)) as j:
        result = invoke("run", "skillmix-small-k2-all", "--combinations", "6", "--out", str(tmp_path / "run"),
                        "--no-cache", "--student", s.endpoint.base_url, "--judge", j.endpoint.base_url,
                        "--max-concurrency", "1")  # fmt: skip
        assert result.exit_code == 0, result.output
    turns = [len(body["messages"]) for _, body in s.requests]  # 1: a first turn, 3: a second turn
    assert sorted(turns) == [1] * 6 + [3] * 6
    # First come, first served would send all six first turns before any second turn.
    assert turns.index(3) < len(turns) - 1 - turns[::-1].index(1)
    last_first_turn = max(at for at, body in s.requests if len(body["messages"]) == 1)
    assert min(at for at, _ in j.requests) < last_first_turn  # the judge works while first turns remain


def test_one_model_name_through_two_base_urls_never_shares_a_cache_entry(
    tmp_path: Path, cache: str, monkeypatch
) -> None:
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
    assert identities == [
        f"openai:gpt-4o@{first_provider.endpoint.base_url}",
        f"openai:gpt-4o@{second_provider.endpoint.base_url}",
    ]
