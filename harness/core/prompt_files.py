"""Fill the plain-text prompt templates of a versioned prompt directory.

Templates are ``string.Template`` files in ``tasks/prompts/<version>/`` (or a
user's directory). A published version is never edited: a changed prompt is a
new version directory, so a recorded run can always be re-rendered. Student
prompts (harness.core.prompts) and grading prompts (judges.grader) both render
through here.
"""

from __future__ import annotations

import string
from functools import lru_cache
from pathlib import Path

from harness.core.errors import HarnessError


def plural(count: int, noun: str) -> str:
    """ "1 skill", "3 skills"."""
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def render(prompt_dir: Path, filename: str, **values: str) -> str:
    """The template ``prompt_dir/filename`` filled with ``values``; every placeholder must be known."""
    path = Path(prompt_dir) / filename
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
    except UnicodeDecodeError as error:
        raise HarnessError(f"prompt template {path} is not UTF-8 text ({error.reason})") from None
