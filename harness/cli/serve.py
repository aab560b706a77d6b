"""`harness serve` and `harness models`: run vLLM servers, build tiny models."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import click

from harness.cli.options import pop_serving, serving_options
from harness.core.client import ModelClient, SamplingParams
from harness.core.connect import connect
from harness.core.errors import HarnessError
from harness.core.vllm import terminate_on_sigterm
from harness.evaluation import resolve_judges, resolve_students


async def _ask(clients: dict[str, ModelClient], prompt: str) -> dict[str, str]:
    answers = {}
    try:
        for name, client in clients.items():
            reply = await client.chat(
                [{"role": "user", "content": prompt}], SamplingParams(max_tokens=32, temperature=0.0)
            )
            answers[name] = reply.text
    finally:
        for client in clients.values():
            await client.aclose()
    return answers


def _joined(models: tuple[str, ...], urls: tuple[str, ...]) -> list[str]:
    """--student/--judge values, with repeated --*-url replicas joined into one comma-separated model."""
    return [*models, ",".join(urls)] if urls else list(models)


@click.command()
@click.option(
    "--student",
    "students",
    multiple=True,
    metavar="[NAME=]MODEL",
    help="Student model: local path, server URL(s) or openai:NAME (repeatable). Default: the tiny model.",
)
@click.option(
    "--judge",
    "judges",
    multiple=True,
    metavar="[NAME=]JUDGE",
    help="Judge: a registered judge, local path, server URL(s) or openai:NAME (repeatable). Default: the tiny judge.",
)
@click.option(
    "--student-url", "student_urls", multiple=True, help="Attach to a running student server (repeat for replicas)."
)
@click.option(
    "--judge-url", "judge_urls", multiple=True, help="Attach to a running judge server (repeat for replicas)."
)
@click.option("--log-dir", type=click.Path(path_type=Path), default=Path("logs"), show_default=True)
@click.option("--ask", default=None, help="Send this prompt to every model, print the replies and exit.")
@serving_options
def serve(students, judges, student_urls, judge_urls, log_dir, ask, **options) -> None:  # fmt: skip
    """Serve a student and a judge with vLLM on this machine until Ctrl-C.

    With no model given, serves the embedded tiny default models. Replies are not cached.
    """
    serving, extra, max_concurrency = pop_serving(options, log_dir)
    models = resolve_students(_joined(students, student_urls), "student", extra["student"], max_concurrency)
    models += [judge.model for judge in resolve_judges(_joined(judges, judge_urls), vllm_args=extra["judge"],
                                                       max_concurrency=max_concurrency)]  # fmt: skip
    if any(model.model_free for model in models):
        raise HarnessError("rules is not a model and has nothing to serve; use it in `harness run` or `generate-data`")
    click.echo("starting servers (a few minutes on the CPU)...", err=True)
    with terminate_on_sigterm(), connect(models, serving) as clients:
        for name, client in clients.items():
            for endpoint in client.model.endpoints:
                click.echo(f"{client.model.role}: {endpoint.base_url}  name={name}  model={endpoint.model}  "
                           f"api_key={endpoint.api_key}")  # fmt: skip
        click.echo("ready: servers are up (Ctrl-C stops them)")
        if ask is not None:
            for name, text in asyncio.run(_ask(clients, ask)).items():
                click.echo(f"{name} says: {text!r}")
            return
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            click.echo("stopping servers...", err=True)


@click.group()
def models() -> None:
    """Build local models."""


@models.command("tiny")
@click.argument("directory", type=click.Path(path_type=Path))
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--size", type=click.Choice(["tiny", "small"]), default="tiny", show_default=True)
@click.option("--overwrite", is_flag=True)
def tiny(directory: Path, seed: int, size: str, overwrite: bool) -> None:
    """Build a tiny random Llama chat model in DIRECTORY (no download)."""
    from dataclasses import replace

    from harness.core.tinymodel import SIZES, build_tiny_model

    build_tiny_model(directory, replace(SIZES[size], seed=seed), overwrite=overwrite)
    click.echo(f"wrote a {size} model (seed {seed}) to {directory}")


@models.command("rules")
@click.argument("directory", type=click.Path(path_type=Path))
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--overwrite", is_flag=True)
def rules(directory: Path, seed: int, overwrite: bool) -> None:
    """Build the rule world's tiny student in DIRECTORY: random weights, a tokenizer trained on rule-world text."""
    from harness.rules_student import build_rules_student

    build_rules_student(directory, seed=seed, overwrite=overwrite)
    click.echo(f"wrote the rule-world student (seed {seed}) to {directory}")
