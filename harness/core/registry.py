"""The task registry: expand task families into named tasks and look tasks up by name.

Each family file (read by harness.core.taskfile) expands into one task per (k, split),
named ``{family}-k{k}-{split}``. Built-in families live in the package's ``tasks/``
directory; ``tasks_dir`` adds the YAML files of another directory.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.core.catalog import Catalog, Skill, load_open_catalog, load_skillmix_catalog
from harness.core.errors import HarnessError
from harness.core.sampling import Combination, sample_combinations
from harness.core.taskfile import BUILTIN_TASKS_DIR, family_files, read_family_file


@dataclass(frozen=True)
class Task:
    """One SKILL-MIX(k) task on one split, fully resolved."""

    name: str
    family: str
    version: int
    description: str
    k: int
    split: str  # "train" | "heldout" | "all"
    n_combinations: int
    seed: int
    generation_rounds: int
    grading_runs: int
    prompt_version: str
    prompt_dir: Path
    grading_style: str  # "table" | "items"
    student_sampling: dict[str, float | int]
    judge_sampling: dict[str, float | int]
    catalog: Catalog
    source: Path  # the YAML file that defines the family

    @property
    def supported(self) -> bool:
        """False when the catalog has no split information for this task's split."""
        return self.catalog.supports(self.split)

    def skills(self) -> tuple[Skill, ...]:
        return self.catalog.skills_in(self.split)

    def topics(self) -> tuple[str, ...]:
        return self.catalog.topics_in(self.split)

    def combinations(self) -> list[Combination]:
        try:
            return sample_combinations(
                [s.name for s in self.skills()],
                self.topics(),
                k=self.k,
                count=self.n_combinations,
                seed=self.seed,
                stream=f"{self.family}:{self.k}:{self.split}",
            )
        except HarnessError as error:
            raise HarnessError(f"task {self.name} (defined in {self.source}): {error}") from None

    def to_dict(self) -> dict[str, Any]:
        """The resolved configuration, JSON-serialisable, as runs record it."""
        catalog = self.catalog.to_dict()
        catalog["skills_in_split"] = len(self.skills()) if self.supported else None
        catalog["topics_in_split"] = len(self.topics()) if self.supported else None
        return {
            "name": self.name,
            "family": self.family,
            "version": self.version,
            "description": self.description,
            "k": self.k,
            "split": self.split,
            "combinations": self.n_combinations,
            "seed": self.seed,
            "generation_rounds": self.generation_rounds,
            "grading_runs": self.grading_runs,
            "prompt_version": self.prompt_version,
            "prompt_dir": str(self.prompt_dir),
            "grading_style": self.grading_style,
            "student_sampling": dict(self.student_sampling),
            "judge_sampling": dict(self.judge_sampling),
            "source": str(self.source),
            "catalog": catalog,
        }


