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

Explicit-name penalty (``final_points``)
----------------------------------------
A skill's point becomes 0 when the answer names the skill. The name is the part
of the skill before any parenthesis, stripped and lower-cased
("folk physics (common knowledge physics)" -> "folk physics"). It is matched
case-insensitively as a whole-word phrase: it must not be glued to a letter or
digit on either side ("metaphor" does not match "metaphors" or "metaphorical"),
and between the name's words any run of spaces or hyphens is accepted, so the
name "self serving bias" matches "self-serving bias" and "Self Serving  bias".
Curly apostrophes count as straight ones.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from harness.errors import HarnessError

RUBRIC_KINDS = ("skill", "topic", "sense", "sentences")

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


def sentence_limit(k: int) -> int:
    """The most sentences an answer for k skills may have."""
    if k < 1:
        raise HarnessError(f"k must be at least 1 (got {k}); a combination needs one skill or more")
    return max(1, k - 1)


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


def skill_name(skill: str) -> str:
    """The part of a skill before any parenthesis, stripped and lower-cased."""
    return skill.split("(", 1)[0].strip().lower()


def _name_pattern(name: str) -> re.Pattern[str] | None:
    words = re.split(r"[\s\-]+", name.replace("\u2019", "'"))
    words = [word for word in words if word]
    if not words:
        return None
    phrase = r"[\s\-]+".join(re.escape(word) for word in words)
    return re.compile(rf"(?<![^\W_]){phrase}(?![^\W_])", re.IGNORECASE)


def names_skill(answer: str, skill: str) -> bool:
    """True when ``answer`` contains the skill's name (see the module docstring)."""
    pattern = _name_pattern(skill_name(skill))
    return pattern is not None and pattern.search(answer.replace("\u2019", "'")) is not None


def final_points(
    judge_points: Sequence[float | None],
    answer: str,
    skills: Sequence[str],
    *,
    name_penalty: bool = True,
) -> list[float | None]:
    """The judge's k + 3 values after the code-side corrections.

    The sentence point is always recomputed from ``answer`` (1.0 or 0.0), even
    where the judge gave none. With ``name_penalty`` a skill's point becomes 0.0
    when the answer names the skill. A missing (None) skill, topic or sense
    value stays None: the grading run is unscored there, and a penalty must not
    turn "unscored" into a score.
    """
    k = len(skills)
    if len(judge_points) != k + 3:
        raise HarnessError(
            f"expected {k + 3} judge points for {k} skills (k + 3, in rubric order), got {len(judge_points)}"
        )
    points: list[float | None] = [None if value is None else float(value) for value in judge_points]
    if name_penalty:
        for index, skill in enumerate(skills):
            if points[index] is not None and names_skill(answer, skill):
                points[index] = 0.0
    points[k + 2] = 1.0 if count_sentences(answer) <= sentence_limit(k) else 0.0
    return points


def is_earned(value: float | None) -> bool | None:
    """Whether a rubric value earns its point: None stays None, 1 earns, less does not.

    The rubric is binary and a combination's full marks need every point, so a
    half point (0.5), which some judges give for a partial illustration, is a
    point not earned rather than something to round up.
    """
    if value is None:
        return None
    return value >= 1
