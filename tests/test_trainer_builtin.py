"""`builtin:` model and data paths: built once into the cache, SKILL-MIX-shaped, and clear errors otherwise."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from harness.core.errors import HarnessError
from trainers import builtin
from trainers.config import CONFIG_DIR, load_config, prepare
from trainers.dataset import load_conversations
from trainers.metadata import data_fingerprint

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    """A fresh cache: built-ins go next to the response cache file that SKILLMIX_CACHE names."""
    monkeypatch.setenv("SKILLMIX_CACHE", str(tmp_path / "cache" / "responses.sqlite"))
    return tmp_path / "cache"


def test_builtin_root_follows_skillmix_cache(cache, monkeypatch, tmp_path):
    assert builtin.builtin_root() == cache.resolve() / "builtin"
    monkeypatch.delenv("SKILLMIX_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert builtin.builtin_root() == (tmp_path / "xdg").resolve() / "skillmix-harness" / "builtin"


def test_demo_data_is_skillmix_shaped_and_passes_the_audit(cache):
    import datasets

    from harness.core.audit import audit_dataset, heldout_tasks
    from harness.core.registry import load_registry

    path = builtin.resolve_data("builtin:demo")
    assert path.parent == cache.resolve() / "builtin" / "data"
    rows = datasets.load_from_disk(str(path))
    assert len(rows) == 3 * builtin.DEMO_ROWS_PER_K
    conversations = load_conversations(path, [1, 2, 3])
    assert conversations.k_counts == {k: builtin.DEMO_ROWS_PER_K for k in (1, 2, 3)}
    registry = load_registry()
    for row in rows.select(range(0, len(rows), 37)):
        user, assistant = row["messages"]
        assert (user["role"], assistant["role"]) == ("user", "assistant")
        assert len(row["skills"]) == row["k"] and row["topic"] in user["content"]
        task = registry.get(f"skillmix-k{row['k']}-train")
        for skill in row["skills"]:  # the real turn-1 request: each skill with its definition
            assert f"Skill: {skill}" in user["content"]
            assert task.catalog.skill(skill).definition in user["content"]
        assert assistant["content"].startswith(f"Answer: On {row['topic']}, ")
    # drawn from the training split, and never one of the evaluation's own combinations
    train_skills = {skill.name for skill in registry.get("skillmix-k1-train").skills()}
    assert {skill for skills in rows["skills"] for skill in skills} <= train_skills
    evaluated = {
        (frozenset(combination.skills), combination.topic)
        for k in (1, 2, 3)
        for combination in registry.get(f"skillmix-k{k}-train").combinations()
    }
    assert not evaluated & {(frozenset(row["skills"]), row["topic"]) for row in rows}
    assert audit_dataset(path, heldout_tasks(registry)).ok


def test_demo_data_is_the_same_bytes_in_every_cache(cache, tmp_path, monkeypatch):
    first = builtin.resolve_data("builtin:demo")
    assert builtin.resolve_data("builtin:demo") == first  # found, not rebuilt
    monkeypatch.setenv("SKILLMIX_CACHE", str(tmp_path / "elsewhere" / "responses.sqlite"))
    second = builtin.resolve_data("builtin:demo")
    assert second != first and second.name == first.name
    assert data_fingerprint(second, [1, 2, 3]) == data_fingerprint(first, [1, 2, 3])


def test_concurrent_resolutions_build_once(cache, monkeypatch):
    builds = []

    def slow_build(directory: Path, rows_per_k: int) -> Path:
        builds.append(directory)
        time.sleep(0.3)
        directory.mkdir()
        (directory / "dataset_info.json").write_text("{}")
        return directory

    monkeypatch.setattr("trainers.demo_data.write_demo_dataset", slow_build)
    found: list[Path] = []
    threads = [threading.Thread(target=lambda: found.append(builtin.resolve_data("builtin:demo"))) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(builds) == 1 and len(set(found)) == 1 and (found[0] / "dataset_info.json").is_file()
    assert not [path for path in found[0].parent.iterdir() if ".tmp-" in path.name]  # no staging left behind


def test_failed_build_leaves_nothing_to_find(cache, monkeypatch):
    def broken(directory: Path, rows_per_k: int) -> Path:
        directory.mkdir()
        raise RuntimeError("disk full")

    monkeypatch.setattr("trainers.demo_data.write_demo_dataset", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        builtin.resolve_data("builtin:demo")
    assert not [path for path in (cache / "builtin" / "data").iterdir() if not path.name.endswith(".lock")]


def test_tiny_config_resolves_builtins_into_the_cache(cache, capsys):
    config = prepare(load_config(CONFIG_DIR / "tiny_cpu.yaml"))
    model, data = Path(config.model.path), Path(config.data.path)
    assert model.parent == cache.resolve() / "builtin" / "models" and model.name.startswith("tiny-")
    assert (model / "config.json").is_file() and (model / "tokenizer.json").is_file()
    assert data.parent == cache.resolve() / "builtin" / "data"
    assert "as builtin:tiny" in config.where("model.path") and "tiny_cpu.yaml" in config.where("model.path")
    assert capsys.readouterr().err.count("builtin: building") == 2
    again = prepare(load_config(CONFIG_DIR / "tiny_cpu.yaml"))
    assert again.model.path == config.model.path
    assert "builtin: building" not in capsys.readouterr().err


def test_unknown_builtin_names_the_choices(cache):
    with pytest.raises(
        HarnessError, match="unknown built-in model 'builtin:huge'; use one of builtin:small, builtin:tiny"
    ):
        prepare(load_config(CONFIG_DIR / "tiny_cpu.yaml", ["model.path=builtin:huge"]))
    with pytest.raises(HarnessError, match="unknown built-in dataset 'builtin:paper'; use one of builtin:demo"):
        builtin.resolve_data("builtin:paper")


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("model.path=/nonexistent/tiny", "error: model.path /nonexistent/tiny does not exist"),
        ("data.path=/nonexistent/data", "error: data.path /nonexistent/data does not exist"),
        ("model.path=builtin:huge", "error: unknown built-in model 'builtin:huge'"),
    ],
)
def test_bad_paths_exit_2_with_an_error_line(tmp_path, tiny_models, override, message):
    model = f"model.path={tiny_models['student']}"  # an existing model, so only `override` can be wrong
    result = subprocess.run(
        [sys.executable, "-m", "trainers.config", str(CONFIG_DIR / "tiny_cpu.yaml"), model, override],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**_env(), "SKILLMIX_CACHE": str(tmp_path / "cache" / "responses.sqlite")},
        timeout=120,
    )
    assert result.returncode == 2, result.stderr
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def _env() -> dict[str, str]:
    import os

    return {**os.environ, "PYTHONPATH": str(REPO)}
