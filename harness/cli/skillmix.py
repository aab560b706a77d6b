"""`harness import-skillmix`: read a SKILL-MIX reference results tree into a run directory."""

from __future__ import annotations

from pathlib import Path

import click

from harness.skillmix_import import import_skillmix as import_tree


@click.command("import-skillmix")
@click.argument("source", type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--out",
    "run_dir",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Run directory to import into (created if missing; importing the same tree again adds nothing).",
)
def import_skillmix(source: Path, run_dir: Path) -> None:
    """Import the results the SKILL-MIX reference code wrote under SOURCE.

    SOURCE holds k<k>_s<seed>_v<version>_r<round>/<student>/records.csv files and
    their graded/by_<judge>_on_<column>_<run>_<version>/records.csv files. Judge
    replies are re-read by this harness's parser (scored by `harness report`); the
    points the reference's parser stored are kept too, and `harness report RUN
    --scoring reference` scores them as the reference's aggregate_metrics.py does.
    """
    summary = import_tree(source, run_dir)
    click.echo(f"imported {summary.source} into {summary.run_dir}")
    click.echo(f"  tasks:        {len(summary.tasks)} ({', '.join(summary.tasks)})")
    click.echo(f"  combinations: {summary.combinations}")
    click.echo(f"  generations:  {summary.generations_imported} new, {summary.generations_present} already present")
    click.echo(
        f"  grades:       {summary.grades_imported} new ({summary.grades_unusable} unusable: no full reading "
        f"of the reply), {summary.grades_present} already present"
    )
    for reason, count in sorted(summary.skipped.items()):
        click.echo(f"  skipped:      {count} grading row(s): {reason}")
    if summary.sentence_points_differing:
        click.echo(
            f"  note:         {summary.sentence_points_differing} grading row(s) hold a sentence point that the "
            "reference's sentence rule does not give for their answer (edited files?)"
        )
    click.echo(f"next: harness report {run_dir} --scoring reference   (the reference's own numbers)")
    click.echo(f"      harness report {run_dir}                       (this harness's rules)")
