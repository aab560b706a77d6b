"""Export a teacher's well-graded SKILL-MIX answers as a fine-tuning set, with provenance.

`harness generate-data` is an evaluation: the teacher plays the student on the
`{family}-k{k}-train` tasks and the judges grade it, in a run directory
(OUT/run) that resumes like any run. This module reads that run's store and
writes the dataset.

What a row is. One row per kept answer:
``messages = [user: the generation request, assistant: "Answer: " + kept text]``.
The request is the turn-1 SKILL-MIX prompt the teacher was sent (skills with
definitions and examples, and the topic). The kept text is the graded text:
what followed "Answer:" in the teacher's final (turn-2, improved) reply, the
exact string the judges scored. The paper fine-tunes on (request -> text)
pairs; we keep the "Answer: " prefix because the evaluation prompts ask for it
and read the text back from behind it, so a model trained on these rows
answers in the form the harness grades. The teacher's explanation is left out:
no judge graded it. Columns: messages, k, task, combination, generation_round,
skills, topic, teacher, judge.

Keep rule. Per answer and judge, the k+3 points combined over grading runs with
the code corrections (sentence count, explicit-name penalty), as `harness run`
scores them under the same scoring profile (harness.scoring; ``harness`` by
default, whose name penalty is on). A judge keeps an answer when the points it
earns (a combined value of 1 or more) reach the threshold: all k+3 by default
(full marks), or ceil(fraction x (k+3)). An
answer is *rejected* when any judge scored it below the threshold, else
*unscored* when some judge has no usable grade for it (never kept), else kept,
so with several judges every judge must keep it. An empty text is rejected
whatever its grade. A kept text that names a held-out skill or topic is then
dropped and counted as *held-out mention* (see harness.core.audit), so the export
passes the training-time audit.

Layout: OUT/run (the run), OUT/dataset (`datasets.save_to_disk`; pass it as
the trainer's `data.path`) with OUT/dataset/provenance.json beside the arrow
files. The dataset directory is replaced atomically and its bytes depend only
on the store, so re-exporting an unchanged run gives identical files.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from harness.core.audit import HeldoutTerms
from harness.core.errors import HarnessError
from harness.core.models import Model
from harness.core.registry import Task
from harness.core.store import Generation, RunStore
from harness.scoring import ScoringProfile, answer_scores, scoring_profile
from judges.registry import Judge
from judges.rubric import Score, item_count
from trainers.dataset import save_rows

RUN_DIR = "run"
DATASET_DIR = "dataset"
PROVENANCE_FILE = "provenance.json"
FORMAT_VERSION = 1
KEPT, REJECTED, UNSCORED, HELDOUT_MENTION = "kept", "rejected", "unscored", "held-out mention"


@dataclass(frozen=True)
class KeepRule:
    min_fraction: float = 1.0  # of the k+3 rubric points; 1.0 is full marks

    def __post_init__(self) -> None:
        if not 0 < self.min_fraction <= 1:
            raise HarnessError(f"--min-points must be a fraction in (0, 1], got {self.min_fraction}")

    def threshold(self, k: int) -> int:
        # the epsilon keeps 0.8 x 5 at 4 despite binary floating point
        return math.ceil(self.min_fraction * item_count(k) - 1e-9)

    def describe(self) -> str:
        if self.min_fraction >= 1:
            return "full marks (all k+3 points) from every judge"
        return f"at least {self.min_fraction:g} of the k+3 points from every judge"


@dataclass(frozen=True)
class KCounts:
    k: int
    answers: int
    kept: int
    rejected: int
    unscored: int
    heldout_mention: int  # well graded but naming held-out material, so dropped


@dataclass(frozen=True)
class KeptText:
    task: str
    k: int
    combination: int
    generation_round: int
    skills: tuple[str, ...]
    topic: str
    request: str  # the turn-1 prompt
    text: str  # the graded answer text

    def row(self, teacher: str, judge: str) -> dict[str, Any]:
        return {
            "messages": [
                {"role": "user", "content": self.request},
                {"role": "assistant", "content": f"Answer: {self.text}"},
            ],
            "k": self.k,
            "task": self.task,
            "combination": self.combination,
            "generation_round": self.generation_round,
            "skills": list(self.skills),
            "topic": self.topic,
            "teacher": teacher,
            "judge": judge,
        }


@dataclass(frozen=True)
class Selection:
    kept: tuple[KeptText, ...]
    counts: tuple[KCounts, ...]


@dataclass(frozen=True)
class ExportSpec:
    """What to export: the train tasks, who answered and graded, and the keep rule."""

    tasks: tuple[Task, ...]
    teacher: Model
    judges: tuple[Judge, ...]
    rule: KeepRule
    heldout: HeldoutTerms  # kept texts naming these are dropped
    profile: ScoringProfile = field(default_factory=scoring_profile)  # how grades combine into points

    @property
    def judge_names(self) -> list[str]:
        return [judge.name for judge in self.judges]


@dataclass(frozen=True)
class ExportResult:
    dataset_dir: Path
    rows: int
    counts: tuple[KCounts, ...]
    provenance: dict[str, Any]


def parse_ks(text: str) -> list[int]:
    """The k list of --k, sorted: "1,2,3" -> [1, 2, 3]; refuses anything but distinct k >= 1."""
    try:
        ks = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise HarnessError(f"--k {text!r} is not a comma-separated list of integers, e.g. 1,2,3") from None
    if not ks or any(k < 1 for k in ks) or len(set(ks)) != len(ks):
        raise HarnessError(f"--k {text!r} must list distinct k values of 1 or more, e.g. 1,2,3")
    return sorted(ks)


def train_task_names(family: str, ks: Sequence[int]) -> list[str]:
    return [f"{family}-k{k}-train" for k in ks]


def answer_verdict(scores_by_judge: Sequence[Score | None], threshold: int) -> str:
    """kept / rejected / unscored for one answer, from each judge's voted score (see the module docstring)."""
    complete = [score for score in scores_by_judge if score is not None and score.complete]
    if any(score.earned() < threshold for score in complete):
        return REJECTED
    if len(complete) < len(scores_by_judge) or not scores_by_judge:
        return UNSCORED
    return KEPT


