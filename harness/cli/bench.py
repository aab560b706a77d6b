"""`harness bench`: how close `harness run` comes to the servers' ceiling, and what one request at a time costs."""

from __future__ import annotations

import json
import os
import secrets
import time
from dataclasses import replace
from pathlib import Path

import click
from tabulate import tabulate

from harness.bench import BenchResult, Repeat, run_bench
from harness.cli.options import pop_serving, registry_from, serving_options
from harness.core.connect import connect
from harness.core.errors import HarnessError
from harness.core.models import OPENAI
from harness.core.registry import Task
from harness.evaluation import resolve_judges, resolve_students, resolve_tasks
from judges.registry import Judge
from judges.styles import get_style


@click.command()
@click.argument("task", default="skillmix-k2-train")
@click.option(
    "--combinations",
    type=click.IntRange(1),
    default=None,
    help="Combinations of the task to run (x generation rounds x grading runs). Default: the task's own, "
    "100 for the SKILL-MIX tasks, the size of a real run.",
)
@click.option(
    "--student",
    "students",
    multiple=True,
    metavar="[NAME=]MODEL",
    help="A local model directory (served here) or server URL(s). Default: the embedded tiny student.",
)
@click.option(
    "--judge",
    "judges",
    multiple=True,
    metavar="[NAME=]MODEL",
    help="A local model directory (served here) or server URL(s). Default: the embedded tiny judge.",
)
@click.option(
    "--constrained-judges",
    is_flag=True,
    help="Decode the judges under the rubric regex (the embedded tiny judge always is).",
)
@click.option(
    "--sequential",
    "sequential_sample",
    type=click.IntRange(0),
    default=10,
    show_default=True,
    help="Requests to time one at a time; the time is scaled to all requests. 0: time them all.",
)
@click.option(
    "--repeats",
    type=click.IntRange(1),
    default=1,
    show_default=True,
    help="Measure (a) to (d) this many times on the same servers; the ratios get a range.",
)
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    default=None,
    help="Directory for the runs, the logs and bench.json (default: runs/bench-<time>).",
)
@serving_options
def bench(task, combinations, students, judges, constrained_judges, sequential_sample, repeats, out, **options) -> None:
    """Measure `harness run TASK` against the ceiling of the same servers and a one-at-a-time loop.

    Serves the models once (or attaches to URLs, key in VLLM_API_KEY), then: (a) times
    `harness run` with the cache off; (b) sends the very requests that run sent, with the
    recorded reply lengths forced, all at once with the same per-endpoint limit; (d) sends
    them again, each only when the reply it depends on is back (second turns after first
    turns, grading after answers); (c) sends them one at a time. Prints wall time,
    requests/s and output tokens/s of each, then harness/ceiling (1.00 is the ceiling),
    harness/waiting ceiling, waiting ceiling/ceiling and sequential/harness. Timings on a
    shared machine are noisy: --repeats N measures them all N times on the same servers and
    gives each ratio's median and range.
    """
    out = out or Path("runs") / time.strftime("bench-%Y%m%d-%H%M%S")
    if out.exists() and any(out.iterdir()):
        raise HarnessError(f"{out} is not empty; give a new --out directory for the bench")
    serving, extra, max_concurrency = pop_serving(options, out / "logs")
    student_models = resolve_students(students, "student", extra["student"], max_concurrency)
    judge_list = resolve_judges(judges, vllm_args=extra["judge"], constrained=constrained_judges,
                                max_concurrency=max_concurrency)  # fmt: skip
    models = [*student_models, *(judge.model for judge in judge_list)]
    if any(model.kind == OPENAI for model in models):
        raise HarnessError("harness bench measures vLLM servers: give local model directories or server URLs")
    (resolved,) = resolve_tasks(registry_from(None, None, None, ()), [task], combinations)
    combinations = resolved.n_combinations
    regexes = {judge.name: _reply_regexes(judge, resolved) for judge in judge_list}
    # One key for every server: managed ones get it, attached ones already have it (VLLM_API_KEY).
    api_key = os.environ.get("VLLM_API_KEY") or secrets.token_hex(24)
    serving = replace(serving, api_key=api_key)
    out.mkdir(parents=True, exist_ok=True)
    click.echo(f"serving {', '.join(model.name for model in models)} (logs in {out / 'logs'})...", err=True)
    with connect(models, serving) as clients:
        endpoints = {name: client.model.endpoints for name, client in clients.items()}
        limits = {name: client.model.concurrency for name, client in clients.items()}
        result = run_bench(
            task, combinations,
            students={model.name: endpoints[model.name] for model in student_models},
            judges={judge.name: endpoints[judge.name] for judge in judge_list},
            limits=limits, regexes=regexes, out=out, api_key=api_key,
            constrained_judges=any(judge.constrained for judge in judge_list),
            max_concurrency=max_concurrency, sequential_sample=sequential_sample or None, repeats=repeats,
            on_step=lambda message: click.echo(message, err=True),
        )  # fmt: skip
    document = result.to_dict()
    (out / "bench.json").write_text(json.dumps(document, indent=2) + "\n")
    click.echo(_summary(result, out))


