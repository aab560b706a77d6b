"""Run the real `harness` entry point, in this process or as a separate one, and see what a user sees.

``main`` goes through ``harness.cli.main``: a HarnessError comes out as an ``error:``
line with exit code 2, and any other exception escapes to the test as the traceback
a user would get. ``command`` and ``environment`` start ``python -m harness`` as its
own process, for what needs one (a lock held by another process, signals).
``file_modes_enforced`` makes even root obey file modes, for read-only directories.
"""

from __future__ import annotations

import contextlib
import ctypes
import io
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from harness.cli import main as harness_main

REPO = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Outcome:
    code: int
    out: str
    err: str


def main(
    args: list[str], capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch, stdin: bytes = b""
) -> Outcome:
    """`harness ARGS` in this process, through the same ``main`` as the console script."""
    monkeypatch.setattr(sys, "argv", ["harness", *map(str, args)])
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(stdin), encoding="utf-8"))
    capsys.readouterr()
    try:
        harness_main()
        code = 0
    except SystemExit as exit_:
        code = exit_.code if isinstance(exit_.code, int) else 1
    captured = capsys.readouterr()
    return Outcome(code, captured.out, captured.err)


def environment(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    env.update(extra)
    return env


def command(*args: object) -> list[str]:
    return [sys.executable, "-m", "harness", *map(str, args)]


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32)]


@contextlib.contextmanager
def file_modes_enforced() -> Iterator[None]:
    """Within the block, this thread obeys file modes even as root, as any other user would.

    Root's CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH and CAP_FOWNER leave its effective set (they
    stay permitted, so they come back afterwards). Capabilities are per thread on Linux, and
    the harness reads and writes its store on the calling thread.
    """
    if os.geteuid() != 0:
        yield
        return
    libc = ctypes.CDLL(None, use_errno=True)
    header = _CapHeader(0x20080522, 0)  # _LINUX_CAPABILITY_VERSION_3, this thread
    data = (_CapData * 2)()
    if libc.capget(ctypes.byref(header), data) != 0:
        pytest.skip(f"capget failed: {os.strerror(ctypes.get_errno())}")
    saved = data[0].effective
    data[0].effective &= ~0b1110  # bits 1, 2, 3
    if libc.capset(ctypes.byref(header), data) != 0:
        pytest.skip(f"cannot drop capabilities: {os.strerror(ctypes.get_errno())}")
    try:
        yield
    finally:
        data[0].effective = saved
        libc.capset(ctypes.byref(header), data)
