"""Score a run from its store under a scoring profile: corrections, combining grading runs, metrics.

This reads only the store, so a finished run re-scores under another profile, or
without the name penalty, with no model call.

A *scoring profile* is the one object that decides how grades become metrics. Two exist:

| rule | ``harness`` (ours; the default) | ``reference`` (the SKILL-MIX reference code's) |
|---|---|---|
| values of a grading run | our parser's, matched to rubric items by label | an imported tree's ``points_0``, else our parser's; read by position |
| a run with a missing value | left out; a round with no usable run is unscored | missing values are 0 and the run still counts |
| sentence point | ``judges.rubric.count_sentences`` | ``judges.reference_rules.count_sentences`` |
| name penalty (default) | whole words, hyphen = space (on) | substring of the lower-cased answer (off) |
| grading runs, ``vote`` | majority of runs that earned the point; half points not earned | float32 mean rounded half to even |
| grading runs, ``average`` | fraction of runs that earned the point | float32 mean |
| rounds and combinations | best and mean over scored rounds; mean with bootstrap CI | the reference's float32 arithmetic (harness.scoring_reference); CI plus std / sqrt(n) |

Every profile takes the same options: the name penalty on or off, ``vote`` or
``average`` over grading runs, and skills whose combinations are left out.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from harness.core.errors import HarnessError
from harness.core.stats import bootstrap_ci
from harness.core.store import AnswerKey, Generation, Grade, RunStore
from harness.metrics import MetricEstimate, TaskMetrics, earned_fraction, majority_vote, task_metrics
from harness.scoring_reference import PAPER_METRICS, Summary, aggregate, as_points, combine_runs
from judges import reference_rules
from judges.rubric import Score, sentence_point

RUN_COMBINATIONS = ("vote", "average")


@dataclass(frozen=True)
class GradedAnswer:
    """One answer with one judge's grading runs of it, in run order."""

    generation: Generation
    skills: tuple[str, ...]
    grades: tuple[Grade, ...]

    @property
    def k(self) -> int:
        return len(self.skills)


@dataclass(frozen=True)
class ScoringProfile:
    """The options every profile takes; a subclass is a set of rules (see the module docstring)."""

    name: ClassVar[str]
    summary: ClassVar[str]  # one line for reports
    default_name_penalty: ClassVar[bool]
    zero_fills: ClassVar[bool]  # a missing value is a 0 and every grading run counts

    name_penalty: bool
    runs: str = "vote"  # how grading runs combine: "vote" or "average"
    filter_skills: tuple[str, ...] = ()  # leave out every combination holding one of these skills

    def __post_init__(self) -> None:
        if self.runs not in RUN_COMBINATIONS:
            raise HarnessError(f"grading runs combine by {' or '.join(RUN_COMBINATIONS)}, not {self.runs!r}")

    def leaves_out(self, skills: Iterable[str]) -> bool:
        """Whether a combination of these skills is left out (``filter_skills``, exact names)."""
        return any(skill in self.filter_skills for skill in skills)

    def usable(self, grade: Grade) -> bool:
        """Whether a grading run takes part in combining runs."""
        return self.zero_fills or grade.usable

    def run_score(self, answer: GradedAnswer, grade: Grade) -> Score:
        """One grading run's values after the profile's corrections (sentence point, name penalty)."""
        raise NotImplementedError

    def answer_score(self, answer: GradedAnswer) -> Score | None:
        """The answer's grading runs combined into one Score; None when no run takes part."""
        raise NotImplementedError

    def task_metrics(
        self, answers: Mapping[int, Sequence[GradedAnswer]], k: int, *, rounds: int, runs: int, seed: int
    ) -> TaskMetrics:
        """One task's metrics from each combination's answers (one per generation round, in order).

        ``rounds`` and ``runs`` are what the task asks for; combinations this profile leaves
        out are not counted.
        """
        raise NotImplementedError

    def to_dict(self) -> dict[str, Any]:
        return {
            "profile": self.name,
            "name_penalty": self.name_penalty,
            "grading_runs": self.runs,
            "filter_skills": list(self.filter_skills),
        }

    def describe(self) -> str:
        """One line for reports: the profile and its options."""
        parts = [
            f"{self.name} ({self.summary})",
            f"name penalty {'on' if self.name_penalty else 'off'}",
            f"grading runs {'voted' if self.runs == 'vote' else 'averaged'}",
        ]
        if self.filter_skills:
            parts.append(f"leaving out combinations with {', '.join(self.filter_skills)}")
        return "; ".join(parts)


