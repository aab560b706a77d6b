"""Audit a training set for held-out material: skills, topics and combinations it must never contain.

The held-out side of the experiment only means something if the fine-tuned
model never saw it. `audit_dataset` loads a `datasets` dataset from disk and
reports every place where held-out material shows up:

- **skill name** / **topic** in any message text (user or assistant turn). A
  skill's name is the part before any parenthesis, matched case-insensitively
  as a whole-word phrase, exactly as the explicit-name penalty matches it
  (`harness.core.names`). A topic is matched the same way, with a
  leading "the" optional ("the spice trade" also matches "spice trade").
- **skills column** / **topic column**: a held-out skill or topic in the
  dataset's `skills` or `topic` column (exact, case-insensitive), when the
  dataset has those columns (`harness generate-data` writes them).
- **combination**: a row whose skills and topic are those of a combination of
  a held-out task.

Common words. Several held-out names of the open catalog are ordinary words or
phrases ("friction", "inertia", "empathy", "deception", "hedging", "common
ground", "heat transfer"; topics "opera", "origami"), so a text about ice hockey
can say "friction" without illustrating the skill. The audit still counts that
as a leak, because a text-level check cannot tell an innocent use from a named
skill, and a false alarm costs a regenerated row while a miss silently spoils
the held-out result. Two things keep this workable: `harness generate-data`
drops kept texts that mention held-out names (and counts them), so its output
passes by construction; and `allow` (`--allow NAME`) exempts named terms from
the *text* checks for data from elsewhere. Allowed terms are listed in the
report; the column and combination checks are never relaxed.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from harness.core.errors import HarnessError
from harness.core.names import first_word, names_skill, normalise, phrase_pattern, skill_name
from harness.core.registry import Registry, Task

TEXT_KINDS = ("skill name", "topic")
SHOWN_FINDINGS = 10


def _topic_key(topic: str) -> str:
    key = normalise(topic)
    return key[4:] if key.startswith("the ") else key


@dataclass(frozen=True)
class Finding:
    """One place where held-out material appears."""

    row: int  # 0-based index within its split
    kind: str  # skill name | topic | skills column | topic column | combination
    term: str  # the held-out skill, topic or combination found
    where: str  # "user turn", "assistant turn", "skills", "topic", "skills+topic"
    split: str | None = None  # the DatasetDict split, None for a plain Dataset

    def describe(self) -> str:
        row = f"{self.split}[{self.row}]" if self.split else f"row {self.row}"
        return f"{row} ({self.where}): held-out {self.kind} {self.term!r}"


@dataclass(frozen=True)
class HeldoutTerms:
    """What a training set must not contain, gathered from held-out tasks."""

    tasks: tuple[str, ...]
    skills: tuple[str, ...]  # full catalog names
    topics: tuple[str, ...]
    combinations: frozenset[tuple[frozenset[str], str]]  # (skill names, topic key)
    allowed: tuple[str, ...] = ()
    _skill_keys: frozenset[str] = field(default=frozenset(), repr=False)
    _topic_keys: frozenset[str] = field(default=frozenset(), repr=False)
    # the terms checked in message texts (those not allowed), each with the first word of its
    # name: a plain substring test on that word rules most texts out before any regex runs
    _text_skills: tuple[tuple[str, str], ...] = field(default=(), repr=False)
    _text_topics: tuple[tuple[str, str, re.Pattern[str]], ...] = field(default=(), repr=False)

    @classmethod
    def from_tasks(cls, tasks: Sequence[Task], allow: Iterable[str] = ()) -> HeldoutTerms:
        if not tasks:
            raise HarnessError("no held-out task to audit against; name one with --against (see `harness tasks list`)")
        skills: dict[str, str] = {}
        topics: dict[str, str] = {}
        combinations: set[tuple[frozenset[str], str]] = set()
        for task in tasks:
            if task.split != "heldout":
                raise HarnessError(
                    f"task {task.name} is a {task.split!r} task; audit against held-out tasks "
                    f"(e.g. {task.family}-k{task.k}-heldout)"
                )
            for skill in task.skills():
                skills.setdefault(skill_name(skill.name), skill.name)
            for topic in task.topics():
                topics.setdefault(_topic_key(topic), topic)
            for combination in task.combinations():
                combinations.add((frozenset(skill_name(s) for s in combination.skills), _topic_key(combination.topic)))
        allowed = tuple(dict.fromkeys(allow))
        unknown = [term for term in allowed if skill_name(term) not in skills and _topic_key(term) not in topics]
        if unknown:
            raise HarnessError(
                f"--allow {unknown[0]!r} is neither a held-out skill nor a held-out topic of "
                f"{', '.join(t.name for t in tasks)}"
            )
        exempt = {skill_name(term) for term in allowed} | {_topic_key(term) for term in allowed}
        return cls(
            tasks=tuple(task.name for task in tasks),
            skills=tuple(sorted(skills.values())),
            topics=tuple(sorted(topics.values())),
            combinations=frozenset(combinations),
            allowed=allowed,
            _skill_keys=frozenset(skills),
            _topic_keys=frozenset(topics),
            _text_skills=tuple((name, first_word(key)) for key, name in sorted(skills.items()) if key not in exempt),
            _text_topics=tuple(
                (topic, first_word(key), phrase_pattern(key))
                for key, topic in sorted(topics.items())
                if key not in exempt
            ),
        )

    def skills_named_in(self, text: str) -> list[str]:
        """Held-out skills whose name appears in `text` (allowed ones excepted)."""
        lowered = text.replace("\u2019", "'").lower()
        return [skill for skill, word in self._text_skills if word in lowered and names_skill(text, skill)]

    def topics_named_in(self, text: str) -> list[str]:
        text = text.replace("\u2019", "'")
        lowered = text.lower()
        return [topic for topic, word, pattern in self._text_topics if word in lowered and pattern.search(text)]

    def is_heldout_skill(self, name: str) -> bool:
        return skill_name(name) in self._skill_keys

    def is_heldout_topic(self, topic: str) -> bool:
        return _topic_key(topic) in self._topic_keys

    def is_heldout_combination(self, skills: Sequence[str], topic: str) -> bool:
        return (frozenset(skill_name(s) for s in skills), _topic_key(topic)) in self.combinations

    def text_findings(self, text: str, row: int, where: str, split: str | None = None) -> list[Finding]:
        found = [Finding(row, "skill name", skill, where, split) for skill in self.skills_named_in(text)]
        return found + [Finding(row, "topic", topic, where, split) for topic in self.topics_named_in(text)]


@dataclass(frozen=True)
class AuditReport:
    path: Path
    rows: int
    texts: int  # message texts read
    columns: tuple[str, ...]  # structured columns checked (skills, topic)
    terms: HeldoutTerms
    findings: tuple[Finding, ...]

    @property
    def ok(self) -> bool:
        return not self.findings

    def summary(self) -> str:
        terms = self.terms
        columns = f", columns {'+'.join(self.columns)}" if self.columns else ""
        checked = (
            f"{self.rows} rows ({self.texts} message texts{columns}) "
            f"of {self.path} against {len(terms.tasks)} held-out task(s): {len(terms.skills)} skills, "
            f"{len(terms.topics)} topics, {len(terms.combinations)} combinations"
        )
        allowed = f"; allowed in text: {', '.join(terms.allowed)}" if terms.allowed else ""
        if self.ok:
            return f"audit OK: {checked}; no held-out material found{allowed}"
        rows = len({(f.split, f.row) for f in self.findings})
        lines = [
            f"audit FAILED: held-out material in {rows} row(s) ({len(self.findings)} findings) of {checked}{allowed}"
        ]
        lines += [f"  {finding.describe()}" for finding in self.findings[:SHOWN_FINDINGS]]
        if len(self.findings) > SHOWN_FINDINGS:
            lines.append(f"  ... and {len(self.findings) - SHOWN_FINDINGS} more")
        lines.append(
            "Remove those rows or regenerate the data with `harness generate-data` (which drops such texts). "
            "A held-out name that is an ordinary word used innocently can be exempted from the text checks "
            "with --allow NAME."
        )
        return "\n".join(lines)


def heldout_tasks(registry: Registry, family: str = "skillmix") -> list[Task]:
    """Every supported held-out task of a family (skillmix-k1..5-heldout by default)."""
    tasks = [task for task in registry if task.family == family and task.split == "heldout" and task.supported]
    if not tasks:
        families = sorted({task.family for task in registry})
        raise HarnessError(
            f"task family {family!r} has no held-out task (known families: {', '.join(families)}); "
            "give the tasks with --against, or a catalog with a held-out split"
        )
    return tasks


def _load(path: Path):
    import datasets

    if not path.exists():
        raise HarnessError(
            f"{path} does not exist; pass the dataset directory that `harness generate-data` wrote (OUT/dataset)"
        )
    try:
        loaded = datasets.load_from_disk(str(path))
    except (FileNotFoundError, ValueError) as error:
        raise HarnessError(f"{path} is not a dataset saved with `save_to_disk` ({error})") from None
    splits = dict(loaded) if isinstance(loaded, datasets.DatasetDict) else {None: loaded}
    for split, dataset in splits.items():
        if "messages" not in dataset.column_names:
            where = f"{path} (split {split})" if split else str(path)
            raise HarnessError(
                f"{where} has no 'messages' column (it has {dataset.column_names}); "
                "it is not chat-messages training data"
            )
    return splits


def audit_dataset(
    path: str | Path, tasks: Sequence[Task], *, allow: Iterable[str] = (), strict: bool = True
) -> AuditReport:
    """Check the dataset at `path` against held-out `tasks`.

    With `strict` (the default) a leak raises HarnessError whose message lists
    the first offending rows; otherwise the report carries the findings.
    """
    path = Path(path)
    terms = HeldoutTerms.from_tasks(tasks, allow)
    findings: list[Finding] = []
    rows = texts = 0
    columns: set[str] = set()
    for split, dataset in _load(path).items():
        has_skills, has_topic = "skills" in dataset.column_names, "topic" in dataset.column_names
        columns |= {name for name, present in (("skills", has_skills), ("topic", has_topic)) if present}
        for index, row in enumerate(dataset):
            rows += 1
            for turn in row["messages"] or []:
                texts += 1
                role = str(turn.get("role", "?"))
                findings += terms.text_findings(str(turn.get("content") or ""), index, f"{role} turn", split)
            skills = list(row["skills"] or []) if has_skills else []
            topic = str(row["topic"] or "") if has_topic else ""
            findings += [
                Finding(index, "skills column", s, "skills", split) for s in skills if terms.is_heldout_skill(s)
            ]
            if topic and terms.is_heldout_topic(topic):
                findings.append(Finding(index, "topic column", topic, "topic", split))
            if skills and topic and terms.is_heldout_combination(skills, topic):
                findings.append(
                    Finding(index, "combination", f"{' + '.join(skills)} on {topic}", "skills+topic", split)
                )
    report = AuditReport(path, rows, texts, tuple(sorted(columns)), terms, tuple(findings))
    if strict and not report.ok:
        raise HarnessError(report.summary())
    return report
