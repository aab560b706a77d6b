"""A user's copy of the SKILL-MIX reference code's ``prompts/`` directory, used as a prompt version.

The reference code (github.com/LeoYu/skill-mix) keeps its prompts as JSON files:
``prompts/generation/<name>.json`` is a list of the student's turns, and
``prompts/grade/<name>.json`` a one-element list with the judge's prompt. Each
string is a Python format string. This project ships none of that wording; with
``--prompts-from DIR`` a user who holds the files runs it exactly:

* ``generation/default.json`` (two turns) becomes ``student_turn1.txt`` and
  ``student_turn2.txt``;
* ``grade/gpt.json`` becomes ``grade_table.txt`` (the table reply style, as the
  reference parses replies to that prompt) and ``grade/llama.json``
  ``grade_items.txt`` (one ``Point earned`` line per item); either may be absent
  if no judge of the run uses that style.

Each ``{field}`` becomes a ``${field}`` placeholder of our templates, filled with
the value the reference would put there (``reference_fields`` below and
``judges.reference_rules.rubric_items``). The converted version is written to
``<run>/prompts/reference-<hash of the files>/`` with a ``source.json`` naming
the files and their sha256, so a run records exactly which wording it used and a
changed file is a new prompt version.
"""

from __future__ import annotations

import hashlib
import json
import string
from collections.abc import Sequence
from pathlib import Path

from harness.core.catalog import Skill
from harness.core.errors import HarnessError

# Our template name <- the reference's file, relative to its prompts/ directory.
GENERATION_FILE = "generation/default.json"
GRADING_FILES = {"grade_table.txt": "grade/gpt.json", "grade_items.txt": "grade/llama.json"}
STUDENT_TEMPLATES = ("student_turn1.txt", "student_turn2.txt")
GENERATION_FIELDS = frozenset({
    "topic", "skills_str", "skills_defs_and_examples", "skills_defs_and_examples_simple", "skills_defs",
    "num_skills", "num_skills_str", "num_sentences", "num_sentences_str",
})  # fmt: skip
GRADING_FIELDS = GENERATION_FIELDS | {"student_answer", "rubric_items"}
SOURCE_FILE = "source.json"
VERSION_PREFIX = "reference-"

_ONES = ("zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
         "seventeen eighteen nineteen").split()  # fmt: skip
_TENS = "twenty thirty forty fifty sixty seventy eighty ninety".split()


def number_words(number: int) -> str:
    """A count in words, as the reference writes counts into its prompts ("two", "twenty-one")."""
    if 0 <= number < 20:
        return _ONES[number]
    if 20 <= number < 100:
        tens, ones = divmod(number, 10)
        return _TENS[tens - 2] + (f"-{_ONES[ones]}" if ones else "")
    return str(number)


def sentences_words(number: int) -> str:
    """ "one sentence", "two sentences"."""
    return f"{number_words(number)} {'sentences' if number > 1 else 'sentence'}"


def reference_fields(skills: Sequence[Skill], topic: str, sentence_limit: int) -> dict[str, str]:
    """The values of the reference's prompt fields for one combination (all but the grading-only ones).

    The three definition blocks, one line or block per skill joined by line breaks:
    ``skills_defs_and_examples`` "Skill: NAME / Definition: ... / Example: ..." on three lines,
    ``skills_defs_and_examples_simple`` "**NAME**: DEFINITION For example, EXAMPLE", and
    ``skills_defs`` "**NAME**: DEFINITION".
    """
    return {
        "topic": topic,
        "skills_str": ", ".join(skill.name for skill in skills),
        "skills_defs_and_examples": "\n".join(
            f"Skill: {s.name}\nDefinition: {s.definition}\nExample: {s.example}" for s in skills
        ),
        "skills_defs_and_examples_simple": "\n".join(
            f"**{s.name}**: {s.definition} For example, {s.example}" for s in skills
        ),
        "skills_defs": "\n".join(f"**{s.name}**: {s.definition}" for s in skills),
        "num_skills": str(len(skills)),
        "num_skills_str": number_words(len(skills)),
        "num_sentences": str(sentence_limit),
        "num_sentences_str": sentences_words(sentence_limit),
    }


