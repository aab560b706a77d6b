"""Run SKILL-MIX tasks: plan the missing work, serve only the models it needs, do it all concurrently.

One *conversation* is (task, combination, student, generation round): two
student turns, then every grading run of every judge on the extracted answer.
All conversations are started at once; the per-endpoint semaphores in the
model client decide how many requests are really in flight, so a vLLM server
always has a full batch to work on. Each finished conversation and each
finished grading run is written to the run store straight away, so a killed
run resumes where it stopped, and a finished run starts no server at all.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from harness.client import ModelClient, SamplingParams
from harness.prompts import (
    extract_answer,
    items_reply_regex,
    render_grading_prompt,
    render_student_turn1,
    render_student_turn2,
)
from harness.registry import Task
from harness.sampling import Combination
from harness.store import Generation, Grade, RunStore
from judges.parsing import is_usable, read_grade

# When a reply cannot be parsed the judge is asked again; a greedy judge would
# only repeat itself, so retries sample at least this warm.
RETRY_TEMPERATURE = 0.7


@dataclass(frozen=True)
class StudentSlot:
    name: str
    sampling_overrides: dict = field(default_factory=dict)


@dataclass(frozen=True)
class JudgeSlot:
    name: str
    style: str | None = None  # None: the task's grading style
    sampling_overrides: dict = field(default_factory=dict)
    constrained: bool = False  # per-item replies decoded under the rubric regex (vLLM only)


@dataclass(frozen=True)
class RunOptions:
    max_grade_attempts: int = 3  # asks per grading run before it is recorded as unscored


@dataclass(frozen=True)
class Conversation:
    task: Task
    combination: Combination
    student: str
    generation_round: int

    @property
    def key(self) -> tuple[str, int, str, int]:
        return (self.task.name, self.combination.index, self.student, self.generation_round)


@dataclass
class Plan:
    """What is still to do: conversations to generate and grading runs to do."""

    generate: list[Conversation] = field(default_factory=list)
    grade: dict[tuple[str, int, str, int], list[tuple[str, int]]] = field(default_factory=dict)
    conversations: dict[tuple[str, int, str, int], Conversation] = field(default_factory=dict)

    @property
    def n_generations(self) -> int:
        return len(self.generate)

    @property
    def n_grades(self) -> int:
        return sum(len(runs) for runs in self.grade.values())

    def students_needed(self) -> set[str]:
        return {conversation.student for conversation in self.generate}

    def judges_needed(self) -> set[str]:
        return {judge for runs in self.grade.values() for judge, _ in runs}


def plan_work(store: RunStore, tasks: Sequence[Task], students: Sequence[StudentSlot], judges: Sequence[JudgeSlot]) -> Plan:
    done_generations = store.generation_keys()
    done_grades = store.grade_keys()
    plan = Plan()
    for task in tasks:
        for combination in task.combinations():
            for student in students:
                for generation_round in range(task.generation_rounds):
                    conversation = Conversation(task, combination, student.name, generation_round)
                    key = conversation.key
                    if key not in done_generations:
                        plan.generate.append(conversation)
                    missing = [
                        (judge.name, run)
                        for judge in judges
                        for run in range(task.grading_runs)
                        if (*key, judge.name, run) not in done_grades
                    ]
                    if missing:
                        plan.grade[key] = missing
                    if key not in done_generations or missing:
                        plan.conversations[key] = conversation
    return plan


def request_seed(*parts: object) -> int:
    """A stable per-request sampling seed (vLLM honours it; OpenAI treats it as best effort)."""
    digest = hashlib.sha256(":".join(str(part) for part in parts).encode()).digest()
    return int.from_bytes(digest[:4], "big") & 0x7FFFFFFF


def _sampling(base: dict, overrides: dict, seed: int, *, min_temperature: float | None = None) -> SamplingParams:
    values = {**base, **overrides}
    temperature = float(values.get("temperature", 0.7))
    if min_temperature is not None:
        temperature = max(temperature, min_temperature)
    return SamplingParams(
        temperature=temperature,
        max_tokens=int(values.get("max_tokens", 512)),
        top_p=float(values.get("top_p", 1.0)),
        seed=seed,
    )


class Runner:
    def __init__(
        self,
        store: RunStore,
        students: dict[str, tuple[StudentSlot, ModelClient]],
        judges: dict[str, tuple[JudgeSlot, ModelClient]],
        options: RunOptions = RunOptions(),
        on_generated: Callable[[], None] = lambda: None,
        on_graded: Callable[[], None] = lambda: None,
    ):
        self.store = store
        self.students = students
        self.judges = judges
        self.options = options
        self.on_generated = on_generated
        self.on_graded = on_graded

    async def run(self, plan: Plan) -> None:
        pending = {conversation.key for conversation in plan.generate}
        stored = {
            (g.task, g.combination, g.student, g.generation_round): g
            for g in self.store.generations()
        } if len(pending) < len(plan.conversations) else {}  # fmt: skip
        coroutines = [
            self._conversation(conversation, stored.get(key), plan.grade.get(key, []))
            for key, conversation in plan.conversations.items()
        ]
        await asyncio.gather(*coroutines)

    async def _conversation(
        self, conversation: Conversation, generation: Generation | None, grading: list[tuple[str, int]]
    ) -> None:
        if generation is None:
            generation = await self._generate(conversation)
            self.store.add_generation(generation)
            self.on_generated()
        await asyncio.gather(*(self._grade(conversation, generation, judge, run) for judge, run in grading))

    async def _generate(self, conversation: Conversation) -> Generation:
        task, combination = conversation.task, conversation.combination
        slot, client = self.students[conversation.student]
        turn1 = render_student_turn1(task, combination)
        turn2 = render_student_turn2(task, combination)
        base = (task.seed, task.name, combination.index, conversation.generation_round)
        messages = [{"role": "user", "content": turn1}]
        first = await client.chat(
            messages, _sampling(task.student_sampling, slot.sampling_overrides, request_seed(*base, 1)), conversation.generation_round
        )
        messages += [{"role": "assistant", "content": first.text}, {"role": "user", "content": turn2}]
        second = await client.chat(
            messages, _sampling(task.student_sampling, slot.sampling_overrides, request_seed(*base, 2)), conversation.generation_round
        )
        answer = extract_answer(second.text)
        return Generation(
            task=task.name,
            combination=combination.index,
            student=conversation.student,
            generation_round=conversation.generation_round,
            turn1_prompt=turn1,
            turn1_reply=first.text,
            turn2_prompt=turn2,
            turn2_reply=second.text,
            answer=answer if answer is not None else second.text.strip(),
            answer_marked=answer is not None,
            finish_reason=second.finish_reason,
        )

    async def _grade(self, conversation: Conversation, generation: Generation, judge_name: str, grading_run: int) -> None:
        task, combination = conversation.task, conversation.combination
        slot, client = self.judges[judge_name]
        style = slot.style or task.grading_style
        prompt = render_grading_prompt(task, combination, generation.answer, style)
        messages = [{"role": "user", "content": prompt}]
        k = len(combination.skills)
        regex = items_reply_regex(combination.skills, combination.topic) if slot.constrained and style == "items" else None
        points: tuple[float | None, ...] = (None,) * (k + 3)
        reply_text = ""
        attempt = 0
        while attempt < self.options.max_grade_attempts:
            seed = request_seed(task.seed, task.name, combination.index, conversation.generation_round, judge_name, grading_run, attempt)
            sampling = _sampling(
                task.judge_sampling, slot.sampling_overrides, seed, min_temperature=RETRY_TEMPERATURE if attempt else None
            )
            reply = await client.chat(messages, sampling, sample_index=grading_run * 1000 + attempt, regex=regex)
            attempt += 1
            reply_text = reply.text
            points = read_grade(reply.text, combination.skills, combination.topic, style).points
            if is_usable(points, k):
                break
        grade = Grade(
            task=task.name,
            combination=combination.index,
            student=conversation.student,
            generation_round=conversation.generation_round,
            judge=judge_name,
            grading_run=grading_run,
            style=style,
            prompt=prompt,
            reply=reply_text,
            attempts=attempt,
            points=tuple(points),
            usable=is_usable(points, k),
        )
        self.store.add_grade(grade)
        self.on_graded()
