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

Rubric list (``rubric_items``)
------------------------------
What the reference's grading prompts get as ``{rubric_items}`` (used when a run
takes its prompts from a copy of the reference's files, harness.core.reference_prompts):
the k + 3 items in rubric order, comma-separated, "<verb> <skill in lower case>",
"Pertains to <topic>", "Text makes sense", "At most <n in words> sentence(s)". The
verb is "Correctly illustrates" in its table-style prompt and "Contains" in its
per-item one.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from harness.core.names import skill_name
from harness.core.prompts import sentence_limit
from harness.core.reference_prompts import sentences_words
from judges.rubric import rubric_items as rubric_item_list

RUBRIC_VERBS = {"table": "Correctly illustrates", "items": "Contains"}

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


def rubric_items(skills: Sequence[str], topic: str, style: str) -> str:
    """The reference's ``{rubric_items}`` text for one combination and reply style (module docstring)."""
    verb = RUBRIC_VERBS.get(style, RUBRIC_VERBS["table"])
    wording = {
        "skill": lambda label: f"{verb} {label.strip().lower()}",
        "topic": lambda label: f"Pertains to {label}",
        "sense": lambda label: "Text makes sense",
        "sentences": lambda label: f"At most {sentences_words(sentence_limit(len(skills)))}",
    }
    return ", ".join(wording[item.kind](item.label) for item in rubric_item_list(skills, topic))
