"""Watch a training run: each optimizer step's record goes to every sink, and a plot is drawn at the end.

The train loop builds one `StepRecord` per optimizer step and calls
`Monitor.log` with it; rank 0's monitor hands it to each sink, the other
ranks' monitors have none. Sinks, all under the output directory:

- `train_log.jsonl`: always, one JSON line per step;
- `tensorboard/`: TensorBoard event files (logging.tensorboard, on by default),
  tags train/loss, train/lr, train/grad_norm, train/tokens_per_s,
  train/efficiency, train/epoch;
- `wandb/`: a Weights & Biases run (logging.wandb), offline by default so it
  needs no network; its id is kept in `wandb_run_id` so a resumed run
  continues the same W&B run.

A resumed run restarts at its checkpoint's step, so whatever was logged past
that step by the run that stopped is dropped or hidden: the JSONL file is cut
back to the checkpoint, and TensorBoard is given `purge_step`, which hides the
older events from that step on. W&B keeps a run's steps increasing, so it
ignores the redone steps it has already seen; their first copy agrees with the
redone one, since a resumed run restores weights, optimizer state and samples.

At the end `Monitor.finish` draws `train_report.png` (loss and learning rate
against steps) from the JSONL file, so the plot covers every resumed part.
"""

from __future__ import annotations

import importlib.util
import json
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from harness.core.errors import HarnessError

if TYPE_CHECKING:
    from trainers.config import TrainingConfig

LOG_FILE = "train_log.jsonl"
TENSORBOARD_DIR = "tensorboard"
REPORT_FILE = "train_report.png"
WANDB_ID_FILE = "wandb_run_id"


@dataclass(frozen=True)
class StepRecord:
    """What one optimizer step did, summed over every rank and micro batch."""

    step: int  # optimizer steps done, counting from 1
    loss: float  # mean over the step's labelled tokens
    lr: float
    epoch: float
    labelled_tokens: int
    tokens: int  # sample tokens fed to the model (padding excluded)
    positions: int  # token positions fed to the model (padding included)
    step_s: float  # wall time of this step
    elapsed_s: float  # since this process started training
    grad_norm: float | None = None

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.step_s if self.step_s > 0 else 0.0

    @property
    def efficiency(self) -> float:
        """Share of the positions that hold sample tokens: 1.0 means no padding at all."""
        return self.tokens / self.positions if self.positions else 0.0

    def to_json(self) -> dict[str, Any]:
        line: dict[str, Any] = {
            "step": self.step,
            "loss": round(self.loss, 6),
            "lr": self.lr,
            "epoch": round(self.epoch, 4),
            "labelled_tokens": self.labelled_tokens,
            "elapsed_s": round(self.elapsed_s, 2),
        }
        if self.grad_norm is not None:
            line["grad_norm"] = round(self.grad_norm, 6)
        line["tokens_per_s"] = round(self.tokens_per_s, 1)
        line["efficiency"] = round(self.efficiency, 4)
        return line

    def scalars(self) -> dict[str, float]:
        """The values TensorBoard and W&B plot, by tag."""
        values = {
            "train/loss": self.loss,
            "train/lr": self.lr,
            "train/tokens_per_s": self.tokens_per_s,
            "train/efficiency": self.efficiency,
            "train/epoch": self.epoch,
        }
        if self.grad_norm is not None:
            values["train/grad_norm"] = self.grad_norm
        return values


class Sink(Protocol):
    def write(self, record: StepRecord) -> None: ...

    def close(self) -> None: ...


class JsonlLog:
    """OUTPUT/train_log.jsonl, cut back to the lines at or before the step the run starts from.

    The first line a resumed run writes carries `resumed_from` (the checkpoint's step).
    """

    def __init__(self, path: Path, start_step: int) -> None:
        _truncate_log(path, start_step)
        self.path = path
        self._resumed_from = start_step or None
        self._file = path.open("a", encoding="utf-8")

    def write(self, record: StepRecord) -> None:
        line = record.to_json()
        if self._resumed_from is not None:
            line["resumed_from"], self._resumed_from = self._resumed_from, None
        self._file.write(json.dumps(line) + "\n")
        self._file.flush()

    def close(self) -> None:
        self._file.close()


def _truncate_log(path: Path, step: int) -> None:
    """Drop log lines past `step`, so steps redone after a crash are not logged twice."""
    if not path.is_file():
        return
    kept = [line for line in path.read_text(encoding="utf-8").splitlines() if line and json.loads(line)["step"] <= step]
    path.write_text("".join(line + "\n" for line in kept), encoding="utf-8")


