"""The one async path for every model call: vLLM servers and the OpenAI API.

A client serves one connected `Model` (harness.core.models): an identity for
the cache and one or more OpenAI-compatible endpoints (replicas). A call is answered
from the SQLite cache when it can be; otherwise it goes to the least busy
endpoint, through that endpoint's limit of requests in flight (the only
concurrency limit in the project; harness.core.slots lets a call's priority
decide who goes next), with a timeout, and with retries on connection errors, timeouts,
429 and 5xx, and on bodies that are not chat completions, backing off
exponentially with full jitter and honouring Retry-After.

An endpoint that refuses or drops a connection is set aside for a while
(``DOWN_FOR``) as long as another one is up: a dead replica fails at once, so it
always looks least busy and would otherwise draw every retry until none is left.
An endpoint whose server is known to have stopped (``server_stopped``: one the
harness started, whose process exited) is set aside for good, and a call fails
at once when every endpoint is such: retrying could not bring it back.

A cache-only client (``cache_only=True``) needs no server: it answers from the
cache or raises ``CacheMiss``, so a run can take everything the cache holds
before it decides which servers it still needs.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import math
import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, replace

import openai

from harness.core.cache import CachedReply, ResponseCache, cache_key
from harness.core.errors import HarnessError
from harness.core.models import Endpoint, Model
from harness.core.slots import PrioritySlots


@dataclass(frozen=True)
class SamplingParams:
    temperature: float = 0.7
    max_tokens: int = 512
    top_p: float = 1.0
    seed: int | None = None

    def as_dict(self) -> dict[str, object]:
        return {key: value for key, value in asdict(self).items() if value is not None}


@dataclass(frozen=True)
class Reply:
    text: str
    finish_reason: str | None
    cached: bool
    output_tokens: int | None = None  # what the server generated; None from the cache or when it does not say


@dataclass
class RetryPolicy:
    max_retries: int = 6
    base_delay: float = 1.0
    max_delay: float = 60.0
    timeout: float = 600.0

    def delay(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(retry_after, self.max_delay)
        return random.uniform(0, min(self.max_delay, self.base_delay * 2**attempt))


# Seconds an endpoint that failed to connect is passed over while another endpoint is up.
DOWN_FOR = 30.0

RETRYABLE = (openai.APIConnectionError, openai.APITimeoutError, openai.RateLimitError, openai.InternalServerError)


def _retry_after(error: Exception) -> float | None:
    response = getattr(error, "response", None)
    header = response.headers.get("retry-after") if response is not None else None
    if not header:
        return None
    try:
        return max(0.0, float(header))
    except ValueError:
        parsed = email.utils.parsedate_to_datetime(header)
        return max(0.0, parsed.timestamp() - time.time()) if parsed else None


class CacheMiss(Exception):
    """A cache-only client was asked for a reply that its cache does not hold."""


class MalformedReply(ValueError):
    """A response body that is not a chat completion; retried like a server error, since proxies send those."""


def read_completion(body: bytes) -> tuple[str, str | None]:
    """The reply text and finish reason in a chat-completion response body.

    A missing (null) content is an empty reply; anything that is not a chat completion
    raises MalformedReply saying what it is.
    """
    text, finish_reason, _ = read_completion_and_tokens(body)
    return text, finish_reason


def read_completion_and_tokens(body: bytes) -> tuple[str, str | None, int | None]:
    """As read_completion, with the tokens the server says it generated (None when it does not say)."""
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        raise MalformedReply(f"not JSON: {_preview(body)}") from None
    if not isinstance(data, dict):
        raise MalformedReply(f"a JSON {type(data).__name__}: {_preview(body)}")
    choices = data.get("choices")
    if not isinstance(choices, list) or not choices:
        error = data.get("error")
        raise MalformedReply(
            f"an error: {_preview(json.dumps(error).encode())}" if error else f"no choices: {_preview(body)}"
        )
    choice = choices[0]
    message = choice.get("message") if isinstance(choice, dict) else None
    if not isinstance(message, dict):
        raise MalformedReply(f"a choice without a message: {_preview(body)}")
    content, finish_reason = message.get("content"), choice.get("finish_reason")
    if not isinstance(content, str | None) or not isinstance(finish_reason, str | None):
        raise MalformedReply(f"a content or finish_reason that is not text: {_preview(body)}")
    usage = data.get("usage")
    tokens = usage.get("completion_tokens") if isinstance(usage, dict) else None
    return content or "", finish_reason, tokens if isinstance(tokens, int) and not isinstance(tokens, bool) else None


def _preview(body: bytes, limit: int = 120) -> str:
    text = body[:limit].decode("utf-8", errors="replace")
    return repr(text + ("..." if len(body) > limit else ""))


@dataclass
class _EndpointState:
    endpoint: Endpoint
    slots: PrioritySlots
    client: openai.AsyncOpenAI
    in_flight: int = 0
    down_until: float = 0.0  # time.monotonic() before which this endpoint is passed over (if another is up)


@dataclass
class ClientStats:
    requests: int = 0  # sent to a server, retries included
    cache_hits: int = 0
    retries: int = 0


class ModelClient:
    """Cached, rate-limited, retrying chat completions for one connected `Model`."""

    def __init__(
        self,
        model: Model,
        cache: ResponseCache | None,
        policy: RetryPolicy | None = None,
        *,
        cache_only: bool = False,
        server_stopped: Callable[[Endpoint], bool] = lambda endpoint: False,
    ):
        if model.identity is None or not (model.endpoints or cache_only):
            raise HarnessError(f"the {model.role} model {model.name} is not connected (no endpoint or identity)")
        if cache_only and cache is None:
            raise ValueError("a cache-only client needs a cache")
        self.model = model
        self.cache = cache
        self.cache_only = cache_only
        self.policy = policy or RetryPolicy()
        # Whether the server behind an endpoint is known to have stopped (a server we started whose
        # process exited): no retry can reach it, so a call fails at once instead of backing off.
        self.server_stopped = server_stopped
        self.stats = ClientStats()
        self._states: list[_EndpointState] | None = None

    def _endpoint_states(self) -> list[_EndpointState]:
        # Created lazily so the semaphores and HTTP clients bind to the running event loop.
        if self._states is None:
            self._states = [
                _EndpointState(
                    endpoint=endpoint,
                    slots=PrioritySlots(self.model.concurrency),
                    client=openai.AsyncOpenAI(
                        base_url=endpoint.base_url,
                        api_key=endpoint.api_key,
                        max_retries=0,
                        timeout=self.policy.timeout,
                    ),
                )
                for endpoint in self.model.endpoints
            ]
        return self._states

    def key(
        self,
        messages: Sequence[Mapping[str, str]],
        sampling: SamplingParams,
        sample_index: int,
        regex: str | None = None,
    ) -> str:
        parameters = sampling.as_dict() | ({"regex": regex} if regex else {})
        return cache_key(self.model.identity, messages, parameters, sample_index)

    def effective(self, sampling: SamplingParams) -> SamplingParams:
        """The sampling this client really sends: without the seed where seeds are off."""
        return sampling if self.model.seeded or sampling.seed is None else replace(sampling, seed=None)

    def sent_sampling(self, sampling: SamplingParams) -> dict[str, object]:
        """What a request with ``sampling`` sends, as stored with every generation and grade."""
        return self.effective(sampling).as_dict()

    async def chat(
        self,
        messages: Sequence[Mapping[str, str]],
        sampling: SamplingParams,
        sample_index: int = 0,
        *,
        regex: str | None = None,
        priority: int = 0,
    ) -> Reply:
        """One chat completion; `regex` constrains the reply (vLLM structured outputs). Among calls
        waiting for the endpoint, a lower ``priority`` goes first."""
        sampling = self.effective(sampling)
        key = self.key(messages, sampling, sample_index, regex)
        if self.cache is not None and (hit := self.cache.get(key)) is not None:
            self.stats.cache_hits += 1
            return Reply(text=hit.text, finish_reason=hit.finish_reason, cached=True)
        if self.cache_only:
            raise CacheMiss(self.model.name)
        extra_body = {"structured_outputs": {"regex": regex}} if regex else None
        text, finish_reason, output_tokens = await self._call_with_retries(messages, sampling, extra_body, priority)
        if self.cache is not None:
            self.cache.put(key, self.model.identity, CachedReply(text=text, finish_reason=finish_reason))
        return Reply(text=text, finish_reason=finish_reason, cached=False, output_tokens=output_tokens)

    def _pick_endpoint(self) -> _EndpointState:
        """The least busy endpoint that is up; when none is, the one set aside longest ago."""
        states = self._endpoint_states()
        now = time.monotonic()
        up = [state for state in states if state.down_until <= now]
        if up:
            return min(up, key=lambda state: state.in_flight)
        return min(states, key=lambda state: state.down_until)

    def _where(self, state: _EndpointState) -> str:
        """Which model and server a message is about, with the server's log when we started it."""
        log = f" (server log: {state.endpoint.log_path})" if state.endpoint.log_path else ""
        return f"the {self.model.role} model {self.model.name} at {state.endpoint.base_url}{log}"

    async def _call_with_retries(
        self,
        messages: Sequence[Mapping[str, str]],
        sampling: SamplingParams,
        extra_body: dict | None = None,
        priority: int = 0,
    ) -> tuple[str, str | None, int | None]:
        """(text, finish reason, output tokens) of one completion, retried as the module docstring says."""
        attempt = 0
        while True:
            state = self._pick_endpoint()
            state.in_flight += 1
            try:
                async with state.slots.hold(priority):
                    self.stats.requests += 1
                    # The raw body, read by read_completion: the SDK does not check what it parses, so a
                    # list or a body without choices would come out as AttributeErrors and IndexErrors.
                    response = await state.client.chat.completions.with_raw_response.create(
                        model=state.endpoint.model, messages=list(messages), extra_body=extra_body, **sampling.as_dict()
                    )
                return read_completion_and_tokens(response.http_response.content)
            except (*RETRYABLE, MalformedReply) as error:
                if isinstance(error, openai.APIConnectionError):  # timeouts too: APITimeoutError is one
                    state.down_until = time.monotonic() + DOWN_FOR
                    if self.server_stopped(state.endpoint):
                        state.down_until = math.inf
                        if all(self.server_stopped(other.endpoint) for other in self._endpoint_states()):
                            raise HarnessError(
                                f"{self._where(state)} cannot be reached: its server is no longer running."
                            ) from error
                if attempt >= self.policy.max_retries:
                    if isinstance(error, MalformedReply):
                        raise HarnessError(
                            f"{self._where(state)} answered {attempt + 1} times with "
                            f"something that is not a chat completion (last: {error}); is it an OpenAI-compatible "
                            "server, and does the URL end in /v1?"
                        ) from None
                    raise HarnessError(
                        f"{self._where(state)} failed after {attempt + 1} attempts: {type(error).__name__}: {error}"
                    ) from error
                delay = self.policy.delay(attempt, _retry_after(error))
                attempt += 1
                self.stats.retries += 1
                await asyncio.sleep(delay)
            except openai.AuthenticationError as error:
                raise HarnessError(
                    f"{self._where(state)} rejected the API key: {error}. "
                    "Check OPENAI_API_KEY or the key given with the URL."
                ) from error
            except openai.APIStatusError as error:
                raise HarnessError(
                    f"{self._where(state)} refused the request (HTTP {error.status_code}): {error.message}"
                ) from error
            finally:
                state.in_flight -= 1

    async def aclose(self) -> None:
        for state in self._states or []:
            await state.client.close()
        self._states = None
