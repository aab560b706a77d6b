"""The SFT recipe end to end: bin/train.sh and the real deepspeed launcher on the CPU, tiny model.

Four launcher runs are shared by all assertions (about 2.5 to 3.5 minutes on 2 cores):
  1. ZeRO-2, one rank, 12 steps, checkpoints at 6 and 12; the step-12 one is then deleted, as if the
     run had crashed after logging step 12 but before saving it;
  2. the same command with train.steps=16, which resumes from step 6, redoes 7-12 and goes on to 16;
  3. ZeRO-3 on two CPU ranks, 16 steps without a break, whose final save must gather both ranks'
     partitions, and whose losses must match the interrupted-and-resumed ZeRO-2 run step for step;
  4. `bin/train.sh trainers/configs/tiny_cpu.yaml` as shipped, on an empty cache: the built-in model
     and data are built first, then 20 steps.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from test_trainer_data import write_skillmix_dataset
from test_trainer_monitor import TAGS, scalars

from trainers.metadata import chat_template_hash, data_fingerprint, read_training_metadata
from trainers.monitor import REPORT_FILE, TENSORBOARD_DIR

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[1]
TRAIN_SH = REPO / "bin" / "train.sh"
CONFIG = REPO / "trainers" / "configs" / "tiny_cpu.yaml"


@dataclass(frozen=True)
class Launch:
    output_dir: Path
    stdout: str
    wall_s: float

    def log(self) -> list[dict]:
        lines = (self.output_dir / "train_log.jsonl").read_text().splitlines()
        return [json.loads(line) for line in lines]


def launch(output_dir: Path, *overrides: str, procs: int = 1, cache: Path | None = None) -> Launch:
    # the CPU even where a GPU exists: the assertions below expect fp32 and exact agreement across runs
    env = {**os.environ, "DS_ACCELERATOR": "cpu", "NUM_PROCS": str(procs), "DS_LAUNCHER_ARGS": "--master_port 29517"}
    env.pop("CUDA_VISIBLE_DEVICES", None)
    if cache is not None:
        env["SKILLMIX_CACHE"] = str(cache / "responses.sqlite")
    started = time.monotonic()
    result = subprocess.run(
        [str(TRAIN_SH), str(CONFIG), f"output_dir={output_dir}", *overrides],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,  # one stream, in order, so a failure reads in context
        text=True,
        env=env,
        cwd=REPO,
        timeout=600,
    )
    wall = time.monotonic() - started
    output = result.stdout
    with (output_dir.parent / "launches.log").open("a") as saved:  # kept for reading a failure afterwards
        saved.write(output)
    assert result.returncode == 0, output[-6000:]
    return Launch(output_dir, output, wall)


def recipe(model: Path, data: Path) -> list[str]:
    """The overrides runs 1-3 share: the test's model and repetitive data, a higher learning rate."""
    return [f"model.path={model}", f"data.path={data}", "train.lr=3e-3", "train.log_every=4"]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    return write_skillmix_dataset(tmp_path_factory.mktemp("data") / "skillmix", n_rows=32)


@pytest.fixture(scope="module")
def zero2_runs(tiny_models, dataset, tmp_path_factory) -> tuple[Launch, Launch, list[dict]]:
    output = tmp_path_factory.mktemp("zero2") / "run"
    first = launch(output, *recipe(tiny_models["student"], dataset), "train.steps=12", "train.save_every=6")
    log_after_first = first.log()
    # a crash after step 12 was logged but before its checkpoint was saved leaves step-6 as the newest
    checkpoints = output / "checkpoints"
    shutil.rmtree(checkpoints / "step-12")
    (checkpoints / "latest").write_text("step-6")
    resumed = launch(output, *recipe(tiny_models["student"], dataset), "train.steps=16", "train.save_every=6")
    print(f"\nlauncher wall time: first run {first.wall_s:.1f}s, resumed run {resumed.wall_s:.1f}s")
    return first, resumed, log_after_first


