"""Read one task-family YAML file: follow its includes, apply defaults, validate every key.

A family file names a catalog, the k values, the splits and how to sample, generate
and grade (see tasks/README.md). A variant starts with ``include: base.yaml`` and
overrides keys; nested sampling mappings are merged key by key, everything else is
replaced. Relative paths are resolved against the file that writes them.
"""

from __future__ import annotations

import difflib
import re
from pathlib import Path
from typing import Any

import yaml

from harness.core.catalog import SPLITS
from harness.core.errors import HarnessError

BUILTIN_TASKS_DIR = Path(__file__).resolve().parents[2] / "tasks"
# The student's turns; each grading style's template is checked where judges are chosen (judges.styles).
PROMPT_FILES = ("student_turn1.txt", "student_turn2.txt")
SAMPLING_KEYS = {
    "temperature": (0.0, 2.0),
    "top_p": (0.0, 1.0),
    "max_tokens": (1, None),
}
FAMILY_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]*$")

# Defaults follow SKILL-MIX: 100 combinations per k, 3 generation rounds, 3 grading runs,
# student temperature 0.7 with 512 new tokens. A judge samples at 0.7 too: the grading runs
# must be independent samples for their vote to mean anything (at 0 they would be copies).
# This is the one judge-sampling rule; the built-in judge files set no temperature.
DEFAULTS: dict[str, Any] = {
    "description": "",
    "k": [1, 2, 3, 4, 5],
    "splits": list(SPLITS),
    "combinations": 100,
    "generation_rounds": 3,
    "grading_runs": 3,
    "prompt_version": "v1",
    "student_sampling": {"temperature": 0.7, "max_tokens": 512},
    "judge_sampling": {"temperature": 0.7, "max_tokens": 512},
    "grading_style": "items",
}
REQUIRED = ("family", "version", "seed", "catalog")
KNOWN_KEYS = frozenset(DEFAULTS) | set(REQUIRED) | {"include"}


def family_files(directory: Path) -> list[Path]:
    """The task-family YAML files directly inside a directory (not its subdirectories)."""
    files = (p for p in directory.iterdir() if p.is_file() and p.suffix in (".yaml", ".yml"))
    return sorted(files, key=lambda p: (p.stem, p.suffix))


def read_family_file(path: Path) -> dict[str, Any]:
    """Read a family file with its includes, apply defaults and validate every key."""
    raw = _read_with_includes(path, ())
    where = f"{path}" + (" (or a file it includes)" if "_included" in raw else "")
    config = {**DEFAULTS, **raw}
    for key in ("student_sampling", "judge_sampling"):
        check_sampling(raw.get(key, {}), f"{where}: {key!r}")
        config[key] = {**DEFAULTS[key], **raw.get(key, {})}
    _validate(config, where)
    config["prompt_dir"] = _prompt_dir(config, where)
    return config


def _read_with_includes(path: Path, chain: tuple[Path, ...]) -> dict[str, Any]:
    resolved = path.resolve()
    if resolved in chain:
        cycle = " -> ".join(str(p) for p in (*chain, resolved))
        raise HarnessError(f"include cycle: {cycle}")
    data = _load_yaml(path)
    unknown = sorted(str(key) for key in set(data) - KNOWN_KEYS)
    if unknown:
        close = {u: difflib.get_close_matches(u, sorted(KNOWN_KEYS), n=1) for u in unknown}
        hints = ", ".join(f"{u!r}" + (f" (did you mean {c[0]!r}?)" if c else "") for u, c in close.items())
        raise HarnessError(f"{path}: unknown key(s) {hints}; allowed keys: {', '.join(sorted(KNOWN_KEYS))}")
    # Relative paths mean relative to the file that wrote them, not to the variant that includes it.
    if "catalog" in data:
        if not isinstance(data["catalog"], str) or not data["catalog"]:
            raise HarnessError(f"{path}: 'catalog' must be a directory path relative to this file")
        data["catalog"] = (path.parent / data["catalog"]).resolve()
    if "prompt_version" in data:
        data["_prompt_root"] = path.parent
    include = data.pop("include", None)
    if include is None:
        return data
    if not isinstance(include, str):
        raise HarnessError(f"{path}: 'include' must be the path of another task YAML file")
    base_path = _find_include(path, include)
    base = _read_with_includes(base_path, (*chain, resolved))
    merged = {**base, **data, "_included": True}
    for key in ("student_sampling", "judge_sampling"):
        if isinstance(base.get(key), dict) and isinstance(data.get(key), dict):
            merged[key] = {**base[key], **data[key]}
    return merged


