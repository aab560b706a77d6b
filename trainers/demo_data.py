"""A small SKILL-MIX-shaped training set made by code, for running the recipe with no teacher.

Each row has the shape `harness generate-data` writes: the user turn is the
turn-1 SKILL-MIX request (k training skills with definitions and examples, and
a training topic, rendered from the task's own prompt template) and the
assistant turn is "Answer: " plus a text. The texts come from a rule, not a
teacher: one sentence that sets the topic and borrows the opening words of
each skill's definition. They are not good writing; they are short,
deterministic and learnable within a few steps, which is what a smoke run of
the training path needs.

The combinations are drawn from the training split with a seed stream of their
own, and any that the evaluation's train tasks also draw are skipped, so the
demo set never holds an evaluation combination. Rows that name held-out skills
or topics (the catalog's examples sometimes do) are left out, so the set passes
the audit that runs before every launch.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.core.catalog import Skill
from harness.core.errors import HarnessError
from harness.core.sampling import Combination, sample_combinations
from trainers.dataset import save_rows

DEMO_FAMILY = "skillmix"
DEMO_K = (1, 2, 3)
DEMO_SEED = 7
DEFINITION_WORDS = 6  # opening words of each definition that the answer borrows


@dataclass(frozen=True)
class DemoRow:
    k: int
    skills: tuple[str, ...]
    topic: str
    request: str
    answer: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "messages": [
                {"role": "user", "content": self.request},
                {"role": "assistant", "content": f"Answer: {self.answer}"},
            ],
            "k": self.k,
            "skills": list(self.skills),
            "topic": self.topic,
        }


def demo_answer(skills: Sequence[Skill], topic: str) -> str:
    """One sentence on the topic that strings together the opening words of each skill's definition."""
    parts = []
    for skill in skills:
        words = skill.definition.rstrip(".").split()[:DEFINITION_WORDS]
        parts.append(" ".join(words).lower())
    return f"On {topic}, " + "; ".join(parts) + "."


def demo_rows(rows_per_k: int, k_values: Sequence[int] = DEMO_K, family: str = DEMO_FAMILY) -> list[DemoRow]:
    """`rows_per_k` rows for each k, deterministic for a given catalog and prompt version."""
    from harness.core.audit import HeldoutTerms, heldout_tasks
    from harness.core.prompts import render_student_turn1
    from harness.core.registry import load_registry

    registry = load_registry()
    terms = HeldoutTerms.from_tasks(heldout_tasks(registry, family))
    rows: list[DemoRow] = []
    for k in k_values:
        task = registry.get(f"{family}-k{k}-train")
        evaluated = {_identity(combination) for combination in task.combinations()}
        # draw extra so that skipped combinations still leave rows_per_k
        drawn = sample_combinations(
            [skill.name for skill in task.skills()],
            task.topics(),
            k=k,
            count=3 * rows_per_k + len(evaluated),
            seed=DEMO_SEED,
            stream=f"builtin-demo:{family}:{k}",
        )
        kept: list[DemoRow] = []
        for combination in drawn:
            if len(kept) == rows_per_k:
                break
            if _identity(combination) in evaluated:
                continue
            request = render_student_turn1(task, combination)
            answer = demo_answer([task.catalog.skill(name) for name in combination.skills], combination.topic)
            if terms.text_findings(request, 0, "request") or terms.text_findings(answer, 0, "answer"):
                continue
            kept.append(DemoRow(k, combination.skills, combination.topic, request, answer))
        if len(kept) < rows_per_k:
            raise HarnessError(f"only {len(kept)} demo rows for k={k} pass the held-out audit; {rows_per_k} wanted")
        rows.extend(kept)
    return rows


def _identity(combination: Combination) -> tuple[tuple[str, ...], str]:
    return tuple(sorted(combination.skills)), combination.topic


def write_demo_dataset(directory: Path, rows_per_k: int) -> Path:
    """Save the demo rows with `save_to_disk` (one shard) plus a provenance.json, into `directory`."""
    import datasets

    rows = [row.to_dict() for row in demo_rows(rows_per_k)]
    text = datasets.Value("string")
    features = datasets.Features(
        {
            "messages": datasets.List({"role": text, "content": text}),
            "k": datasets.Value("int32"),
            "skills": datasets.List(text),
            "topic": text,
        }
    )
    save_rows(rows, Path(directory), features)
    provenance = {
        "made_by": "trainers.demo_data (rule-written answers, no teacher)",
        "rows": len(rows),
        "rows_per_k": rows_per_k,
        "k": list(DEMO_K),
        "family": DEMO_FAMILY,
        "seed": DEMO_SEED,
    }
    (Path(directory) / "provenance.json").write_text(json.dumps(provenance, indent=2) + "\n", encoding="utf-8")
    return Path(directory)