@pytest.fixture(scope="module")
def zero3_run(tiny_models, dataset, tmp_path_factory) -> Launch:
    output = tmp_path_factory.mktemp("zero3") / "run"
    run = launch(
        output,
        *recipe(tiny_models["student"], dataset),
        "train.steps=16",
        "train.save_every=16",
        "deepspeed.zero_stage=3",
        "train.micro_batch_size=2",
        procs=2,
    )
    print(f"\nlauncher wall time: ZeRO-3 two ranks {run.wall_s:.1f}s")
    return run


def test_loss_decreases(zero2_runs):
    first, resumed, _ = zero2_runs
    losses = [record["loss"] for record in resumed.log()]
    early, late = sum(losses[:3]) / 3, sum(losses[-3:]) / 3
    # a random model starts near ln(vocab) ~ 7.6 nats; the repeated answers are learnable within 16 steps
    assert late < early - 1.0, losses
    assert "packing: on" in first.stdout


def test_resume_continues_the_step_count(zero2_runs):
    first, resumed, log_after_first = zero2_runs
    assert [record["step"] for record in log_after_first] == list(range(1, 13))
    assert "resume: continuing from" in resumed.stdout and "at step 6" in resumed.stdout
    log = resumed.log()
    assert [record["step"] for record in log] == list(range(1, 17))  # nothing lost, nothing logged twice
    assert log[:6] == log_after_first[:6]
    assert log[6]["resumed_from"] == 6 and sum("resumed_from" in record for record in log) == 1
    # the redone steps repeat the lost ones: weights, Adam's moments and the data order were restored
    redone = [record["loss"] for record in log[6:12]]
    assert redone == pytest.approx([record["loss"] for record in log_after_first[6:12]], abs=1e-4)
    assert "step 7/16" in resumed.stdout and "step 1/16" not in resumed.stdout
    # keep_checkpoints=2: the step-6 checkpoint was pruned once step 12 and 16 existed
    kept = sorted(path.name for path in (resumed.output_dir / "checkpoints").glob("step-*"))
    assert kept == ["step-12", "step-16"]


def test_tensorboard_shows_each_step_once_after_a_resume(zero2_runs):
    _, resumed, _ = zero2_runs
    events = scalars(resumed.output_dir / TENSORBOARD_DIR)
    assert set(events) == TAGS
    for tag in TAGS:  # steps 7-12 were written twice, by the crashed run and by the resumed one
        assert [step for step, _ in events[tag]] == list(range(1, 17)), tag
    log = resumed.log()
    assert [value for _, value in events["train/loss"]] == pytest.approx([record["loss"] for record in log], abs=1e-5)
    assert all(0.5 < record["efficiency"] <= 1.0 and record["tokens_per_s"] > 0 for record in log)
    assert len(list((resumed.output_dir / TENSORBOARD_DIR).glob("events.out.tfevents.*"))) == 2
    assert (resumed.output_dir / REPORT_FILE).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_final_checkpoint_loads_and_generates(zero2_runs, tiny_models):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    _, resumed, _ = zero2_runs
    final = resumed.output_dir / "final"
    for name in (
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
        "generation_config.json",
        "chat_template.jinja",
        "training_metadata.json",
    ):
        assert (final / name).is_file(), name
    assert json.loads((final / "config.json").read_text())["architectures"] == ["LlamaForCausalLM"]
    tokenizer = AutoTokenizer.from_pretrained(final)
    base_tokenizer = AutoTokenizer.from_pretrained(tiny_models["student"])
    assert tokenizer.chat_template == base_tokenizer.chat_template
    model = AutoModelForCausalLM.from_pretrained(final).eval()
    prompt = tokenizer.apply_chat_template(
        [{"role": "user", "content": "Write about chess."}],
        add_generation_prompt=True,
        return_tensors="pt",
        return_dict=True,
    )
    with torch.no_grad():
        generated = model.generate(**prompt, max_new_tokens=12, do_sample=False)
    assert generated.shape[1] > prompt["input_ids"].shape[1]


