"""The rule world's student: a tiny model that can learn the rule skills on a CPU.

``build_rules_student(directory)`` writes a random tiny Llama (the shape
``harness.core.tinymodel.RULES_STUDENT``) whose tokenizer is trained on
rule-world text: training-split student requests and rule-teacher texts. A
tokenizer fitted to that text spends its small vocabulary on the words the
student must learn to write, so each training row is short and the model sees
more rows per CPU-second.

Its training data is D(1,2,3) from ``harness generate-data --teacher rules``
(bin/pipeline.sh). The model is deterministic for a given catalog, prompt
version and seed.
"""

from __future__ import annotations

import random
from dataclasses import replace
from pathlib import Path

from harness.core.errors import HarnessError
from harness.core.prompts import render_student_turn1, render_student_turn2
from harness.core.registry import Registry, Task, load_registry
from harness.core.sampling import sample_combinations
from harness.core.tinymodel import RULES_STUDENT, build_tiny_model
from harness.rules_teacher import write_text
from judges.rules import rule_world

FAMILY = "skillmix-rules"
TRAIN_K = (1, 2, 3)
CORPUS_ROWS_PER_K = 1000


def _train_task(registry: Registry, k: int) -> Task:
    name = f"{FAMILY}-k{k}-train"
    if name not in registry:
        raise HarnessError(f"no task {name}: the rule family is missing from tasks/ (tasks/skillmix-rules.yaml)")
    return registry.get(name)


def rules_corpus(rows_per_k: int = CORPUS_ROWS_PER_K, seed: int = 0) -> list[str]:
    """Rule-world text for the student's tokenizer: training-split requests and teacher texts, k = 1, 2, 3."""
    registry = load_registry()
    texts: list[str] = []
    for k in TRAIN_K:
        task = _train_task(registry, k)
        world = rule_world(task.catalog, f"task {task.name}")
        rng = random.Random(f"rules-corpus:{seed}:{k}")
        combinations = sample_combinations(
            [skill.name for skill in task.skills()], task.topics(), k=k, count=rows_per_k, seed=seed,
            stream=f"rules-corpus:{k}",
        )  # fmt: skip
        for combination in combinations:
            texts.append(render_student_turn1(task, combination))
            texts.append("Answer: " + write_text(world, combination.skills, combination.topic, rng))
            texts.append(render_student_turn2(task, combination))
    return texts


def build_rules_student(directory: Path, seed: int = 0, overwrite: bool = False) -> Path:
    """Write the rule world's random tiny student (tokenizer trained on rule-world text) to `directory`."""
    return build_tiny_model(Path(directory), replace(RULES_STUDENT, seed=seed), overwrite, corpus=rules_corpus())
