"""Start and stop vLLM OpenAI-compatible server processes, one per model.

The student and the judge share one machine: on a GPU each server gets a
share of `--gpu-memory-utilization` and they start one after the other (vLLM
profiles free memory at start-up, so a concurrent start would double-count
it); on the CPU each gets a share of the KV-cache space and of the cores, and
they start together. Every server listens on 127.0.0.1 with a fresh API key,
passed through the environment (VLLM_API_KEY) rather than the command line,
where `ps` would show it to every local user; and every process we start is stopped on exit, Ctrl-C, SIGTERM, or the death
of the harness itself (Linux parent-death signal).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

from harness.core.errors import HarnessError
from harness.core.models import Endpoint, check_model_dir

HOST = "127.0.0.1"


@dataclass(frozen=True)
class ServerSpec:
    role: str  # a label for messages and the log file name, e.g. student-base
    model_path: Path
    port: int | None = None
    extra_args: tuple[str, ...] = ()


@dataclass(frozen=True)
class ServingOptions:
    device: str = "auto"  # auto | gpu | cpu
    gpu_memory_utilization: float = 0.9  # total over all servers on the GPU
    cpu_kv_cache_gib: float = 4.0  # total over all servers on the CPU
    startup_timeout: float = 900.0
    log_dir: Path = field(default_factory=lambda: Path.cwd() / "logs")
    max_model_len: int | None = None
    api_key: str | None = None  # one key for every server (default: a fresh key each)


class StoppedServer(NamedTuple):
    role: str
    how: str  # "was killed by signal 9", "exited with code 1"
    log_path: Path


@dataclass
class _Process:
    spec: ServerSpec
    endpoint: Endpoint
    popen: subprocess.Popen
    log_path: Path


def detect_device() -> str:
    """'gpu' when nvidia-smi lists a GPU, else 'cpu'."""
    if shutil.which("nvidia-smi"):
        try:
            listing = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            return "cpu"
        if listing.returncode == 0 and "GPU" in listing.stdout:
            return "gpu"
    return "cpu"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((HOST, 0))
        return probe.getsockname()[1]


def _check_port_free(port: int) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((HOST, port))
        except OSError:
            raise HarnessError(
                f"port {port} on {HOST} is already in use; choose another port or stop the process holding it"
            ) from None


def _die_with_parent() -> None:
    """Run in the child before exec: get SIGTERM when the harness dies, and lead a new process group."""
    os.setsid()
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _cpu_core_groups(n_servers: int) -> list[str]:
    """Split the cores we may use evenly between servers, as vLLM's OMP bind lists."""
    cores = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else list(range(os.cpu_count() or 1))
    if len(cores) < n_servers:
        return ["auto"] * n_servers
    size = len(cores) // n_servers
    groups = [cores[i * size : (i + 1) * size] for i in range(n_servers)]
    return [",".join(str(core) for core in group) for group in groups]


def tail(path: Path, lines: int = 30) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()
    except OSError:
        return "(no log)"
    return "\n".join(text[-lines:])


