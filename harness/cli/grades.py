"""`harness parse-grade`: read one judge reply on stdin and print the rubric values it gives."""

from __future__ import annotations

import json

import click

from harness.core.errors import HarnessError
from judges.styles import STYLES
from judges.styles import parse_grade as parse_grade_reply


def _split_skills(skills: str) -> list[str]:
    names = [name.strip() for name in skills.split(";")]
    names = [name for name in names if name]
    if not names:
        raise HarnessError(
            "--skills is empty; give the combination's skills separated by ';', e.g. --skills 'metaphor;red herring'"
        )
    return names


@click.command("parse-grade")
@click.option(
    "--skills",
    required=True,
    help="The combination's skills in rubric order, separated by ';'.",
)
@click.option("--topic", required=True, help="The combination's topic.")
@click.option(
    "--style",
    type=click.Choice(list(STYLES)),
    default=None,
    help="Reply style to try first (default: the one the reply looks like); the other is the fallback.",
)
def parse_grade(skills: str, topic: str, style: str | None) -> None:
    """Print {"points": [...]}: the judge's k + 3 values in rubric order, null where missing.

    Values are the judge's own, before the sentence-count override and the
    explicit-name penalty.
    """
    data = click.get_binary_stream("stdin").read()
    try:
        reply = data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise HarnessError(
            f"stdin is not UTF-8 text (byte {data[error.start]:#04x} at offset {error.start}); convert the reply "
            "first, e.g. iconv -f latin1 -t utf-8 reply.txt | harness parse-grade ..."
        ) from None
    click.echo(json.dumps({"points": parse_grade_reply(reply, _split_skills(skills), topic, style)}))
