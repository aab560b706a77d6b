"""`harness run` and `harness report`."""

from __future__ import annotations

from pathlib import Path

import click

from harness.cli.console import run_evaluation
from harness.cli.options import (
    build_evaluation,
    catalog_options,
    evaluation_options,
    pop_scoring,
    registry_from,
    scoring_options,
)
from harness.core.errors import HarnessError
from harness.core.store import RunStore
from harness.evaluation import default_out, resolve_tasks
from harness.report import comparison_table, report_run, scored_view, terminal_table, write_run_reports
from harness.report_html import HTML_NAME, distinct_names, write_html


@click.command()
@click.argument("task_names", nargs=-1, required=True, metavar="TASK...")
@click.option(
    "--student",
    "students",
    multiple=True,
    metavar="[NAME=]MODEL",
    help="Student: local path, URL (comma-separate replicas) or openai:NAME. Repeat for several students. "
    "Default: the embedded tiny model.",
)
@click.option(
    "--out", type=click.Path(path_type=Path), help="Run directory (default: runs/<tasks>). Re-running resumes it."
)
@click.option(
    "--combinations", type=click.IntRange(1), default=None, help="Override combinations per task (quick runs)."
)
@catalog_options
@evaluation_options
@scoring_options
def run(task_names, students, out, combinations, tasks_dir, skills_file, topics_file, heldout_categories,
        **options) -> None:  # fmt: skip
    """Run SKILL-MIX tasks: generate answers, grade them, print the metrics.

    With no --student/--judge, runs the embedded tiny local models on vLLM.
    A killed run resumes when the same command is run again.
    """
    registry = registry_from(tasks_dir, skills_file, topics_file, heldout_categories)
    tasks = resolve_tasks(registry, task_names, combinations)
    out = out or default_out(task_names)
    profile = pop_scoring(options)
    store = run_evaluation(build_evaluation(tasks, students, out, **options))
    try:
        results = report_run(store, out, profile)
    finally:
        store.close()
    click.echo(terminal_table([r for r in results if r.task in {t.name for t in tasks}], profile.describe()))
    click.echo(f"reports: {out / 'results.json'}, {out / 'report.md'}, {out / HTML_NAME}", err=True)


@click.command()
@click.argument("run_dirs", nargs=-1, required=True, type=click.Path(path_type=Path), metavar="RUN...")
@scoring_options
@click.option(
    "--out-dir",
    type=click.Path(path_type=Path, file_okay=False),
    help="Write the report files here instead of into RUN (with several runs, into OUT_DIR/<name of RUN>); "
    "for runs you cannot write to.",
)
@click.option(
    "--html",
    "html_file",
    type=click.Path(path_type=Path, dir_okay=False),
    metavar="FILE",
    help="Also write one HTML report of all the RUNs side by side to FILE.",
)
@click.option(
    "--human",
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    metavar="SHEET",
    help="A filled label sheet (`harness labels export`): its labels join the judges in report.html's "
    "agreement section. One RUN only.",
)
def report(run_dirs, out_dir, html_file, human, **options) -> None:  # fmt: skip
    """Re-score finished runs from their stores and re-render their reports (no model call).

    Several runs are compared side by side. Each RUN gets results.json, report.md,
    report.png and report.html again, under the scoring options given here. The store
    is only read, so a run in a read-only directory still reports: the table on stdout,
    and the files in --out-dir.
    """
    if human is not None and len(run_dirs) > 1:
        raise HarnessError("--human labels belong to one run; give one RUN with --human")
    profile = pop_scoring(options)
    targets = report_dirs([Path(run_dir) for run_dir in run_dirs], out_dir)
    views = []
    for run_dir, target in zip(run_dirs, targets, strict=True):
        store = RunStore(run_dir, read_only=True)
        try:
            view = scored_view(store, Path(run_dir), profile, human=human)
        finally:
            store.close()
        views.append(view)
        try:
            write_run_reports(target, view)
        except OSError as error:
            if out_dir is not None:
                raise HarnessError(f"cannot write the reports into {target}: {error.strerror}") from None
            click.secho(f"warning: cannot write the reports into {run_dir} ({error.strerror}); the table below is the "
                        "report, and --out-dir DIR writes its files elsewhere", fg="yellow", err=True)  # fmt: skip
    scored = [(str(run_dir), list(view.results)) for run_dir, view in zip(run_dirs, views, strict=True)]
    if len(scored) == 1:
        click.echo(terminal_table(scored[0][1], profile.describe()))
    else:
        click.echo(comparison_table(scored))
        click.echo("FM: ratio of full marks, AS: ratio of all skills, SF: skill fraction; n: scored combinations")
        click.echo(f"scoring: {profile.describe()}")
    if html_file is not None:
        click.echo(f"report: {write_html(html_file, distinct_names(views))}", err=True)


def report_dirs(run_dirs: list[Path], out_dir: Path | None) -> list[Path]:
    """Where each run's report files go: into the run, into OUT_DIR, or into OUT_DIR/<run name>."""
    if out_dir is None:
        return run_dirs
    if len(run_dirs) == 1:
        targets = [out_dir]
    else:
        names = [run_dir.resolve().name for run_dir in run_dirs]
        if len(set(names)) < len(names):
            raise HarnessError(f"--out-dir with several runs writes OUT_DIR/<run name>, and two runs are named alike "
                               f"({', '.join(sorted({n for n in names if names.count(n) > 1}))}); report them one at a time")  # fmt: skip
        targets = [out_dir / name for name in names]
    for target in targets:
        try:
            target.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise HarnessError(f"cannot create {target} for the reports: {error.strerror or error}") from None
    return targets
