"""What the HTML report shows about one run, gathered from its store: results, answers, agreement.

Nothing here is computed a second way: the votes and the per-run corrections come
from the run's scoring profile (harness.scoring, what the metrics use), the agreement from
``harness.agreement_data.run_agreement``. The answer records are the page's data
for its answer browser: every student answer with its two turns, and per judge
each grading run's reply and points and the majority vote the metrics use.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.agreement_data import run_agreement, run_judges
from harness.core.errors import HarnessError
from harness.core.store import Grade, RunStore
from harness.scoring import GradedAnswer, ScoringProfile, TaskResult, graded_answers
from judges.agreement_report import AgreementReport
from judges.rubric import Score, count_sentences, item_kinds, rubric_lines

# How one judge's vote on one answer came out; the answer browser filters on these.
OUTCOMES = {
    "full": "full marks",
    "skill": "failed a skill",
    "other": "missed topic, sense or length",
    "unscored": "unscored",
}


@dataclass(frozen=True)
class CombinationView:
    task: str
    combination: int
    skills: tuple[str, ...]
    topic: str
    rubric: tuple[str, ...]  # the k+3 rubric items as the judge read them
    kinds: tuple[str, ...]  # each item's kind: skill, topic, sense, sentences


@dataclass(frozen=True)
class GradingRunView:
    grading_run: int
    usable: bool
    attempts: int
    judge_points: tuple[float | None, ...]  # the values the judge's reply gave
    scored_points: tuple[float | None, ...]  # after the sentence override and the name penalty
    reply: str  # the raw reply: the judge's justification, or the text that could not be parsed


@dataclass(frozen=True)
class Verdict:
    """One judge on one answer: its grading runs and the majority vote that the metrics use."""

    judge: str
    outcome: str  # a key of OUTCOMES
    vote: tuple[float | None, ...] | None  # None: no grading run was usable
    grading_runs: tuple[GradingRunView, ...]


@dataclass(frozen=True)
class AnswerView:
    task: str
    k: int
    split: str
    combination: int
    student: str
    generation_round: int
    turn1_prompt: str
    turn1_reply: str
    turn2_prompt: str
    turn2_reply: str
    answer: str  # the graded text
    answer_marked: bool  # False: the reply had no "Answer:" and was graded whole
    finish_reason: str | None
    sentences: int  # by the rubric's counting rule, which decides the sentence point
    verdicts: tuple[Verdict, ...]


@dataclass(frozen=True)
class RunView:
    """Everything the HTML report shows for one run."""

    name: str
    run_dir: str
    results: tuple[TaskResult, ...]
    meta: dict[str, Any]
    judges: tuple[str, ...]
    combinations: tuple[CombinationView, ...]
    answers: tuple[AnswerView, ...]
    agreement: AgreementReport | None
    agreement_note: str | None  # why a run with several raters has no agreement section


def outcome(score: Score | None) -> str:
    """Which of OUTCOMES a voted score is."""
    if score is None or not score.complete:
        return "unscored"
    if score.skills_earned() < score.k:
        return "skill"
    return "full" if score.others_earned() == len(score.others) else "other"


def _grading_run(profile: ScoringProfile, answer: GradedAnswer, grade: Grade) -> GradingRunView:
    scored = profile.run_score(answer, grade).points if profile.usable(grade) else grade.points
    return GradingRunView(
        grade.grading_run, grade.usable, grade.attempts, tuple(grade.points), tuple(scored), grade.reply
    )


def gather_answers(
    store: RunStore, judges: Sequence[str], *, profile: ScoringProfile
) -> tuple[list[CombinationView], list[AnswerView]]:
    """Every combination that has an answer, and every answer with each judge's grading runs and vote."""
    combination_views: list[CombinationView] = []
    answer_views: list[AnswerView] = []
    for task, config in store.task_configs().items():
        combinations = store.combinations(task)
        generations = {g.key: g for g in store.generations(task)}
        grades = list(store.grades(task))
        skills = {(task, index): skills for index, (skills, _) in combinations.items()}
        graded = graded_answers(generations.values(), grades, skills)
        voted = {pair: profile.answer_score(answer) for pair, answer in graded.items()}
        for index in sorted({key.combination for key in generations}):
            combination_skills, topic = combinations[index]
            combination_views.append(
                CombinationView(task, index, tuple(combination_skills), topic,
                                tuple(rubric_lines(combination_skills, topic)), item_kinds(len(combination_skills)))
            )  # fmt: skip
        for key in sorted(generations, key=lambda key: (key.combination, key.student, key.generation_round)):
            generation = generations[key]
            verdicts = tuple(
                Verdict(
                    judge,
                    outcome(voted.get((key, judge))),
                    voted[(key, judge)].points if voted.get((key, judge)) is not None else None,
                    tuple(_grading_run(profile, graded[(key, judge)], grade) for grade in graded[(key, judge)].grades),
                )  # fmt: skip
                for judge in judges
                if (key, judge) in graded
            )
            answer_views.append(
                AnswerView(
                    task,
                    int(config["k"]),
                    str(config.get("split", "all")),
                    key.combination,
                    key.student,
                    key.generation_round,
                    generation.turn1_prompt,
                    generation.turn1_reply,
                    generation.turn2_prompt,
                    generation.turn2_reply,
                    generation.answer,
                    generation.answer_marked,
                    generation.finish_reason,
                    count_sentences(generation.answer),
                    verdicts,
                )  # fmt: skip
            )
    return combination_views, answer_views


def gather_agreement(
    store: RunStore, judges: Sequence[str], *, profile: ScoringProfile, human: Path | None
) -> tuple[AgreementReport | None, str | None]:
    """The agreement report when the run has two judges or human labels; else (None, None).

    A run whose judges cannot be compared (one judge never gave a usable grade, say)
    gets the reason instead of a report. A human sheet that does not fit the run is the
    user's own input, so its error stops the report.
    """
    if len(judges) < 2 and human is None:
        return None, None
    try:
        return run_agreement(store, human=human, profile=profile), None
    except HarnessError as error:
        if human is not None:
            raise
        return None, str(error)


def run_view(
    store: RunStore,
    run_dir: Path,
    results: Sequence[TaskResult],
    meta: dict[str, Any],
    *,
    profile: ScoringProfile,
    human: Path | None = None,
    name: str | None = None,
) -> RunView:
    """The report's view of one scored run (``results`` and ``meta`` as harness.report makes them)."""
    judges = run_judges(store)
    combinations, answers = gather_answers(store, judges, profile=profile)
    agreement, note = gather_agreement(store, judges, profile=profile, human=human)
    return RunView(
        name or Path(run_dir).name or str(run_dir), str(run_dir), tuple(results), meta, tuple(judges),
        tuple(combinations), tuple(answers), agreement, note,
    )  # fmt: skip
