"""What `harness bench` measures: the harness, the servers' ceilings and a one-at-a-time loop, on the same servers.

- (a) *harness*: ``harness run`` as a user runs it (a subprocess, cache off) against
  running servers, planning, the run store and the reports included.
- (b) *ceiling*: the requests (a) sent, read back from its run store (both
  student turns, the second carrying the recorded first reply; every ask of
  every grading run, with its regex when the judge was constrained; the
  sampling sent) with each reply's recorded length forced on the server
  (``min_tokens`` = ``max_tokens`` = that length), all sent at once by a bare
  async client under the same per-endpoint limit. The servers do the same
  work, with nothing of ours around it and no turn waiting for another.
- (c) *sequential*: the same requests one at a time, as the SKILL-MIX reference
  code sends them. That takes long, so a seeded random sample is timed and
  extrapolated to all requests when asked.
- (d) *waiting ceiling*: the same requests from the same bare client, each sent
  the moment the reply it depends on is back (a second turn after its first,
  grading after the answer), first come first served. Any client that must wait
  for replies, as a real run must, is bounded by (b); (d) shows how much of (b)
  a plain one keeps, so (a)/(d) is the harness's own part of the gap.

Replays go in the order a run plans its work, not the order the run stored it:
that order would tell the replay which answers came out short.

Nothing here prints; the command line (harness.cli.bench) does.
"""

from __future__ import annotations

import asyncio
import os
import random
import resource
import secrets
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import openai

from harness.core.errors import HarnessError
from harness.core.models import Endpoint
from harness.core.store import AnswerKey, RunStore
from judges.styles import get_style


@dataclass(frozen=True)
class ReplayRequest:
    """One request of a run, as the ceiling and the sequential loop send it again."""

    model: str  # the run's name for the model that answered
    messages: tuple[Mapping[str, str], ...]
    sampling: Mapping[str, Any]  # as the run sent it (temperature, top_p, seed); max_tokens is replaced
    output_tokens: int  # what the server generated for it in the run, forced again
    regex: str | None = None  # the reply regex of a constrained judge


@dataclass(frozen=True)
class Measurement:
    """Wall time of one way of doing a run's requests."""

    name: str
    wall_s: float
    requests: int
    output_tokens: int
    timed_requests: int | None = None  # when fewer requests than ``requests`` were timed and wall_s is extrapolated

    @property
    def extrapolated(self) -> bool:
        return self.timed_requests is not None and self.timed_requests < self.requests

    @property
    def requests_per_s(self) -> float:
        return self.requests / self.wall_s if self.wall_s > 0 else 0.0

    @property
    def tokens_per_s(self) -> float:
        return self.output_tokens / self.wall_s if self.wall_s > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "wall_s": round(self.wall_s, 3),
            "requests": self.requests,
            "output_tokens": self.output_tokens,
            "requests_per_s": round(self.requests_per_s, 3),
            "tokens_per_s": round(self.tokens_per_s, 1),
            "timed_requests": self.timed_requests if self.timed_requests is not None else self.requests,
            "extrapolated": self.extrapolated,
        }


@dataclass(frozen=True)
class ReplayConversation:
    """One answer's requests in the order they wait for each other: the two student turns, then
    its grading runs, each a chain of asks (an ask was repeated only after an unusable reply)."""

    key: AnswerKey
    turns: tuple[ReplayRequest, ...]
    grading: tuple[tuple[ReplayRequest, ...], ...]

    def requests(self) -> list[ReplayRequest]:
        return [*self.turns, *(ask for chain in self.grading for ask in chain)]