@dataclass(frozen=True)
class HarnessScoring(ScoringProfile):
    """Our rules: unusable grading runs are left out and a round without a usable one is unscored."""

    name: ClassVar[str] = "harness"
    summary: ClassVar[str] = "this harness's rules"
    default_name_penalty: ClassVar[bool] = True
    zero_fills: ClassVar[bool] = False

    def run_score(self, answer: GradedAnswer, grade: Grade) -> Score:
        return Score.from_points(grade.points).corrected(
            answer.generation.answer, answer.skills, name_penalty=self.name_penalty
        )

    def answer_score(self, answer: GradedAnswer) -> Score | None:
        runs = [self.run_score(answer, grade) for grade in answer.grades if self.usable(grade)]
        if not runs:
            return None
        return majority_vote(runs) if self.runs == "vote" else earned_fraction(runs)

    def task_metrics(
        self, answers: Mapping[int, Sequence[GradedAnswer]], k: int, *, rounds: int, runs: int, seed: int
    ) -> TaskMetrics:
        rounds_by_combination = {
            combination: [self.answer_score(answer) for answer in graded]
            for combination, graded in answers.items()
            if graded and not self.leaves_out(graded[0].skills)
        }
        return task_metrics(rounds_by_combination, k, seed=seed)


@dataclass(frozen=True)
class ReferenceScoring(ScoringProfile):
    """The rules of the SKILL-MIX reference code's ``aggregate_metrics.py``, to its float32 arithmetic."""

    name: ClassVar[str] = "reference"
    summary: ClassVar[str] = "the SKILL-MIX reference code's rules"
    default_name_penalty: ClassVar[bool] = False
    zero_fills: ClassVar[bool] = True

    def run_score(self, answer: GradedAnswer, grade: Grade) -> Score:
        # An imported grade is scored on what the reference's own parser stored, not on our re-parse.
        values = grade.reference.points if grade.reference is not None else grade.points
        text = answer.generation.answer
        named = [self.name_penalty and reference_rules.names_skill(text, skill) for skill in answer.skills]
        sentences = sentence_point(reference_rules.count_sentences(text), answer.k)
        return Score.by_position(values, answer.k).with_corrections(sentences, named)

    def answer_score(self, answer: GradedAnswer) -> Score | None:
        if not answer.grades:
            return None
        points = as_points([[[self.run_score(answer, grade).points] for grade in answer.grades]])
        return Score.from_points([float(value) for value in combine_runs(points, self.runs)[0, 0]])

    def task_metrics(
        self, answers: Mapping[int, Sequence[GradedAnswer]], k: int, *, rounds: int, runs: int, seed: int
    ) -> TaskMetrics:
        # The reference stacks every (round, run, combination) into one array and cannot aggregate a
        # task with a hole in it; here a combination lacking an answer or a grading run is unscored.
        counted = [graded for _, graded in sorted(answers.items()) if graded and not self.leaves_out(graded[0].skills)]
        complete = [graded for graded in counted if _complete(graded, rounds, runs)]
        incomplete = [graded for graded in counted if not _complete(graded, rounds, runs)]
        points = as_points(
            [[[self.run_score(graded[g], graded[g].grades[r]).points for graded in complete] for r in range(runs)]
             for g in range(rounds)]
        ) if complete else np.zeros((rounds, runs, 0, k + 3), dtype=np.float32)  # fmt: skip
        summaries = aggregate(points, k, runs=self.runs, valid=range(len(complete)))
        fields = {}
        for ours, theirs in PAPER_METRICS.items():
            fields[ours] = _metric_value(summaries[theirs]["max"], seed)
            fields[f"{ours}_mean"] = _metric_value(summaries[theirs]["average"], seed)
        return TaskMetrics(
            k=k,
            n=len(complete),
            unscored=len(incomplete),
            n_rounds_unscored=sum(
                max(0, rounds - sum(len(answer.grades) == runs for answer in graded)) for graded in incomplete
            ),
            reference_metrics={
                metric: {method: summary.to_dict() for method, summary in by_method.items()}
                for metric, by_method in summaries.items()
            },
            **fields,
        )


def _complete(graded: Sequence[GradedAnswer], rounds: int, runs: int) -> bool:
    """Every generation round answered, and every answer graded by every grading run."""
    return len(graded) == rounds and all(len(answer.grades) == runs for answer in graded)


def _metric_value(summary: Summary, seed: int) -> MetricEstimate:
    low, high = bootstrap_ci(summary.per_combination, seed=seed)
    return MetricEstimate(summary.value, low, high, uncertainty=summary.uncertainty)


PROFILES: dict[str, type[ScoringProfile]] = {"harness": HarnessScoring, "reference": ReferenceScoring}
DEFAULT_PROFILE = "harness"


def parse_skill_list(text: str | None) -> tuple[str, ...]:
    """``--filter-skills a,b``: the names, split at commas and stripped (the reference strips none)."""
    return tuple(name.strip() for name in (text or "").split(",") if name.strip())


