"""`harness tasks`: list the registered tasks and show one task's config and combinations."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click
import yaml
from tabulate import tabulate

from harness.cli.options import catalog_options, registry_from

SHOWN_COMBINATIONS = 5


@click.group("tasks")
def tasks() -> None:
    """Inspect the SKILL-MIX tasks defined by YAML files under tasks/."""


@tasks.command("list")
@catalog_options
def list_tasks(
    tasks_dir: Path | None,
    skills_file: Path | None,
    topics_file: Path | None,
    heldout_categories: tuple[str, ...],
) -> None:
    """Print every task with its split sizes."""
    registry = registry_from(tasks_dir, skills_file, topics_file, heldout_categories)
    rows = []
    unsupported = False
    for task in registry:
        if task.supported:
            sizes: tuple[Any, Any] = (len(task.skills()), len(task.topics()))
        else:
            sizes = ("n/a", "n/a")
            unsupported = True
        rows.append(
            [
                task.name,
                task.family,
                task.version,
                task.k,
                task.split,
                *sizes,
                task.n_combinations,
            ]
        )
    headers = [
        "name",
        "family",
        "version",
        "k",
        "split",
        "skills",
        "topics",
        "combinations",
    ]
    click.echo(tabulate(rows, headers=headers))
    if unsupported:
        click.echo("\nn/a: the catalog has no train/heldout split; only the -all tasks can run.")


@tasks.command("show")
@click.argument("name")
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="Print the resolved config and every combination as JSON.",
)
@catalog_options
def show_task(
    name: str,
    as_json: bool,
    tasks_dir: Path | None,
    skills_file: Path | None,
    topics_file: Path | None,
    heldout_categories: tuple[str, ...],
) -> None:
    """Print a task's resolved config and its first combinations."""
    task = registry_from(tasks_dir, skills_file, topics_file, heldout_categories).get(name)
    combinations = task.combinations()
    if as_json:
        document = {
            "task": task.to_dict(),
            "combinations": [c.to_dict() for c in combinations],
        }
        click.echo(json.dumps(document, indent=2, ensure_ascii=False))
        return
    click.echo(yaml.safe_dump(task.to_dict(), sort_keys=False, allow_unicode=True).rstrip())
    shown = combinations[:SHOWN_COMBINATIONS]
    click.echo(f"\nfirst {len(shown)} of {len(combinations)} combinations:")
    rows = [[c.index, ", ".join(c.skills), c.topic] for c in shown]
    click.echo(tabulate(rows, headers=["index", "skills", "topic"]))
