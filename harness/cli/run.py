"""`harness run` and `harness report`."""

from __future__ import annotations

from pathlib import Path

import click

from harness.cli.console import run_evaluation
from harness.cli.options import build_evaluation, catalog_options, evaluation_options, registry_from
from harness.core.errors import HarnessError
from harness.core.store import RunStore
from harness.evaluation import default_out, resolve_tasks
from harness.report import comparison_table, report_run, run_meta, terminal_table, write_reports
from harness.scoring import score_store


@click.command()
@click.argument("task_names", nargs=-1, required=True, metavar="TASK...")
@click.option("--student", "students", multiple=True, metavar="[NAME=]MODEL",
              help="Student: local path, URL (comma-separate replicas) or openai:NAME. Repeat for several students. "
                   "Default: the embedded tiny model.")
@click.option("--out", type=click.Path(path_type=Path), help="Run directory (default: runs/<tasks>). Re-running resumes it.")
@click.option("--no-name-penalty", is_flag=True, help="Do not zero a skill point when the answer names the skill.")
@click.option("--combinations", type=click.IntRange(1), default=None, help="Override combinations per task (quick runs).")
@catalog_options
@evaluation_options
def run(task_names, students, out, no_name_penalty, combinations, tasks_dir, skills_file, topics_file,
        heldout_categories, **options) -> None:  # fmt: skip
    """Run SKILL-MIX tasks: generate answers, grade them, print the metrics.

    With no --student/--judge, runs the embedded tiny local models on vLLM.
    A killed run resumes when the same command is run again.
    """
    registry = registry_from(tasks_dir, skills_file, topics_file, heldout_categories)
    tasks = resolve_tasks(registry, task_names, combinations)
    out = out or default_out(task_names)
    store = run_evaluation(build_evaluation(tasks, students, out, **options))
    try:
        results = report_run(store, out, name_penalty=not no_name_penalty)
    finally:
        store.close()
    click.echo(terminal_table([r for r in results if r.task in {t.name for t in tasks}]))
    click.echo(f"reports: {out / 'results.json'}, {out / 'report.md'}", err=True)


@click.command()
@click.argument("run_dirs", nargs=-1, required=True, type=click.Path(path_type=Path), metavar="RUN...")
@click.option("--no-name-penalty", is_flag=True, help="Re-score without the explicit-name penalty.")
@click.option("--out-dir", type=click.Path(path_type=Path, file_okay=False),
              help="Write results.json, report.md and report.png here instead of into RUN (with several runs, into "
                   "OUT_DIR/<name of RUN>); for runs you cannot write to.")  # fmt: skip
def report(run_dirs, no_name_penalty, out_dir) -> None:
    """Re-render the reports of finished runs (no model call); several runs are compared side by side.

    The store is only read, so a run in a read-only directory still reports: the table on
    stdout, and the files in --out-dir.
    """
    targets = report_dirs([Path(run_dir) for run_dir in run_dirs], out_dir)
    scored = []
    for run_dir, target in zip(run_dirs, targets, strict=True):
        store = RunStore(run_dir, read_only=True)
        try:
            results = score_store(store, name_penalty=not no_name_penalty)
            meta = run_meta(store, Path(run_dir), not no_name_penalty)
        finally:
            store.close()
        scored.append((str(run_dir), results))
        try:
            write_reports(target, results, meta)
        except OSError as error:
            if out_dir is not None:
                raise HarnessError(f"cannot write the reports into {target}: {error.strerror}") from None
            click.secho(f"warning: cannot write the reports into {run_dir} ({error.strerror}); the table below is the "
                        "report, and --out-dir DIR writes its files elsewhere", fg="yellow", err=True)  # fmt: skip
    if len(scored) == 1:
        click.echo(terminal_table(scored[0][1]))
    else:
        click.echo(comparison_table(scored))
        click.echo("FM: ratio of full marks, AS: ratio of all skills, SF: skill fraction; n: scored combinations")


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
