"""`harness judges`: list the registered judges and run the adversarial check against them."""

from __future__ import annotations

import asyncio
import json
import shlex
from pathlib import Path

import click
from tabulate import tabulate

from harness.cli.options import judges_dir_option, pop_serving, serving_options
from harness.core.cache import ResponseCache
from harness.core.client import ModelClient
from harness.core.connect import connect
from harness.core.errors import HarnessError
from harness.core.registry import Registry, load_registry
from harness.core.vllm import terminate_on_sigterm
from harness.evaluation import resolve_judges
from judges.adversarial import AdversarialCase, AdversarialReport, load_cases, run_adversarial
from judges.grader import DEFAULT_MAX_ATTEMPTS, Grader
from judges.registry import Judge, load_judges

SUMMARY_HEADERS = ["judge", "style", "graded", "fooled (of scored)", "held", "unscored"]


@click.group("judges")
def judges() -> None:
    """Registered judges and the adversarial check."""


@judges.command("list")
@judges_dir_option
def list_judges(judges_dir: Path | None) -> None:
    """Show every registered judge."""
    rows = [
        [config.name, config.model, config.style or "(task's)", shlex.join(config.vllm_args) or "-", config.description]
        for config in load_judges(judges_dir).values()
    ]
    click.echo(tabulate(rows, headers=["name", "model", "style", "vllm args", "description"]))


@judges.command("adversarial")
@click.option(
    "--judge",
    "judge_args",
    multiple=True,
    required=True,
    help="A registered judge name, a local model directory, server URL(s) (comma-separated), "
    "or openai:NAME. Repeat to check several judges, one after the other.",
)
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write the reports as JSON here, and as markdown next to it (.md).",
)
@click.option("--runs", type=click.IntRange(min=1), default=1, show_default=True, help="Grading runs per case.")
@click.option(
    "--cases",
    "cases_file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Use these adversarial cases instead of the built-in set (same YAML format).",
)
@click.option("--no-cache", is_flag=True, help="Ask the judge again instead of reusing cached replies.")
@click.option("--constrained-judges", is_flag=True, help="Decode vLLM judges under the per-item reply regex.")
@click.option(
    "--max-grade-attempts",
    type=click.IntRange(1, 10),
    default=DEFAULT_MAX_ATTEMPTS,
    show_default=True,
    help="Asks per grading run before an unparseable reply is recorded as unscored.",
)
@click.option("--log-dir", type=click.Path(path_type=Path), default=Path("logs"), show_default=True)
@judges_dir_option
@serving_options
def adversarial(judge_args, out, runs, cases_file, no_cache, constrained_judges, max_grade_attempts, log_dir,
                judges_dir, **options) -> None:  # fmt: skip
    """Grade answers that show no skill but try to talk the judge into points.

    A judge is fooled on a reply when it awards a point the case says must be 0.
    Cases go through the real grading path (prompt, constrained decoding, retries,
    parsers). Local judges are served with vLLM one at a time, so each gets the whole machine.
    """
    if out is not None and out.suffix != ".json":
        raise HarnessError(f"--out {out}: give a .json file name; the markdown report is written next to it as .md")
    serving, extra, max_concurrency = pop_serving(options, log_dir)
    judges = resolve_judges(judge_args, judges_dir, vllm_args=extra["judge"], constrained=constrained_judges,
                            max_concurrency=max_concurrency)  # fmt: skip
    if any(judge.model.model_free for judge in judges):
        raise HarnessError(
            "the adversarial check grades open-catalog tasks with a model judge; the rule judge grades rule-world "
            "tasks only, by code, so there is nothing to talk it into"
        )
    if len({judge.name for judge in judges}) != len(judges):
        raise HarnessError("two --judge arguments resolve to the same judge name; give each judge once")
    cases = load_cases(cases_file) if cases_file else load_cases()
    cache = None if no_cache else ResponseCache()
    registry = load_registry()
    reports: list[AdversarialReport] = []
    with terminate_on_sigterm():
        for judge in judges:
            click.echo(f"{judge.name}: grading {len(cases)} cases x {runs} run(s)...", err=True)
            with connect([judge.model], serving, cache=cache) as clients:
                report = asyncio.run(_check(judge, clients[judge.name], cases, runs, registry, max_grade_attempts))
            reports.append(report)
            click.echo(f"\n{judge.name} by kind of attack:\n{report.kind_table(tablefmt='simple')}\n")
    click.echo(tabulate([report.summary_row() for report in reports], headers=SUMMARY_HEADERS))
    if out is not None:
        _write(out, reports)
        click.echo(f"wrote {out} and {out.with_suffix('.md')}", err=True)


async def _check(judge: Judge, client: ModelClient, cases: tuple[AdversarialCase, ...], runs: int,
                 registry: Registry, max_attempts: int) -> AdversarialReport:  # fmt: skip
    try:
        return await run_adversarial(Grader(judge, client, max_attempts=max_attempts), cases=cases, runs=runs,
                                     registry=registry)  # fmt: skip
    finally:
        await client.aclose()


def _write(out: Path, reports: list[AdversarialReport]) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"reports": [report.to_dict() for report in reports]}, indent=2) + "\n")
    summary = tabulate([report.summary_row() for report in reports], headers=SUMMARY_HEADERS, tablefmt="github")
    sections = ["# Adversarial judge check", "", summary, ""] + [report.to_markdown() for report in reports]
    out.with_suffix(".md").write_text("\n".join(sections))