class ServerManager:
    """Context manager owning the vLLM server processes for a set of models."""

    def __init__(self, specs: Sequence[ServerSpec], options: ServingOptions = ServingOptions()):
        if len({spec.role for spec in specs}) != len(specs):
            raise HarnessError("each role may be served once; give replicas of a role as URLs instead")
        self.specs = list(specs)
        self.options = options
        self.device = detect_device() if options.device == "auto" else options.device
        self.processes: list[_Process] = []

    def __enter__(self) -> dict[str, Endpoint]:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- start ----------------------------------------------------------------
    def _command(self, spec: ServerSpec, port: int, share: float) -> list[str]:
        command = [
            sys.executable, "-m", "vllm.entrypoints.openai.api_server",
            "--model", str(spec.model_path),
            "--served-model-name", spec.model_path.name,
            "--host", HOST, "--port", str(port),
        ]  # fmt: skip
        if self.device == "gpu":
            command += ["--gpu-memory-utilization", f"{share * self.options.gpu_memory_utilization:.3f}"]
        else:
            # vLLM's CPU attention needs bf16; fp32 checkpoints are downcast.
            command += ["--dtype", "bfloat16"]
        if self.options.max_model_len:
            command += ["--max-model-len", str(self.options.max_model_len)]
        return command + list(spec.extra_args)

    def _launch(self, spec: ServerSpec, share: float, cores: str) -> _Process:
        check_model_dir(spec.model_path)
        port = spec.port or free_port()
        if spec.port:
            _check_port_free(port)
        api_key = self.options.api_key or secrets.token_hex(24)
        log_dir = self.options.log_dir
        log_dir.mkdir(parents=True, exist_ok=True)
        log_path = log_dir / f"vllm-{spec.role}.log"
        env = dict(os.environ)
        env["VLLM_API_KEY"] = api_key  # never on the command line: `ps` shows that to every local user
        env.setdefault("VLLM_LOGGING_LEVEL", "INFO")
        if self.device == "cpu":
            env["VLLM_CPU_KVCACHE_SPACE"] = str(max(1, int(share * self.options.cpu_kv_cache_gib)))
            env.setdefault("VLLM_CPU_OMP_THREADS_BIND", cores)
            # vllm-cpu 0.32 with torch 2.13 cannot load the AOT-compiled model it saved ("'function' object
            # has no attribute 'finalize_loading'"), so with AOT on every start compiles again: about 6 s
            # more per start here. The plain torch.compile cache does load. The GPU path keeps vLLM's default.
            env.setdefault("VLLM_USE_AOT_COMPILE", "0")
        with open(log_path, "w") as log:
            popen = subprocess.Popen(
                self._command(spec, port, share),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
                preexec_fn=_die_with_parent,
            )
        endpoint = Endpoint(
            base_url=f"http://{HOST}:{port}/v1", api_key=api_key, model=spec.model_path.name, log_path=log_path
        )
        process = _Process(spec=spec, endpoint=endpoint, popen=popen, log_path=log_path)
        self.processes.append(process)
        return process

    def _wait_healthy(self, process: _Process, deadline: float) -> None:
        health = process.endpoint.base_url.removesuffix("/v1") + "/health"
        while True:
            code = process.popen.poll()
            if code is not None:
                raise HarnessError(
                    f"the {process.spec.role} server ({process.spec.model_path}) exited with code {code} while "
                    f"starting. Last lines of {process.log_path}:\n{tail(process.log_path)}"
                )
            try:
                with urllib.request.urlopen(health, timeout=5) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            if time.monotonic() > deadline:
                raise HarnessError(
                    f"the {process.spec.role} server did not become healthy within "
                    f"{self.options.startup_timeout:.0f} s; raise --startup-timeout or read {process.log_path}. "
                    f"Last lines:\n{tail(process.log_path)}"
                )
            time.sleep(1.0)

    def start(self) -> dict[str, Endpoint]:
        share = 1.0 / max(1, len(self.specs))
        cores = _cpu_core_groups(len(self.specs))
        deadline = time.monotonic() + self.options.startup_timeout
        if self.device == "gpu":
            for spec in self.specs:
                process = self._launch(spec, share, "auto")
                self._wait_healthy(process, deadline)
        else:
            launched = [self._launch(spec, share, group) for spec, group in zip(self.specs, cores, strict=True)]
            for process in launched:
                self._wait_healthy(process, deadline)
        return {process.spec.role: process.endpoint for process in self.processes}

    def has_stopped(self, endpoint: Endpoint) -> bool:
        """Whether the server we started behind ``endpoint`` is no longer running (False for any other endpoint)."""
        return any(process.endpoint.base_url == endpoint.base_url and process.popen.poll() is not None
                   for process in self.processes)  # fmt: skip

    def stopped(self) -> list[StoppedServer]:
        """The servers that have stopped on their own while they were meant to run."""
        stopped = []
        for process in self.processes:
            code = process.popen.poll()
            if code is not None:
                how = f"was killed by signal {-code}" if code < 0 else f"exited with code {code}"
                stopped.append(StoppedServer(process.spec.role, how, process.log_path))
        return stopped

    # -- stop -----------------------------------------------------------------
    def stop(self, grace: float = 20.0) -> None:
        for process in self.processes:
            if process.popen.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.popen.pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        for process in self.processes:
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.popen.wait(timeout=max(0.1, deadline - time.monotonic()))
            # The API server's engine and worker processes share its group; make sure none survive.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.popen.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.popen.wait(timeout=5)
        self.processes.clear()


@contextlib.contextmanager
def terminate_on_sigterm() -> Iterator[None]:
    """Turn SIGTERM into KeyboardInterrupt so `with ServerManager(...)` blocks unwind and stop servers."""

    def handler(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