def replay_conversations(store: RunStore) -> list[ReplayConversation]:
    """Every request a run sent, with the length of the reply it got, grouped by the answer it belongs to."""
    turns: dict[AnswerKey, tuple[ReplayRequest, ...]] = {}
    for generation in store.generations():
        if generation.sampling is None or generation.output_tokens is None or None in generation.output_tokens:
            raise _no_counts(store)
        first = ({"role": "user", "content": generation.turn1_prompt},)
        second = (*first, {"role": "assistant", "content": generation.turn1_reply},
                  {"role": "user", "content": generation.turn2_prompt})  # fmt: skip
        turns[generation.key] = tuple(
            ReplayRequest(generation.key.student, messages, generation.sampling[turn], tokens)
            for messages, turn, tokens in zip(
                (first, second), ("turn1", "turn2"), generation.output_tokens, strict=True
            )
        )
    grading: dict[AnswerKey, list[tuple[str, int, tuple[ReplayRequest, ...]]]] = {key: [] for key in turns}
    combinations = {task: store.combinations(task) for task in store.task_configs()}
    for grade in store.grades():
        if grade.sampling is None or grade.output_tokens is None or None in grade.output_tokens:
            raise _no_counts(store)
        regex = None
        if grade.sampling.get("regex"):
            skills, topic = combinations[grade.key.task][grade.key.combination]
            style = get_style(grade.style)
            regex = style.reply_regex(skills, topic) if style.reply_regex else None
        sampling = {key: value for key, value in grade.sampling.items() if key != "regex"}
        # Every ask of the grading run; asks before the last differed only in temperature and seed.
        asks = tuple(ReplayRequest(grade.judge, ({"role": "user", "content": grade.prompt},), sampling, tokens, regex)
                     for tokens in grade.output_tokens)  # fmt: skip
        grading.setdefault(grade.key, []).append((grade.judge, grade.grading_run, asks))
    # In the order `harness run` plans its work (combination, student, round; judge, grading run), not
    # the order the run stored it in: that order knows which answers came out short.
    return [
        ReplayConversation(
            key, turns.get(key, ()), tuple(asks for *_, asks in sorted(grading[key], key=lambda g: g[:2]))
        )
        for key in sorted(grading)
    ]


def replay_requests(store: RunStore) -> list[ReplayRequest]:
    """Every request a run sent, with the length of the reply it got, from its run store."""
    return requests_of(replay_conversations(store))


def requests_of(conversations: Sequence[ReplayConversation]) -> list[ReplayRequest]:
    """The conversations' requests in one list: every student turn, then every grading ask."""
    return [*(turn for replay in conversations for turn in replay.turns),
            *(ask for replay in conversations for chain in replay.grading for ask in chain)]  # fmt: skip


def _no_counts(store: RunStore) -> HarnessError:
    return HarnessError(
        f"the run in {store.run_dir} lacks the token counts of some replies (made from the cache or by an older "
        "harness); benchmark a run made with --no-cache"
    )


class _Sender:
    """A bare async client: one AsyncOpenAI and one semaphore per endpoint, replicas taken in turn.

    Its requests carry a fresh ``cache_salt``, so vLLM's prefix cache cannot serve them from the
    prompts of the harness run before: they share prefixes only among themselves, as the run's did.
    """

    def __init__(self, endpoints: Mapping[str, Sequence[Endpoint]], limits: Mapping[str, int]):
        self._salt = secrets.token_hex(16)
        self._endpoints = endpoints
        self._clients = {
            endpoint.base_url: openai.AsyncOpenAI(base_url=endpoint.base_url, api_key=endpoint.api_key, max_retries=2,
                                                  timeout=600)
            for replicas in endpoints.values() for endpoint in replicas
        }  # fmt: skip
        self._limits = {
            endpoint.base_url: asyncio.Semaphore(limits[model])
            for model, replicas in endpoints.items() for endpoint in replicas
        }  # fmt: skip
        self._turn = {model: 0 for model in endpoints}

    async def send(self, request: ReplayRequest) -> int:
        """Send one request with its length forced; the tokens the server says it generated."""
        replicas = self._endpoints[request.model]
        endpoint = replicas[self._turn[request.model] % len(replicas)]
        self._turn[request.model] += 1
        extra: dict[str, Any] = {"min_tokens": request.output_tokens, "cache_salt": self._salt}
        if request.regex is not None:
            extra["structured_outputs"] = {"regex": request.regex}
        sampling = {key: request.sampling[key] for key in ("temperature", "top_p", "seed") if key in request.sampling}
        async with self._limits[endpoint.base_url]:
            completion = await self._clients[endpoint.base_url].chat.completions.create(
                model=endpoint.model, messages=list(request.messages), max_tokens=max(1, request.output_tokens),
                extra_body=extra, **sampling,
            )  # fmt: skip
        return completion.usage.completion_tokens if completion.usage else 0

    async def aclose(self) -> None:
        for client in self._clients.values():
            await client.close()


