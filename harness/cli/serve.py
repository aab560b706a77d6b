"""`harness serve` and `harness models`: run vLLM servers, build tiny models."""

from __future__ import annotations

import asyncio
import shlex
import time
from pathlib import Path

import click

from harness.client import ModelClient, ModelRef, SamplingParams
from harness.server import ServingOptions, terminate_on_sigterm
from harness.serving import serve_roles


def serving_options(function):
    """Options shared by every command that may start servers."""
    options = [
        click.option("--device", type=click.Choice(["auto", "gpu", "cpu"]), default="auto", show_default=True),
        click.option("--gpu-memory-utilization", type=float, default=0.9, show_default=True,
                     help="GPU memory fraction for all servers together; split evenly between them."),
        click.option("--cpu-kv-cache-gib", type=float, default=4.0, show_default=True,
                     help="CPU KV-cache space for all servers together (GiB); split evenly."),
        click.option("--max-model-len", type=int, default=None, help="Passed to vLLM as --max-model-len."),
        click.option("--startup-timeout", type=float, default=900.0, show_default=True, help="Seconds to wait for health."),
        click.option("--student-vllm-args", default="", help="Extra vLLM arguments for the student server, e.g. '--tensor-parallel-size 2'."),
        click.option("--judge-vllm-args", default="", help="Extra vLLM arguments for the judge server."),
        click.option("--max-concurrency", type=int, default=64, show_default=True, help="Requests in flight per endpoint."),
    ]  # fmt: skip
    for option in reversed(options):
        function = option(function)
    return function


SERVING_KEYS = (
    "device", "gpu_memory_utilization", "cpu_kv_cache_gib", "max_model_len", "startup_timeout",
    "student_vllm_args", "judge_vllm_args", "max_concurrency",
)  # fmt: skip


def build_serving(log_dir: Path, **kwargs) -> tuple[ServingOptions, dict[str, list[str]], int]:
    options = ServingOptions(
        device=kwargs["device"],
        gpu_memory_utilization=kwargs["gpu_memory_utilization"],
        cpu_kv_cache_gib=kwargs["cpu_kv_cache_gib"],
        startup_timeout=kwargs["startup_timeout"],
        max_model_len=kwargs["max_model_len"],
        log_dir=log_dir,
    )
    extra = {
        "student": shlex.split(kwargs["student_vllm_args"]),
        "judge": shlex.split(kwargs["judge_vllm_args"]),
    }
    return options, extra, kwargs["max_concurrency"]


async def _ask(refs: dict[str, ModelRef], prompt: str) -> dict[str, str]:
    cache = None  # a smoke test must reach the servers
    answers = {}
    for role, ref in refs.items():
        client = ModelClient(ref, cache)
        reply = await client.chat([{"role": "user", "content": prompt}], SamplingParams(max_tokens=32, temperature=0.0))
        answers[role] = reply.text
        await client.aclose()
    return answers


@click.command()
@click.option("--student", "student", multiple=True, help="Student model: local path, server URL (repeatable), or openai:NAME.")
@click.option("--judge", "judge", multiple=True, help="Judge model: local path, server URL (repeatable), or openai:NAME.")
@click.option("--student-url", "student_urls", multiple=True, help="Attach to a running student server (repeat for replicas).")
@click.option("--judge-url", "judge_urls", multiple=True, help="Attach to a running judge server (repeat for replicas).")
@click.option("--log-dir", type=click.Path(path_type=Path), default=Path("logs"), show_default=True)
@click.option("--ask", default=None, help="Send this prompt to every model, print the replies and exit.")
@serving_options
def serve(student, judge, student_urls, judge_urls, log_dir, ask, **kwargs) -> None:
    """Serve a student and a judge with vLLM on this machine until Ctrl-C.

    With no model given, serves the embedded tiny default models.
    """
    options, extra, max_concurrency = build_serving(log_dir, **kwargs)
    models = {"student": list(student) + list(student_urls), "judge": list(judge) + list(judge_urls)}
    click.echo("starting servers (a few minutes on the CPU)...", err=True)
    with terminate_on_sigterm(), serve_roles(models, options, max_concurrency=max_concurrency, extra_args=extra) as refs:
        for role, ref in refs.items():
            for endpoint in ref.endpoints:
                click.echo(f"{role}: {endpoint.base_url}  model={endpoint.model}  api_key={endpoint.api_key}")
        click.echo("ready: servers are up (Ctrl-C stops them)")
        if ask is not None:
            for role, text in asyncio.run(_ask(refs, ask)).items():
                click.echo(f"{role} says: {text!r}")
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

    from harness.tinymodel import SIZES, build_tiny_model

    build_tiny_model(directory, replace(SIZES[size], seed=seed), overwrite=overwrite)
    click.echo(f"wrote a {size} model (seed {seed}) to {directory}")
