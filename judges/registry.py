"""The judge registry: named judges from YAML files, and turning a `--judge` argument into a JudgeSpec.

A judge is a model plus a reply style plus sampling overrides. Built-in
suggestions live in ``judges/configs/*.yaml``; a user directory (the
``directory`` argument, else ``$SKILLMIX_JUDGES_DIR``) adds judges and replaces
built-in ones of the same name, which is how a user points a suggested judge at
their own copy of the weights. Anything that is not a registered name is read
as a model argument (local path, URL(s), or ``openai:NAME``) with defaults.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import yaml

from harness.client import SamplingParams
from harness.errors import HarnessError
from harness.serving import OPENAI_PREFIX
from harness.taskfile import GRADING_STYLES, check_sampling

BUILTIN_JUDGES_DIR = Path(__file__).resolve().parent / "configs"
JUDGES_DIR_VARIABLE = "SKILLMIX_JUDGES_DIR"
JUDGE_KEYS = ("name", "model", "style", "sampling", "vllm_args", "max_concurrency", "constrained", "description")
# Names become store labels and parts of log-file names: no spaces or slashes.
JUDGE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@:+-]*$")
OPENAI_MAX_CONCURRENCY = 8  # the API rate-limits long before a local server would


@dataclass(frozen=True)
class JudgeSpec:
    name: str  # label used in stores and reports
    model: str  # local path, URL(s) (comma-separated for replicas), or openai:NAME
    style: str | None = None  # "table" | "items" | None -> the task's grading_style
    sampling: dict | None = None  # overrides the task's judge_sampling keys (temperature, max_tokens, top_p)
    vllm_args: tuple[str, ...] = ()  # e.g. ("--tensor-parallel-size", "8") for a 70B judge
    max_concurrency: int | None = None
    description: str = ""
    # vLLM judges only: decode the per-item reply under a regex of the rubric (structured outputs),
    # so every reply parses; for small open judges that drift from the format.
    constrained: bool = False


def load_judges(directory: Path | None = None) -> dict[str, JudgeSpec]:
    """Built-in judges plus those in ``directory`` (default: $SKILLMIX_JUDGES_DIR, if set), by name."""
    judges = _read_directory(BUILTIN_JUDGES_DIR)
    if directory is None and os.environ.get(JUDGES_DIR_VARIABLE):
        directory = Path(os.environ[JUDGES_DIR_VARIABLE])
    if directory is not None:
        directory = Path(directory).expanduser()
        if not directory.is_dir():
            raise HarnessError(f"judges directory {directory} is not a directory; give a folder of judge YAML files")
        if directory.resolve() != BUILTIN_JUDGES_DIR:
            judges.update(_read_directory(directory))
    return judges


def resolve_judge(arg: str, directory: Path | None = None) -> JudgeSpec:
    """A registered judge by name, or else a judge built from a model argument with defaults."""
    arg = arg.strip()
    if not arg:
        raise HarnessError("--judge is empty; give a registered judge name (`harness judges list`) or a model")
    judges = load_judges(directory)
    if arg in judges:
        return judges[arg]
    if arg.startswith(OPENAI_PREFIX):
        model = arg[len(OPENAI_PREFIX) :]
        if not model:
            raise HarnessError("--judge openai: needs a model name, e.g. openai:gpt-4o")
        return JudgeSpec(name=model, model=arg, style="table", max_concurrency=OPENAI_MAX_CONCURRENCY)
    urls = [part.strip() for part in arg.split(",")]
    if any(url.startswith(("http://", "https://")) for url in urls):
        if not all(url.startswith(("http://", "https://")) for url in urls):
            raise HarnessError(f"--judge {arg}: mixes URLs with other text; give comma-separated server URLs only")
        return JudgeSpec(name=f"judge@{urlparse(urls[0]).netloc}", model=",".join(urls))
    path = Path(arg).expanduser()
    if path.is_dir():
        return JudgeSpec(name=path.resolve().name, model=str(path.resolve()))
    raise HarnessError(
        f"--judge {arg}: not a registered judge ({', '.join(sorted(judges)) or 'none'}) and not a model "
        "directory; give a judge name, a local model directory, a server URL, or openai:NAME"
    )


def judge_model_args(spec: JudgeSpec) -> list[str]:
    """The judge's model as `serve_roles` takes it: one value, or one per URL replica."""
    parts = [part.strip() for part in spec.model.split(",")]
    if len(parts) > 1 and all(part.startswith(("http://", "https://")) for part in parts):
        return parts
    return [spec.model]


def judge_sampling(spec: JudgeSpec, task_sampling: Mapping[str, float | int]) -> SamplingParams:
    """The task's judge sampling with the judge's own overrides on top."""
    merged = {**task_sampling, **(spec.sampling or {})}
    return SamplingParams(**merged)


