"""The model client: cache hits and misses, identity changes, retries against a real failing HTTP server."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pytest
from raw_server import RawServer, completion
from scripted_server import ScriptedServer, connected_model

from harness.core.cache import CachedReply, ResponseCache
from harness.core.client import ModelClient, RetryPolicy, SamplingParams
from harness.core.errors import HarnessError
from harness.core.identity import fingerprint, local_model_identity
from harness.core.models import Endpoint

MESSAGES = [{"role": "user", "content": "Write one sentence about tides."}]


FAST = RetryPolicy(max_retries=4, base_delay=0.05, max_delay=2.0, timeout=10)
INSTANT = RetryPolicy(max_retries=4, base_delay=0.001, max_delay=0.01, timeout=10)


def make_client(
    server_or_endpoints, cache: ResponseCache | None, identity: str = "scripted@1", **kwargs
) -> ModelClient:
    endpoints = server_or_endpoints if isinstance(server_or_endpoints, tuple) else (server_or_endpoints.endpoint,)
    ref = connected_model("student", identity, endpoints, **kwargs)
    return ModelClient(ref, cache, FAST)


def run(coroutine):
    return asyncio.run(coroutine)


def test_cache_miss_then_hit_never_reaches_the_server(tmp_path: Path) -> None:
    cache = ResponseCache(tmp_path / "cache.sqlite")
    sampling = SamplingParams(temperature=0.7, max_tokens=16, seed=3)
    with ScriptedServer([]) as server:
        client = make_client(server, cache)
        first = run(client.chat(MESSAGES, sampling, sample_index=0))
        assert not first.cached and first.text == "reply 1"
    # The server is gone: only the cache can answer now.
    client = make_client(server, cache)
    second = run(client.chat(MESSAGES, sampling, sample_index=0))
    assert second.cached and second.text == "reply 1"
    assert client.stats.requests == 0 and client.stats.cache_hits == 1


def test_sample_index_sampling_and_identity_are_part_of_the_key(tmp_path: Path) -> None:
    cache = ResponseCache(tmp_path / "cache.sqlite")
    sampling = SamplingParams(max_tokens=16)
    with ScriptedServer([]) as server:
        client = make_client(server, cache)
        texts = {
            run(client.chat(MESSAGES, sampling, sample_index=0)).text,
            run(client.chat(MESSAGES, sampling, sample_index=1)).text,
            run(client.chat(MESSAGES, SamplingParams(max_tokens=17), sample_index=0)).text,
        }
        other_model = make_client(server, cache, identity="scripted@2")
        texts.add(run(other_model.chat(MESSAGES, sampling, sample_index=0)).text)
    assert len(texts) == 4
    assert len(server.requests) == 4


def test_retries_5xx_and_429_then_succeeds(tmp_path: Path) -> None:
    script = [(503, {}), (500, {}), (429, {"Retry-After": "0.3"})]
    with ScriptedServer(script) as server:
        client = make_client(server, None)
        reply = run(client.chat(MESSAGES, SamplingParams()))
    assert reply.text == "reply 4"
    assert client.stats.retries == 3 and client.stats.requests == 4
    # Retry-After was honoured: the 4th request came at least 0.3 s after the 3rd.
    assert server.requests[3][0] - server.requests[2][0] >= 0.29


def test_backoff_grows_and_is_jittered() -> None:
    policy = RetryPolicy(base_delay=1.0, max_delay=60.0)
    delays = [[policy.delay(attempt, None) for _ in range(200)] for attempt in range(5)]
    for attempt, samples in enumerate(delays):
        assert all(0 <= d <= 2**attempt for d in samples)
        assert len(set(samples)) > 150  # jittered, not a fixed schedule
    means = [sum(samples) / len(samples) for samples in delays]
    assert means == sorted(means)
    assert policy.delay(10, None) <= 60.0
    assert policy.delay(0, 7.5) == 7.5  # Retry-After wins


def test_gives_up_with_a_clear_error_after_max_retries() -> None:
    with ScriptedServer([(502, {})] * 10) as server:
        client = make_client(server, None)
        with pytest.raises(HarnessError, match="failed after 5 attempts"):
            run(client.chat(MESSAGES, SamplingParams()))
    assert len(server.requests) == 5


def test_connection_refused_is_retried_then_reported() -> None:
    dead = Endpoint(base_url="http://127.0.0.1:9/v1", api_key="k", model="x")
    client = make_client((dead,), None)
    with pytest.raises(HarnessError, match="failed after"):
        run(client.chat(MESSAGES, SamplingParams()))
    assert client.stats.retries == FAST.max_retries


def test_client_error_is_not_retried() -> None:
    with ScriptedServer([(400, {})]) as server:
        client = make_client(server, None)
        with pytest.raises(HarnessError, match="HTTP 400"):
            run(client.chat(MESSAGES, SamplingParams()))
    assert len(server.requests) == 1


def test_requests_spread_over_replicas_within_the_concurrency_limit() -> None:
    with ScriptedServer([]) as first, ScriptedServer([]) as second:
        first.delay = second.delay = 0.05
        client = make_client((first.endpoint, second.endpoint), None, max_concurrency=3)

        async def many() -> list[str]:
            prompts = [[{"role": "user", "content": f"q{i}"}] for i in range(24)]
            replies = await asyncio.gather(*(client.chat(p, SamplingParams()) for p in prompts))
            await client.aclose()
            return [r.text for r in replies]

        assert len(run(many())) == 24
    assert len(first.requests) + len(second.requests) == 24
    assert len(first.requests) >= 6 and len(second.requests) >= 6
    assert first.max_in_flight <= 3 and second.max_in_flight <= 3
    assert max(first.max_in_flight, second.max_in_flight) >= 2  # requests really were concurrent


def test_fingerprint_changes_when_weights_change(tmp_path: Path) -> None:
    model = tmp_path / "m"
    model.mkdir()
    (model / "config.json").write_text('{"a": 1}')
    (model / "model.safetensors").write_bytes(b"\0" * 1000)
    before = local_model_identity(model)
    assert local_model_identity(model) == before
    (model / "model.safetensors").write_bytes(b"\1" + b"\0" * 999)
    assert local_model_identity(model) != before


def test_fingerprint_samples_large_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import harness.core.identity as identity

    monkeypatch.setattr(identity, "WHOLE_FILE_LIMIT", 1024)
    monkeypatch.setattr(identity, "SAMPLE_SIZE", 64)
    model = tmp_path / "m"
    model.mkdir()
    (model / "config.json").write_text("{}")
    blob = bytearray(64 * 1024)
    (model / "model.safetensors").write_bytes(bytes(blob))
    before = fingerprint(model)
    blob[-1] = 7  # the last sample covers the end of the file
    (model / "model.safetensors").write_bytes(bytes(blob))
    assert fingerprint(model) != before


def test_missing_model_dir_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(HarnessError, match="not a directory"):
        fingerprint(tmp_path / "nope")


def test_a_dead_replica_does_not_eat_the_retries() -> None:
    """A replica that refuses connections fails at once, so it always looks least busy: unless it is set
    aside, every retry goes back to it until none is left."""
    dead = Endpoint(base_url="http://127.0.0.1:9/v1", api_key="k", model="x")
    with ScriptedServer([]) as alive:
        alive.delay = 0.05
        client = make_client((dead, alive.endpoint), None, max_concurrency=4)

        async def many() -> list[str]:
            prompts = [[{"role": "user", "content": f"q{i}"}] for i in range(24)]
            replies = await asyncio.gather(*(client.chat(p, SamplingParams()) for p in prompts))
            await client.aclose()
            return [r.text for r in replies]

        assert len(run(many())) == 24
    assert len(alive.requests) == 24
    # Half the first sends went to the dead replica (nothing had failed yet); each of those failed once.
    assert 1 <= client.stats.retries <= 12
    assert client.stats.requests == 24 + client.stats.retries


def test_a_managed_server_failure_names_its_log(tmp_path: Path) -> None:
    log = tmp_path / "logs" / "vllm-judge-j.log"
    dead = Endpoint(base_url="http://127.0.0.1:9/v1", api_key="k", model="x", log_path=log)
    client = ModelClient(connected_model("judge", "x@1", (dead,)), None, RetryPolicy(max_retries=1, base_delay=0.01))
    with pytest.raises(HarnessError) as caught:
        run(client.chat(MESSAGES, SamplingParams()))
    message = str(caught.value)
    assert message.startswith(
        f"the judge model judge-under-test at http://127.0.0.1:9/v1 (server log: {log}) failed after 2 attempts"
    )


def test_a_stopped_server_fails_the_call_at_once_and_a_stopped_replica_is_set_aside_for_good() -> None:
    """A server the harness started whose process exited cannot come back: no backing off (7 attempts
    at up to a minute each) before saying so."""
    dead = Endpoint(base_url="http://127.0.0.1:9/v1", api_key="k", model="x")
    patient = RetryPolicy(max_retries=6, base_delay=30.0, max_delay=60.0, timeout=10)
    client = ModelClient(connected_model("judge", "x@1", (dead,)), None, patient,
                         server_stopped=lambda endpoint: endpoint == dead)  # fmt: skip
    with pytest.raises(HarnessError, match=r"cannot be reached: its server is no longer running\.$"):
        run(asyncio.wait_for(client.chat(MESSAGES, SamplingParams()), timeout=20))
    assert client.stats.requests == 1 and client.stats.retries == 0
    # With a live replica beside it, the stopped one gets no request after its first failure.
    with ScriptedServer([]) as alive:
        client = ModelClient(connected_model("judge", "x@1", (dead, alive.endpoint), max_concurrency=2), None,
                             INSTANT, server_stopped=lambda endpoint: endpoint == dead)  # fmt: skip

        async def many() -> int:
            replies = await asyncio.gather(
                *(client.chat([{"role": "user", "content": f"q{i}"}], SamplingParams()) for i in range(12))
            )
            await client.aclose()
            return len(replies)

        assert run(many()) == 12
    # Each call that went to the stopped replica failed there once and was answered by the live one.
    assert len(alive.requests) == 12 and client.stats.retries <= 6
    assert client.stats.requests == 12 + client.stats.retries


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_a_damaged_cache_is_an_error_naming_it_and_the_way_out(tmp_path: Path, damage: str) -> None:
    path = tmp_path / "cache.sqlite"
    cache = ResponseCache(path)
    for index in range(300):
        cache.put(f"key{index}", "scripted@1", CachedReply(text="a reply " * 60, finish_reason="stop"))
    cache.close()
    data = path.read_bytes()
    path.write_bytes(b"not a cache at all " * 300 if damage == "garbage" else data[: len(data) // 3])
    with pytest.raises(HarnessError, match=rf"{re.escape(str(path))} is damaged .*--no-cache"):
        cache = ResponseCache(path)
        for index in range(300):
            cache.get(f"key{index}")


# -- servers that answer with something that is not a chat completion --------------------------
NOT_A_COMPLETION = {
    "a JSON list": b"[1, 2]",
    "a JSON string": b'"hello"',
    "null": b"null",
    "no choices": b'{"id": "c", "object": "chat.completion"}',
    "empty choices": b'{"id": "c", "choices": []}',
    "a choice that is a string": b'{"choices": ["hello"]}',
    "a choice without a message": b'{"choices": [{"index": 0, "finish_reason": "stop"}]}',
    "content that is not text": completion(content=5),
    "a finish reason that is not text": completion(finish_reason=["stop"]),
    "an error object": b'{"error": {"message": "model overloaded"}}',
    "not JSON": b"<html><body>502 Bad Gateway</body></html>",
    "bytes that are not UTF-8": b"\xff\xfe\x00\x81garbage",
    "nothing": b"",
    "deeply nested JSON": b"[" * 100_000,
}


@pytest.mark.parametrize("body", NOT_A_COMPLETION.values(), ids=NOT_A_COMPLETION.keys())
def test_a_body_that_is_not_a_chat_completion_is_retried_then_a_clear_error(body: bytes) -> None:
    with RawServer(lambda method, path, number: (200, body)) as server:
        client = ModelClient(connected_model("judge", "raw@1", (server.endpoint,)), None, INSTANT)
        with pytest.raises(
            HarnessError, match=r"answered 5 times with something that is not a chat completion"
        ) as error:
            run(client.chat(MESSAGES, SamplingParams()))
    assert server.base_url in str(error.value) and "OpenAI-compatible" in str(error.value)
    assert len(server.requests) == 5 and client.stats.retries == 4


def test_one_garbage_body_is_retried_and_the_reply_after_it_is_used() -> None:
    with RawServer(lambda method, path, number: (200, b"<html>" if number == 1 else completion("fine"))) as server:
        reply = run(make_client((server.endpoint,), None).chat(MESSAGES, SamplingParams()))
    assert reply.text == "fine" and len(server.requests) == 2


def test_a_missing_content_is_an_empty_reply() -> None:
    with RawServer(lambda method, path, number: (200, completion(content=None, finish_reason=None))) as server:
        reply = run(make_client((server.endpoint,), None).chat(MESSAGES, SamplingParams()))
    assert (reply.text, reply.finish_reason) == ("", None)


MODEL_LISTINGS = {
    "a JSON list": (b"[1, 2]", "lists no model"),
    "no data": (b'{"object": "list"}', "lists no model"),
    "an empty list": (b'{"data": []}', "lists no model"),
    "a model without id": (b'{"data": [{"object": "model"}]}', "without an 'id'"),
    "an id that is not text": (b'{"data": [{"id": 7}]}', "without an 'id'"),
    "not JSON": (b"<html>", "not JSON"),
    "bytes that are not UTF-8": (b"\xff\xfe", "not JSON"),
}


@pytest.mark.parametrize("body, message", MODEL_LISTINGS.values(), ids=MODEL_LISTINGS.keys())
def test_a_server_with_a_broken_model_list_is_a_clear_error(body: bytes, message: str) -> None:
    from harness.core.connect import connect
    from harness.core.models import resolve_model
    from harness.core.vllm import ServingOptions

    with RawServer(lambda method, path, number: (200, body)) as server:
        model = resolve_model(server.base_url, "judge")
        with pytest.raises(HarnessError, match=re.escape(message)):
            with connect([model], ServingOptions()):
                pass
