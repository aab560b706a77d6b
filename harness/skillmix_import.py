"""Write a SKILL-MIX reference results tree (read by harness.skillmix_tree) into a run store.

Rows already in the store are skipped, so importing twice adds nothing. The
reference's own reading of each reply's total (``score_0``) is kept in the
store's meta for comparison with our re-scoring. Each grade's stored sentence
point is checked against the reference's sentence rule on the imported answer
(``judges.reference_rules``), which the ``reference`` scoring profile recomputes;
rows where they differ are counted (a tree edited by hand, or other code).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.core.errors import HarnessError
from harness.core.models import Model
from harness.core.store import Grade, RunStore
from harness.skillmix_tree import IMPORTED, TreeReader
from judges import reference_rules
from judges.rubric import sentence_point


@dataclass(frozen=True)
class ImportSummary:
    source: Path
    run_dir: Path
    tasks: tuple[str, ...]
    combinations: int
    generations_read: int
    generations_imported: int
    grades_read: int
    grades_imported: int
    grades_unusable: int  # among the grades imported now: our parser found no full reading
    skipped: dict[str, int]  # reason -> grading rows left out
    sentence_points_differing: int = 0  # among the grades imported now (see the module docstring)

    @property
    def generations_present(self) -> int:
        return self.generations_read - self.generations_imported

    @property
    def grades_present(self) -> int:
        return self.grades_read - sum(self.skipped.values()) - self.grades_imported


def _check_configs(store: RunStore, configs: dict[str, dict[str, Any]]) -> None:
    existing = store.task_configs()
    for name, config in configs.items():
        before = existing.get(name)
        if before is not None and before != config:
            changed = sorted(key for key in set(before) | set(config) if before.get(key) != config.get(key))
            raise HarnessError(
                f"{store.run_dir} already holds task {name} imported with different {', '.join(changed)}; "
                "import this tree into a new --out directory"
            )


def import_skillmix(source: Path, run_dir: Path) -> ImportSummary:
    """Import the reference results tree at ``source`` into the run store in ``run_dir``."""
    source = Path(source).resolve()
    if not source.is_dir():
        raise HarnessError(f"{source} is not a directory; give the root the reference code wrote its results under")
    reader = TreeReader(source)
    reader.read()
    configs = {name: draft.config(source) for name, draft in sorted(reader.tasks.items())}
    store = RunStore(run_dir, exclusive=True)
    try:
        _check_configs(store, configs)
        for name, config in configs.items():
            combinations = sorted(reader.tasks[name].combinations.items())
            store.record_task(
                name, config, [(index, list(skills), topic) for index, (skills, topic, _) in combinations]
            )
        # The store keeps one role per name and scoring reads judges from it, so a model that both
        # answered and graded (gpt-4 in the reference's own tree) is recorded as a judge.
        for role, models in (("judge", reader.judges), ("student", reader.students)):
            for name, path in sorted(models.items()):
                store.record_model(Model(name=name, role=role, kind=IMPORTED, source=(str(path),), reference=str(path),
                                         identity=f"imported:{name}"))  # fmt: skip
        generation_keys, grade_keys = store.generation_keys(), store.grade_keys()
        new_generations = [g for key, (g, _) in reader.generations.items() if key not in generation_keys]
        new_grades = [g for key, (g, _) in reader.grades.items() if key not in grade_keys]
        with store.transaction():
            for generation in new_generations:
                store.add_generation(generation)
            for grade in new_grades:
                store.add_grade(grade)
        summary = ImportSummary(
            source=source,
            run_dir=Path(run_dir),
            tasks=tuple(configs),
            combinations=sum(len(draft.combinations) for draft in reader.tasks.values()),
            generations_read=len(reader.generations),
            generations_imported=len(new_generations),
            grades_read=reader.grading_rows,
            grades_imported=len(new_grades),
            grades_unusable=sum(not grade.usable for grade in new_grades),
            skipped=dict(reader.skipped),
            sentence_points_differing=sum(_sentence_point_differs(grade, reader, configs) for grade in new_grades),
        )
        store.set_meta("import", _meta(summary, reader))
    finally:
        store.close()
    return summary


def _sentence_point_differs(grade: Grade, reader: TreeReader, configs: dict[str, dict[str, Any]]) -> bool:
    if grade.reference is None or grade.reference.sentence_point is None:
        return False
    answer = reader.generations[grade.key][0].answer
    k = int(configs[grade.key.task]["k"])
    return sentence_point(reference_rules.count_sentences(answer), k) != grade.reference.sentence_point


def _meta(summary: ImportSummary, reader: TreeReader) -> dict[str, Any]:
    return {
        "source": str(summary.source),
        "tasks": list(summary.tasks),
        "students": sorted(reader.students),
        "judges": sorted(reader.judges),
        "rows_read": {"generation": summary.generations_read, "grading": summary.grades_read},
        "imported": {"generations": summary.generations_imported, "grades": summary.grades_imported},
        "already_present": {"generations": summary.generations_present, "grades": summary.grades_present},
        "skipped": summary.skipped,
        "sentence_points_differing": summary.sentence_points_differing,
        # The reference's own reading of each reply's total, for comparison with our re-scoring.
        "reference_scores": {
            key: {"grading_rows": len(scores), "mean_score": sum(scores) / len(scores)}
            for key, scores in sorted(reader.reference_scores.items())
            if scores
        },
    }
