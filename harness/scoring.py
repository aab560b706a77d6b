"""Score a run from its store: code-side corrections, majority vote, SKILL-MIX metrics.

This reads only the store, so a finished run re-scores (for instance without
the name penalty) with no model call. Per answer and judge, each usable
grading run gets the sentence override and the name penalty, the runs are
combined by majority vote, and a round with no usable grading run is unscored.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from harness.metrics import TaskMetrics, majority_vote, task_metrics
from harness.store import Generation, Grade, RunStore
from judges.rubric import final_points

AnswerKey = tuple[str, int, str, int]  # task, combination, student, generation round


@dataclass(frozen=True)
class TaskResult:
    task: str
    k: int
    split: str
    student: str
    judge: str
    metrics: TaskMetrics
    expected_answers: int  # combinations x generation rounds
    answers: int
    answers_unmarked: int  # replies without "Answer:", graded whole
    grades: int
    grades_unusable: int  # grading runs recorded as unscored after every retry

    @property
    def complete(self) -> bool:
        return self.answers == self.expected_answers

    def to_dict(self) -> dict[str, Any]:
        return {
            "task": self.task,
            "k": self.k,
            "split": self.split,
            "student": self.student,
            "judge": self.judge,
            "complete": self.complete,
            "expected_answers": self.expected_answers,
            "answers": self.answers,
            "answers_unmarked": self.answers_unmarked,
            "grades": self.grades,
            "grades_unusable": self.grades_unusable,
            "metrics": self.metrics.to_dict(),
        }


def voted_points(
    generations: dict[AnswerKey, Generation],
    grades: list[Grade],
    skills: dict[tuple[str, int], list[str]],
    *,
    name_penalty: bool,
) -> dict[tuple[AnswerKey, str], list[int | None] | None]:
    """Per (answer, judge): the majority-voted k+3 points, or None when no grading run was usable.

    `skills` maps (task, combination) to the combination's skills in rubric order.
    """
    runs: dict[tuple[AnswerKey, str], list[list[float | None]]] = defaultdict(list)
    seen: set[tuple[AnswerKey, str]] = set()
    for grade in grades:
        key = (grade.task, grade.combination, grade.student, grade.generation_round)
        generation = generations.get(key)
        if generation is None:
            continue
        seen.add((key, grade.judge))
        if grade.usable:
            corrected = final_points(
                grade.points, generation.answer, skills[(grade.task, grade.combination)], name_penalty=name_penalty
            )
            runs[(key, grade.judge)].append(corrected)
    return {key: (majority_vote(runs[key]) if runs.get(key) else None) for key in seen}


def score_store(store: RunStore, *, name_penalty: bool = True, seed: int = 0) -> list[TaskResult]:
    results: list[TaskResult] = []
    judges = [model.name for model in store.models("judge")]
    for task_name, config in store.task_configs().items():
        combinations = store.combinations(task_name)
        skills = {(task_name, index): combination_skills for index, (combination_skills, _) in combinations.items()}
        generations = {(g.task, g.combination, g.student, g.generation_round): g for g in store.generations(task_name)}
        grades = list(store.grades(task_name))
        voted = voted_points(generations, grades, skills, name_penalty=name_penalty)
        k = int(config["k"])
        students = sorted({key[2] for key in generations})
        task_judges = [judge for judge in judges if any(grade.judge == judge for grade in grades)]
        for student in students:
            answers = [g for key, g in generations.items() if key[2] == student]
            for judge in task_judges:
                rounds_by_combination: dict[int, list[list[int] | None]] = defaultdict(list)
                for key, generation in generations.items():
                    if key[2] != student:
                        continue
                    points = voted.get((key, judge))
                    rounds_by_combination[generation.combination].append(
                        None if points is None or any(p is None for p in points) else points
                    )
                judge_grades = [g for g in grades if g.student == student and g.judge == judge]
                results.append(
                    TaskResult(
                        task=task_name,
                        k=k,
                        split=str(config.get("split", "all")),
                        student=student,
                        judge=judge,
                        metrics=task_metrics(rounds_by_combination, k, seed=seed),
                        expected_answers=len(combinations) * int(config.get("generation_rounds", 1)),
                        answers=len(answers),
                        answers_unmarked=sum(not g.answer_marked for g in answers),
                        grades=len(judge_grades),
                        grades_unusable=sum(not g.usable for g in judge_grades),
                    )
                )
    return results
