"""What the server manager hands a vLLM process: the command line and the environment (no server starts)."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.core import vllm
from harness.core.vllm import ServerManager, ServerSpec, ServingOptions


class Recorded:
    """Stands in for subprocess.Popen: keeps what it was given and starts nothing."""

    launched: list[Recorded] = []

    def __init__(self, command, *, env, **kwargs):
        self.command, self.env, self.pid = list(command), dict(env), 0
        Recorded.launched.append(self)


@pytest.fixture
def launch(monkeypatch, tmp_path: Path):
    model = tmp_path / "tiny"
    model.mkdir()
    (model / "config.json").write_text("{}")
    monkeypatch.setattr(vllm.subprocess, "Popen", Recorded)
    Recorded.launched = []

    def launch_on(device: str) -> Recorded:
        spec = ServerSpec(role="student", model_path=model)
        options = ServingOptions(device=device, log_dir=tmp_path / "logs", api_key="secret-key-123")
        ServerManager([spec], options)._launch(spec, 1.0, "0")
        (recorded,) = Recorded.launched
        return recorded

    return launch_on


def test_a_cpu_server_skips_the_aot_cache_it_cannot_load_and_gets_its_key_privately(launch, monkeypatch) -> None:
    monkeypatch.delenv("VLLM_USE_AOT_COMPILE", raising=False)
    recorded = launch("cpu")
    assert recorded.env["VLLM_USE_AOT_COMPILE"] == "0"
    assert recorded.env["VLLM_API_KEY"] == "secret-key-123"
    assert not any("secret-key-123" in argument for argument in recorded.command)


def test_a_users_own_aot_setting_is_kept(launch, monkeypatch) -> None:
    monkeypatch.setenv("VLLM_USE_AOT_COMPILE", "1")
    assert launch("cpu").env["VLLM_USE_AOT_COMPILE"] == "1"


def test_a_gpu_server_keeps_vllms_default(launch, monkeypatch) -> None:
    monkeypatch.delenv("VLLM_USE_AOT_COMPILE", raising=False)
    monkeypatch.delenv("VLLM_CPU_OMP_THREADS_BIND", raising=False)
    env = launch("gpu").env
    assert "VLLM_USE_AOT_COMPILE" not in env and "VLLM_CPU_OMP_THREADS_BIND" not in env