def _template(text: str, allowed: frozenset[str], where: str) -> str:
    """A Python format string as a string.Template: {field} -> ${field}, $ -> $$, {{ -> {."""
    parts = []
    try:
        parsed = list(string.Formatter().parse(text))
    except ValueError as error:
        raise HarnessError(
            f"{where}: not a valid format string ({error}); write a literal brace as {{{{ or }}}}"
        ) from None
    for literal, field, spec, conversion in parsed:
        parts.append(literal.replace("$", "$$"))
        if field is None:
            continue
        if field not in allowed or spec or conversion:
            raise HarnessError(
                f"{where}: unknown field {{{field}{'!' + conversion if conversion else ''}{':' + spec if spec else ''}}}; "
                f"the reference's prompts use {', '.join('{' + name + '}' for name in sorted(allowed))}"
            )
        parts.append("${" + field + "}")
    return "".join(parts)


def _read_turns(path: Path, expected: int | None) -> list[str]:
    try:
        turns = json.loads(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise HarnessError(f"cannot read {path}: {error.strerror}") from None
    except json.JSONDecodeError as error:
        raise HarnessError(f"{path}: not valid JSON ({error})") from None
    if not isinstance(turns, list) or not all(isinstance(turn, str) for turn in turns):
        raise HarnessError(f"{path}: a reference prompt file is a JSON list of strings, one per turn")
    if expected is not None and len(turns) != expected:
        raise HarnessError(
            f"{path}: {len(turns)} turn(s); this harness runs the SKILL-MIX protocol of "
            f"{'two student turns' if expected == 2 else 'one judge turn'}, so the file needs exactly {expected}"
        )
    return turns


def import_reference_prompts(source: Path, runs_root: Path) -> tuple[str, Path]:
    """Convert the reference prompts in ``source`` into a prompt version under ``runs_root``.

    Returns the version's name and directory. ``source`` is the reference's ``prompts/``
    directory (or its parent holding ``prompts/``).
    """
    source = Path(source).expanduser()
    if (source / "prompts").is_dir() and not (source / "generation").is_dir():
        source = source / "prompts"
    generation = source / GENERATION_FILE
    if not generation.is_file():
        raise HarnessError(
            f"--prompts-from {source}: no {GENERATION_FILE}; give your copy of the SKILL-MIX reference code's "
            "prompts/ directory (generation/default.json, grade/gpt.json and/or grade/llama.json)"
        )
    files = {template: source / name for template, name in GRADING_FILES.items() if (source / name).is_file()}
    if not files:
        raise HarnessError(f"--prompts-from {source}: neither {' nor '.join(GRADING_FILES.values())} is there")
    templates = dict(zip(STUDENT_TEMPLATES, (_template(turn, GENERATION_FIELDS, f"{generation} turn {number}")
                                             for number, turn in enumerate(_read_turns(generation, 2), 1)), strict=True))  # fmt: skip
    for template, path in files.items():
        templates[template] = _template(_read_turns(path, 1)[0], GRADING_FIELDS, str(path))
    hashes = {str(path.relative_to(source)): hashlib.sha256(path.read_bytes()).hexdigest()
              for path in [generation, *files.values()]}  # fmt: skip
    version = VERSION_PREFIX + hashlib.sha256(json.dumps(hashes, sort_keys=True).encode()).hexdigest()[:12]
    directory = Path(runs_root) / version
    directory.mkdir(parents=True, exist_ok=True)
    for name, text in templates.items():
        (directory / name).write_text(text, encoding="utf-8")
    (directory / SOURCE_FILE).write_text(
        json.dumps({"source": str(source.resolve()), "sha256": hashes}, indent=2, sort_keys=True) + "\n",
        encoding="utf-8",
    )
    return version, directory
