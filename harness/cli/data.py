"""`harness generate-data` and `harness data audit`: make a SKILL-MIX training set and check it for held-out leaks."""

from __future__ import annotations

from pathlib import Path

import click
from tabulate import tabulate

from harness.cli.console import run_evaluation
from harness.cli.options import (
    build_evaluation,
    catalog_options,
    evaluation_options,
    pop_scoring,
    registry_from,
    scoring_options,
)
from harness.core.audit import HeldoutTerms, audit_dataset, heldout_tasks
from harness.core.models import RULES, split_name
from harness.datagen import RUN_DIR, ExportSpec, KeepRule, export_dataset, parse_ks, train_task_names
from harness.evaluation import resolve_tasks
from harness.report import report_run

ALLOW_HELP = (
    "Exempt a held-out skill or topic from the message-text checks (repeatable), for an ordinary word used innocently, "
    "e.g. 'friction' in a text about ice hockey. The skills/topic columns and combinations are still checked."
)


@click.command("generate-data")
@click.option(
    "--teacher",
    default=None,
    metavar="[NAME=]MODEL",
    help="Teacher: local path, URL (comma-separate replicas), openai:NAME, or rules (the rule world's code teacher: "
    "then --family defaults to skillmix-rules and --judge to rules). Default: an embedded tiny model.",
)
@click.option(
    "--k", "ks", default="1,2,3", show_default=True, help="The k values, comma-separated (tasks FAMILY-k{k}-train)."
)
@click.option(
    "--per-k",
    type=click.IntRange(1),
    default=None,
    help="Combinations per k (default: the task's, 100); each gets the task's generation rounds of teacher answers.",
)
@click.option(
    "--family",
    default=None,
    help="Task family; its -train tasks are used. Default: skillmix (skillmix-rules for --teacher rules).",
)
@click.option(
    "--min-points",
    type=click.FloatRange(0, 1, min_open=True),
    default=None,
    help="Keep answers whose voted points reach this fraction of the k+3 (rounded up). Default: full marks.",
)
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    default=None,
    help="Output directory (default: runs/data/FAMILY): OUT/run is the run, OUT/dataset the data. Re-running resumes.",
)
@catalog_options
@evaluation_options
@scoring_options
def generate_data(teacher, ks, per_k, family, min_points, out, tasks_dir, skills_file, topics_file,
                  heldout_categories, **options) -> None:  # fmt: skip
    """Make SKILL-MIX training data: a teacher answers train-split requests, judges grade, good texts are kept.

    The teacher only sees training skills and training topics. An answer is kept
    when every judge's points, combined over grading runs under the scoring profile
    (sentence count applied, and the name penalty unless the profile or --no-name-penalty
    turns it off), reach the threshold, full marks by default; unscored answers are
    never kept, and kept texts naming a held-out skill or topic are dropped.
    Each row is the generation request (user) and "Answer: TEXT" (assistant),
    with its k, so training can select D(1), D(1,2) or D(1,2,3) with data.k.
    The teacher's vLLM arguments go in --student-vllm-args. Several --judge: an answer
    is kept only when every judge keeps it.
    """
    rules_teacher = teacher is not None and split_name(teacher)[1] == RULES
    family = family or ("skillmix-rules" if rules_teacher else "skillmix")
    if rules_teacher and not options["judges"]:
        options["judges"] = (RULES,)  # its texts are checked exactly; the tiny random judge would reject them at random
    registry = registry_from(tasks_dir, skills_file, topics_file, heldout_categories)
    tasks = resolve_tasks(registry, train_task_names(family, parse_ks(ks)), per_k)
    heldout = heldout_tasks(registry, family)
    terms = HeldoutTerms.from_tasks(heldout)
    rule = KeepRule(min_points if min_points is not None else 1.0)
    out = out or Path("runs") / "data" / family
    profile = pop_scoring(options)
    evaluation = build_evaluation(tasks, [teacher] if teacher else [], out / RUN_DIR, student_role="teacher", **options)
    store = run_evaluation(evaluation)
    try:
        report_run(store, evaluation.out, profile)
        spec = ExportSpec(tuple(tasks), evaluation.students[0], tuple(evaluation.judges), rule, terms, profile)
        result = export_dataset(store, spec, out)
    finally:
        store.close()
    rows = [[c.k, c.answers, c.kept, c.rejected, c.unscored, c.heldout_mention] for c in result.counts]
    total = [sum(row[i] for row in rows) for i in range(1, 6)]
    click.echo(
        tabulate([*rows, ["all", *total]], headers=["k", "answers", "kept", "rejected", "unscored", "held-out mention"])
    )
    click.echo(f"keep rule: {rule.describe()}; scoring: {profile.describe()}")
    if result.rows == 0:
        click.secho(
            "warning: no answer was kept, so the dataset is empty; training on it will fail", fg="yellow", err=True
        )
    click.echo(audit_dataset(result.dataset_dir, heldout).summary())
    click.echo(
        f"dataset: {result.dataset_dir} ({result.rows} rows; provenance in {result.dataset_dir / 'provenance.json'})"
    )
    click.echo(
        f"train on D(1,2): bin/train.sh trainers/configs/tiny_cpu.yaml data.path={result.dataset_dir} data.k=[1,2]"
    )


@click.group("data")
def data() -> None:
    """Training data: check it for held-out leaks."""


@data.command("audit")
@click.argument("dataset", type=click.Path(path_type=Path))
@click.option(
    "--against",
    "against",
    multiple=True,
    metavar="TASK",
    help="A held-out task to check against (repeatable). Default: every FAMILY-k*-heldout task.",
)
@click.option("--family", default="skillmix", show_default=True, help="Family whose held-out tasks are the default.")
@click.option("--allow", "allow", multiple=True, metavar="NAME", help=ALLOW_HELP)
@catalog_options
def audit(dataset, against, family, allow, tasks_dir, skills_file, topics_file, heldout_categories) -> None:
    """Fail when DATASET contains held-out skills, topics or combinations.

    DATASET is a directory written by `datasets.save_to_disk`, such as the
    OUT/dataset of `harness generate-data`. It fails when any message text names
    a held-out skill (the part before any parenthesis, whole words, any case) or
    a held-out topic, or when the skills/topic columns hold a held-out skill,
    topic or combination. Some held-out names are ordinary words ("friction",
    "empathy", "opera"); they still count, since text alone cannot show an
    innocent use. Exempt one with --allow after reading the rows listed.
    """
    registry = registry_from(tasks_dir, skills_file, topics_file, heldout_categories)
    tasks = resolve_tasks(registry, against, None) if against else heldout_tasks(registry, family)
    report = audit_dataset(dataset, tasks, allow=allow)
    click.echo(report.summary())