def _find_include(path: Path, include: str) -> Path:
    # A file outside the tree (--tasks-dir) may include a built-in family by its bare name.
    for candidate in (path.parent / include, BUILTIN_TASKS_DIR / include):
        if candidate.is_file():
            return candidate
    raise HarnessError(f"{path}: included file {include!r} not found next to it or among the built-in tasks")


def _load_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise HarnessError(f"{path}: file not found") from None
    except UnicodeDecodeError as error:
        raise HarnessError(f"{path}: not UTF-8 text ({error.reason} at byte {error.start}); save it as UTF-8") from None
    except yaml.YAMLError as error:
        raise HarnessError(f"{path}: not valid YAML: {error}") from None
    if not isinstance(data, dict):
        raise HarnessError(f"{path}: a task file must be a YAML mapping of keys to values")
    return data


def _validate(config: dict[str, Any], where: str) -> None:
    for key in REQUIRED:
        if key not in config:
            raise HarnessError(f"{where}: missing required key {key!r}")
    family = config["family"]
    if not isinstance(family, str) or not FAMILY_NAME.match(family):
        raise HarnessError(f"{where}: 'family' must be lower-case letters, digits, '-' or '_', got {family!r}")
    _check_int(config, "version", where, minimum=1)
    _check_int(config, "seed", where, minimum=0)
    _check_int(config, "combinations", where, minimum=1)
    _check_int(config, "generation_rounds", where, minimum=1)
    _check_int(config, "grading_runs", where, minimum=1)
    if not isinstance(config["description"], str):
        raise HarnessError(f"{where}: 'description' must be text")

    ks = config["k"]
    ks = [ks] if isinstance(ks, int) and not isinstance(ks, bool) else ks
    if not isinstance(ks, list) or not ks or not all(isinstance(k, int) and not isinstance(k, bool) for k in ks):
        raise HarnessError(f"{where}: 'k' must be a whole number or a list of them, got {config['k']!r}")
    if min(ks) < 1 or len(set(ks)) != len(ks):
        raise HarnessError(f"{where}: 'k' values must be distinct and at least 1, got {ks}")
    config["k"] = ks

    splits = config["splits"]
    if (
        not isinstance(splits, list)
        or not splits
        or len(set(map(str, splits))) != len(splits)
        or any(s not in SPLITS for s in splits)
    ):
        raise HarnessError(f"{where}: 'splits' must be a list of distinct values from {list(SPLITS)}, got {splits!r}")

    # Which styles exist is the judge layer's business (judges.styles); it checks the name when a
    # run chooses its judges. Here only the form of the name is checked.
    if not isinstance(config["grading_style"], str) or not FAMILY_NAME.match(config["grading_style"]):
        raise HarnessError(f"{where}: 'grading_style' must name a reply style such as items or table")
    if not isinstance(config["prompt_version"], str) or not config["prompt_version"]:
        raise HarnessError(f"{where}: 'prompt_version' must name a directory under prompts/, such as v1")


def _check_int(config: dict[str, Any], key: str, where: str, *, minimum: int) -> None:
    value = config[key]
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise HarnessError(f"{where}: {key!r} must be a whole number of at least {minimum}, got {value!r}")


def check_sampling(sampling: Any, where: str) -> None:
    if not isinstance(sampling, dict):
        raise HarnessError(f"{where} must be a mapping such as {{temperature: 0.7, max_tokens: 512}}")
    unknown = sorted(str(key) for key in set(sampling) - set(SAMPLING_KEYS))
    if unknown:
        raise HarnessError(f"{where}: unknown key(s) {', '.join(unknown)}; allowed: {', '.join(SAMPLING_KEYS)}")
    for key, value in sampling.items():
        low, high = SAMPLING_KEYS[key]
        number_ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        if key == "max_tokens":
            number_ok = number_ok and isinstance(value, int)
        if not number_ok or value < low or (high is not None and value > high):
            bounds = f"between {low} and {high}" if high is not None else f"a whole number of at least {low}"
            raise HarnessError(f"{where}: {key} must be {bounds}, got {value!r}")


def _prompt_dir(config: dict[str, Any], where: str) -> Path:
    version = config["prompt_version"]
    roots = [config.get("_prompt_root"), BUILTIN_TASKS_DIR]
    for root in roots:
        if root is None:
            continue
        candidate = Path(root) / "prompts" / version
        if candidate.is_dir():
            missing = [name for name in PROMPT_FILES if not (candidate / name).is_file()]
            if missing:
                raise HarnessError(f"{where}: prompt directory {candidate} lacks {', '.join(missing)}")
            return candidate
    raise HarnessError(f"{where}: prompt_version {version!r} has no directory prompts/{version}")