class TensorBoardLog:
    """Event files in OUTPUT/tensorboard; a run starting at step S hides older events from step S+1 on."""

    def __init__(self, directory: Path, start_step: int) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(log_dir=str(directory), purge_step=start_step + 1)

    def write(self, record: StepRecord) -> None:
        for tag, value in record.scalars().items():
            self.writer.add_scalar(tag, value, global_step=record.step)
        self.writer.flush()  # so a running `tensorboard` sees each step as it ends

    def close(self) -> None:
        self.writer.close()


class WandbLog:
    """A W&B run in OUTPUT/wandb whose id OUTPUT/wandb_run_id keeps across resumed runs."""

    def __init__(self, config: TrainingConfig, output_dir: Path) -> None:
        import wandb

        id_file = output_dir / WANDB_ID_FILE
        run_id = id_file.read_text(encoding="utf-8").strip() if id_file.is_file() else secrets.token_hex(4)
        self.run = wandb.init(
            project=config.logging.wandb_project,
            entity=config.logging.wandb_entity,
            mode=config.logging.wandb_mode,
            dir=str(output_dir),
            id=run_id,
            resume="allow",
            name=output_dir.name,
            config=config.to_dict(),
        )
        id_file.write_text(run_id + "\n", encoding="utf-8")

    def write(self, record: StepRecord) -> None:
        self.run.log(record.scalars(), step=record.step)

    def close(self) -> None:
        self.run.finish()


class Monitor:
    """The one thing the train loop logs to: `log` once per optimizer step, `finish` at the end."""

    def __init__(self, output_dir: Path, sinks: list[Sink]) -> None:
        self.output_dir = output_dir
        self.sinks = sinks

    def log(self, record: StepRecord) -> None:
        for sink in self.sinks:
            sink.write(record)

    def close(self) -> None:
        """Flush and close every sink; a second call does nothing."""
        sinks, self.sinks = self.sinks, []
        for sink in sinks:
            sink.close()

    def finish(self) -> Path | None:
        """Close the sinks and draw OUTPUT/train_report.png (rank 0; other ranks draw nothing)."""
        drawing = bool(self.sinks)
        self.close()
        log = self.output_dir / LOG_FILE
        if not drawing or not log.is_file():
            return None
        return write_report(log, self.output_dir / REPORT_FILE)


def open_monitor(config: TrainingConfig, output_dir: Path, start_step: int, is_main: bool) -> Monitor:
    """Rank 0's sinks as the config asks for them; a monitor without sinks on every other rank."""
    if not is_main:
        return Monitor(output_dir, [])
    sinks: list[Sink] = [JsonlLog(output_dir / LOG_FILE, start_step)]
    if config.logging.tensorboard:
        sinks.append(TensorBoardLog(output_dir / TENSORBOARD_DIR, start_step))
    if config.logging.wandb:
        sinks.append(WandbLog(config, output_dir))
    return Monitor(output_dir, sinks)


def check_logging(config: TrainingConfig) -> None:
    """Fail before the launch, with the fix, when a sink the config turns on cannot be imported."""
    wanted = {"tensorboard": config.logging.tensorboard, "wandb": config.logging.wandb}
    for package, on in wanted.items():
        if on and importlib.util.find_spec(package) is None:
            raise HarnessError(
                f"logging.{package} is true ({config.where(f'logging.{package}')}) but the {package} package is "
                f"not installed; install it (pip install {package}) or set logging.{package}=false"
            )


def read_log(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


def write_report(log_path: Path, png_path: Path) -> Path:
    """Loss and learning rate against steps, from train_log.jsonl; a dotted line where each resumed run began."""
    from matplotlib.figure import Figure  # no pyplot: no global backend, no display needed
    from matplotlib.ticker import MaxNLocator

    records = read_log(log_path)
    steps = [record["step"] for record in records]
    resumed_at = [record["step"] for record in records if "resumed_from" in record]
    figure = Figure(figsize=(7, 5), layout="constrained")
    loss_axes, lr_axes = figure.subplots(2, 1, sharex=True)
    loss_axes.plot(steps, [record["loss"] for record in records], marker="." if len(records) < 50 else None)
    loss_axes.set_ylabel("loss (assistant tokens)")
    loss_axes.set_title(f"{log_path.parent.name}: {len(records)} steps")
    lr_axes.plot(steps, [record["lr"] for record in records], color="tab:orange")
    lr_axes.set_ylabel("learning rate")
    lr_axes.set_xlabel("optimizer step")
    lr_axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    lr_axes.ticklabel_format(axis="y", style="sci", scilimits=(-3, 3))
    for axes in (loss_axes, lr_axes):
        axes.grid(alpha=0.3)
        for step in resumed_at:
            axes.axvline(step - 0.5, color="grey", linestyle=":", linewidth=1)
    if resumed_at:
        loss_axes.text(resumed_at[0] - 0.5, loss_axes.get_ylim()[1], " resumed", va="top", fontsize=8, color="grey")
    figure.savefig(png_path, dpi=100)
    return png_path
