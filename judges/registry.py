"""The judge registry: named judges from YAML files, and turning a `--judge` argument into a Judge.

A judge is a model plus a reply style plus sampling overrides. Built-in
suggestions live in ``judges/configs/*.yaml``; a user directory (the
``directory`` argument, else ``$SKILLMIX_JUDGES_DIR``) adds judges and replaces
built-in ones of the same name, which is how a user points a suggested judge at
their own copy of the weights. Anything that is not a registered name is read
as a model argument (harness.core.models) with defaults; ``rules`` is the
exact, model-free rule judge of the verifiable world (judges.rules), which no
judge file can replace.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import yaml

from harness.core.errors import HarnessError
from harness.core.models import OPENAI, OPENAI_PREFIX, RULES, Model, is_url, resolve_model, split_name
from harness.core.taskfile import check_sampling
from judges.styles import get_style

BUILTIN_JUDGES_DIR = Path(__file__).resolve().parent / "configs"
JUDGES_DIR_VARIABLE = "SKILLMIX_JUDGES_DIR"
JUDGE_KEYS = ("name", "model", "style", "sampling", "vllm_args", "max_concurrency", "constrained", "description")
# Names become store labels and parts of log-file names: no spaces or slashes.
JUDGE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@:+-]*$")


@dataclass(frozen=True)
class JudgeConfig:
    """What a judge file says (the model is still text: its weights may not be on this machine)."""

    name: str  # label used in stores and reports
    model: str  # local path, URL(s) (comma-separated for replicas), or openai:NAME
    style: str | None = None  # a judges.styles name; None -> the task's grading_style
    sampling: dict | None = None  # overrides the task's judge_sampling keys (temperature, max_tokens, top_p)
    vllm_args: tuple[str, ...] = ()  # e.g. ("--tensor-parallel-size", "8") for a 70B judge
    max_concurrency: int | None = None  # None: the default of the model's kind
    description: str = ""
    # vLLM judges only: decode the per-item reply under a regex of the rubric (structured outputs),
    # so every reply parses; for small open judges that drift from the format.
    constrained: bool = False


@dataclass(frozen=True)
class Judge:
    """A resolved judge: the model that grades and how it is asked."""

    name: str
    model: Model
    style: str | None = None  # None: the task's grading_style
    sampling: Mapping[str, float | int] | None = None
    constrained: bool = False
    description: str = ""

    def style_for(self, task_style: str) -> str:
        return self.style or task_style

    def sampling_for(self, task_sampling: Mapping[str, float | int]) -> dict[str, float | int]:
        """The task's judge sampling with this judge's own overrides on top."""
        return {**task_sampling, **(self.sampling or {})}

    def constrain(self) -> Judge:
        """Decode under the per-item rubric regex (vLLM structured outputs): vLLM judges only."""
        if self.model.kind == OPENAI:
            raise HarnessError(
                f"judge {self.name} is on the OpenAI API, which takes no regex; it cannot be constrained"
            )
        return replace(self, constrained=True, style="items")


def load_judges(directory: Path | None = None) -> dict[str, JudgeConfig]:
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


def resolve_judge(arg: str, directory: Path | None = None, *, vllm_args: tuple[str, ...] = ()) -> Judge:
    """``[NAME=]JUDGE``: a registered judge by name, or else a judge on a model argument with defaults.

    ``vllm_args`` are appended to the judge's own (``--judge-vllm-args``).
    """
    name, text = split_name(arg)
    if not text:
        raise HarnessError("--judge is empty; give a registered judge name (`harness judges list`) or a model")
    judges = load_judges(directory)
    config = judges.get(text)
    if text == RULES:
        # The rule judge's reply is written by code in the per-item format (judges.grader).
        judge = Judge(name=RULES, model=resolve_model(RULES, "judge"), style="items",
                      description="exact checks of the rule catalog (judges.rules); no model")  # fmt: skip
    elif config is None:
        if not (is_url(text) or text.startswith(OPENAI_PREFIX) or Path(text).expanduser().is_dir()):
            raise HarnessError(
                f"--judge {text}: not a registered judge ({', '.join(sorted(judges)) or 'none'}) and not a model "
                "directory; give a judge name, a local model directory, a server URL, or openai:NAME"
            )
        model = resolve_model(text, "judge", vllm_args=vllm_args)
        if model.kind == "url":
            model = replace(model, name=f"judge@{model.source[0].split('://', 1)[1].split('/', 1)[0]}")
        # GPT-4-class judges answer best in the table style the SKILL-MIX papers used.
        style = "table" if model.kind == OPENAI else None
        judge = Judge(name=model.name, model=model, style=style)
    else:
        check_judge_model(config)
        model = resolve_model(
            config.model, "judge", vllm_args=(*config.vllm_args, *vllm_args), max_concurrency=config.max_concurrency
        )
        judge = Judge(
            name=config.name,
            model=model,
            style=config.style,
            sampling=config.sampling,
            constrained=config.constrained,
            description=config.description,
        )
    if name:
        judge = replace(judge, name=name)
    return replace(judge, model=replace(judge.model, name=judge.name))


def check_judge_model(config: JudgeConfig) -> None:
    """Fail early, naming the judge, when a local judge's weights are not where its config says."""
    if config.model.startswith(OPENAI_PREFIX) or is_url(config.model):
        return
    path = Path(config.model)
    if not (path / "config.json").is_file():
        raise HarnessError(
            f"judge {config.name}: no model at {path} (no config.json there). Put the weights there, or add a "
            f"YAML file named {config.name}.yaml with your own 'model:' path to a judges directory and pass it "
            f"with --judges-dir or ${JUDGES_DIR_VARIABLE} (see judges/README.md)"
        )


def _read_directory(directory: Path) -> dict[str, JudgeConfig]:
    judges: dict[str, JudgeConfig] = {}
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


def read_judge_file(path: Path) -> JudgeConfig:
    """One judge YAML file, validated; every error names the file."""
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        raise HarnessError(f"{where}: not valid YAML ({getattr(error, 'problem', None) or error})") from None
    except OSError as error:
        raise HarnessError(f"cannot read judge file {path}: {error}") from None
    except UnicodeDecodeError as error:
        raise HarnessError(f"{path}: not UTF-8 text ({error.reason} at byte {error.start}); save it as UTF-8") from None
    if not isinstance(raw, dict):
        raise HarnessError(f"{path}: a judge file must be a mapping with at least 'model:'")
    unknown = sorted(str(key) for key in raw if key not in JUDGE_KEYS)
    if unknown:
        raise HarnessError(f"{path}: unknown key(s) {', '.join(unknown)}; allowed: {', '.join(JUDGE_KEYS)}")
    name = raw.get("name", path.stem)
    if not isinstance(name, str) or not JUDGE_NAME.match(name):
        raise HarnessError(f"{path}: 'name' must be letters, digits and . _ @ : + - (no spaces), got {name!r}")
    if name == RULES:
        raise HarnessError(f"{path}: the judge name {RULES!r} belongs to the built-in rule judge; choose another")
    return JudgeConfig(
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
    if value and str(raw.get("model", "")).startswith(OPENAI_PREFIX):
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
    if style is not None:
        get_style(str(style), f"{path}: 'style'")
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
