"""The SKILL-MIX rubric: its items, the sentence-counting rule and the code-side corrections.

An answer to a combination of k skills and one topic is graded on k + 3 binary
points, always in this order: one point per skill, then "pertains to <topic>",
then "text makes sense", then "at most n sentences" with n = max(1, k - 1).

Sentence-counting rule (``count_sentences``)
--------------------------------------------
1. A sentence end is a run of ``.``, ``!``, ``?`` or ``…`` characters, optionally
   followed by closing quotes or brackets (``" ' ” ’ ) ]``), followed by
   whitespace or the end of the text. A run counts once, so ``...``, ``?!``
   and ``!!!`` are each one end.
2. A run that is a single ``.`` is not an end when the word right before it is
   an abbreviation: Dr, Mr, Mrs, Ms, St, Prof, Jr, Sr, vs, etc (any case); a
   single capital initial ("J. K. Rowling"); or a dotted initialism such as
   e.g, i.e, U.S, a.m. The price of this: "He lives in the U.S. Today..."
   and "Meet Martin Luther King Jr. He..." count one sentence where a reader
   sees two. We accept that, since splitting a name or an "e.g." in two is the
   more common mistake in short answers.
3. A period inside a number (3.14) is never an end, because no whitespace
   follows it.
4. The text is cut at every end; each piece holding at least one letter or
   digit is a sentence. So a trailing fragment with no end punctuation counts,
   stray punctuation alone does not, and empty or whitespace-only text counts 0.
Line breaks are not sentence ends by themselves.

Explicit-name penalty (``Score.corrected``)
------------------------------------------
A skill's point becomes 0 when the answer names the skill, matched as
harness.core.names describes: the name before any parenthesis, lower-cased,
as a whole-word phrase, spaces and hyphens alike between its words.

Scores (``Score``)
------------------
A judge's reading of one reply, a vote over grading runs, or a human's labels
are all a ``Score``: one value per skill, then topic, sense and sentences, each
in [0, 1] or None where nothing was given. This module is the only place that
knows that layout; everything else asks a Score for its parts.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from harness.core.errors import HarnessError
from harness.core.names import names_skill
from harness.core.prompts import sentence_limit

RUBRIC_KINDS = ("skill", "topic", "sense", "sentences")
SKILL_KIND, *OTHER_KINDS = RUBRIC_KINDS

_ABBREVIATIONS = frozenset({"dr", "mr", "mrs", "ms", "st", "prof", "jr", "sr", "vs", "etc"})
_SENTENCE_END = re.compile(r"[.!?\u2026]+[\"'\u201d\u2019)\]]*(?=\s|$)")
_LAST_WORD = re.compile(r"(\S+)$")
_OPENERS = "\"'\u201c\u2018([{"
_INITIAL = re.compile(r"[A-Z]")
_DOTTED_INITIALISM = re.compile(r"(?:[A-Za-z]\.)+[A-Za-z]")
_ALNUM = re.compile(r"[^\W_]")


@dataclass(frozen=True)
class RubricItem:
    """One rubric point. ``label`` is the skill name, the topic, "makes sense",
    or "at most n sentences"; ``criterion`` is the full wording for a prompt."""

    kind: str
    label: str

    @property
    def criterion(self) -> str:
        if self.kind == "skill":
            return f"correctly illustrates {self.label}"
        if self.kind == "topic":
            return f"pertains to {self.label}"
        if self.kind == "sense":
            return f"text {self.label}"
        return self.label


def sentence_point(sentences: int, k: int) -> float:
    """The sentence item's value for an answer of ``sentences`` sentences: 1.0 within the limit."""
    return 1.0 if sentences <= sentence_limit(k) else 0.0


def _sentences_label(n: int) -> str:
    return f"at most {n} sentence" if n == 1 else f"at most {n} sentences"


def rubric_items(skills: Sequence[str], topic: str) -> list[RubricItem]:
    """The k + 3 rubric items for one combination, in rubric order."""
    if isinstance(skills, str):
        raise HarnessError("skills must be a list of skill names, not one string")
    if not skills:
        raise HarnessError("a rubric needs at least one skill; the combination has none")
    if not topic.strip():
        raise HarnessError("a rubric needs a topic; the combination's topic is empty")
    items = [RubricItem("skill", skill) for skill in skills]
    items.append(RubricItem("topic", topic))
    items.append(RubricItem("sense", "makes sense"))
    items.append(RubricItem("sentences", _sentences_label(sentence_limit(len(skills)))))
    return items


def rubric_lines(skills: Sequence[str], topic: str) -> list[str]:
    """The rubric items as a judge reads them, capitalised, in rubric order."""
    return [item.criterion[:1].upper() + item.criterion[1:] for item in rubric_items(skills, topic)]


def _is_abbreviation(text_before: str) -> bool:
    match = _LAST_WORD.search(text_before)
    if match is None:
        return False
    word = match.group(1).lstrip(_OPENERS)
    return (
        word.lower() in _ABBREVIATIONS
        or _INITIAL.fullmatch(word) is not None
        or _DOTTED_INITIALISM.fullmatch(word) is not None
    )


def count_sentences(text: str) -> int:
    """Number of sentences in ``text`` under the rule in this module's docstring."""
    count = 0
    piece_start = 0
    for end in _SENTENCE_END.finditer(text):
        run = end.group(0).rstrip("\"'\u201d\u2019)]")
        if run == "." and _is_abbreviation(text[: end.start()]):
            continue
        if _ALNUM.search(text[piece_start : end.end()]):
            count += 1
        piece_start = end.end()
    if _ALNUM.search(text[piece_start:]):
        count += 1
    return count