def select_texts(store: RunStore, spec: ExportSpec) -> Selection:
    """Apply the keep rule to every teacher answer of the spec's tasks in the store."""
    teacher, judges, rule = spec.teacher.name, spec.judge_names, spec.rule
    kept: list[KeptText] = []
    counts: list[KCounts] = []
    for task in sorted(spec.tasks, key=lambda t: t.k):
        _check_train_task(task)
        combinations = store.combinations(task.name)
        _check_train_combinations(task, combinations)
        skills = {(task.name, index): list(c_skills) for index, (c_skills, _) in combinations.items()}
        generations = {g.key: g for g in store.generations(task.name) if g.key.student == teacher}
        grades = [g for g in store.grades(task.name) if g.key.student == teacher and g.judge in judges]
        voted = answer_scores(spec.profile, generations.values(), grades, skills)
        tally = {KEPT: 0, REJECTED: 0, UNSCORED: 0, HELDOUT_MENTION: 0}
        for key, generation in sorted(generations.items()):
            verdict = answer_verdict([voted.get((key, judge)) for judge in judges], rule.threshold(task.k))
            if verdict == KEPT and not generation.answer.strip():
                verdict = REJECTED  # nothing to learn from, whatever the grade
            if verdict == KEPT and _names_heldout(spec.heldout, generation.answer):
                verdict = HELDOUT_MENTION
            tally[verdict] += 1
            if verdict == KEPT:
                c_skills, topic = combinations[generation.key.combination]
                kept.append(_kept_text(task, generation, tuple(c_skills), topic))
        counts.append(
            KCounts(task.k, len(generations), tally[KEPT], tally[REJECTED], tally[UNSCORED], tally[HELDOUT_MENTION])
        )
    return Selection(tuple(kept), tuple(counts))


def _names_heldout(heldout: HeldoutTerms, text: str) -> bool:
    return bool(heldout.skills_named_in(text) or heldout.topics_named_in(text))


def _check_train_task(task: Task) -> None:
    if task.split != "train":
        raise HarnessError(f"task {task.name} is a {task.split!r} task; training data comes from train tasks only")


def _check_train_combinations(task: Task, combinations: dict[int, tuple[list[str], str]]) -> None:
    # The registry samples train tasks from the train split only; this guards the
    # experiment against a future bug there (or a hand-edited store).
    train_skills = {skill.name for skill in task.catalog.skills_in("train")}
    train_topics = set(task.catalog.topics_in("train"))
    for index, (skills, topic) in combinations.items():
        outside = [skill for skill in skills if skill not in train_skills]
        if outside or topic not in train_topics:
            what = f"skill(s) {', '.join(outside)}" if outside else f"topic {topic!r}"
            raise HarnessError(
                f"{task.name} combination {index} in the store uses {what}, which is not in the training split "
                f"of {task.catalog.describe()}; the store does not match the catalog, regenerate into a new --out"
            )


