"""Plan the missing work of a run and do it all concurrently.

One *conversation* is (task, combination, student, generation round): two
student turns, then every grading run of every judge on the extracted answer.
All conversations are started at once; the per-endpoint semaphores in the
model client decide how many requests are really in flight, so a vLLM server
always has a full batch to work on. Each finished conversation and each
finished grading run is written to the run store straight away, so a killed
run resumes where it stopped.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field

from harness.core.client import ModelClient
from harness.core.prompts import extract_answer, render_student_turn1, render_student_turn2
from harness.core.registry import Task
from harness.core.sampling import Combination
from harness.core.store import AnswerKey, Generation, RunStore
from judges.grader import Grader, request_seed, sampling_params


@dataclass(frozen=True)
class Conversation:
    task: Task
    combination: Combination
    student: str
    generation_round: int

    @property
    def key(self) -> AnswerKey:
        return AnswerKey(self.task.name, self.combination.index, self.student, self.generation_round)


@dataclass
class Plan:
    """What is still to do: conversations to generate and grading runs to do."""

    generate: list[Conversation] = field(default_factory=list)
    grade: dict[AnswerKey, list[tuple[str, int]]] = field(default_factory=dict)  # answer -> (judge, run)
    conversations: dict[AnswerKey, Conversation] = field(default_factory=dict)

    @property
    def n_generations(self) -> int:
        return len(self.generate)

    @property
    def n_grades(self) -> int:
        return sum(len(runs) for runs in self.grade.values())

    @property
    def empty(self) -> bool:
        return not (self.generate or self.grade)

    def students_needed(self) -> set[str]:
        return {conversation.student for conversation in self.generate}

    def judges_needed(self) -> set[str]:
        return {judge for runs in self.grade.values() for judge, _ in runs}


def plan_work(store: RunStore, tasks: Sequence[Task], students: Sequence[str], judges: Sequence[str]) -> Plan:
    """Every conversation and grading run that the store does not hold yet."""
    done_generations = store.generation_keys()
    done_grades = store.grade_keys()
    plan = Plan()
    for task in tasks:
        for combination in task.combinations():
            for student in students:
                for generation_round in range(task.generation_rounds):
                    conversation = Conversation(task, combination, student, generation_round)
                    key = conversation.key
                    if key not in done_generations:
                        plan.generate.append(conversation)
                    missing = [
                        (judge, run)
                        for judge in judges
                        for run in range(task.grading_runs)
                        if (key, judge, run) not in done_grades
                    ]
                    if missing:
                        plan.grade[key] = missing
                    if key not in done_generations or missing:
                        plan.conversations[key] = conversation
    return plan


async def generate(client: ModelClient, conversation: Conversation) -> Generation:
    """The two SKILL-MIX student turns in one conversation; the graded text is what follows
    "Answer:" in the second reply (the whole reply when it has none, counted as unmarked)."""
    task, combination = conversation.task, conversation.combination
    turn1 = render_student_turn1(task, combination)
    turn2 = render_student_turn2(task, combination)
    base = (task.seed, task.name, combination.index, conversation.generation_round)
    first_sampling = sampling_params(task.student_sampling, request_seed(*base, 1))
    second_sampling = sampling_params(task.student_sampling, request_seed(*base, 2))
    messages = [{"role": "user", "content": turn1}]
    first = await client.chat(messages, first_sampling, conversation.generation_round)
    messages += [{"role": "assistant", "content": first.text}, {"role": "user", "content": turn2}]
    second = await client.chat(messages, second_sampling, conversation.generation_round)
    answer = extract_answer(second.text)
    return Generation(
        key=conversation.key,
        turn1_prompt=turn1,
        turn1_reply=first.text,
        turn2_prompt=turn2,
        turn2_reply=second.text,
        answer=answer if answer is not None else second.text.strip(),
        answer_marked=answer is not None,
        finish_reason=second.finish_reason,
        sampling={"turn1": client.sent_sampling(first_sampling), "turn2": client.sent_sampling(second_sampling)},
    )


# How a student answers one conversation: ``generate`` with its model client, or code (harness.rules_teacher).
Writer = Callable[[Conversation], Awaitable[Generation]]


def model_writer(client: ModelClient) -> Writer:
    """A student that answers through its model client."""

    async def write(conversation: Conversation) -> Generation:
        return await generate(client, conversation)

    return write


class Runner:
    """Does a plan: generates with the students' writers, grades with the judges' graders."""

    def __init__(
        self,
        store: RunStore,
        students: Mapping[str, Writer],
        graders: Mapping[str, Grader],
        *,
        on_generated: Callable[[], None] = lambda: None,
        on_graded: Callable[[], None] = lambda: None,
    ):
        self.store = store
        self.students = students
        self.graders = graders
        self.on_generated = on_generated
        self.on_graded = on_graded

    async def run(self, plan: Plan) -> None:
        pending = {conversation.key for conversation in plan.generate}
        stored = {g.key: g for g in self.store.generations()} if len(pending) < len(plan.conversations) else {}
        await asyncio.gather(
            *(self._conversation(conversation, stored.get(key), plan.grade.get(key, []))
              for key, conversation in plan.conversations.items())
        )  # fmt: skip

    async def _conversation(
        self, conversation: Conversation, generation: Generation | None, grading: list[tuple[str, int]]
    ) -> None:
        if generation is None:
            generation = await self.students[conversation.student](conversation)
            self.store.add_generation(generation)
            self.on_generated()
        await asyncio.gather(*(self._grade(conversation, generation, judge, run) for judge, run in grading))

    async def _grade(self, conversation: Conversation, generation: Generation, judge: str, grading_run: int) -> None:
        grade = await self.graders[judge].grade(
            conversation.task, conversation.combination, generation.answer, generation.key, grading_run
        )
        self.store.add_grade(grade)
        self.on_graded()