def _reply_regexes(judge: Judge, task: Task) -> list[str]:
    """The reply regexes the judge will be asked under (none unless it is constrained)."""
    style = get_style(judge.style_for(task.grading_style))
    if not judge.constrained or style.reply_regex is None:
        return []
    return [style.reply_regex(combination.skills, combination.topic) for combination in task.combinations()]


def _rows(repeat: Repeat, label: str) -> list[list[object]]:
    rows = []
    for measurement, what in ((repeat.harness, "(a) harness run"), (repeat.ceiling, "(b) ceiling"),
                              (repeat.sequential, "(c) one at a time"),
                              (repeat.waiting, "(d) ceiling, waiting for replies")):  # fmt: skip
        wall = f"{measurement.wall_s:.1f}" + ("*" if measurement.extrapolated else "")
        rows.append([label, what, wall, measurement.requests, f"{measurement.requests_per_s:.2f}",
                     f"{measurement.tokens_per_s:.0f}"])  # fmt: skip
    return rows


def _ratio(result: BenchResult, name: str, label: str, digits: int) -> str:
    median, low, high = result.ratio(name)
    line = f"{label} = {median:.{digits}f}"
    if len(result.repeats) > 1:
        line += f" (median; {low:.{digits}f}-{high:.{digits}f} over {len(result.repeats)} repeats)"
    return line


def _summary(result: BenchResult, out: Path) -> str:
    rows = [row for index, repeat in enumerate(result.repeats, 1) for row in _rows(repeat, str(index))]
    sequential = result.repeats[0].sequential
    lines = [
        f"{result.task}, {result.combinations} combinations; per-endpoint limit "
        + ", ".join(f"{name} {limit}" for name, limit in result.limits.items())
        + f"; load average {result.load_average_1m_at_start:.1f} at start, "
        f"{result.repeats[-1].load_average_1m:.1f} at end ({os.cpu_count()} CPUs)",
        tabulate(
            rows, headers=["repeat", "", "wall s", "requests", "requests/s", "output tokens/s"], disable_numparse=True
        ),  # fmt: skip
    ]
    lines.append("CPU time of the harness process: "
                 + ", ".join(f"{repeat.harness_cpu_s:.1f} s" for repeat in result.repeats))  # fmt: skip
    if sequential.extrapolated:
        lines.append(f"* {sequential.timed_requests} of {sequential.requests} requests timed one at a time, "
                     "scaled to all")  # fmt: skip
    lines += [
        _ratio(result, "harness_over_ceiling", "harness/ceiling", 2),
        _ratio(result, "harness_over_waiting", "harness/waiting ceiling", 2),
        _ratio(result, "waiting_over_ceiling", "waiting ceiling/ceiling", 2),
        _ratio(result, "sequential_over_harness", "sequential/harness", 1),
        _ratio(result, "sequential_over_ceiling", "sequential/ceiling", 1),
        f"figures: {out / 'bench.json'}",
    ]
    return "\n".join(lines)
