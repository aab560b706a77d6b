"""Turn a run store (and a filled label sheet) into the ratings that agreement statistics compare.

Every graded answer is one ``RunAnswer`` with a stable id, ``task/combination/student/round``.
Its rubric item at position p is the rating item ``<id>/item_<p>`` (``judges.labels.rubric_item_key``),
the same key a human label sheet uses, so judge and human labels line up item by item.

Two ways to turn grades into raters:

* per judge (default): a judge's label on an item is the point the run scores with under
  the scoring profile (harness.scoring): its grading runs combined after the sentence
  override and the name penalty. Under the ``harness`` profile an answer with no usable
  grading run gives no labels; under ``reference`` every run counts, missing values as 0.
* per grading run (``per_run``): each grading run of a judge is its own rater,
  ``<judge>#run<n>``, so repeated runs of one judge can be compared. Every value a run's
  reply gave is used, also from replies that are not usable for scoring (old prompts
  graded only the skills); under ``harness`` a missing value is a missing label, and a
  reply with no value at all gives none.

Labels are binary: a value of 1 or more is a point earned, anything less (a half point,
an average of runs short of unanimity) is not. Combination-level
outcomes (full marks yes or no) come from the same labels via
``judges.labels.full_marks_outcomes``.

The truth. When the run's raters include the rule judge (a judge recorded with the
model-free kind ``rules``), its labels are exact, so the report also measures every
other rater against it (judges.truth): accuracy, precision and recall of "earned" and
kappa, per rubric-item kind and per k. Not with ``per_run``, where raters are grading runs.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from pathlib import Path

from harness.core.errors import HarnessError
from harness.core.models import RULES
from harness.core.store import AnswerKey, Generation, Grade, RunStore
from harness.scoring import GradedAnswer, ScoringProfile, answer_scores, check_filter_skills, score_store
from judges.agreement import Rating, csv_rows
from judges.agreement_report import AgreementReport, agreement_report
from judges.labels import HUMAN, LabelRow, full_marks_outcomes, read_label_sheet, rubric_item_key, split_item_key
from judges.rubric import Score, is_earned, item_count, item_kinds

SHEET_NAME = "labels.csv"
RUN_MARK = "#run"
SENTENCES_NOTE = (
    "sentences: code recomputes the sentence point from the answer for every judge and grading run, "
    "so judges agree on it by construction (which also lifts the overall group); only a human rater's "
    "sentence labels are independent"
)


@dataclass(frozen=True)
class RunAnswer:
    """One graded answer of a run: a generation round of one student on one combination."""

    id: str
    skills: tuple[str, ...]
    topic: str
    generation: Generation

    @property
    def k(self) -> int:
        return len(self.skills)

    @property
    def key(self) -> AnswerKey:
        return self.generation.key


def answer_id(task: str, combination: int, student: str, generation_round: int) -> str:
    """The stable id of an answer, shared by judge ratings and label sheets."""
    return f"{task}/{combination}/{student}/{generation_round}"


def run_answers(store: RunStore) -> dict[str, RunAnswer]:
    """Every answer in the store, by id, in store order."""
    answers: dict[str, RunAnswer] = {}
    for task in store.task_configs():
        combinations = store.combinations(task)
        for generation in store.generations(task):
            skills, topic = combinations[generation.key.combination]
            id_ = answer_id(*generation.key)
            answers[id_] = RunAnswer(id_, tuple(skills), topic, generation)
    return answers


def run_judges(store: RunStore) -> list[str]:
    """Judges that graded something in the run: recorded judges first, in their order."""
    graded = {grade.judge for grade in store.grades()}
    recorded = [model.name for model in store.models("judge") if model.name in graded]
    return recorded + sorted(graded - set(recorded))


def _score_ratings(answer: RunAnswer, score: Score, rater: str) -> list[Rating]:
    return [
        Rating(rubric_item_key(answer.id, position), kind, rater, int(bool(is_earned(value))))
        for position, (kind, value) in enumerate(zip(item_kinds(answer.k), score.points, strict=True), 1)
        if value is not None
    ]


def judge_ratings(
    store: RunStore, answers: dict[str, RunAnswer], judges: Collection[str], *, profile: ScoringProfile
) -> list[Rating]:
    """Per judge, the combined points the run scores with under ``profile`` (rater = judge name)."""
    by_key = {answer.key: answer for answer in answers.values()}
    skills = {(key[0], key[1]): list(answer.skills) for key, answer in by_key.items()}
    grades = [grade for grade in store.grades() if grade.judge in judges]
    voted = answer_scores(profile, [answer.generation for answer in by_key.values()], grades, skills)
    ratings: list[Rating] = []
    for (key, judge), score in sorted(voted.items()):
        if score is not None:
            ratings += _score_ratings(by_key[key], score, judge)
    return ratings


def _run_rater(grade: Grade) -> str:
    return f"{grade.judge}{RUN_MARK}{grade.grading_run}"


def _run_rater_order(judges: list[str]) -> Callable[[str], tuple[int, int]]:
    """Sort key for per-run raters: judge order first, then the grading run as a number."""

    def key(rater: str) -> tuple[int, int]:
        judge, _, run = rater.rpartition(RUN_MARK)
        return judges.index(judge), int(run)

    return key


def grading_run_ratings(
    store: RunStore, answers: dict[str, RunAnswer], judges: Collection[str], *, profile: ScoringProfile
) -> list[Rating]:
    """Per grading run, every value its reply gave after the code-side corrections
    (rater = ``<judge>#run<n>``)."""
    by_key = {answer.key: answer for answer in answers.values()}
    ratings: list[Rating] = []
    for grade in store.grades():
        answer = by_key.get(grade.key)
        if answer is None or grade.judge not in judges:
            continue
        if not profile.zero_fills and all(value is None for value in grade.points):
            # A reply with no readable value says nothing, not even about the sentence point
            # that code would fill in for it (the reference profile reads it as zeros).
            continue
        score = profile.run_score(GradedAnswer(answer.generation, answer.skills, (grade,)), grade)
        ratings += _score_ratings(answer, score, _run_rater(grade))
    return ratings


def student_scores(store: RunStore, judges: Collection[str], *, profile: ScoringProfile) -> dict[str, dict[str, float]]:
    """Judge -> student -> ratio of full marks, the unweighted mean over the run's tasks.

    Each task's ratio is the protocol's (best generation round per combination); a task
    with no scored combination is left out of the mean, and a student with none at all
    gets no score.
    """
    by_judge: dict[str, dict[str, list[float]]] = {}
    for result in score_store(store, profile):
        if result.judge in judges and not math.isnan(result.metrics.full_marks.value):
            by_judge.setdefault(result.judge, {}).setdefault(result.student, []).append(result.metrics.full_marks.value)
    return {
        judge: {student: sum(values) / len(values) for student, values in by_student.items()}
        for judge, by_student in by_judge.items()
    }


# ---------------------------------------------------------------- label sheets


def sample_answers(answers: dict[str, RunAnswer], n: int, seed: int) -> list[RunAnswer]:
    """n answers in an order fixed by the seed (a hash of seed and id, so no global RNG state)."""

    def rank(answer: RunAnswer) -> str:
        return hashlib.sha256(f"{seed}\0{answer.id}".encode()).hexdigest()

    return sorted(answers.values(), key=rank)[:n]


def label_rows(answers: Sequence[RunAnswer]) -> list[LabelRow]:
    """Sheet rows; the task text is the student's first-turn request (the task name for
    imported runs that lack it)."""
    return [
        LabelRow.for_answer(
            answer.id,
            answer.generation.turn1_prompt or answer.key.task,
            answer.skills,
            answer.topic,
            answer.generation.answer,
        )  # fmt: skip
        for answer in answers
    ]


@dataclass(frozen=True)
class SheetRow:
    id: str
    row: int  # spreadsheet row number, the header being row 1
    k: int


def _sheet_rows(path: Path) -> list[SheetRow]:
    # Called after read_label_sheet has validated the sheet, so ids and k are well formed.
    rows = []
    with csv_rows(path, "label sheet") as reader:
        for number, row in enumerate(reader, start=2):
            id_ = (row.get("id") or "").strip()
            if id_:
                rows.append(SheetRow(id_, number, int((row.get("k") or "").strip())))
    return rows


@dataclass(frozen=True)
class HumanLabels:
    ratings: tuple[Rating, ...]
    rows: tuple[SheetRow, ...]

    @property
    def items(self) -> int:
        return sum(item_count(row.k) for row in self.rows)


def read_human_labels(path: Path, answers: dict[str, RunAnswer], rater: str = HUMAN) -> HumanLabels:
    """A filled sheet's labels, checked against the run: known ids and each answer's k."""
    ratings = read_label_sheet(path, known_ids=set(answers), rater=rater)
    rows = _sheet_rows(path)
    for row in rows:
        k = answers[row.id].k
        if row.k != k:
            raise HarnessError(
                f"{path} row {row.row} (id {row.id!r}): k is {row.k}, but that answer has {k} skills in the run; "
                "restore the k the sheet was exported with"
            )
    return HumanLabels(tuple(ratings), tuple(rows))


# ---------------------------------------------------------------- putting it together


@dataclass(frozen=True)
class RunRatings:
    """Everything ``agreement_report`` takes, gathered from one run."""

    ratings: tuple[Rating, ...]
    outcomes: tuple[Rating, ...]
    raters: tuple[str, ...]
    model_scores: dict[str, dict[str, float]] | None
    notes: tuple[str, ...]
    truth: str | None = None  # the rater whose labels are exact (the rule judge)
    item_k: dict[str, int] | None = None  # each rated item's k, for the truth table


def truth_judge(store: RunStore, raters: Sequence[str]) -> str | None:
    """The rule judge among the raters (the first, should a run hold two), or None."""
    exact = {model.name for model in store.models("judge") if model.kind == RULES}
    return next((rater for rater in raters if rater in exact), None)


def item_ks(answers: dict[str, RunAnswer]) -> dict[str, int]:
    """Each rubric item's k, by its rating key."""
    return {
        rubric_item_key(answer.id, position): answer.k
        for answer in answers.values()
        for position in range(1, item_count(answer.k) + 1)
    }


def _chosen_judges(store: RunStore, wanted: Sequence[str] | None) -> list[str]:
    present = run_judges(store)
    if not present:
        raise HarnessError(f"{store.run_dir} holds no grades; grade it with `harness run ... --judge JUDGE` first")
    if wanted is None:
        return present
    unknown = [judge for judge in wanted if judge not in present]
    if unknown:
        raise HarnessError(
            f"{store.run_dir} has no grades by judge(s) {', '.join(unknown)}; its judges are {', '.join(present)}"
        )
    return list(dict.fromkeys(wanted))


def run_ratings(
    store: RunStore,
    *,
    judges: Sequence[str] | None = None,
    per_run: bool = False,
    human: Path | None = None,
    profile: ScoringProfile,
) -> RunRatings:
    """Ratings per judge (or per grading run), plus a human's when ``human`` names a filled sheet.

    Answers to combinations the profile leaves out (``filter_skills``) give no ratings.
    """
    check_filter_skills(store, profile)
    every_answer = run_answers(store)
    answers = {id_: answer for id_, answer in every_answer.items() if not profile.leaves_out(answer.skills)}
    chosen = _chosen_judges(store, judges)
    collect = grading_run_ratings if per_run else judge_ratings
    ratings = collect(store, answers, chosen, profile=profile)
    notes: list[str] = []
    raters = list(dict.fromkeys(rating.rater for rating in ratings))
    if per_run:
        raters.sort(key=_run_rater_order(chosen))
        notes.append(
            "each grading run is a rater, and every value a reply gave counts, also from replies not usable for scoring"
        )
    else:
        raters.sort(key=chosen.index)
        for judge in chosen:
            if judge not in raters:
                notes.append(f"judge {judge} has no usable grading run in this run and is left out")
    if ratings and any(rating.criterion == "sentences" for rating in ratings):
        notes.append(SENTENCES_NOTE)
    if human is not None:
        labels = read_human_labels(human, every_answer)
        if not labels.ratings:
            raise HarnessError(f"{human} holds no labels yet; fill the item_N cells with 1 (earned) or 0 (not earned)")
        if HUMAN in raters:
            raise HarnessError(f"a judge of {store.run_dir} is named {HUMAN!r}, the name of the --human rater")
        ratings += [rating for rating in labels.ratings if split_item_key(rating.item)[0] in answers]
        raters.append(HUMAN)
    if len(raters) < 2:
        raise HarnessError(
            f"agreement needs two raters, and {store.run_dir} gives {', '.join(raters) or 'none'}; add a second "
            "judge to the run (`harness run ... --judge A --judge B`), compare grading runs with --per-run, "
            "or add human labels with --human (sheets come from `harness labels export`)"
        )
    truth = None
    if per_run:
        if truth_judge(store, chosen) is not None:
            notes.append(
                "the truth table (judges against the rule judge) compares judges; it is not computed with --per-run"
            )
    else:
        truth = truth_judge(store, raters)
    outcomes = full_marks_outcomes(ratings, {id_: answer.k for id_, answer in answers.items()})
    students = {answer.key.student for answer in answers.values()}
    model_scores = None
    if len(students) >= 2:
        if per_run:
            notes.append("rank agreement of students compares judges; it is not computed with --per-run")
        else:
            judge_raters = [rater for rater in raters if rater != HUMAN]
            scores = student_scores(store, judge_raters, profile=profile)
            model_scores = {judge: scores[judge] for judge in judge_raters if judge in scores}
            if len(model_scores) < 2:
                notes.append("rank agreement of students needs two judges with scored combinations")
                model_scores = None
    return RunRatings(
        tuple(ratings), tuple(outcomes), tuple(raters), model_scores, tuple(notes),
        truth, item_ks(answers) if truth is not None else None,
    )  # fmt: skip


def run_agreement(
    store: RunStore,
    *,
    judges: Sequence[str] | None = None,
    per_run: bool = False,
    human: Path | None = None,
    profile: ScoringProfile,
    seed: int = 0,
    n_resamples: int = 1000,
) -> AgreementReport:
    """The agreement report of one run's raters (see ``run_ratings``)."""
    gathered = run_ratings(store, judges=judges, per_run=per_run, human=human, profile=profile)
    report = agreement_report(
        gathered.ratings,
        raters=gathered.raters,
        outcomes=gathered.outcomes,
        model_scores=gathered.model_scores,
        seed=seed,
        n_resamples=n_resamples,
        truth=gathered.truth,
        item_k=gathered.item_k,
    )
    return dataclasses.replace(report, notes=gathered.notes + report.notes)


def item_counts(ratings: Sequence[Rating]) -> dict[str, tuple[int, int]]:
    """Per rubric kind: (labels 1, labels 0)."""
    counts: dict[str, list[int]] = {}
    for rating in ratings:
        counts.setdefault(rating.criterion, [0, 0])[1 - rating.label] += 1
    return {kind: (ones, zeros) for kind, (ones, zeros) in counts.items()}
