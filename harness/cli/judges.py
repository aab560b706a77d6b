"""`harness judges`: list the registered judges and run the adversarial check against them."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import shlex
from pathlib import Path

import click
from tabulate import tabulate

from harness.cache import ResponseCache
from harness.cli.serve import build_serving, serving_options
from harness.client import ModelClient, ModelRef
from harness.errors import HarnessError
from harness.registry import load_registry
from harness.server import terminate_on_sigterm
from harness.serving import serve_roles
from judges.adversarial import TASK_FAMILY, AdversarialReport, load_cases, run_adversarial
from judges.registry import (
    JudgeSpec,
    check_judge_model,
    judge_model_args,
    judge_sampling,
    load_judges,
    resolve_judge,
)

SUMMARY_HEADERS = ["judge", "style", "graded", "fooled (of scored)", "held", "unscored"]


def judges_dir_option(command):
    return click.option(
        "--judges-dir",
        type=click.Path(file_okay=False, path_type=Path),
        default=None,
        help="Also load the judge YAML files in this directory (default: $SKILLMIX_JUDGES_DIR); "
        "a file here replaces a built-in judge of the same name.",
    )(command)


@click.group("judges")
def judges() -> None:
    """Registered judges and the adversarial check."""


@judges.command("list")
@judges_dir_option
def list_judges(judges_dir: Path | None) -> None:
    """Show every registered judge."""
    rows = [
        [spec.name, spec.model, spec.style or "(task's)", shlex.join(spec.vllm_args) or "-", spec.description]
        for spec in load_judges(judges_dir).values()
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
@click.option("--log-dir", type=click.Path(path_type=Path), default=Path("logs"), show_default=True)
@judges_dir_option
@serving_options
def adversarial(judge_args, out, runs, cases_file, no_cache, log_dir, judges_dir, **kwargs) -> None:
    """Grade answers that show no skill but try to talk the judge into points.

    A judge is fooled on a reply when it awards a point the case says must be 0.
    Local judges are served with vLLM one at a time, so each gets the whole machine.
    """
    if out is not None and out.suffix != ".json":
        raise HarnessError(f"--out {out}: give a .json file name; the markdown report is written next to it as .md")
    specs = [resolve_judge(arg, judges_dir) for arg in judge_args]
    for spec in specs:
        check_judge_model(spec)
    if len({spec.name for spec in specs}) != len(specs):
        raise HarnessError("two --judge arguments resolve to the same judge name; give each judge once")
    cases = load_cases(cases_file) if cases_file else load_cases()
    options, extra, max_concurrency = build_serving(log_dir, **kwargs)
    cache = None if no_cache else ResponseCache()
    registry = load_registry()
    # All cases come from one task family, so the k=1 task stands for its grading defaults.
    task = registry.get(f"{TASK_FAMILY}-k1-all")
    reports: list[AdversarialReport] = []
    with terminate_on_sigterm():
        for spec in specs:
            role = f"judge:{spec.name}"
            click.echo(f"{spec.name}: grading {len(cases)} cases x {runs} run(s)...", err=True)
            vllm_args = {role: [*spec.vllm_args, *extra["judge"]]}
            with serve_roles({role: judge_model_args(spec)}, options, max_concurrency=max_concurrency,
                             extra_args=vllm_args) as refs:  # fmt: skip
                ref = refs[role]
                if spec.max_concurrency is not None:
                    ref = dataclasses.replace(ref, max_concurrency=spec.max_concurrency)
                report = asyncio.run(_check(ref, spec, cache, cases, runs, registry, task.judge_sampling))
            reports.append(report)
            click.echo(f"\n{spec.name} by kind of attack:\n{report.kind_table(tablefmt='simple')}\n")
    click.echo(tabulate([report.summary_row() for report in reports], headers=SUMMARY_HEADERS))
    if out is not None:
        _write(out, reports)
        click.echo(f"wrote {out} and {out.with_suffix('.md')}", err=True)


async def _check(ref: ModelRef, spec: JudgeSpec, cache, cases, runs, registry, task_sampling) -> AdversarialReport:
    client = ModelClient(ref, cache)
    try:
        return await run_adversarial(
            client,
            spec.style,
            judge_sampling(spec, task_sampling),
            cases=cases,
            runs=runs,
            judge_name=spec.name,
            registry=registry,
        )
    finally:
        await client.aclose()


def _write(out: Path, reports: list[AdversarialReport]) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"reports": [report.to_dict() for report in reports]}, indent=2) + "\n")
    summary = tabulate([report.summary_row() for report in reports], headers=SUMMARY_HEADERS, tablefmt="github")
    sections = ["# Adversarial judge check", "", summary, ""] + [report.to_markdown() for report in reports]
    out.with_suffix(".md").write_text("\n".join(sections))
