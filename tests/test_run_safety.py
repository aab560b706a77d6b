"""A run directory is written by one process at a time and is never damaged or mistaken for another.

- a second `harness run` on a directory in use stops at once, naming the process that has it;
  a run killed with kill -9 leaves no lock that blocks its resume;
- a directory that is not a run is refused unless --force, a file is refused, and a run that
  fails before it starts leaves no store and no directory behind;
- a damaged or read-only store gives an ``error:`` line (or, read-only, a report all the same).

The runs are real `harness run` processes against scripted OpenAI-compatible servers.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from cli_process import command, environment, file_modes_enforced, main
from scripted_server import ScriptedServer

from harness.cli import cli
from harness.core.errors import HarnessError
from harness.core.rundir import LOCK_NAME, RunLock
from harness.core.store import STORE_NAME, RunStore

TASK = "skillmix-small-k2-all"
ANSWER = "Answer: The harbour master checked the tide table before dawn.\nExplanation: it shows both skills."


def full_marks_judge(body: dict) -> str:
    block = body["messages"][-1]["content"].split("Rubric (", 1)[1]
    items = re.findall(r"^\d+\. (.+)$", block, flags=re.MULTILINE)
    lines = [line for index, item in enumerate(items) for line in (f"{index + 1}. {item}", "Fine.", "Point earned: 1")]
    return "\n".join(lines) + f"\nGrade: {len(items)}"


def run_args(out: Path, cache: Path, student: ScriptedServer, judge: ScriptedServer, *extra: str) -> list[str]:
    return ["run", TASK, "--combinations", "5", "--out", str(out), "--cache", str(cache),
            "--student", student.endpoint.base_url, "--judge", judge.endpoint.base_url, *extra]  # fmt: skip


def wait_for(condition, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting")
        time.sleep(0.05)


class Gate:
    """A student that answers only once the test opens the gate, so a run can be caught mid-way."""

    def __init__(self) -> None:
        self.opened = threading.Event()

    def __call__(self, body: dict) -> str:
        self.opened.wait(timeout=90)
        return ANSWER


def error_line(stderr: str) -> str:
    """The one ``error:`` line a failed command ends with (progress lines may come before it)."""
    assert "Traceback" not in stderr, stderr
    last = stderr.rstrip("\n").splitlines()[-1]
    assert last.startswith("error: "), stderr
    return last


def counts(out: Path) -> dict[str, int]:
    store = RunStore(out, create=False)
    try:
        return {**store.counts(), "sessions": len(store.sessions())}
    finally:
        store.close()


# -- the run lock -----------------------------------------------------------------------------
def test_a_second_run_on_the_same_directory_stops_at_once_naming_the_first(tmp_path: Path, capsys, monkeypatch) -> None:
    gate = Gate()
    out, cache = tmp_path / "run", tmp_path / "cache.sqlite"
    with ScriptedServer(responder=gate) as student, ScriptedServer(responder=full_marks_judge) as judge:
        args = run_args(out, cache, student, judge)
        first = subprocess.Popen(command(*args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                 env=environment())  # fmt: skip
        try:
            # the first run is mid-way: all five first turns are in flight, held at the gate
            wait_for(lambda: len(student.requests) == 5)
            second = main(args, capsys, monkeypatch)
            assert second.code == 2, second.err
            assert error_line(second.err).startswith(
                f"error: another harness process is writing {out} (pid {first.pid}"
            )
            assert "running since" in second.err and f"run {TASK}" in second.err  # when, and the other's command
            assert len(student.requests) == 5 and not judge.requests  # the second one asked nothing
        finally:
            gate.opened.set()
        _, err = first.communicate(timeout=120)
    assert first.returncode == 0, err
    assert counts(out) == {"combinations": 5, "generations": 5, "grades": 5, "sessions": 1}


def test_a_lock_left_by_a_process_killed_with_sigkill_does_not_block_a_resume(
    tmp_path: Path, capsys, monkeypatch
) -> None:
    out, cache = tmp_path / "run", tmp_path / "cache.sqlite"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from harness.core.store import RunStore; "
         f"store = RunStore({str(out)!r}, exclusive=True); print('locked', flush=True); time.sleep(120)"],
        stdout=subprocess.PIPE, text=True, env=environment(),
    )  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(HarnessError, match=f"pid {holder.pid}"):
            RunStore(out, exclusive=True)
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=30)
    assert (out / LOCK_NAME).is_file()  # the file stays; the kernel dropped the lock
    with ScriptedServer(responder=lambda body: ANSWER) as student, ScriptedServer(responder=full_marks_judge) as judge:
        resumed = main(run_args(out, cache, student, judge), capsys, monkeypatch)
    assert resumed.code == 0, resumed.err
    assert counts(out) == {"combinations": 5, "generations": 5, "grades": 5, "sessions": 1}


def test_the_lock_is_per_directory_and_released_on_close(tmp_path: Path) -> None:
    first = RunStore(tmp_path / "a", exclusive=True)
    with pytest.raises(
        HarnessError, match=rf"another harness process is writing {re.escape(str(tmp_path / 'a'))} \(pid {os.getpid()}"
    ):
        RunStore(tmp_path / "a", exclusive=True)
    RunStore(tmp_path / "b", exclusive=True).close()  # another directory is free
    first.close()
    RunStore(tmp_path / "a", exclusive=True).close()  # and so is this one, once closed
    lock = RunLock(tmp_path / "a")
    lock.acquire(["harness", "run", "x"])
    assert json.loads((tmp_path / "a" / LOCK_NAME).read_text())["command"] == ["harness", "run", "x"]
    lock.release()


# -- what a run directory may be -------------------------------------------------------------
def test_a_directory_that_is_not_a_run_is_refused_unless_forced(tmp_path: Path, capsys, monkeypatch) -> None:
    out, cache = tmp_path / "mine", tmp_path / "cache.sqlite"
    out.mkdir()
    (out / "report.md").write_text("my own notes\n")
    with ScriptedServer(responder=lambda body: ANSWER) as student, ScriptedServer(responder=full_marks_judge) as judge:
        refused = main(run_args(out, cache, student, judge), capsys, monkeypatch)
        assert refused.code == 2, refused.err
        assert refused.err.startswith(f"error: {out} is not a run directory")
        assert "--force" in refused.err and "report.md" in refused.err
        assert (out / "report.md").read_text() == "my own notes\n" and not (out / STORE_NAME).exists()
        assert not student.requests
        forced = main(run_args(out, cache, student, judge, "--force"), capsys, monkeypatch)
        assert forced.code == 0, forced.err
        # now it is a run, and resuming it needs no --force
        again = main(run_args(out, cache, student, judge), capsys, monkeypatch)
        assert again.code == 0, again.err
    assert (out / STORE_NAME).is_file()


def test_out_pointing_at_a_file_is_an_error(tmp_path: Path, capsys, monkeypatch) -> None:
    (tmp_path / "file").write_text("x")
    for out in (tmp_path / "file", tmp_path / "file" / "below"):
        result = main(["run", TASK, "--out", out, "--student", "http://127.0.0.1:9/v1",
                       "--judge", "http://127.0.0.1:9/v1"], capsys, monkeypatch)  # fmt: skip
        assert result.code == 2 and result.err.startswith("error: "), result.err
        assert f"{tmp_path / 'file'} is a file" in result.err
    assert (tmp_path / "file").read_text() == "x"


@pytest.mark.parametrize(
    "failure",
    ["missing OpenAI key", "unreachable server", "missing model directory", "unknown judge"],
)
def test_a_run_that_fails_before_it_starts_leaves_nothing_behind(
    tmp_path: Path, capsys, monkeypatch, failure: str
) -> None:
    out = tmp_path / "runs" / "new"
    student, judge = "http://127.0.0.1:9/v1", "http://127.0.0.1:9/v1"
    if failure == "missing OpenAI key":
        monkeypatch.delenv("OPENAI_API_KEY", raising=False)
        judge = "openai:gpt-4o"
    elif failure == "missing model directory":
        student = str(tmp_path / "no-such-model")
    elif failure == "unknown judge":
        judge = "no-such-judge"
    result = main(["run", TASK, "--out", out, "--cache", tmp_path / "cache.sqlite", "--student", student,
                   "--judge", judge], capsys, monkeypatch)  # fmt: skip
    assert result.code == 2 and error_line(result.err), result.err
    assert not (tmp_path / "runs").exists()


def test_a_failed_resume_keeps_the_run(tmp_path: Path, capsys, monkeypatch) -> None:
    out, cache = tmp_path / "run", tmp_path / "cache.sqlite"
    with ScriptedServer(responder=lambda body: ANSWER) as student, ScriptedServer(responder=full_marks_judge) as judge:
        assert main(run_args(out, cache, student, judge), capsys, monkeypatch).code == 0
        # a second judge that cannot be reached: the run stays as it was
        failed = main(run_args(out, cache, student, judge, "--judge", "b=http://127.0.0.1:9/v1"), capsys, monkeypatch)
    assert failed.code == 2, failed.err
    assert counts(out) == {"combinations": 5, "generations": 5, "grades": 5, "sessions": 2}


# -- damaged and read-only stores ----------------------------------------------------------------
@pytest.fixture(scope="module")
def finished_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("finished")
    with ScriptedServer(responder=lambda body: ANSWER) as student, ScriptedServer(responder=full_marks_judge) as judge:
        # two judges, so that `harness agreement` has two raters to compare
        args = run_args(root / "run", root / "cache.sqlite", student, judge, "--judge", f"b={judge.endpoint.base_url}")
        cli.main(args, standalone_mode=False)
    return root / "run"


def copy_run(run: Path, to: Path) -> Path:
    to.mkdir()
    for name in ("run.sqlite",):
        (to / name).write_bytes((run / name).read_bytes())
    return to


@pytest.mark.parametrize("damage", ["garbage", "truncated", "zeroed pages"])
def test_a_damaged_store_is_an_error_naming_it(
    finished_run: Path, tmp_path: Path, capsys, monkeypatch, damage: str
) -> None:
    run = copy_run(finished_run, tmp_path / "run")
    data = (run / STORE_NAME).read_bytes()
    if damage == "garbage":
        damaged = b"this is not a database, just some bytes " * 200
    elif damage == "truncated":
        damaged = data[: len(data) // 3]
    else:
        damaged = data[:4096] + b"\0" * (len(data) - 4096)
    (run / STORE_NAME).write_bytes(damaged)
    for args in (["report", run], ["agreement", run], ["labels", "export", run, "--n", "2"]):
        result = main(args, capsys, monkeypatch)
        assert result.code == 2, (args, result.err)
        assert result.err.startswith(f"error: {run / STORE_NAME} is damaged"), result.err
        assert "new --out" in result.err  # how to go on
    assert (run / STORE_NAME).read_bytes() == damaged  # nothing was overwritten


def make_read_only(directory: Path) -> None:
    for path in directory.iterdir():
        path.chmod(0o444)
    directory.chmod(0o555)


def test_a_read_only_run_reports_to_stdout_or_elsewhere(
    finished_run: Path, tmp_path: Path, capsys, monkeypatch
) -> None:
    run = copy_run(finished_run, tmp_path / "run")
    before = (run / STORE_NAME).read_bytes()
    make_read_only(run)
    try:
        with file_modes_enforced():
            printed = main(["report", run], capsys, monkeypatch)
            elsewhere = main(["report", run, "--out-dir", tmp_path / "reports"], capsys, monkeypatch)
            agreement = main(["agreement", run, "--out-dir", tmp_path / "agreement"], capsys, monkeypatch)
            resumed = main(["run", TASK, "--combinations", "5", "--out", run, "--student", "http://127.0.0.1:9/v1",
                            "--judge", "http://127.0.0.1:9/v1"], capsys, monkeypatch)  # fmt: skip
    finally:
        run.chmod(0o755)
    assert printed.code == 0, printed.err
    assert "skillmix-small-k2-all" in printed.out and "1.00" in printed.out
    assert "warning: cannot write the reports" in printed.err and "--out-dir" in printed.err
    assert elsewhere.code == 0, elsewhere.err
    assert json.loads((tmp_path / "reports" / "results.json").read_text())["results"][0]["metrics"]["n"] == 5
    assert agreement.code == 0, agreement.err
    assert (tmp_path / "agreement" / "agreement.json").is_file()
    assert resumed.code == 2 and "must be writable" in error_line(resumed.err)
    assert (run / STORE_NAME).read_bytes() == before
    assert sorted(path.name for path in run.iterdir()) == [STORE_NAME]


@pytest.mark.parametrize("shm", [True, False])
def test_a_read_only_store_with_rows_in_its_wal_is_read_or_refused_never_skipped(tmp_path: Path, shm: bool) -> None:
    # A run killed hard leaves rows in run.sqlite-wal: read-only, they are read, or the store is refused.
    run, copy = tmp_path / "run", tmp_path / "copy"
    store = RunStore(run)
    store.set_meta("marker", "in the wal")
    copy.mkdir()
    for name in (STORE_NAME, STORE_NAME + "-wal", STORE_NAME + "-shm")[: 3 if shm else 2]:
        (copy / name).write_bytes((run / name).read_bytes())  # as kill -9 would leave them
    store.close()
    assert (copy / (STORE_NAME + "-wal")).stat().st_size > 0
    make_read_only(copy)
    try:
        with file_modes_enforced():
            if shm:
                assert RunStore(copy, read_only=True).get_meta("marker") == "in the wal"
            else:
                with pytest.raises(HarnessError, match="rows not yet written back from run.sqlite-wal"):
                    RunStore(copy, read_only=True)
    finally:
        copy.chmod(0o755)


def test_a_run_with_a_damaged_cache_file_stops_with_an_error_and_keeps_the_run(
    tmp_path: Path, capsys, monkeypatch
) -> None:
    out, cache = tmp_path / "run", tmp_path / "cache.sqlite"
    with ScriptedServer(responder=lambda body: ANSWER) as student, ScriptedServer(responder=full_marks_judge) as judge:
        assert main(run_args(out, cache, student, judge), capsys, monkeypatch).code == 0
        cache.write_bytes(b"\0garbage" * 1000)
        with_a_task_to_do = [*run_args(out, cache, student, judge)]
        with_a_task_to_do.insert(2, "skillmix-small-k1-all")
        result = main(with_a_task_to_do, capsys, monkeypatch)
    assert result.code == 2 and f"{cache} is damaged" in error_line(result.err)
    assert "--no-cache" in result.err
    assert counts(out) == {"combinations": 10, "generations": 5, "grades": 5, "sessions": 2}
