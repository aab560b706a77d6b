"""Grade one answer with one judge: the only grading path (runs, generate-data and the adversarial check).

One grading run of one answer is:

1. render the grading prompt from the task's prompt version, in the judge's
   reply style (judges.styles), with the answer fenced between marker lines;
2. ask the judge, under the style's reply regex when the judge is constrained;
3. parse the reply (the style's parser first, then the others);
4. if the reply is not usable (a skill, topic or sense value missing), ask
   again, warmer (at least RETRY_TEMPERATURE, since a greedy judge would only
   repeat itself) and as a new sample, up to ``max_attempts`` asks;
5. return a ``Grade`` holding the prompt, the last raw reply, the judge's own
   values (before any code-side correction, which scoring applies), whether
   they are usable, how many asks it took and the sampling sent. A reply that
   never parses is a Grade with ``usable`` false: unscored, never a zero.

The rule judge (``--judge rules``, a model-free judge) takes the same path up to
the ask: instead of a model, ``judges.rules.grade_answer`` decides every point
exactly. Its Grade holds the same rubric layout, a reply in the per-item format
whose justification lines are the checks' reasons, one attempt and no sampling
(nothing was sent). Its values are the raw checks; scoring applies the sentence
override and the name penalty to them as to any judge's.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from harness.core.client import ModelClient, SamplingParams
from harness.core.errors import HarnessError
from harness.core.prompt_files import plural, render
from harness.core.prompts import sentence_limit
from harness.core.reference_prompts import reference_fields
from harness.core.registry import Task
from harness.core.sampling import Combination
from harness.core.store import AnswerKey, Grade
from judges import reference_rules
from judges.registry import Judge
from judges.rubric import rubric_lines
from judges.rules import grade_answer, rule_world
from judges.styles import ReplyStyle, get_style, read_reply

BEGIN_MARKER = "<<<BEGIN STUDENT TEXT>>>"
END_MARKER = "<<<END STUDENT TEXT>>>"
RETRY_TEMPERATURE = 0.7
DEFAULT_MAX_ATTEMPTS = 3


def request_seed(*parts: object) -> int:
    """A stable per-request sampling seed (vLLM honours it; OpenAI treats it as best effort)."""
    digest = hashlib.sha256(":".join(str(part) for part in parts).encode()).digest()
    return int.from_bytes(digest[:4], "big") & 0x7FFFFFFF


def sampling_params(values: dict, seed: int | None, *, min_temperature: float | None = None) -> SamplingParams:
    """SamplingParams from a resolved sampling mapping (task defaults with overrides)."""
    temperature = float(values.get("temperature", 0.7))
    if min_temperature is not None:
        temperature = max(temperature, min_temperature)
    return SamplingParams(
        temperature=temperature,
        max_tokens=int(values.get("max_tokens", 512)),
        top_p=float(values.get("top_p", 1.0)),
        seed=seed,
    )


def fence(answer: str) -> str:
    """The answer with the marker lines removed, so it cannot close its block early and speak to the judge."""
    for marker in (BEGIN_MARKER, END_MARKER):
        answer = answer.replace(marker, "[marker removed]")
    return answer.strip()


def render_grading_prompt(task: Task, combination: Combination, answer: str, style: str | None = None) -> str:
    """The judge prompt for one answer in one reply style (default: the task's)."""
    style = style or task.grading_style
    skills = combination.skills
    definitions = "\n".join(f"- {name}: {task.catalog.skill(name).definition}" for name in skills)
    rubric = rubric_lines(skills, combination.topic)
    # A prompt version made from the reference's own files (--prompts-from) uses its field names.
    fields = reference_fields(
        [task.catalog.skill(name) for name in skills], combination.topic, sentence_limit(len(skills))
    )
    return render(
        task.prompt_dir,
        get_style(style).template,
        **fields,
        student_answer=answer,
        rubric_items=reference_rules.rubric_items(skills, combination.topic, style),
        skill_count=plural(len(skills), "skill"),
        sentence_count=plural(sentence_limit(len(skills)), "sentence"),
        skill_definitions=definitions,
        answer=fence(answer),
        item_count=str(len(rubric)),
        rubric="\n".join(f"{number}. {line}" for number, line in enumerate(rubric, start=1)),
    )


def exact_reply(lines: Sequence[str], points: Sequence[int], reasons: Sequence[str]) -> str:
    """The rule judge's reply, in the per-item format: item, the check's reason, the point; then the grade."""
    body = "".join(
        f"{number}. {line}\n{reason}\nPoint earned: {point}\n"
        for number, (line, point, reason) in enumerate(zip(lines, points, reasons, strict=True), start=1)
    )
    return f"{body}Grade: {sum(points)}"


def check_judge_task(judge: Judge, task: Task) -> None:
    """Fail before any work when a model-free (rule) judge is given a task outside the rule world."""
    if judge.model.model_free:
        rule_world(task.catalog, f"--judge {judge.name} on task {task.name}")


class Grader:
    """One judge's grading path."""

    def __init__(self, judge: Judge, client: ModelClient | None, *, max_attempts: int = DEFAULT_MAX_ATTEMPTS):
        if max_attempts < 1:
            raise ValueError(f"max_attempts must be at least 1, got {max_attempts}")
        if client is None and not judge.model.model_free:
            raise HarnessError(f"judge {judge.name} grades with a model, so it needs a connected client")
        self.judge = judge
        self.client = client
        self.max_attempts = max_attempts

    def style(self, task: Task) -> ReplyStyle:
        return get_style(self.judge.style_for(task.grading_style), f"judge {self.judge.name}")

    def _regex(self, style: ReplyStyle, skills: Sequence[str], topic: str) -> str | None:
        if not self.judge.constrained:
            return None
        if style.reply_regex is None:
            raise ValueError(f"judge {self.judge.name} is constrained, but style {style.name} offers no reply regex")
        return style.reply_regex(skills, topic)

    async def grade(self, task: Task, combination: Combination, answer: str, key: AnswerKey, grading_run: int) -> Grade:
        """Grading run ``grading_run`` of the answer ``key`` (see the module docstring)."""
        if self.judge.model.model_free:
            return self._grade_exactly(task, combination, answer, key, grading_run)
        assert self.client is not None  # checked in __init__
        style = self.style(task)
        prompt = render_grading_prompt(task, combination, answer, style.name)
        messages = [{"role": "user", "content": prompt}]
        regex = self._regex(style, combination.skills, combination.topic)
        base = self.judge.sampling_for(task.judge_sampling)
        reading = None
        reply_text = ""
        output_tokens: list[int | None] = []
        sampling = sampling_params(base, None)
        attempt = 0
        while attempt < self.max_attempts:
            seed = request_seed(
                task.seed, task.name, combination.index, key.generation_round, self.judge.name, grading_run, attempt
            )
            sampling = sampling_params(base, seed, min_temperature=RETRY_TEMPERATURE if attempt else None)
            reply = await self.client.chat(messages, sampling, sample_index=grading_run * 1000 + attempt, regex=regex)
            attempt += 1
            reply_text = reply.text
            output_tokens.append(reply.output_tokens)
            reading = read_reply(reply.text, combination.skills, combination.topic, style.name)
            if reading.score.usable:
                break
        assert reading is not None  # max_attempts >= 1
        sent = self.client.sent_sampling(sampling) | ({"regex": True} if regex else {})
        return Grade(
            key=key,
            judge=self.judge.name,
            grading_run=grading_run,
            style=style.name,
            prompt=prompt,
            reply=reply_text,
            attempts=attempt,
            points=reading.score.points,
            usable=reading.score.usable,
            sampling=sent,
            output_tokens=tuple(output_tokens),
        )

    def _grade_exactly(
        self, task: Task, combination: Combination, answer: str, key: AnswerKey, grading_run: int
    ) -> Grade:
        world = rule_world(task.catalog, f"--judge {self.judge.name} on task {task.name}")
        # Raw checks, no name penalty: scoring applies it (or not) as for every judge.
        graded = grade_answer(world, combination.skills, combination.topic, answer, name_penalty=False)
        points = graded.points
        reply = exact_reply(
            rubric_lines(combination.skills, combination.topic), points, [item.reason for item in graded.items]
        )
        return Grade(
            key=key,
            judge=self.judge.name,
            grading_run=grading_run,
            style="items",
            prompt=f"(no prompt: the rule judge runs the checks of {task.catalog.sources[0]})",
            reply=reply,
            attempts=1,
            points=tuple(float(point) for point in points),
            usable=True,
            sampling=None,
        )