def test_training_metadata(zero2_runs, dataset):
    _, resumed, _ = zero2_runs
    final = resumed.output_dir / "final"
    metadata = read_training_metadata(final)
    from transformers import AutoTokenizer

    assert metadata["data_fingerprint"] == data_fingerprint(dataset, [1, 2, 3])
    assert metadata["chat_template_sha256"] == chat_template_hash(AutoTokenizer.from_pretrained(final).chat_template)
    assert metadata["config"]["train"]["steps"] == 16 and metadata["steps"] == 16
    assert metadata["config"]["data"]["k"] == [1, 2, 3]
    assert metadata["packing"] is True and metadata["precision"] == "fp32" and metadata["zero_stage"] == 2
    assert (resumed.output_dir / "config.yaml").read_text().count("steps: 16") == 1


def test_zero3_on_two_cpu_ranks_saves_gathered_weights(zero3_run, zero2_runs, tiny_models):
    from safetensors.torch import load_file

    trained = load_file(zero3_run.output_dir / "final" / "model.safetensors")
    base = load_file(tiny_models["student"] / "model.safetensors")
    assert sorted(trained) == sorted(base)
    for name, tensor in trained.items():
        assert tensor.shape == base[name].shape, name  # full shapes, not a rank's partition
        assert not torch_equal(tensor, base[name]), f"{name} was not updated (partition lost?)"
    metadata = read_training_metadata(zero3_run.output_dir / "final")
    assert metadata["zero_stage"] == 3 and metadata["world_size"] == 2
    assert "micro 2 x 2 ranks x 2 accumulation steps" in zero3_run.stdout
    # The same global batches on 1 rank (ZeRO-2) and on 2 ranks (ZeRO-3), each step minimising the mean over
    # the global batch's tokens, so the losses agree however the batch is split. The ZeRO-2 run was stopped
    # at step 12 and resumed: agreement on steps 13-16 shows the resume restored weights, optimizer
    # moments and the data order (losing Adam's moments alone moves the loss by far more than this).
    zero3_losses = [record["loss"] for record in zero3_run.log()]
    zero2_losses = [record["loss"] for record in zero2_runs[1].log()]
    assert len(zero3_losses) == len(zero2_losses) == 16
    assert zero3_losses == pytest.approx(zero2_losses, abs=2e-3)


def torch_equal(a, b) -> bool:
    import torch

    return bool(torch.equal(a, b))


@pytest.fixture(scope="module")
def fresh_machine_run(tmp_path_factory) -> Launch:
    root = tmp_path_factory.mktemp("fresh")
    run = launch(root / "run", cache=root / "cache")  # the shipped config, nothing built beforehand
    print(f"\nlauncher wall time: tiny_cpu.yaml on an empty cache {run.wall_s:.1f}s")
    return run


def test_tiny_config_runs_with_no_earlier_step(fresh_machine_run):
    run = fresh_machine_run
    assert "builtin: building builtin:tiny" in run.stdout and "builtin: building builtin:demo" in run.stdout
    assert "audit OK: 192 rows" in run.stdout
    events = scalars(run.output_dir / TENSORBOARD_DIR)
    assert set(events) == TAGS
    for tag in TAGS:
        assert [step for step, _ in events[tag]] == list(range(1, 21)), tag
    assert (run.output_dir / REPORT_FILE).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    final = run.output_dir / "final"
    assert (final / "model.safetensors").is_file() and (final / "chat_template.jinja").is_file()
    metadata = read_training_metadata(final)
    cache = run.output_dir.parent / "cache" / "builtin"
    assert Path(metadata["base_model"]).parent == cache.resolve() / "models"
    assert Path(metadata["data_path"]).parent == cache.resolve() / "data" and metadata["data_rows"] == 192
    losses = [record["loss"] for record in run.log()]
    assert sum(losses[-3:]) / 3 < sum(losses[:3]) / 3 - 1.0, losses
