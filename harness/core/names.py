"""Find skill and topic names in free text: the one matching rule behind the explicit-name
penalty (judges.rubric) and the held-out leak audit (harness.core.audit).

A skill's name is the part before any parenthesis, stripped and lower-cased
("folk physics (common knowledge physics)" -> "folk physics"). A name is found
case-insensitively as a whole-word phrase: it must not be glued to a letter or
digit on either side ("metaphor" does not match "metaphors"), and between its
words any run of spaces or hyphens is accepted ("self serving bias" matches
"self-serving bias"). Curly apostrophes count as straight ones.
"""

from __future__ import annotations

import re
from functools import lru_cache

_WORD_SPLIT = re.compile(r"[\s\-]+")


def skill_name(skill: str) -> str:
    """The part of a skill before any parenthesis, stripped and lower-cased."""
    return skill.split("(", 1)[0].strip().lower()


def normalise(text: str) -> str:
    """Lower case, straight apostrophes, and one space wherever the text has spaces or hyphens."""
    return " ".join(word for word in _WORD_SPLIT.split(text.replace("\u2019", "'").strip().lower()) if word)


def first_word(name: str) -> str:
    """The first word of a normalised name: a cheap substring test before the regex."""
    return normalise(name).split(" ")[0]


@lru_cache(maxsize=4096)
def phrase_pattern(phrase: str) -> re.Pattern[str] | None:
    """A whole-word, case-insensitive pattern for ``phrase``; None for a phrase with no words."""
    words = normalise(phrase).split(" ")
    if words == [""]:
        return None
    body = r"[\s\-]+".join(re.escape(word) for word in words)
    return re.compile(rf"(?<![^\W_]){body}(?![^\W_])", re.IGNORECASE)


def contains_phrase(text: str, phrase: str) -> bool:
    """True when ``text`` contains ``phrase`` under the rule in this module's docstring."""
    pattern = phrase_pattern(phrase)
    return pattern is not None and pattern.search(text.replace("\u2019", "'")) is not None


def names_skill(text: str, skill: str) -> bool:
    """True when ``text`` contains the skill's name (see the module docstring)."""
    return contains_phrase(text, skill_name(skill))