def ceiling(
    requests: Sequence[ReplayRequest], endpoints: Mapping[str, Sequence[Endpoint]], limits: Mapping[str, int]
) -> Measurement:
    """(b): every request at once, at most ``limits[model]`` in flight per endpoint."""

    async def go() -> tuple[float, int]:
        sender = _Sender(endpoints, limits)
        try:
            start = time.perf_counter()
            tokens = await asyncio.gather(*(sender.send(request) for request in requests))
            return time.perf_counter() - start, sum(tokens)
        finally:
            await sender.aclose()

    wall, tokens = asyncio.run(go())
    return Measurement("ceiling", wall, len(requests), tokens)


def waiting_ceiling(
    conversations: Sequence[ReplayConversation], endpoints: Mapping[str, Sequence[Endpoint]], limits: Mapping[str, int]
) -> Measurement:
    """(d): the same requests, each sent the moment the reply it depends on is back: a conversation's
    second turn after its first, its grading runs after the second turn, an ask after the ask before
    it. Every conversation starts at once, under the same per-endpoint limits, first come first
    served. It is one plain policy, not a bound: a client that orders its requests better can beat
    it (the harness's priority slots do). Its gap to (b) is what waiting for replies costs that policy.
    Reported as the "waiting ceiling"; ``waiting`` in bench.json."""

    async def go() -> tuple[float, int]:
        sender = _Sender(endpoints, limits)

        async def chain(requests: Sequence[ReplayRequest]) -> int:
            tokens = 0
            for request in requests:
                tokens += await sender.send(request)
            return tokens

        async def conversation(replay: ReplayConversation) -> int:
            tokens = await chain(replay.turns)
            return tokens + sum(await asyncio.gather(*(chain(asks) for asks in replay.grading)))

        try:
            start = time.perf_counter()
            tokens = await asyncio.gather(*(conversation(replay) for replay in conversations))
            return time.perf_counter() - start, sum(tokens)
        finally:
            await sender.aclose()

    wall, tokens = asyncio.run(go())
    return Measurement("waiting", wall, sum(len(replay.requests()) for replay in conversations), tokens)


def sequential(
    requests: Sequence[ReplayRequest], endpoints: Mapping[str, Sequence[Endpoint]], sample: int | None, seed: int = 0
) -> Measurement:
    """(c): one request at a time; with ``sample``, that many drawn at random, the time scaled to all requests."""
    timed = list(requests)
    if sample is not None and sample < len(timed):
        timed = random.Random(seed).sample(timed, sample)

    async def go() -> float:
        sender = _Sender(endpoints, {model: 1 for model in endpoints})
        try:
            start = time.perf_counter()
            for request in timed:
                await sender.send(request)
            return time.perf_counter() - start
        finally:
            await sender.aclose()

    wall = asyncio.run(go())
    scale = len(requests) / len(timed) if timed else 0.0
    # The time is the sample's, scaled to all requests; the tokens are those of all requests.
    return Measurement("sequential", wall * scale, len(requests), _tokens(requests), timed_requests=len(timed))


@dataclass(frozen=True)
class HarnessRun:
    """(a): one `harness run` against running servers, cache off."""

    command: list[str]
    out: Path
    wall_s: float
    cpu_s: float  # CPU time of the harness process itself (user + system): what it costs beside the servers


