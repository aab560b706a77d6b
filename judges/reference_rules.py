"""The text rules of the public SKILL-MIX reference code, for the `reference` scoring profile.

Our own rules live in judges/rubric.py (``count_sentences``) and harness/core/names.py
(``names_skill``). These are the reference's, written from the description in
tests/data/skillmix-reference/RULES.md (sections 7 and 8.4), so that a run scored under
the `reference` profile gets the numbers the reference's aggregation prints.

Sentence rule (``count_sentences``)
-----------------------------------
1. Five titles are protected first: for ``Mr``, ``Mrs``, ``Ms``, ``Dr``, ``Prof`` in
   that order, wherever those letters (case-sensitive, anywhere in a word) are followed
   by any one character other than a line break and then a space, the three become the
   letters plus ``.``, and the space is gone ("Dr. Smith" -> "Dr.Smith").
2. A sentence boundary is ``.``, ``!`` or ``?``, any straight quotes, exactly one space,
   any straight quotes, then a capital A-Z. Boundaries do not overlap.
3. Sentences = boundaries + 1, so an empty answer has one sentence.

So a line break never ends a sentence, ``"...?" she asked`` is one sentence, and
``St. Anne`` or ``i.e. The`` are two.

Name filter (``names_skill``)
-----------------------------
A skill is named when its name (the part before any ``(``, stripped, lower-cased) is
a substring of the lower-cased answer: "red herrings" and "accidentally" name
"red herring" and "accident (fallacy)"; "self-serving bias" does not name
"self serving bias".
"""

from __future__ import annotations

import re

from harness.core.names import skill_name

_TITLES = ("Mr", "Mrs", "Ms", "Dr", "Prof")
_PROTECT = {title: re.compile(re.escape(title) + r". ") for title in _TITLES}
_BOUNDARY = re.compile(r"[.!?]['\"]* ['\"]*[A-Z]")


def count_sentences(text: str) -> int:
    """Sentences in ``text`` under the reference's rule (module docstring)."""
    for title in _TITLES:
        text = _PROTECT[title].sub(title + ".", text)
    return len(_BOUNDARY.findall(text)) + 1


def names_skill(text: str, skill: str) -> bool:
    """True when the lower-cased ``text`` contains the skill's name as a substring."""
    return skill_name(skill) in text.strip().lower()
