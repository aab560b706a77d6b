"""Command-line options shared by several commands."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from harness.registry import Registry, load_registry


def catalog_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """The options every command that resolves tasks shares: extra task files and another catalog."""
    options = [
        click.option(
            "--tasks-dir",
            type=click.Path(exists=True, file_okay=False, path_type=Path),
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


def registry_from(
    tasks_dir: Path | None,
    skills_file: Path | None,
    topics_file: Path | None,
    heldout_categories: tuple[str, ...],
) -> Registry:
    """The registry the catalog options describe."""
    return load_registry(tasks_dir, skills_file, topics_file, heldout_categories or None)