class Registry:
    """All known tasks by name, in definition order."""

    def __init__(self, tasks: Sequence[Task]) -> None:
        self._tasks: dict[str, Task] = {}
        for task in tasks:
            if task.name in self._tasks:
                other = self._tasks[task.name].source
                raise HarnessError(f"task {task.name} is defined twice: in {other} and in {task.source}")
            self._tasks[task.name] = task

    def names(self) -> list[str]:
        return list(self._tasks)

    def tasks(self) -> list[Task]:
        return list(self._tasks.values())

    def get(self, name: str) -> Task:
        if name in self._tasks:
            return self._tasks[name]
        close = difflib.get_close_matches(name, self.names(), n=3, cutoff=0.6)
        family, k_exists = self._family_of(name) or (None, False)
        if close and (family is None or k_exists):  # near names of another k would mislead
            message = f"unknown task {name!r}; did you mean {', '.join(close)}?"
            message += f" The {family}." if family else ""
        else:
            message = f"unknown task {name!r}" + (f": the {family}." if family else ".")
        raise HarnessError(f"{message} Run `harness tasks list` to see all tasks.")

    def _family_of(self, name: str) -> tuple[str, bool] | None:
        """For a name shaped FAMILY-kK-SPLIT of a known family: the k values and splits it does have,
        and whether K is one of them."""
        match = re.fullmatch(r"(?P<family>.+)-k(?P<k>\d+)-[^-]+", name)
        tasks = [task for task in self if match and task.family == match["family"]]
        if not tasks:
            return None
        ks = sorted({task.k for task in tasks})
        splits = list(dict.fromkeys(task.split for task in tasks))
        span = f"{ks[0]}..{ks[-1]}" if ks == list(range(ks[0], ks[-1] + 1)) and len(ks) > 2 else ", ".join(map(str, ks))
        first, last = f"{tasks[0].family}-k{ks[0]}-{splits[0]}", f"{tasks[0].family}-k{ks[-1]}-{splits[-1]}"
        text = f"task family {tasks[0].family} has k = {span} and splits {', '.join(splits)} ({first} ... {last})"
        return text, int(match["k"]) in ks

    def __contains__(self, name: object) -> bool:
        return name in self._tasks

    def __iter__(self) -> Iterator[Task]:
        return iter(self._tasks.values())

    def __len__(self) -> int:
        return len(self._tasks)


def load_registry(
    tasks_dir: Path | str | None = None,
    skills_file: Path | str | None = None,
    topics_file: Path | str | None = None,
    heldout_categories: Sequence[str] | None = None,
    *,
    builtin: bool = True,
) -> Registry:
    """Built-in task families (unless ``builtin`` is False) plus those in ``tasks_dir``.

    With ``skills_file`` and ``topics_file`` (SKILL-MIX format) every family uses that
    catalog instead of its own; ``heldout_categories`` then names its held-out categories.
    """
    override: Catalog | None = None
    if (skills_file is None) != (topics_file is None):
        raise HarnessError("give --skills and --topics together (a SKILL-MIX skills CSV and a topics file)")
    if skills_file is not None and topics_file is not None:
        override = load_skillmix_catalog(skills_file, topics_file, heldout_categories)
    elif heldout_categories is not None:
        raise HarnessError("--heldout-category only applies with --skills and --topics")

    files = family_files(BUILTIN_TASKS_DIR) if builtin else []
    if tasks_dir is not None:
        extra = Path(tasks_dir)
        if not extra.is_dir():
            raise HarnessError(f"--tasks-dir {extra} is not a directory")
        files += [f for f in family_files(extra) if f.resolve() not in {g.resolve() for g in files}]

    catalogs: dict[Path, Catalog] = {}
    families: dict[str, Path] = {}
    tasks: list[Task] = []
    for path in files:
        config = read_family_file(path)
        family = config["family"]
        if family in families:
            raise HarnessError(
                f"task family {family!r} is defined in both {families[family]} and {path}; "
                f"give the variant its own 'family:'"
            )
        families[family] = path
        if override is not None:
            catalog = override
        else:
            directory = config["catalog"]
            if directory not in catalogs:
                catalogs[directory] = load_open_catalog(directory)
            catalog = catalogs[directory]
        tasks += expand_family(config, catalog, path)
    return Registry(tasks)


def expand_family(config: dict[str, Any], catalog: Catalog, source: Path) -> list[Task]:
    """One task per (k, split) of a validated family config."""
    return [
        Task(
            name=f"{config['family']}-k{k}-{split}",
            family=config["family"],
            version=config["version"],
            description=config["description"],
            k=k,
            split=split,
            n_combinations=config["combinations"],
            seed=config["seed"],
            generation_rounds=config["generation_rounds"],
            grading_runs=config["grading_runs"],
            prompt_version=config["prompt_version"],
            prompt_dir=config["prompt_dir"],
            grading_style=config["grading_style"],
            student_sampling=dict(config["student_sampling"]),
            judge_sampling=dict(config["judge_sampling"]),
            catalog=catalog,
            source=source,
        )
        for k in config["k"]
        for split in config["splits"]
    ]
