"""Resolve `builtin:NAME` model and data paths to directories that code builds once and caches.

    model:
      path: builtin:tiny      # harness.core.tinymodel's random tiny chat model (builtin:small: the larger one)
    data:
      path: builtin:demo      # trainers.demo_data's SKILL-MIX-shaped set, 64 rows per k = 1, 2, 3

They are built on first use, in seconds and with no download, under
CACHE/builtin/, where CACHE is the directory of the response cache:
`$SKILLMIX_CACHE`'s parent when that is set, else ~/.cache/skillmix-harness.
Each directory name carries a hash of what it is built from (the model shape,
the catalog and prompt template), so a changed catalog gives a new set rather
than a stale one. A build runs under a file lock, into a staging directory
that is renamed into place when complete, so concurrent ranks or runs build it
once and never read a half-written one.
"""

from __future__ import annotations

import dataclasses
import fcntl
import hashlib
import json
import os
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from harness.core.errors import HarnessError

if TYPE_CHECKING:
    from trainers.config import TrainingConfig

PREFIX = "builtin:"
BUILD_VERSION = 1  # bump when a builder's output changes for the same inputs
DATA_NAMES = ("demo",)  # model names are harness.core.tinymodel's SIZES
DEMO_ROWS_PER_K = 64


def builtin_root() -> Path:
    from harness.core.cache import default_cache_path

    return default_cache_path().parent.resolve() / "builtin"


def is_builtin(path: str) -> bool:
    return path.startswith(PREFIX)


def resolve_builtins(config: TrainingConfig) -> TrainingConfig:
    """The config with `builtin:` model and data paths replaced by their built directories."""
    model, data, origins = config.model, config.data, dict(config.origins)
    if is_builtin(model.path):
        origins["model.path"] = f"{config.where('model.path')}, as {model.path}"
        model = dataclasses.replace(model, path=str(resolve_model(model.path)))
    if is_builtin(data.path):
        origins["data.path"] = f"{config.where('data.path')}, as {data.path}"
        data = dataclasses.replace(data, path=str(resolve_data(data.path)))
    return dataclasses.replace(config, model=model, data=data, origins=origins)


def resolve_model(reference: str) -> Path:
    """The directory of `builtin:<size>` (a harness.core.tinymodel size), built on first use."""
    from harness.core.tinymodel import SIZES, build_tiny_model

    name = reference.removeprefix(PREFIX)
    if name not in SIZES:
        raise HarnessError(
            f"unknown built-in model {reference!r}; use one of {', '.join(PREFIX + n for n in sorted(SIZES))}"
        )
    spec = SIZES[name]
    key = _key({"builder": "harness.core.tinymodel", "spec": dataclasses.asdict(spec), "corpus": _tasks_hash()})
    return _build_once(
        builtin_root() / "models" / f"{name}-{key}",
        reference,
        lambda staging: build_tiny_model(staging, spec, overwrite=True),
    )


def resolve_data(reference: str) -> Path:
    """The directory of `builtin:demo`, built on first use."""
    from trainers.demo_data import write_demo_dataset

    name = reference.removeprefix(PREFIX)
    if name not in DATA_NAMES:
        raise HarnessError(
            f"unknown built-in dataset {reference!r}; use one of {', '.join(PREFIX + n for n in DATA_NAMES)}"
        )
    key = _key({"builder": "trainers.demo_data", "rows_per_k": DEMO_ROWS_PER_K, "tasks": _tasks_hash()})
    return _build_once(
        builtin_root() / "data" / f"{name}-{key}",
        reference,
        lambda staging: write_demo_dataset(staging, DEMO_ROWS_PER_K),
    )


def _tasks_hash() -> str:
    """sha256 over the shipped tasks/ files (catalog, task YAML, prompt templates) that both builders read."""
    root = Path(__file__).resolve().parents[1] / "tasks"
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file() and p.suffix in {".csv", ".yaml", ".txt", ".md"}):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def _key(inputs: dict[str, object]) -> str:
    payload = json.dumps({**inputs, "version": BUILD_VERSION}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:12]


def _build_once(directory: Path, reference: str, build: Callable[[Path], object]) -> Path:
    if directory.is_dir():
        return directory
    try:
        directory.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise HarnessError(
            f"cannot create {directory.parent} for {reference}: {error}. Point SKILLMIX_CACHE at a writable "
            f"file path (built-ins go next to it)"
        ) from None
    with (directory.parent / f".{directory.name}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # a second process waits here, then finds the directory built
        if directory.is_dir():
            return directory
        print(f"builtin: building {reference} in {directory}", file=sys.stderr, flush=True)
        started = time.monotonic()
        staging = directory.with_name(f".{directory.name}.tmp-{os.getpid()}")
        shutil.rmtree(staging, ignore_errors=True)
        try:
            build(staging)
            os.replace(staging, directory)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        print(f"builtin: built {reference} in {time.monotonic() - started:.1f}s", file=sys.stderr, flush=True)
    return directory
