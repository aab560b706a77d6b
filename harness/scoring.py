"""Score a run from its store: code-side corrections, majority vote, SKILL-MIX metrics.

This reads only the store, so a finished run re-scores (for instance without
the name penalty) with no model call. Per answer and judge, each usable
grading run gets the sentence override and the name penalty, the runs are
combined by majority vote, and a round with no usable grading run is unscored.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from harness.core.store import AnswerKey, Generation, Grade, RunStore
from harness.metrics import TaskMetrics, majority_vote, task_metrics
from judges.rubric import Score


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


def corrected_score(grade: Grade, answer: str, skills: Sequence[str], *, name_penalty: bool) -> Score:
    """A grading run's judge values after the sentence override and (optionally) the name penalty."""
    return Score.from_points(grade.points).corrected(answer, skills, name_penalty=name_penalty)


def voted_scores(
    generations: Mapping[AnswerKey, Generation],
    grades: Sequence[Grade],
    skills: Mapping[tuple[str, int], Sequence[str]],
    *,
    name_penalty: bool,
) -> dict[tuple[AnswerKey, str], Score | None]:
    """Per (answer, judge): the majority-voted score, or None when no grading run was usable.

    `skills` maps (task, combination) to the combination's skills in rubric order.
    """
    runs: dict[tuple[AnswerKey, str], list[Score]] = defaultdict(list)
    seen: set[tuple[AnswerKey, str]] = set()
    for grade in grades:
        generation = generations.get(grade.key)
        if generation is None:
            continue
        seen.add((grade.key, grade.judge))
        if grade.usable:
            combination_skills = skills[(grade.key.task, grade.key.combination)]
            runs[(grade.key, grade.judge)].append(
                corrected_score(grade, generation.answer, combination_skills, name_penalty=name_penalty)
            )
    return {key: (majority_vote(runs[key]) if runs.get(key) else None) for key in seen}


def score_store(store: RunStore, *, name_penalty: bool = True, seed: int = 0) -> list[TaskResult]:
    results: list[TaskResult] = []
    judges = [model.name for model in store.models("judge")]
    for task_name, config in store.task_configs().items():
        combinations = store.combinations(task_name)
        skills = {(task_name, index): combination_skills for index, (combination_skills, _) in combinations.items()}
        generations = {g.key: g for g in store.generations(task_name)}
        grades = list(store.grades(task_name))
        voted = voted_scores(generations, grades, skills, name_penalty=name_penalty)
        k = int(config["k"])
        students = sorted({key.student for key in generations})
        task_judges = [judge for judge in judges if any(grade.judge == judge for grade in grades)]
        for student in students:
            answers = [g for key, g in generations.items() if key.student == student]
            for judge in task_judges:
                rounds_by_combination: dict[int, list[Score | None]] = defaultdict(list)
                for key in generations:
                    if key.student == student:
                        rounds_by_combination[key.combination].append(voted.get((key, judge)))
                judge_grades = [g for g in grades if g.key.student == student and g.judge == judge]
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
