"""What a run directory may be, creating one, and the lock that keeps it to one writer.

A run directory holds the run store (``run.sqlite``), the reports and the server logs. A
directory that holds other files but no store is not a run: the reports would replace a
user's own files of the same names, so running there needs ``force``.

Two processes writing one run store would each start servers, repeat the model
work and collide on the store's keys, so a process that writes a run takes an
exclusive ``flock`` on the lock file first and refuses to go on when another
process holds it. The kernel drops an ``flock`` when its holder dies, however
it dies, so a run killed with ``kill -9`` leaves no stale lock behind: the file
stays, the lock does not. The file's content (pid, host, command, start time)
only feeds the message a second process shows.

Some cluster filesystems refuse ``flock`` (Lustre mounted without ``flock``, for
example); there the run goes on unlocked and the lock reports why.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import shlex
import socket
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from harness.core.errors import HarnessError

STORE_NAME = "run.sqlite"
LOCK_NAME = "run.lock"
# errno values meaning "this filesystem does not do flock", as opposed to "someone holds it".
_UNSUPPORTED = {errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL}


@dataclass(frozen=True)
class LockHolder:
    """Who holds a run's lock, as it wrote itself into the lock file."""

    pid: int
    host: str
    command: tuple[str, ...]
    since: float

    def describe(self) -> str:
        started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.since))
        where = "" if self.host == socket.gethostname() else f" on host {self.host}"
        program = Path(self.command[0]).name if self.command else "?"
        program = "python -m harness" if program == "__main__.py" else program
        return f"pid {self.pid}{where}, running since {started}: {shlex.join([program, *self.command[1:]])}"

    @classmethod
    def read(cls, text: str) -> LockHolder | None:
        try:
            fields = json.loads(text)
            return cls(
                int(fields["pid"]), str(fields["host"]), tuple(map(str, fields["command"])), float(fields["since"])
            )
        except (ValueError, TypeError, KeyError):
            return None  # written half-way, or by something else: the message says less


class RunLock:
    """An exclusive lock on one run directory, held until ``release`` or the death of this process."""

    def __init__(self, run_dir: Path):
        self.path = Path(run_dir) / LOCK_NAME
        self._fd: int | None = None
        self.unsupported: str | None = None  # why the filesystem could not lock, when it could not

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self, command: Sequence[str] | None = None) -> None:
        """Take the lock or raise a HarnessError naming the process that has it."""
        try:
            # os.open gives a descriptor that child processes (vLLM servers) do not inherit,
            # so the lock dies with this process and not with the servers it started.
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as error:
            raise HarnessError(
                f"cannot create {self.path} ({error.strerror}); a run directory must be writable. To only read a "
                "finished run, use `harness report RUN --out-dir DIR`"
            ) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            if error.errno in _UNSUPPORTED:
                os.close(fd)
                self.unsupported = (
                    f"the filesystem of {self.path.parent} does not support locks ({error.strerror}), so nothing "
                    "stops a second process from writing this run at the same time; run one at a time"
                )
                return
            holder = LockHolder.read(_read_all(fd))
            os.close(fd)
            if error.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise HarnessError(f"cannot lock {self.path}: {error.strerror}") from None
            who = holder.describe() if holder else "its details are not written yet"
            raise HarnessError(
                f"another harness process is writing {self.path.parent} ({who}). Wait for it to finish or stop it"
                + (f" (kill {holder.pid})" if holder else "")
                + ", then run again to resume; or use another --out directory"
            ) from None
        self._fd = fd
        info = {"pid": os.getpid(), "host": socket.gethostname(), "command": list(command or sys.argv),
                "since": time.time()}  # fmt: skip
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(info).encode(), 0)

    def release(self, *, remove: bool = False) -> None:
        """Let go of the lock; ``remove`` also deletes the file (only when the run directory goes too)."""
        if self._fd is None:
            return
        with contextlib.suppress(OSError):
            if remove:
                self.path.unlink()
            else:
                os.ftruncate(self._fd, 0)
        os.close(self._fd)  # closing the last descriptor drops the flock
        self._fd = None


def _read_all(fd: int) -> str:
    try:
        return os.pread(fd, 65536, 0).decode("utf-8", errors="replace")
    except OSError:
        return ""


# What a directory may hold without being a run: what a start that failed leaves there
# (server logs, and the prompts that --prompts-from converts before the run starts).
_OWN_ENTRIES = {STORE_NAME, STORE_NAME + "-wal", STORE_NAME + "-shm", LOCK_NAME, "logs", "prompts"}


def check_run_directory(run_dir: Path, *, force: bool = False) -> None:
    """Refuse a run directory that is a file, lies below a file, or holds other things than a run.

    A run writes results.json, report.md and report.png into its directory; in a directory
    that is not a run they could be the user's own files, so that needs ``force``.
    """
    run_dir = Path(run_dir)
    check_not_a_file(run_dir)
    if force or not run_dir.is_dir() or (run_dir / STORE_NAME).is_file():
        return
    foreign = sorted(entry.name for entry in run_dir.iterdir() if entry.name not in _OWN_ENTRIES)
    if foreign:
        shown = ", ".join(foreign[:4]) + (f" and {len(foreign) - 4} more" if len(foreign) > 4 else "")
        raise HarnessError(
            f"{run_dir} is not a run directory: it holds {shown} but no {STORE_NAME}. A run writes results.json, "
            "report.md and report.png there, replacing files of those names; use a new or empty --out directory, "
            "or pass --force to run there anyway"
        )


def check_not_a_file(run_dir: Path) -> None:
    """Refuse a run directory that is a file or lies below one (the nearest existing path decides)."""
    for path in (run_dir, *run_dir.parents):
        if path.exists() or path.is_symlink():
            if not path.is_dir():
                raise HarnessError(
                    f"{path} is a file; a run directory must be a directory (give --out a directory path)"
                )
            return


def make_dirs(run_dir: Path) -> list[Path]:
    """Create ``run_dir`` and any missing parents; returns the ones created, outermost first."""
    check_not_a_file(run_dir)
    missing = [path for path in (*reversed(run_dir.parents), run_dir) if not path.exists()]
    for path in missing:
        try:
            path.mkdir(exist_ok=True)
        except OSError as error:
            raise HarnessError(f"cannot create the run directory {path}: {error.strerror}") from None
    return missing
