"""`harness tasks`: list the registered tasks and show one task's config and combinations."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
import yaml
from tabulate import tabulate

from harness.registry import Registry, load_registry

SHOWN_COMBINATIONS = 5


def catalog_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """The options every tasks subcommand shares to find task files and a catalog."""
    options = [
        click.option(
            "--tasks-dir",
            type=click.Path(file_okay=False, path_type=Path),
            help="Also load the task YAML files in this directory.",
        ),
        click.option(
            "--skills",
            "skills_file",
            type=click.Path(dir_okay=False, path_type=Path),
            help="A skills CSV in the SKILL-MIX format; replaces every task's catalog (needs --topics).",
        ),
        click.option(
            "--topics",
            "topics_file",
            type=click.Path(dir_okay=False, path_type=Path),
            help="Topics for --skills: a .txt with one topic per line, or a CSV with columns topic,split.",
        ),
        click.option(
            "--heldout-category",
            "heldout_categories",
            multiple=True,
            help="With --skills: a skill category to hold out (repeatable); enables the train/heldout tasks.",
        ),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def _registry(
    tasks_dir: Path | None,
    skills_file: Path | None,
    topics_file: Path | None,
    heldout_categories: tuple[str, ...],
) -> Registry:
    return load_registry(tasks_dir, skills_file, topics_file, heldout_categories or None)


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
    registry = _registry(tasks_dir, skills_file, topics_file, heldout_categories)
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
    task = _registry(tasks_dir, skills_file, topics_file, heldout_categories).get(name)
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
