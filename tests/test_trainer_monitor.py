"""The training monitor without DeepSpeed: JSONL log, TensorBoard events, W&B offline run, the PNG report."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from harness.core.errors import HarnessError
from trainers.config import load_config
from trainers.monitor import (
    LOG_FILE,
    REPORT_FILE,
    TENSORBOARD_DIR,
    WANDB_ID_FILE,
    StepRecord,
    check_logging,
    open_monitor,
    read_log,
    write_report,
)

TAGS = {"train/loss", "train/lr", "train/grad_norm", "train/tokens_per_s", "train/efficiency", "train/epoch"}


def record(step: int, loss: float) -> StepRecord:
    return StepRecord(
        step=step,
        loss=loss,
        lr=1e-3 * min(1.0, step / 2),
        epoch=step / 10,
        labelled_tokens=100,
        tokens=900,
        positions=1000,
        step_s=0.5,
        elapsed_s=0.5 * step,
        grad_norm=2.0 / step,
    )


def run_steps(output_dir: Path, start_step: int, steps: range, loss_offset: float, *overrides: str) -> None:
    config = load_config(None, [f"output_dir={output_dir}", *overrides])
    monitor = open_monitor(config, output_dir, start_step, is_main=True)
    for step in steps:
        monitor.log(record(step, loss_offset + 10.0 / step))
    monitor.finish()


def scalars(directory: Path) -> dict[str, list[tuple[int, float]]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    accumulator = EventAccumulator(str(directory))
    accumulator.Reload()
    return {
        tag: [(event.step, event.value) for event in accumulator.Scalars(tag)] for tag in accumulator.Tags()["scalars"]
    }


def test_step_record_derives_throughput_and_efficiency():
    step = record(3, 1.0)
    assert step.tokens_per_s == pytest.approx(1800.0)
    assert step.efficiency == pytest.approx(0.9)
    line = step.to_json()
    # the keys train_log.jsonl always had, in their order, then the new ones
    assert list(line) == [
        "step",
        "loss",
        "lr",
        "epoch",
        "labelled_tokens",
        "elapsed_s",
        "grad_norm",
        "tokens_per_s",
        "efficiency",
    ]
    assert "train/grad_norm" not in StepRecord(1, 1.0, 1e-3, 0.1, 1, 1, 1, 1.0, 1.0, None).scalars()


def test_tensorboard_events_hold_every_tag_per_step(tmp_path):
    run_steps(tmp_path, 0, range(1, 6), 0.0)
    events = scalars(tmp_path / TENSORBOARD_DIR)
    assert set(events) == TAGS
    for tag in TAGS:
        assert [step for step, _ in events[tag]] == [1, 2, 3, 4, 5], tag
    assert [value for _, value in events["train/loss"]] == pytest.approx([10.0 / step for step in range(1, 6)])
    assert events["train/efficiency"][0][1] == pytest.approx(0.9)
    assert events["train/tokens_per_s"][0][1] == pytest.approx(1800.0)
    assert [value for _, value in events["train/lr"]][:2] == pytest.approx([5e-4, 1e-3])


def test_resumed_run_hides_steps_past_its_checkpoint(tmp_path):
    # a run logged steps 1-7 and stopped; its newest checkpoint was step 4, so steps 5-7 are redone
    run_steps(tmp_path, 0, range(1, 8), 0.0)
    run_steps(tmp_path, 4, range(5, 10), 100.0)
    events = scalars(tmp_path / TENSORBOARD_DIR)
    for tag in TAGS:
        assert [step for step, _ in events[tag]] == list(range(1, 10)), tag
    losses = dict(events["train/loss"])
    assert losses[4] == pytest.approx(10.0 / 4) and losses[5] == pytest.approx(100.0 + 10.0 / 5)
    log = read_log(tmp_path / LOG_FILE)
    assert [line["step"] for line in log] == list(range(1, 10))
    assert log[4]["loss"] == pytest.approx(102.0) and log[4]["resumed_from"] == 4
    assert sum("resumed_from" in line for line in log) == 1
    assert len(list((tmp_path / TENSORBOARD_DIR).glob("events.out.tfevents.*"))) == 2


def test_without_purge_step_the_redone_steps_would_show_twice(tmp_path):
    """The control for the test above: the reader really does keep both copies unless told to purge."""
    from torch.utils.tensorboard import SummaryWriter

    for steps in (range(1, 8), range(5, 10)):
        with SummaryWriter(str(tmp_path)) as writer:
            for step in steps:
                writer.add_scalar("train/loss", 1.0, step)
    assert len(scalars(tmp_path)["train/loss"]) == 7 + 5


def test_a_fresh_start_replaces_an_old_log(tmp_path):
    # no checkpoint (start step 0): whatever an earlier attempt logged is not this run's history
    run_steps(tmp_path, 0, range(1, 4), 0.0)
    run_steps(tmp_path, 0, range(1, 3), 50.0)
    assert [line["step"] for line in read_log(tmp_path / LOG_FILE)] == [1, 2]
    assert [step for step, _ in scalars(tmp_path / TENSORBOARD_DIR)["train/loss"]] == [1, 2]


def test_tensorboard_can_be_turned_off(tmp_path):
    run_steps(tmp_path, 0, range(1, 3), 0.0, "logging.tensorboard=false")
    assert not (tmp_path / TENSORBOARD_DIR).exists()
    assert len(read_log(tmp_path / LOG_FILE)) == 2


def test_other_ranks_write_nothing(tmp_path):
    monitor = open_monitor(load_config(None), tmp_path, 0, is_main=False)
    monitor.log(record(1, 1.0))
    assert monitor.finish() is None
    assert list(tmp_path.iterdir()) == []


def test_report_is_a_png_of_loss_and_lr(tmp_path):
    run_steps(tmp_path, 0, range(1, 8), 0.0)
    run_steps(tmp_path, 4, range(5, 10), 0.0)
    png = tmp_path / REPORT_FILE
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    import matplotlib.image

    height, width, _ = matplotlib.image.imread(png).shape
    assert (width, height) == (700, 500)
    # drawn again from the log alone
    png.unlink()
    assert write_report(tmp_path / LOG_FILE, png) == png and png.stat().st_size > 10_000


# ---------------------------------------------------------------- W&B


def wandb_history(run_file: Path) -> list[dict[str, str]]:
    """History rows of an offline W&B run file: a record log (32 KiB blocks of crc32, length, type
    headers around protobuf Records) after a 7-byte file header."""
    from wandb.proto import wandb_internal_pb2

    data = run_file.read_bytes()
    block, position, pending, records = 32768, 7, b"", []
    while position + 7 <= len(data):
        room = block - position % block
        if room < 7:  # a block's tail too short for a header is zero padding
            position += room
            continue
        _crc, length, kind = struct.unpack("<IHB", data[position : position + 7])
        if length == 0 and kind == 0:
            position += room
            continue
        chunk = data[position + 7 : position + 7 + length]
        position += 7 + length
        if kind == 1:  # a whole record
            records.append(chunk)
        elif kind in (2, 3):  # first or middle part
            pending = chunk if kind == 2 else pending + chunk
        elif kind == 4:  # last part
            records.append(pending + chunk)
    history = []
    for raw in records:
        parsed = wandb_internal_pb2.Record()
        parsed.ParseFromString(raw)
        if parsed.WhichOneof("record_type") == "history":
            history.append({item.key or "/".join(item.nested_key): item.value_json for item in parsed.history.item})
    return history


@pytest.fixture
def wandb_env(tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    for name in ("WANDB_CONFIG_DIR", "WANDB_CACHE_DIR", "WANDB_DATA_DIR", "WANDB_ARTIFACT_DIR"):
        monkeypatch.setenv(name, str(tmp_path / "wandb-home" / name.lower()))
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.delenv("WANDB_API_KEY", raising=False)


def test_wandb_offline_run_holds_the_history_and_resumes_the_same_run(tmp_path, wandb_env):
    output = tmp_path / "out"
    output.mkdir()
    run_steps(output, 0, range(1, 6), 0.0, "logging.wandb=true")  # offline is the default mode
    run_id = (output / WANDB_ID_FILE).read_text().strip()
    runs = sorted((output / "wandb").glob("offline-run-*"))
    assert len(runs) == 1 and runs[0].name.endswith(run_id)
    history = wandb_history(next(runs[0].glob("*.wandb")))
    assert [int(row["_step"]) for row in history] == [1, 2, 3, 4, 5]
    assert TAGS <= set(history[0])
    assert [float(row["train/loss"]) for row in history] == pytest.approx([10.0 / step for step in range(1, 6)])

    run_steps(output, 5, range(6, 8), 0.0, "logging.wandb=true")
    assert (output / WANDB_ID_FILE).read_text().strip() == run_id
    resumed = sorted((output / "wandb").glob(f"offline-run-*-{run_id}"))
    assert len(resumed) == 2  # the same run id, so `wandb sync` uploads one run
    assert sorted(int(row["_step"]) for path in resumed for row in wandb_history(next(path.glob("*.wandb")))) == [
        1,
        2,
        3,
        4,
        5,
        6,
        7,
    ]


def test_missing_logging_package_is_a_clear_error(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "wandb" else real(name, *a))
    with pytest.raises(HarnessError, match=r"logging\.wandb is true.*command line.*pip install wandb"):
        check_logging(load_config(None, ["logging.wandb=true"]))
    check_logging(load_config(None))  # W&B is off by default
    with pytest.raises(HarnessError, match="wandb_mode must be one of offline, online"):
        load_config(None, ["logging.wandb_mode=cloud"])
