"""What `connect` serves: one vLLM server per model directory and arguments, whatever roles share it (no server starts)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.core import connect as connect_module
from harness.core.cache import ResponseCache
from harness.core.connect import connect
from harness.core.models import Endpoint, resolve_model
from harness.core.vllm import ServingOptions


class RecordedManager:
    """Stands in for ServerManager: keeps the specs it was given and hands out one endpoint per spec."""

    specs: list = []

    def __init__(self, specs, options):
        RecordedManager.specs = list(specs)

    def __enter__(self) -> dict[str, Endpoint]:
        return {spec.role: Endpoint(f"http://127.0.0.1:{9000 + i}/v1", "key", spec.model_path.name)
                for i, spec in enumerate(RecordedManager.specs)}  # fmt: skip

    def __exit__(self, *exc_info: object) -> None:
        pass

    def has_stopped(self, endpoint: Endpoint) -> bool:
        return False


@pytest.fixture
def weights(tmp_path: Path, monkeypatch) -> tuple[Path, Path]:
    monkeypatch.setattr(connect_module, "ServerManager", RecordedManager)
    folders = (tmp_path / "big", tmp_path / "small")
    for folder in folders:
        folder.mkdir()
        (folder / "config.json").write_text(json.dumps({"name": folder.name}))
    return folders


def served(models, tmp_path: Path) -> dict[str, str]:
    with connect(models, ServingOptions(device="cpu"), cache=ResponseCache(tmp_path / "cache.sqlite")) as clients:
        return {name: client.model.endpoints[0].base_url for name, client in clients.items()}


def test_a_model_in_two_roles_is_served_once(weights, tmp_path: Path) -> None:
    big, small = weights
    models = [resolve_model(f"teacher={big}", "teacher"), resolve_model(f"judge={big}", "judge"),
              resolve_model(f"student={small}", "student")]  # fmt: skip
    urls = served(models, tmp_path)
    assert [spec.model_path for spec in RecordedManager.specs] == [big, small]
    assert RecordedManager.specs[0].role == "teacher-teacher+judge-judge"
    assert urls["teacher"] == urls["judge"] != urls["student"]


def test_the_same_weights_with_other_vllm_arguments_get_their_own_server(weights, tmp_path: Path) -> None:
    big, _ = weights
    models = [
        resolve_model(f"a={big}", "student"),
        resolve_model(f"b={big}", "judge", vllm_args=["--max-num-seqs", "8"]),
    ]
    urls = served(models, tmp_path)
    assert [spec.extra_args for spec in RecordedManager.specs] == [(), ("--max-num-seqs", "8")]
    assert urls["a"] != urls["b"]
