"""One way to name a model: ``[NAME=]MODEL`` becomes a ``Model``, the one model type passed around.

MODEL is one of:

- a local model directory, which the harness serves with vLLM (harness.core.vllm);
- the URL of a running OpenAI-compatible server, ending in /v1; comma-separate
  the URLs of replicas of one model. The key comes from VLLM_API_KEY, the
  variable vLLM's own server reads;
- ``openai:NAME``, the OpenAI API (OPENAI_API_KEY; OPENAI_BASE_URL selects a
  compatible provider);
- ``rules``, the model-free backend of the verifiable rule world: as a judge it
  grades exactly with code (judges.rules), as a student or teacher it writes
  texts that earn full marks (harness.rules_teacher). Nothing is served or
  contacted for it, and it only works on tasks whose catalog is a rule catalog.

NAME labels the model in the run store and reports; it defaults to the
directory's name, the host, the OpenAI model name, or rules-student /
rules-teacher / rules. A judge named by its
registered name (judges/configs) is resolved by judges.registry, which calls
``resolve_model`` for the model it names. ``harness.core.connect`` turns Models
into connected clients.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from harness.core.errors import HarnessError

LOCAL, URL, OPENAI, RULES = "local", "url", "openai", "rules"
OPENAI_PREFIX = "openai:"
# The rule backend's identity in caches and stores; bump the version when its checks or texts change.
RULES_IDENTITY = "rules:v1"
ROLES = ("student", "judge", "teacher")
# Requests in flight per endpoint. A vLLM server needs a full batch to be fast; the OpenAI API
# rate-limits long before that. `--max-concurrency` or a judge file's `max_concurrency` overrides.
DEFAULT_MAX_CONCURRENCY = {LOCAL: 64, URL: 64, OPENAI: 8, RULES: 1}


@dataclass(frozen=True)
class Endpoint:
    """One running OpenAI-compatible server for one model."""

    base_url: str  # ends in /v1
    api_key: str
    model: str  # the name requests must use
    log_path: Path | None = None  # the server's log, when the harness started the server itself


@dataclass(frozen=True)
class Model:
    """A model in a role, as the user named it and, once connected, how to reach it."""

    name: str  # label in stores and reports
    role: str  # student | judge | teacher
    kind: str  # local | url | openai | rules
    source: tuple[str, ...]  # local: the resolved path; url: the replica URLs; openai: the model name
    reference: str  # what the user wrote (without NAME=)
    vllm_args: tuple[str, ...] = ()  # extra vLLM server arguments (local models)
    max_concurrency: int | None = None  # None: DEFAULT_MAX_CONCURRENCY of its kind
    identity: str | None = None  # what the cache and the store know it by; set when resolved or connected
    endpoints: tuple[Endpoint, ...] = ()  # set when connected
    seeded: bool = True  # send per-request seeds (see harness.core.connect.wants_seeds)

    @property
    def is_local(self) -> bool:
        return self.kind == LOCAL

    @property
    def model_free(self) -> bool:
        """True for the rule backend: code answers, so nothing is served, contacted or cached."""
        return self.kind == RULES

    @property
    def path(self) -> Path:
        if not self.is_local:
            raise HarnessError(f"{self.role} {self.name} is not a local model")
        return Path(self.source[0])

    @property
    def concurrency(self) -> int:
        return self.max_concurrency or DEFAULT_MAX_CONCURRENCY[self.kind]

    @property
    def label(self) -> str:
        """A file-name-safe label for logs: role and name."""
        return f"{self.role}-{self.name}".replace("/", "_").replace(":", "_")


def split_name(text: str) -> tuple[str | None, str]:
    """``NAME=MODEL`` -> (NAME, MODEL); text without a plain ``NAME=`` prefix -> (None, text)."""
    name, sep, rest = text.partition("=")
    if sep and name and not any(c in name for c in "/:") and rest:
        return name.strip(), rest.strip()
    return None, text.strip()


def is_url(text: str) -> bool:
    return text.startswith(("http://", "https://"))


def check_model_dir(path: Path) -> None:
    if not path.exists():
        raise HarnessError(
            f"model path {path} does not exist; pass a local model directory (see `harness models tiny`)"
        )
    if not (path / "config.json").is_file():
        raise HarnessError(
            f"{path} holds no config.json; pass a Hugging Face model directory saved with save_pretrained"
        )


def _default_name(kind: str, source: tuple[str, ...]) -> str:
    if kind == OPENAI:
        return source[0]
    if kind == URL:
        return "served@" + source[0].split("://", 1)[1].split("/", 1)[0]
    return Path(source[0]).name


def resolve_model(
    text: str,
    role: str,
    *,
    vllm_args: tuple[str, ...] | list[str] = (),
    max_concurrency: int | None = None,
) -> Model:
    """The Model that ``[NAME=]MODEL`` names; a local directory must exist and hold config.json."""
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}")
    name, model = split_name(text)
    if not model:
        raise HarnessError(f"--{role} {text!r} names no model; give a local directory, server URL(s) or openai:NAME")
    parts = [part.strip() for part in model.split(",") if part.strip()]
    if model == RULES:
        # "rules-student" and the judge "rules" can then share a run without NAME=.
        default = RULES if role == "judge" else f"{RULES}-{role}"
        return Model(name=name or default, role=role, kind=RULES, source=(RULES,), reference=RULES,
                     identity=RULES_IDENTITY)  # fmt: skip
    if any(is_url(part) for part in parts):
        if not all(is_url(part) for part in parts):
            raise HarnessError(f"--{role} {model}: mixes URLs with other text; give comma-separated server URLs only")
        kind, source = URL, tuple(part.rstrip("/") for part in parts)
    elif model.startswith(OPENAI_PREFIX):
        openai_name = model.removeprefix(OPENAI_PREFIX).strip()
        if not openai_name:
            raise HarnessError(f"--{role} openai: needs a model name, e.g. openai:gpt-4o")
        kind, source = OPENAI, (openai_name,)
    else:
        path = Path(model).expanduser().resolve()
        check_model_dir(path)
        kind, source = LOCAL, (str(path),)
    if max_concurrency is not None and max_concurrency < 1:
        raise HarnessError(f"max_concurrency for {role} {model} must be at least 1, got {max_concurrency}")
    return Model(
        name=name or _default_name(kind, source),
        role=role,
        kind=kind,
        source=source,
        reference=model,
        vllm_args=tuple(vllm_args),
        max_concurrency=max_concurrency,
    )
