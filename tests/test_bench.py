"""harness bench: the ceiling and the one-at-a-time loop send exactly the requests a run sent, with its reply lengths.

The runs here go to scripted HTTP servers that record every request body, so the
replay is compared with what the run really sent; tests/test_bench_vllm.py runs
the whole command on real vLLM servers.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from click.testing import CliRunner
from scripted_server import ScriptedServer
from test_run import ANSWER, judge_awarding

import harness.bench as bench_module
from harness.bench import (
    ReplayConversation,
    ReplayRequest,
    ceiling,
    replay_conversations,
    replay_requests,
    sequential,
    waiting_ceiling,
)
from harness.cli import cli
from harness.core.registry import load_registry
from harness.core.store import RunStore
from harness.evaluation import resolve_tasks

COMPARED = ("messages", "temperature", "top_p", "structured_outputs")


def _student(body: dict) -> str:
    return ANSWER


def _run(out: Path, student: ScriptedServer, judge: ScriptedServer, *extra: str) -> None:
    result = CliRunner().invoke(cli, [
        "run", "skillmix-k2-all", "--combinations", "2", "--out", str(out), "--no-cache",
        "--student", f"stu={student.endpoint.base_url}", "--judge", f"jud={judge.endpoint.base_url}", *extra,
    ], catch_exceptions=False)  # fmt: skip
    assert result.exit_code == 0, result.output


def _sent(server: ScriptedServer) -> list[dict]:
    return sorted(({key: body.get(key) for key in COMPARED} for _, body in server.requests), key=repr)


def test_the_ceiling_sends_what_the_run_sent_with_the_reply_lengths_forced(tmp_path: Path) -> None:
    with ScriptedServer(responder=_student) as s, ScriptedServer(responder=judge_awarding(lambda i, item: 1)) as j:
        _run(tmp_path / "run", s, j, "--constrained-judges")
        store = RunStore(tmp_path / "run", create=False)
        requests = replay_requests(store)
        # 2 combinations x 3 rounds: two student turns each; x 3 grading runs: one ask each
        assert len(requests) == 2 * 3 * 2 + 2 * 3 * 3 == len(s.requests) + len(j.requests)
        run_sent = (_sent(s), _sent(j))
        s.requests.clear()
        j.requests.clear()
        measured = ceiling(requests, {"stu": (s.endpoint,), "jud": (j.endpoint,)}, {"stu": 64, "jud": 64})
        assert (_sent(s), _sent(j)) == run_sent  # the same messages, sampling and rubric regexes
        bodies = [body for _, body in s.requests + j.requests]
        lengths = sorted(request.output_tokens for request in requests)
        assert sorted(body["max_tokens"] for body in bodies) == lengths
        assert all(body["min_tokens"] == body["max_tokens"] for body in bodies)
        assert measured.requests == len(requests) and measured.output_tokens == sum(lengths) > 0
        # the second student turn carries the first turn's recorded reply
        second_turns = [body for body in bodies if len(body["messages"]) == 3]
        assert len(second_turns) == 6 and all(body["messages"][1]["content"] == ANSWER for body in second_turns)


def test_the_sequential_loop_sends_one_request_at_a_time_and_scales_a_sample(tmp_path: Path) -> None:
    with ScriptedServer(responder=_student) as s, ScriptedServer(responder=judge_awarding(lambda i, item: 1)) as j:
        _run(tmp_path / "run", s, j)
        requests = replay_requests(RunStore(tmp_path / "run", create=False))
        s.requests.clear()
        j.requests.clear()
        s.max_in_flight = j.max_in_flight = 0
        measured = sequential(requests, {"stu": (s.endpoint,), "jud": (j.endpoint,)}, sample=5)
        assert len(s.requests) + len(j.requests) == 5
        assert s.max_in_flight <= 1 and j.max_in_flight <= 1
    assert measured.extrapolated and measured.timed_requests == 5 and measured.requests == len(requests) == 30
    assert measured.wall_s > 0 and measured.output_tokens == sum(request.output_tokens for request in requests)


def _judge_or_warm_up(body: dict) -> str:
    """The scripted judge's grade; a plain reply to the bench's warm-up requests, which grade nothing."""
    if body["messages"][0]["content"].startswith("Warm-up"):
        return "ok"
    return judge_awarding(lambda i, item: 1)(body)


def test_bench_repeats_each_measurement_and_gives_every_ratio_a_median_and_range(tmp_path: Path) -> None:
    with ScriptedServer(responder=_student) as s, ScriptedServer(responder=_judge_or_warm_up) as j:
        result = CliRunner().invoke(cli, [
            "bench", "skillmix-k2-all", "--combinations", "2", "--sequential", "3", "--repeats", "2",
            "--out", str(tmp_path / "bench"), "--student", f"stu={s.endpoint.base_url}",
            "--judge", f"jud={j.endpoint.base_url}",
        ], env={"VLLM_API_KEY": "k"}, catch_exceptions=False)  # fmt: skip
        assert result.exit_code == 0, result.output
        warm_up = 2 * 16  # short requests per endpoint before anything is timed
        # per repeat: the run's 30 requests, the same 30 all at once, again waiting for replies, 3 one at a time
        assert len(s.requests) + len(j.requests) == warm_up + 2 * (30 + 30 + 30 + 3)
    figures = json.loads((tmp_path / "bench" / "bench.json").read_text())
    assert len(figures["repeats"]) == 2
    for index, repeat in enumerate(figures["repeats"], 1):
        assert (tmp_path / "bench" / f"run-{index}" / "run.sqlite").is_file()
        assert [repeat[name]["requests"] for name in ("harness", "ceiling", "waiting", "sequential")] == [30] * 4
        assert repeat["sequential"]["timed_requests"] == 3 and repeat["sequential"]["extrapolated"]
        assert 0 < repeat["harness_cpu_s"] < 600
    for ratio in bench_module.RATIOS:
        low, high = figures[f"{ratio}_range"]
        assert 0 < low <= figures[ratio] <= high, ratio
        assert sorted(repeat[ratio] for repeat in figures["repeats"]) == [low, high], ratio
    (line,) = [line for line in result.output.splitlines() if line.startswith("harness/ceiling = ")]
    assert line.endswith("over 2 repeats)")


def test_bench_runs_the_task_at_its_own_size_unless_told(tmp_path: Path) -> None:
    """A real run has the task's own number of combinations; so does the bench, by default."""
    with ScriptedServer(responder=_student) as s, ScriptedServer(responder=_judge_or_warm_up) as j:
        result = CliRunner().invoke(cli, [
            "bench", "skillmix-small-k2-all", "--sequential", "2", "--out", str(tmp_path / "bench"),
            "--student", f"stu={s.endpoint.base_url}", "--judge", f"jud={j.endpoint.base_url}",
        ], env={"VLLM_API_KEY": "k"}, catch_exceptions=False)  # fmt: skip
        assert result.exit_code == 0, result.output
    (task,) = resolve_tasks(load_registry(), ["skillmix-small-k2-all"], None)
    figures = json.loads((tmp_path / "bench" / "bench.json").read_text())
    assert figures["combinations"] == task.n_combinations == 20
    # per combination: 1 round of two student turns, then 1 grading run of one ask
    (repeat,) = figures["repeats"]
    assert repeat["harness"]["requests"] == task.n_combinations * (2 + 1)
    assert f"skillmix-small-k2-all, {task.n_combinations} combinations" in result.output