def check_judge_model(spec: JudgeSpec) -> None:
    """Fail early, naming the judge, when a local judge's weights are not where its config says."""
    if spec.model.startswith((OPENAI_PREFIX, "http://", "https://")):
        return
    path = Path(spec.model)
    if not (path / "config.json").is_file():
        raise HarnessError(
            f"judge {spec.name}: no model at {path} (no config.json there). Put the weights there, or add a "
            f"YAML file named {spec.name}.yaml with your own 'model:' path to a judges directory and pass it "
            f"with --judges-dir or ${JUDGES_DIR_VARIABLE} (see judges/README.md)"
        )


def _read_directory(directory: Path) -> dict[str, JudgeSpec]:
    judges: dict[str, JudgeSpec] = {}
    sources: dict[str, Path] = {}
    for path in sorted(directory.glob("*.y*ml")):
        if path.suffix not in (".yaml", ".yml"):
            continue
        spec = read_judge_file(path)
        if spec.name in judges:
            raise HarnessError(f"judge {spec.name!r} is defined twice: in {sources[spec.name]} and in {path}")
        judges[spec.name] = spec
        sources[spec.name] = path
    return judges


def read_judge_file(path: Path) -> JudgeSpec:
    """One judge YAML file, validated; every error names the file."""
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        raise HarnessError(f"{where}: not valid YAML ({getattr(error, 'problem', None) or error})") from None
    except OSError as error:
        raise HarnessError(f"cannot read judge file {path}: {error}") from None
    if not isinstance(raw, dict):
        raise HarnessError(f"{path}: a judge file must be a mapping with at least 'model:'")
    unknown = sorted(str(key) for key in raw if key not in JUDGE_KEYS)
    if unknown:
        raise HarnessError(f"{path}: unknown key(s) {', '.join(unknown)}; allowed: {', '.join(JUDGE_KEYS)}")
    name = raw.get("name", path.stem)
    if not isinstance(name, str) or not JUDGE_NAME.match(name):
        raise HarnessError(f"{path}: 'name' must be letters, digits and . _ @ : + - (no spaces), got {name!r}")
    return JudgeSpec(
        name=name,
        model=_model(raw, path),
        style=_style(raw, path),
        sampling=_sampling(raw, path),
        vllm_args=_vllm_args(raw, path),
        max_concurrency=_max_concurrency(raw, path),
        description=_description(raw, path),
        constrained=_constrained(raw, path),
    )


def _constrained(raw: dict[str, Any], path: Path) -> bool:
    value = raw.get("constrained", False)
    if not isinstance(value, bool):
        raise HarnessError(f"{path}: 'constrained' must be true or false, got {value!r}")
    if value and str(raw.get("model", "")).startswith("openai:"):
        raise HarnessError(f"{path}: 'constrained' needs a vLLM judge; the OpenAI API takes no regex")
    if value and raw.get("style") == "table":
        raise HarnessError(f"{path}: 'constrained' applies to the per-item style; drop 'style: table'")
    return value


def _model(raw: dict[str, Any], path: Path) -> str:
    model = raw.get("model")
    if not isinstance(model, str) or not model.strip():
        raise HarnessError(f"{path}: 'model' is required: a local model directory, server URL(s), or openai:NAME")
    model = model.strip()
    if model.startswith((OPENAI_PREFIX, "http://", "https://")):
        return model
    # As in task files, a relative path is read from the file that writes it.
    local = Path(model).expanduser()
    return str(local if local.is_absolute() else (path.parent / local).resolve())


def _style(raw: dict[str, Any], path: Path) -> str | None:
    style = raw.get("style")
    if style is not None and style not in GRADING_STYLES:
        raise HarnessError(f"{path}: 'style' must be one of {', '.join(GRADING_STYLES)} (or left out), got {style!r}")
    return style


def _sampling(raw: dict[str, Any], path: Path) -> dict | None:
    sampling = raw.get("sampling")
    if sampling is None:
        return None
    check_sampling(sampling, f"{path}: 'sampling'")
    return dict(sampling)


def _vllm_args(raw: dict[str, Any], path: Path) -> tuple[str, ...]:
    args = raw.get("vllm_args", [])
    if not isinstance(args, list) or not all(
        isinstance(arg, (str, int, float)) and not isinstance(arg, bool) for arg in args
    ):
        raise HarnessError(f"{path}: 'vllm_args' must be a list such as ['--tensor-parallel-size', '8']")
    return tuple(str(arg) for arg in args)


def _max_concurrency(raw: dict[str, Any], path: Path) -> int | None:
    value = raw.get("max_concurrency")
    if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
        raise HarnessError(f"{path}: 'max_concurrency' must be a whole number of at least 1, got {value!r}")
    return value


def _description(raw: dict[str, Any], path: Path) -> str:
    description = raw.get("description", "")
    if not isinstance(description, str):
        raise HarnessError(f"{path}: 'description' must be text")
    return " ".join(description.split())