def is_earned(value: float | None) -> bool | None:
    """Whether a rubric value earns its point: None stays None, 1 earns, less does not.

    The rubric is binary and a combination's full marks need every point, so a
    half point (0.5), which some judges give for a partial illustration, is a
    point not earned rather than something to round up.
    """
    if value is None:
        return None
    return value >= 1


Value = float | None


@dataclass(frozen=True)
class Score:
    """The k + 3 rubric values of one answer: per skill, then topic, sense and sentences."""

    skills: tuple[Value, ...]
    topic: Value
    sense: Value
    sentences: Value

    def __post_init__(self) -> None:
        if not self.skills:
            raise HarnessError("a score needs at least one skill value")

    # -- building ------------------------------------------------------------------
    @classmethod
    def from_points(cls, points: Sequence[Value]) -> Score:
        """A score from its values in rubric order (skills..., topic, sense, sentences)."""
        values = [None if value is None else float(value) for value in points]
        if len(values) < len(OTHER_KINDS) + 1:
            raise HarnessError(
                f"a score needs one value per skill plus topic, sense and sentences; got {len(values)} values"
            )
        *skills, topic, sense, sentences = values
        return cls(tuple(skills), topic, sense, sentences)

    @classmethod
    def by_position(cls, values: Sequence[Value], k: int) -> Score:
        """A score for k skills from a list read by position, as the SKILL-MIX reference code
        reads its parsed points: a missing value is 0.0, a longer list is cut after the
        k + 3 items and a shorter one padded with 0.0 at the end (so a reply that skipped
        the topic has its sense value in the topic position)."""
        size = item_count(k)
        filled = [0.0 if value is None else float(value) for value in values[:size]]
        return cls.from_points(filled + [0.0] * (size - len(filled)))

    @classmethod
    def empty(cls, k: int) -> Score:
        """No value anywhere: what an unparseable reply gives."""
        return cls((None,) * k, None, None, None)

    # -- reading -------------------------------------------------------------------
    @property
    def k(self) -> int:
        return len(self.skills)

    @property
    def points(self) -> tuple[Value, ...]:
        """The values in rubric order, as stored and as rating items are numbered."""
        return (*self.skills, self.topic, self.sense, self.sentences)

    @property
    def others(self) -> tuple[Value, Value, Value]:
        """Topic, sense and sentences."""
        return (self.topic, self.sense, self.sentences)

    @property
    def usable(self) -> bool:
        """Every skill, topic and sense value is present. The sentence value is not needed:
        code recomputes it from the answer."""
        return all(value is not None for value in (*self.skills, self.topic, self.sense))

    @property
    def complete(self) -> bool:
        return all(value is not None for value in self.points)

    def skills_earned(self) -> int:
        return sum(bool(is_earned(value)) for value in self.skills)

    def others_earned(self) -> int:
        return sum(bool(is_earned(value)) for value in self.others)

    def earned(self) -> int:
        """Points earned over all k + 3 items."""
        return self.skills_earned() + self.others_earned()

    def with_points(self, points: Sequence[Value]) -> Score:
        """A score of the same k from new values in rubric order (a vote, say)."""
        score = Score.from_points(points)
        if score.k != self.k:
            raise HarnessError(f"expected {len(self.points)} values for k={self.k}, got {len(points)}")
        return score

    def skills_total(self) -> float:
        """The sum of the skill values (missing ones count 0)."""
        return sum(value or 0.0 for value in self.skills)

    def others_total(self) -> float:
        """The sum of the topic, sense and sentence values (missing ones count 0)."""
        return sum(value or 0.0 for value in self.others)

    def with_corrections(self, sentences: float, named: Sequence[bool]) -> Score:
        """This score with the sentence value replaced and the skills in ``named`` set to 0.0.

        A missing (None) skill value stays None: a penalty must not turn "unscored" into
        a score. Which rules decide ``sentences`` and ``named`` is the caller's business
        (``corrected`` below for ours; harness.scoring for a profile's).
        """
        if len(named) != self.k:
            raise HarnessError(f"a score for {self.k} skills cannot be corrected against {len(named)} skills")
        values = [0.0 if hit and value is not None else value for value, hit in zip(self.skills, named, strict=True)]
        return Score(tuple(values), self.topic, self.sense, sentences)

    def corrected(self, answer: str, skills: Sequence[str], *, name_penalty: bool = True) -> Score:
        """The score after our code-side corrections.

        The sentence value is always recomputed from ``answer`` (1.0 or 0.0) by
        ``count_sentences``, even where the judge gave none. With ``name_penalty`` a
        skill's value becomes 0.0 when the answer names the skill. A missing (None)
        skill, topic or sense value stays None: the grading run is unscored there.
        """
        if len(skills) != self.k:
            raise HarnessError(f"a score for {self.k} skills cannot be corrected against {len(skills)} skills")
        named = [name_penalty and names_skill(answer, skill) for skill in skills]
        return self.with_corrections(sentence_point(count_sentences(answer), self.k), named)


def item_count(k: int) -> int:
    """How many rubric items an answer with k skills has."""
    if k < 1:
        raise HarnessError(f"k must be at least 1 (got {k}); a combination needs one skill or more")
    return k + len(OTHER_KINDS)


def item_kinds(k: int) -> tuple[str, ...]:
    """Rubric kind of each item position for an answer with k skills."""
    return (SKILL_KIND,) * k + tuple(OTHER_KINDS)
