"""`harness agreement` (how far judges, grading runs and humans agree) and `harness labels` (human label sheets)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click
from tabulate import tabulate

from harness.agreement_data import (
    SHEET_NAME,
    item_counts,
    label_rows,
    read_human_labels,
    run_agreement,
    run_answers,
    sample_answers,
)
from harness.cli.options import pop_scoring, scoring_options
from harness.core.errors import HarnessError
from harness.core.store import RunStore
from judges.agreement import read_ratings_csv
from judges.agreement_report import AgreementReport, agreement_report
from judges.labels import write_label_sheet
from judges.rubric import RUBRIC_KINDS

REPORT_JSON = "agreement.json"
REPORT_MARKDOWN = "agreement.md"


def _judge_names(text: str | None) -> list[str] | None:
    if text is None:
        return None
    names = [name.strip() for name in text.split(",") if name.strip()]
    if not names:
        raise HarnessError("--judges is empty; give judge names separated by commas, e.g. --judges a,b")
    return names


def _check_inputs(run_dir: Path | None, from_csv: Path | None, human: Path | None, per_run: bool,
                  scoring: dict[str, Any]) -> None:  # fmt: skip
    if (run_dir is None) == (from_csv is None):
        raise HarnessError(
            "give either a RUN directory or --from-csv FILE (not both): a run's judges are compared, "
            "or the ratings in a long-format CSV (item,criterion,rater,label)"
        )
    if from_csv is not None:
        scoring_given = [
            flag
            for flag, given in (
                ("--scoring", scoring["scoring"] != "harness"),
                ("--name-penalty/--no-name-penalty", scoring["name_penalty"] is not None),
                ("--grading-runs", scoring["grading_runs"] != "vote"),
                ("--filter-skills", scoring["filter_skills"] is not None),
            )
            if given
        ]
        only_runs = [name for name, given in (("--human", human), ("--per-run", per_run)) if given] + scoring_given
        if only_runs:
            raise HarnessError(
                f"{', '.join(only_runs)} work(s) on a RUN, not on --from-csv; put human labels into the CSV as another rater"
            )


def _echo_report(report: AgreementReport) -> None:
    for title, headers, rows in report.to_tables():
        click.echo(f"\n{title}")
        click.echo(tabulate(rows, headers=headers, disable_numparse=True))  # keep the 3-digit formatting
    click.echo(f"\nCIs: percentile bootstrap over units, {report.n_resamples} resamples, seed {report.seed}.")
    for note in report.notes:
        click.echo(f"note: {note}")


def _write_report(out: Path, report: AgreementReport, source: dict[str, Any]) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    document = {"source": source, **report.to_dict()}
    json_path, markdown_path = out / REPORT_JSON, out / REPORT_MARKDOWN
    json_path.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    described = ", ".join(f"{key}: {value}" for key, value in source.items() if value not in (None, False))
    markdown_path.write_text(report.to_markdown() + f"\nSource: {described}.\n", encoding="utf-8")
    return [json_path, markdown_path]


@click.command("agreement")
@click.argument("run_dir", required=False, type=click.Path(path_type=Path, file_okay=False), metavar="[RUN]")
@click.option(
    "--judges",
    "judge_list",
    metavar="A,B,...",
    help="Judges to compare, comma-separated (default: every judge that graded the run).",
)
@click.option(
    "--human",
    type=click.Path(path_type=Path, dir_okay=False),
    help="A filled label sheet (from `harness labels export`), added as rater 'human'.",
)
@click.option(
    "--per-run",
    is_flag=True,
    help="Compare single grading runs (<judge>#run<n>) instead of each judge's majority vote.",
)
@click.option(
    "--from-csv",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Compare the ratings in a long-format CSV (item,criterion,rater,label) instead of a run.",
)
@scoring_options
@click.option(
    "--out",
    "--out-dir",
    "out",
    type=click.Path(path_type=Path, file_okay=False),
    help=f"Directory for {REPORT_JSON} and {REPORT_MARKDOWN} (default: RUN; with --from-csv, print only).",
)
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the bootstrap resampling.")
@click.option(
    "--resamples", type=click.IntRange(100), default=1000, show_default=True, help="Bootstrap resamples per CI."
)
def agreement(run_dir, judge_list, human, per_run, from_csv, out, seed, resamples, **scoring) -> None:  # fmt: skip
    """How far the raters of RUN agree, per rubric kind (skill, topic, sense, sentences), overall
    and on full marks: percent agreement and Cohen's kappa per pair, Krippendorff's alpha,
    bootstrap CIs, confusion matrices, and Kendall's tau of the students' ranking.
    """
    _check_inputs(run_dir, from_csv, human, per_run, scoring)
    profile = pop_scoring(scoring)
    judges = _judge_names(judge_list)
    if from_csv is not None:
        report = agreement_report(read_ratings_csv(from_csv), raters=judges, seed=seed, n_resamples=resamples)
        source: dict[str, Any] = {"csv": str(from_csv), "raters": judges}
    else:
        store = RunStore(run_dir, read_only=True)
        try:
            report = run_agreement(
                store, judges=judges, per_run=per_run, human=human, profile=profile,
                seed=seed, n_resamples=resamples,
            )  # fmt: skip
        finally:
            store.close()
        source = {
            "run": str(run_dir),
            "judges": judges,
            "per_run": per_run,
            "human": str(human) if human else None,
            "name_penalty": profile.name_penalty,
            "scoring": profile.describe(),
        }
        click.echo(f"scoring: {profile.describe()}")
    _echo_report(report)
    if out is not None or run_dir is not None:
        try:
            paths = _write_report(out or run_dir, report, source)
        except OSError as error:
            if out is not None:
                raise HarnessError(f"cannot write the agreement report into {out}: {error.strerror}") from None
            click.secho(f"warning: cannot write the agreement report into {run_dir} ({error.strerror}); the tables "
                        "above are the report, and --out DIR writes its files elsewhere", fg="yellow", err=True)  # fmt: skip
            return
        click.echo(f"reports: {', '.join(str(path) for path in paths)}", err=True)


@click.group("labels")
def labels() -> None:
    """Human label sheets: export answers to grade by hand, check a filled sheet."""


@labels.command("export")
@click.argument("run_dir", type=click.Path(path_type=Path, file_okay=False), metavar="RUN")
@click.option("--n", "n", type=click.IntRange(1), required=True, help="Answers to sample.")
@click.option(
    "--seed", type=int, default=0, show_default=True, help="Sampling seed; the same seed picks the same answers."
)
@click.option(
    "--out", type=click.Path(path_type=Path, dir_okay=False), help=f"Sheet to write (default: RUN/{SHEET_NAME})."
)
@click.option("--overwrite", is_flag=True, help="Replace an existing sheet (its labels are lost).")
def export(run_dir: Path, n: int, seed: int, out: Path | None, overwrite: bool) -> None:
    """Write a CSV sheet of N answers sampled from RUN, with one empty column per rubric item."""
    store = RunStore(run_dir, read_only=True)
    try:
        answers = run_answers(store)
    finally:
        store.close()
    if not answers:
        raise HarnessError(f"{run_dir} holds no answers yet; run `harness run` into it first")
    chosen = sample_answers(answers, n, seed)
    if len(chosen) < n:
        click.echo(f"the run holds only {len(chosen)} answers; the sheet has all of them", err=True)
    path = out or Path(run_dir) / SHEET_NAME
    write_label_sheet(path, label_rows(chosen), overwrite=overwrite)
    width = max(answer.k for answer in chosen) + 3
    click.echo(f"wrote {len(chosen)} answers to {path} (seed {seed})")
    click.echo(
        f"fill item_1..item_{width} with 1 (earned), 0 (not earned) or leave blank; the rubric column says what each item is"
    )
    click.echo(f"then: harness labels check {run_dir} {path}; harness agreement {run_dir} --human {path}")


@labels.command("check")
@click.argument("run_dir", type=click.Path(path_type=Path, file_okay=False), metavar="RUN")
@click.argument("sheet", type=click.Path(path_type=Path, dir_okay=False))
def check(run_dir: Path, sheet: Path) -> None:
    """Validate a filled SHEET against RUN and count its labels."""
    store = RunStore(run_dir, read_only=True)
    try:
        answers = run_answers(store)
    finally:
        store.close()
    human = read_human_labels(sheet, answers)
    labelled = len(human.ratings)
    click.echo(
        f"{sheet}: {len(human.rows)} answers, {labelled} of {human.items} items labelled, {human.items - labelled} blank"
    )
    counts = item_counts(human.ratings)
    if not counts:
        return
    order = [kind for kind in RUBRIC_KINDS if kind in counts]
    click.echo(tabulate([[kind, *counts[kind]] for kind in order], headers=["kind", "earned (1)", "not earned (0)"]))