def harness_run(
    task: str,
    combinations: int,
    students: Mapping[str, Sequence[Endpoint]],
    judges: Mapping[str, Sequence[Endpoint]],
    out: Path,
    *,
    api_key: str,
    constrained_judges: bool,
    max_concurrency: int | None,
    log: Path,
) -> HarnessRun:
    """Time `harness run TASK` in a fresh process against the given servers (URLs), from start to exit."""
    command = [sys.executable, "-m", "harness", "run", task, "--combinations", str(combinations), "--out", str(out),
               "--no-cache"]  # fmt: skip
    for option, models in (("--student", students), ("--judge", judges)):
        for name, replicas in models.items():
            command += [option, f"{name}=" + ",".join(endpoint.base_url for endpoint in replicas)]
    if constrained_judges:
        command.append("--constrained-judges")
    if max_concurrency is not None:
        command += ["--max-concurrency", str(max_concurrency)]
    env = {**os.environ, "VLLM_API_KEY": api_key}
    with open(log, "w") as output:
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        finished = subprocess.run(command, env=env, stdout=output, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        wall = time.perf_counter() - start
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if finished.returncode != 0:
        raise HarnessError(f"`harness run` failed with exit code {finished.returncode}; see {log}")
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    return HarnessRun(command, out, wall, cpu)


def _tokens(requests: Sequence[ReplayRequest]) -> int:
    return sum(request.output_tokens for request in requests)


def warm_up(
    endpoints: Mapping[str, Sequence[Endpoint]],
    limits: Mapping[str, int],
    regexes: Mapping[str, Sequence[str]],
    requests_per_endpoint: int = 16,
) -> None:
    """Short requests to every endpoint, and one per reply regex a judge will be asked under, so that
    neither the harness nor the ceiling pays for a server's first requests or first compilation of a
    grammar (vLLM keeps compiled grammars)."""
    warm = [
        ReplayRequest(
            model, ({"role": "user", "content": f"Warm-up {index}: say something."},), {"temperature": 0.7}, 16
        )
        for model, replicas in endpoints.items()
        for index in range(requests_per_endpoint * len(replicas))
    ]
    warm += [
        ReplayRequest(model, ({"role": "user", "content": "Warm-up: grade nothing."},), {"temperature": 0.7}, 1, regex)
        for model, model_regexes in regexes.items()
        for regex in dict.fromkeys(model_regexes)
    ]
    ceiling(warm, endpoints, limits)


@dataclass(frozen=True)
class Repeat:
    """The three measurements of one repeat, on the same servers, one after the other."""

    harness: Measurement
    ceiling: Measurement
    waiting: Measurement
    sequential: Measurement
    load_average_1m: float  # the machine's load when the repeat ended: other work slows every figure
    harness_cpu_s: float  # CPU time of the `harness run` process

    @property
    def harness_over_ceiling(self) -> float:
        """1.00: the harness does its requests as fast as the servers can."""
        return self.ceiling.wall_s / self.harness.wall_s

    @property
    def harness_over_waiting(self) -> float:
        """1.00: the harness is as fast as a bare client that, like it, waits for the replies it needs."""
        return self.waiting.wall_s / self.harness.wall_s

    @property
    def waiting_over_ceiling(self) -> float:
        """What waiting for replies leaves of the ceiling, whoever sends the requests."""
        return self.ceiling.wall_s / self.waiting.wall_s

    @property
    def sequential_over_harness(self) -> float:
        return self.sequential.wall_s / self.harness.wall_s

    @property
    def sequential_over_ceiling(self) -> float:
        return self.sequential.wall_s / self.ceiling.wall_s

    def to_dict(self) -> dict[str, Any]:
        return {
            "harness": self.harness.to_dict(),
            "ceiling": self.ceiling.to_dict(),
            "waiting": self.waiting.to_dict(),
            "sequential": self.sequential.to_dict(),
            "harness_cpu_s": round(self.harness_cpu_s, 2),
            **{ratio: round(getattr(self, ratio), 4) for ratio in RATIOS},
            "load_average_1m": round(self.load_average_1m, 2),
        }


RATIOS = (
    "harness_over_ceiling",
    "harness_over_waiting",
    "waiting_over_ceiling",
    "sequential_over_harness",
    "sequential_over_ceiling",
)


@dataclass(frozen=True)
class BenchResult:
    """Every repeat of one bench; the ratios are summarised by their median and range."""

    task: str
    combinations: int
    limits: Mapping[str, int]
    repeats: Sequence[Repeat]
    harness_command: list[str]
    load_average_1m_at_start: float

    def ratio(self, name: str) -> tuple[float, float, float]:
        """(median, lowest, highest) of one of RATIOS over the repeats."""
        values = [getattr(repeat, name) for repeat in self.repeats]
        return statistics.median(values), min(values), max(values)

    def to_dict(self) -> dict[str, Any]:
        summary: dict[str, Any] = {}
        for name in RATIOS:
            median, low, high = self.ratio(name)
            summary[name] = round(median, 4)
            summary[f"{name}_range"] = [round(low, 4), round(high, 4)]
        return {
            "task": self.task,
            "combinations": self.combinations,
            "per_endpoint_limit": dict(self.limits),
            "harness_command": self.harness_command,
            **summary,
            "repeats": [repeat.to_dict() for repeat in self.repeats],
            "machine": {
                "cpus": os.cpu_count(),
                "load_average_1m_at_start": round(self.load_average_1m_at_start, 2),
                "load_average_1m_at_end": round(self.repeats[-1].load_average_1m, 2),
            },
        }


def run_bench(
    task: str,
    combinations: int,
    *,
    students: Mapping[str, Sequence[Endpoint]],
    judges: Mapping[str, Sequence[Endpoint]],
    limits: Mapping[str, int],
    regexes: Mapping[str, Sequence[str]],
    out: Path,
    api_key: str,
    constrained_judges: bool,
    max_concurrency: int | None,
    sequential_sample: int | None,  # requests timed one at a time; None: all (the CLI holds the default)
    repeats: int = 1,
    on_step: Callable[[str], None] = lambda message: None,
) -> BenchResult:
    """Warm the servers up, then ``repeats`` times: (a), (b) on (a)'s requests, and (c), all on the given servers.

    Each repeat makes its own run (OUT/run-1, OUT/run-2, ...), so (b) and (c) replay the requests of the
    (a) they are compared with.
    """
    endpoints = {**students, **judges}
    load_at_start = os.getloadavg()[0]
    on_step("warming up the servers")
    warm_up(endpoints, limits, regexes)
    done: list[Repeat] = []
    command: list[str] = []
    for index in range(1, repeats + 1):
        step = f"[{index}/{repeats}] " if repeats > 1 else ""
        run_dir = out / f"run-{index}"
        on_step(f"{step}(a) harness run -> {run_dir}")
        run = harness_run(task, combinations, students, judges, run_dir, api_key=api_key,
                          constrained_judges=constrained_judges, max_concurrency=max_concurrency,
                          log=out / f"run-{index}.log")  # fmt: skip
        command = command or run.command
        store = RunStore(run_dir, create=False)
        try:
            conversations = replay_conversations(store)
        finally:
            store.close()
        requests = requests_of(conversations)
        harness = Measurement("harness", run.wall_s, len(requests), _tokens(requests))
        on_step(f"{step}(b) ceiling: the {len(requests)} requests of that run, all at once")
        top = ceiling(requests, endpoints, limits)
        on_step(f"{step}(d) the same requests, each sent when the reply it waits for is back")
        waiting = waiting_ceiling(conversations, endpoints, limits)
        timed = len(requests) if sequential_sample is None else min(sequential_sample, len(requests))
        on_step(f"{step}(c) one at a time: {timed} of {len(requests)} requests")
        # Each repeat times another sample, so the range also shows how much the sample matters.
        one_by_one = sequential(requests, endpoints, sequential_sample, seed=index)
        done.append(Repeat(harness, top, waiting, one_by_one, os.getloadavg()[0], run.cpu_s))
    return BenchResult(task, combinations, dict(limits), done, command, load_at_start)
