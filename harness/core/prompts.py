"""The student's side of the protocol: render the two turns from a task's prompt templates,
the sentence limit they ask for, and reading the answer back out of a reply.

Grading prompts are rendered by the judge layer (judges.grader); both go
through harness.core.prompt_files. The training data generators (harness.datagen,
trainers.demo_data) render requests through here too, so a fine-tuned student
sees exactly the requests it is evaluated on.
"""

from __future__ import annotations

import re

from harness.core.errors import HarnessError
from harness.core.prompt_files import plural, render
from harness.core.reference_prompts import reference_fields
from harness.core.registry import Task
from harness.core.sampling import Combination

_ANSWER = re.compile(r"\banswer\s*(?:\*\*|__)?\s*:\s*(?:\*\*|__)?", re.IGNORECASE)
# "Explanation" ends the answer when it opens a line or is followed by a colon; a bare
# mention inside a sentence of the answer does not.
_EXPLANATION = re.compile(
    r"(?:^[ \t>#*_]*explanation\b)|(?:[*_]*\bexplanation\s*(?:\*\*|__)?\s*:)",
    re.IGNORECASE | re.MULTILINE,
)


def sentence_limit(k: int) -> int:
    """The most sentences an answer for k skills may have: max(1, k - 1)."""
    if k < 1:
        raise HarnessError(f"k must be at least 1 (got {k}); a combination needs one skill or more")
    return max(1, k - 1)


def render_student_turn1(task: Task, combination: Combination) -> str:
    """The first student turn: write a text that shows all k skills."""
    blocks = []
    for number, name in enumerate(combination.skills, start=1):
        skill = task.catalog.skill(name)
        lines = [f"{number}. Skill: {skill.name}", f"   Definition: {skill.definition}"]
        if skill.example:
            lines.append(f"   Example: {skill.example}")
        blocks.append("\n".join(lines))
    return render(
        task.prompt_dir,
        "student_turn1.txt",
        **_reference_fields(task, combination),
        skill_count=plural(len(combination.skills), "skill"),
        skills_block="\n\n".join(blocks),
    )


def render_student_turn2(task: Task, combination: Combination) -> str:
    """The second student turn: review and shorten the first answer."""
    return render(
        task.prompt_dir,
        "student_turn2.txt",
        **_reference_fields(task, combination),
        sentence_count=plural(sentence_limit(len(combination.skills)), "sentence"),
    )


def _reference_fields(task: Task, combination: Combination) -> dict[str, str]:
    # A prompt version made from the reference's own files (--prompts-from) uses its field names.
    skills = [task.catalog.skill(name) for name in combination.skills]
    return reference_fields(skills, combination.topic, sentence_limit(len(combination.skills)))


def extract_answer(reply: str) -> str | None:
    """The text after the last "Answer:" and before "Explanation", stripped; None without "Answer:"."""
    matches = list(_ANSWER.finditer(reply))
    if not matches:
        return None
    rest = reply[matches[-1].end() :]
    end = _EXPLANATION.search(rest)
    if end is not None:
        rest = rest[: end.start()]
    return rest.strip()
