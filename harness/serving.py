"""Turn the user's model arguments into ready `ModelRef`s, serving local paths.

A model argument is one of:
- a local model directory, which we serve with vLLM (see harness.server);
- the URL of a running OpenAI-compatible server (repeat it for replicas); the
  key comes from VLLM_API_KEY, the variable vLLM's own server reads;
- `openai:NAME`, the OpenAI API (OPENAI_API_KEY, optional OPENAI_BASE_URL);
- nothing, which means the embedded default: tiny local models that the
  harness builds once into its cache directory.
"""

from __future__ import annotations

import contextlib
import json
import os
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from harness.cache import default_cache_path
from harness.client import ModelRef
from harness.errors import HarnessError
from harness.identity import local_model_identity
from harness.server import Endpoint, ServerManager, ServerSpec, ServingOptions, check_model_dir

OPENAI_PREFIX = "openai:"
DEFAULT_SEEDS = {"student": 1, "judge": 2, "teacher": 3}


@dataclass(frozen=True)
class ModelArg:
    kind: str  # local | url | openai
    values: tuple[str, ...]


def parse_model_args(role: str, values: Sequence[str]) -> ModelArg | None:
    """Classify the arguments given for one role; None means the default model."""
    if not values:
        return None
    urls = [value for value in values if value.startswith(("http://", "https://"))]
    if urls:
        if len(urls) != len(values):
            raise HarnessError(f"--{role} mixes URLs with other kinds of model; give either URLs (replicas) or one model")
        return ModelArg("url", tuple(urls))
    if len(values) > 1:
        raise HarnessError(f"--{role} was given {len(values)} times; only URLs (replicas) may repeat")
    value = values[0]
    if value.startswith(OPENAI_PREFIX):
        return ModelArg("openai", (value[len(OPENAI_PREFIX) :],))
    path = Path(value).expanduser()
    check_model_dir(path)
    return ModelArg("local", (str(path.resolve()),))


def default_model_dir(role: str) -> Path:
    return default_cache_path().parent / "models" / f"tiny-{role}"


def ensure_default_model(role: str) -> Path:
    """The embedded default model for a role, built on first use (a few seconds, no download)."""
    from harness.tinymodel import TinyModelSpec, build_tiny_model

    directory = default_model_dir(role)
    if not (directory / "config.json").is_file():
        build_tiny_model(directory, TinyModelSpec(seed=DEFAULT_SEEDS.get(role, 0)), overwrite=True)
    return directory


def _served_model(base_url: str, api_key: str) -> tuple[str, str]:
    """Ask a running server which model it serves: (name for requests, identity)."""
    request = urllib.request.Request(base_url.rstrip("/") + "/models", headers={"Authorization": f"Bearer {api_key}"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            listing = json.load(response)
    except (urllib.error.URLError, OSError, ValueError) as error:
        raise HarnessError(
            f"could not reach the server at {base_url} ({error}); is it running, and does the URL end in /v1?"
        ) from None
    models = listing.get("data") or []
    if not models:
        raise HarnessError(f"the server at {base_url} lists no model")
    name = models[0]["id"]
    return name, f"served:{name}:{models[0].get('root') or name}"


def _url_ref(role: str, urls: Sequence[str], max_concurrency: int) -> ModelRef:
    api_key = os.environ.get("VLLM_API_KEY", "EMPTY")
    served = [_served_model(url, api_key) for url in urls]
    if len({identity for _, identity in served}) > 1:
        raise HarnessError(f"the --{role} URLs serve different models: {sorted({i for _, i in served})}")
    endpoints = tuple(Endpoint(base_url=url.rstrip("/"), api_key=api_key, model=name) for url, (name, _) in zip(urls, served, strict=True))
    # A served name says little (two servers may both call different weights "model"), so the
    # identity also names the servers: a cache hit then needs the very same servers.
    identity = f"{served[0][1]}@{','.join(sorted(e.base_url for e in endpoints))}"
    return ModelRef(role=role, identity=identity, endpoints=endpoints, max_concurrency=max_concurrency)


def openai_ref(role: str, model: str, max_concurrency: int = 8) -> ModelRef:
    api_key = os.environ.get("OPENAI_API_KEY")
    if not api_key:
        raise HarnessError(
            f"--{role} openai:{model} needs an OpenAI API key: export OPENAI_API_KEY=... "
            "(and OPENAI_BASE_URL for a compatible provider), or choose a local judge"
        )
    base_url = os.environ.get("OPENAI_BASE_URL", "https://api.openai.com/v1")
    endpoint = Endpoint(base_url=base_url, api_key=api_key, model=model)
    return ModelRef(role=role, identity=f"openai:{model}", endpoints=(endpoint,), max_concurrency=max_concurrency)


@contextlib.contextmanager
def serve_roles(
    models: Mapping[str, Sequence[str]],
    options: ServingOptions,
    *,
    max_concurrency: int = 64,
    extra_args: Mapping[str, Sequence[str]] | None = None,
) -> Iterator[dict[str, ModelRef]]:
    """Yield a ModelRef per role, starting vLLM servers for local models and stopping them on exit."""
    refs: dict[str, ModelRef] = {}
    specs: list[ServerSpec] = []
    identities: dict[str, str] = {}
    args = {role: parse_model_args(role, values) or ModelArg("local", (str(ensure_default_model(role)),)) for role, values in models.items()}
    # Check what needs no network first, so a missing API key is reported before anything else happens.
    for role, arg in sorted(args.items(), key=lambda item: item[1].kind != "openai"):
        if arg.kind == "url":
            refs[role] = _url_ref(role, arg.values, max_concurrency)
        elif arg.kind == "openai":
            refs[role] = openai_ref(role, arg.values[0])
        else:
            path = Path(arg.values[0])
            identities[role] = local_model_identity(path)
            specs.append(ServerSpec(role=role, model_path=path, extra_args=tuple((extra_args or {}).get(role, ()))))
    if not specs:
        yield refs
        return
    with ServerManager(specs, options) as endpoints:
        for role, endpoint in endpoints.items():
            refs[role] = ModelRef(role=role, identity=identities[role], endpoints=(endpoint,), max_concurrency=max_concurrency)
        yield {role: refs[role] for role in models}