def test_the_waiting_ceiling_sends_each_request_only_after_the_reply_it_depends_on(tmp_path: Path, monkeypatch) -> None:
    with ScriptedServer(responder=_student) as s, ScriptedServer(responder=judge_awarding(lambda i, item: 1)) as j:
        _run(tmp_path / "run", s, j)
        conversations = replay_conversations(RunStore(tmp_path / "run", create=False))
    # 2 combinations x 3 rounds; each: two turns, then 3 grading runs of one ask
    assert len(conversations) == 6
    assert all(len(c.turns) == 2 and [len(chain) for chain in c.grading] == [1, 1, 1] for c in conversations)
    assert sorted(map(repr, bench_module.requests_of(conversations))) == sorted(
        map(repr, replay_requests(RunStore(tmp_path / "run", create=False)))
    )
    # A second ask (a retried grading run) waits for the first.
    # in the order the run planned them, which knows nothing of how long the replies came out
    assert [c.key for c in conversations] == sorted(c.key for c in conversations)
    assert [c.key.combination for c in conversations] == [0, 0, 0, 1, 1, 1]
    retried = ReplayConversation(conversations[0].key, conversations[0].turns, (conversations[0].grading[0] * 2,))
    events: list[tuple[str, int]] = []
    in_flight = [0, 0]

    async def send(self, request: ReplayRequest) -> int:
        events.append(("start", id(request)))
        in_flight[0] += 1
        in_flight[1] = max(in_flight)
        await asyncio.sleep(0.01)
        in_flight[0] -= 1
        events.append(("end", id(request)))
        return request.output_tokens

    monkeypatch.setattr(bench_module._Sender, "send", send)
    chosen = [*conversations[1:], retried]
    measured = waiting_ceiling(chosen, {"stu": (), "jud": ()}, {"stu": 64, "jud": 64})
    assert measured.requests == sum(len(c.requests()) for c in chosen) == len(events) // 2
    assert measured.output_tokens == sum(r.output_tokens for c in chosen for r in c.requests())
    order = {event: index for index, event in enumerate(events)}
    for conversation in chosen:
        first, second = conversation.turns
        assert order[("start", id(second))] > order[("end", id(first))]
        for chain in conversation.grading:
            assert order[("start", id(chain[0]))] > order[("end", id(second))]
    # the retried run's two asks are the same object: it started twice, each time after the last ended
    ask = retried.grading[0][0]
    starts = [i for i, e in enumerate(events) if e == ("start", id(ask))]
    ends = [i for i, e in enumerate(events) if e == ("end", id(ask))]
    assert len(starts) == 2 and ends[0] < starts[1]
    assert in_flight[1] >= len(chosen)  # every conversation started at once