def scoring_profile(
    name: str = DEFAULT_PROFILE,
    *,
    name_penalty: bool | None = None,
    runs: str = "vote",
    filter_skills: Sequence[str] = (),
) -> ScoringProfile:
    """A profile by name; ``name_penalty`` None takes the profile's default."""
    if name not in PROFILES:
        raise HarnessError(f"unknown scoring profile {name!r}; use one of: {', '.join(PROFILES)}")
    profile = PROFILES[name]
    penalty = profile.default_name_penalty if name_penalty is None else name_penalty
    return profile(name_penalty=penalty, runs=runs, filter_skills=tuple(filter_skills))


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
    combinations_left_out: int = 0  # by the profile's filter_skills

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
            "combinations_left_out": self.combinations_left_out,
            "metrics": self.metrics.to_dict(),
        }


def graded_answers(
    generations: Iterable[Generation],
    grades: Iterable[Grade],
    skills: Mapping[tuple[str, int], Sequence[str]],
) -> dict[tuple[AnswerKey, str], GradedAnswer]:
    """Per (answer, judge) that graded it: the answer with that judge's grading runs in run order.

    ``skills`` maps (task, combination) to the combination's skills in rubric order.
    """
    by_key = {generation.key: generation for generation in generations}
    runs: dict[tuple[AnswerKey, str], list[Grade]] = defaultdict(list)
    for grade in grades:
        if grade.key in by_key:
            runs[(grade.key, grade.judge)].append(grade)
    return {
        (key, judge): GradedAnswer(
            by_key[key], tuple(skills[(key.task, key.combination)]), tuple(sorted(found, key=lambda g: g.grading_run))
        )
        for (key, judge), found in runs.items()
    }


def answer_scores(
    profile: ScoringProfile,
    generations: Iterable[Generation],
    grades: Iterable[Grade],
    skills: Mapping[tuple[str, int], Sequence[str]],
) -> dict[tuple[AnswerKey, str], Score | None]:
    """Per (answer, judge): the profile's combined score, or None when no grading run takes part."""
    return {key: profile.answer_score(answer) for key, answer in graded_answers(generations, grades, skills).items()}


def check_filter_skills(store: RunStore, profile: ScoringProfile) -> None:
    """Refuse a ``filter_skills`` name that is no skill of the run (a typo would silently filter nothing)."""
    if not profile.filter_skills:
        return
    known = {
        skill for task in store.task_configs() for skills, _ in store.combinations(task).values() for skill in skills
    }
    unknown = [name for name in profile.filter_skills if name not in known]
    if unknown:
        raise HarnessError(
            f"--filter-skills: {store.run_dir} has no skill named {', '.join(map(repr, unknown))}; names are "
            f"exact, e.g. {', '.join(sorted(known)[:3])}"
        )


def score_store(store: RunStore, profile: ScoringProfile, *, seed: int = 0) -> list[TaskResult]:
    """Every (task, student, judge) of the run, scored under ``profile``."""
    check_filter_skills(store, profile)
    results: list[TaskResult] = []
    judges = [model.name for model in store.models("judge")]
    for task_name, config in store.task_configs().items():
        combinations = store.combinations(task_name)
        skills = {(task_name, index): combination_skills for index, (combination_skills, _) in combinations.items()}
        generations = sorted(store.generations(task_name), key=lambda g: (g.key.combination, g.key.generation_round))
        grades = list(store.grades(task_name))
        graded = graded_answers(generations, grades, skills)
        k = int(config["k"])
        rounds, runs = int(config.get("generation_rounds", 1)), int(config.get("grading_runs", 1))
        left_out = sum(profile.leaves_out(combination_skills) for combination_skills, _ in combinations.values())
        students = sorted({generation.key.student for generation in generations})
        task_judges = [judge for judge in judges if any(grade.judge == judge for grade in grades)]
        for student in students:
            answers = [g for g in generations if g.key.student == student]
            for judge in task_judges:
                by_combination: dict[int, list[GradedAnswer]] = defaultdict(list)
                for generation in answers:
                    empty = GradedAnswer(generation, tuple(skills[(task_name, generation.key.combination)]), ())
                    by_combination[generation.key.combination].append(graded.get((generation.key, judge), empty))
                judge_grades = [g for g in grades if g.key.student == student and g.judge == judge]
                results.append(
                    TaskResult(
                        task=task_name,
                        k=k,
                        split=str(config.get("split", "all")),
                        student=student,
                        judge=judge,
                        metrics=profile.task_metrics(by_combination, k, rounds=rounds, runs=runs, seed=seed),
                        expected_answers=len(combinations) * rounds,
                        answers=len(answers),
                        answers_unmarked=sum(not g.answer_marked for g in answers),
                        grades=len(judge_grades),
                        grades_unusable=sum(not g.usable for g in judge_grades),
                        combinations_left_out=left_out,
                    )
                )
    return results