def _kept_text(task: Task, generation: Generation, skills: tuple[str, ...], topic: str) -> KeptText:
    return KeptText(
        task=task.name,
        k=task.k,
        combination=generation.key.combination,
        generation_round=generation.key.generation_round,
        skills=skills,
        topic=topic,
        request=generation.turn1_prompt,
        text=generation.answer.strip(),
    )


def _features():
    import datasets

    text = datasets.Value("string")
    return datasets.Features(
        {
            "messages": datasets.List({"role": text, "content": text}),
            "k": datasets.Value("int32"),
            "task": text,
            "combination": datasets.Value("int32"),
            "generation_round": datasets.Value("int32"),
            "skills": datasets.List(text),
            "topic": text,
            "teacher": text,
            "judge": text,
        }
    )


def _file_hashes(directory: Path) -> dict[str, str]:
    hashes = {}
    for path in sorted(p for p in directory.rglob("*") if p.is_file()):
        hashes[path.relative_to(directory).as_posix()] = hashlib.sha256(path.read_bytes()).hexdigest()
    return hashes


def _replace_dir(staged: Path, final: Path) -> None:
    """Put `staged` at `final`; the old directory is only removed once the new one is in place."""
    retired = final.with_name(f".{final.name}.old-{os.getpid()}")
    if final.exists():
        shutil.rmtree(retired, ignore_errors=True)
        os.replace(final, retired)
    os.replace(staged, final)
    shutil.rmtree(retired, ignore_errors=True)


def export_dataset(store: RunStore, spec: ExportSpec, out: Path) -> ExportResult:
    """Select the kept texts and write OUT/dataset with its provenance.json."""
    selection = select_texts(store, spec)
    judge_label = "+".join(spec.judge_names)
    rows = [text.row(spec.teacher.name, judge_label) for text in selection.kept]
    final = Path(out) / DATASET_DIR
    staged = final.with_name(f".{final.name}.tmp-{os.getpid()}")
    shutil.rmtree(staged, ignore_errors=True)
    try:
        save_rows(rows, staged, _features())
        provenance = _provenance(store, spec, selection, _file_hashes(staged))
        (staged / PROVENANCE_FILE).write_text(json.dumps(provenance, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        _replace_dir(staged, final)
    finally:
        shutil.rmtree(staged, ignore_errors=True)
    return ExportResult(final, len(rows), selection.counts, provenance)


def _who(model: Model, identities: dict[str, str], style: str | None = None) -> dict[str, Any]:
    """Who answered or graded, as provenance.json records it (never an endpoint or a key)."""
    return {"name": model.name, "identity": identities.get(model.name), "reference": model.reference, "style": style}


def _provenance(store: RunStore, spec: ExportSpec, selection: Selection, files: dict[str, str]) -> dict[str, Any]:
    tasks, rule = spec.tasks, spec.rule
    identities = {model.name: model.identity for model in store.models()}
    first_session = next(iter(store.sessions()), {})
    configs = store.task_configs()
    created = store.get_meta("created")
    combined = hashlib.sha256("".join(f"{name}\0{digest}\n" for name, digest in files.items()).encode()).hexdigest()
    return {
        "format_version": FORMAT_VERSION,
        "run_dir": str(store.run_dir),
        "run_created": None if created is None else datetime.fromtimestamp(created, UTC).isoformat(),
        # the invocation that created the run: later resumes add sessions but change no kept text
        "command": first_session.get("command"),
        "versions": first_session.get("versions"),
        "teacher": _who(spec.teacher, identities),
        "judges": [_who(judge.model, identities, style=judge.style) for judge in spec.judges],
        "tasks": {
            task.name: {
                key: configs.get(task.name, {}).get(key)
                for key in (
                    "family",
                    "version",
                    "k",
                    "split",
                    "combinations",
                    "seed",
                    "generation_rounds",
                    "grading_runs",
                    "prompt_version",
                    "grading_style",
                    "student_sampling",
                    "judge_sampling",
                    "catalog",
                )
            }
            for task in tasks
        },  # fmt: skip
        "keep_rule": {
            "description": rule.describe(),
            "min_fraction": rule.min_fraction,
            "threshold_points": {str(task.k): rule.threshold(task.k) for task in tasks},
            "name_penalty": spec.profile.name_penalty,
            "scoring": spec.profile.to_dict(),
            "heldout_mentions_dropped_against": list(spec.heldout.tasks),
        },
        "counts": {
            str(count.k): {key: value for key, value in asdict(count).items() if key != "k"}
            for count in selection.counts
        },
        "rows": len(selection.kept),
        "columns": list(_features()),
        "files_sha256": files,
        "dataset_sha256": combined,
    }
