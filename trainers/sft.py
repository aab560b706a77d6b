"""The SFT recipe: fine-tune a chat model on SKILL-MIX texts with DeepSpeed ZeRO.

    bin/train.sh trainers/configs/tiny_cpu.yaml train.steps=20      # wraps the deepspeed launcher

It reads top to bottom like the paper's fine-tuning section: setup (config,
data, model, DeepSpeed engine, resume) -> train (linear warm-up then constant
learning rate, gradient accumulation up to the global batch) -> save_checkpoint
(DeepSpeed state to resume from) -> save_final (a Hugging Face directory that
vLLM serves, ZeRO-3 weights gathered, with tokenizer, chat template and
training metadata) -> cleanup. Every rank runs this file; only rank 0 prints,
logs and writes the final directory. What is logged per step, and where
(train_log.jsonl, TensorBoard, W&B, the closing plot), is trainers/monitor.py.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from harness.core.errors import HarnessError
from trainers.config import TrainingConfig, load_config, prepare, split_arguments
from trainers.data import Batch, collate_padded
from trainers.dataset import TrainingSet, load_conversations, tokenize_conversations
from trainers.deepspeed_config import batch_layout, build_deepspeed_config
from trainers.export import export_checkpoint
from trainers.metadata import TrainingMetadata, chat_template_hash, data_fingerprint
from trainers.monitor import LOG_FILE, Monitor, StepRecord, open_monitor
from trainers.packing import PackingChoice, choose_packing, collate_packed
from trainers.schedule import BatchPlan, learning_rate

CHECKPOINTS = "checkpoints"
FINAL = "final"


@dataclass
class Run:
    """Everything one training process holds between the recipe's stages."""

    config: TrainingConfig
    output_dir: Path
    rank: int
    world_size: int
    bf16: bool
    tokenizer: Any
    training_set: TrainingSet
    data_fingerprint: str
    plan: BatchPlan
    engine: Any
    packing: PackingChoice
    start_step: int = 0
    monitor: Monitor | None = None
    zero3_context: Any = None  # transformers' ZeRO-3 hook must outlive model loading

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def say(self, message: str) -> None:
        if self.is_main:
            print(message, flush=True)


# ---------------------------------------------------------------- setup


def setup(config: TrainingConfig) -> Run:
    import deepspeed
    from deepspeed.accelerator import get_accelerator

    _default_single_process_env()
    deepspeed.init_distributed()
    logging.getLogger("DeepSpeed").setLevel(logging.WARNING)
    rank, world_size = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    bf16 = get_accelerator().device_name() != "cpu"
    torch.manual_seed(config.train.seed)

    output_dir = Path(config.output_dir)
    if rank == 0:
        output_dir.mkdir(parents=True, exist_ok=True)
        (output_dir / "config.yaml").write_text(config.to_yaml(), encoding="utf-8")
        print(f"resolved config (saved to {output_dir / 'config.yaml'}):\n{config.to_yaml()}", flush=True)

    tokenizer = _load_tokenizer(config.model.path)
    conversations = load_conversations(config.data.path, config.data.k)
    training_set = tokenize_conversations(tokenizer, conversations, config.train.max_length)
    fingerprint = data_fingerprint(config.data.path, config.data.k)
    layout = batch_layout(config.train.global_batch_size, config.train.micro_batch_size, world_size)
    ds_config = build_deepspeed_config(config, layout, bf16)
    if rank == 0:
        (output_dir / "ds_config.json").write_text(json.dumps(ds_config, indent=2) + "\n", encoding="utf-8")

    zero3_context = None
    if config.deepspeed.zero_stage == 3:
        from transformers.integrations import HfDeepSpeedConfig

        # while this object lives, from_pretrained partitions weights across ranks as it loads them
        zero3_context = HfDeepSpeedConfig(ds_config)
    model = _load_model(config, bf16)
    engine, *_ = deepspeed.initialize(
        model=model, model_parameters=[p for p in model.parameters() if p.requires_grad], config=ds_config
    )
    plan = BatchPlan(
        len(training_set.examples), layout.global_batch_size, layout.micro_batch_size, world_size, config.train.seed
    )
    engine.eval()
    with torch.no_grad():
        packing = choose_packing(
            config.data.packing,
            engine.module.config._attn_implementation,
            lambda batch: _forward(engine, batch, labels=False).logits,
            training_set.examples,
            config.train.max_length,
            _pad_id(tokenizer),
        )
    engine.train()
    run = Run(config, output_dir, rank, world_size, bf16, tokenizer, training_set, fingerprint, plan, engine, packing)
    run.zero3_context = zero3_context
    run.say(
        f"data: {len(conversations.messages)} of {conversations.total_rows} rows (k counts {conversations.k_counts}), "
        f"{len(training_set.examples)} examples, {training_set.n_tokens} tokens, "
        f"{training_set.n_truncated} truncated to {config.train.max_length}, "
        f"{training_set.n_without_labels} dropped without assistant tokens; fingerprint {fingerprint[:16]}"
    )
    run.say(
        f"batch: global {layout.global_batch_size} = micro {layout.micro_batch_size} x {world_size} ranks x "
        f"{layout.accumulation_steps} accumulation steps; precision {'bf16' if bf16 else 'fp32'}; "
        f"ZeRO-{config.deepspeed.zero_stage}"
    )
    run.say(f"packing: {'on' if run.packing.enabled else 'off'} ({run.packing.reason})")
    run.start_step = _resume(run)
    run.monitor = open_monitor(config, output_dir, run.start_step, run.is_main)
    return run


def _default_single_process_env() -> None:
    """Let `python -m trainers.sft` run as one process without the launcher."""
    for name, value in (
        ("RANK", "0"),
        ("LOCAL_RANK", "0"),
        ("WORLD_SIZE", "1"),
        ("MASTER_ADDR", "127.0.0.1"),
        ("MASTER_PORT", "29511"),
    ):
        os.environ.setdefault(name, value)


def _load_tokenizer(path: str) -> Any:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path)
    if not getattr(tokenizer, "chat_template", None):
        raise HarnessError(f"the tokenizer in {path} has no chat template; assistant-only labels need one")
    if not tokenizer.is_fast:
        raise HarnessError(f"the tokenizer in {path} is not a fast tokenizer; labels need its offset mapping")
    return tokenizer


def _pad_id(tokenizer: Any) -> int:
    return tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id


def _load_model(config: TrainingConfig, bf16: bool) -> Any:
    from transformers import AutoModelForCausalLM, GenerationConfig

    try:
        model = AutoModelForCausalLM.from_pretrained(
            config.model.path,
            dtype=torch.bfloat16 if bf16 else torch.float32,
            attn_implementation=config.model.attn_implementation,
        )
    except (ImportError, ValueError) as error:
        raise HarnessError(
            f"cannot load {config.model.path} with attention {config.model.attn_implementation!r}: {error}. "
            f"Try model.attn_implementation=sdpa"
        ) from None
    if model.generation_config is None:
        model.generation_config = GenerationConfig.from_model_config(model.config)
    if config.model.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    return model


def _resume(run: Run) -> int:
    """Continue from the newest DeepSpeed checkpoint in the output directory, if there is one."""
    checkpoints = run.output_dir / CHECKPOINTS
    if not (checkpoints / "latest").is_file():
        return 0
    path, client_state = run.engine.load_checkpoint(str(checkpoints))
    if path is None:
        raise HarnessError(f"{checkpoints} names a latest checkpoint that cannot be loaded; delete it to start over")
    step = int(client_state["step"])
    run.say(f"resume: continuing from {path} at step {step}")
    if client_state.get("data_fingerprint") != run.data_fingerprint:
        run.say("resume: warning: the training data differs from the data this checkpoint was trained on")
    return step


# ---------------------------------------------------------------- train


def train(run: Run) -> None:
    from tqdm import tqdm

    config = run.config
    steps = config.train.steps
    if run.start_step >= steps:
        run.say(f"train: nothing to do, the checkpoint is at step {run.start_step} >= train.steps {steps}")
        return
    run.engine.train()
    # the bar is for terminals; a log file gets the periodic step lines instead
    progress = tqdm(
        total=steps,
        initial=run.start_step,
        desc="train",
        dynamic_ncols=True,
        disable=not (run.is_main and sys.stderr.isatty()),
    )
    started = time.monotonic()
    for step in range(run.start_step, steps):
        record = _optimizer_step(run, step, started)
        run.monitor.log(record)
        done = record.step
        progress.update(1)
        progress.set_postfix(loss=f"{record.loss:.4f}", lr=f"{record.lr:.2e}")
        if run.is_main and (done % config.train.log_every == 0 or done == run.start_step + 1 or done == steps):
            progress.write(
                f"step {done}/{steps}  loss {record.loss:.4f}  lr {record.lr:.2e}  epoch {record.epoch:.2f}  "
                f"{record.tokens_per_s:.0f} tok/s  efficiency {record.efficiency:.2f}  {record.elapsed_s:.0f}s",
                file=sys.stdout,
            )
        if done % config.train.save_every == 0 or done == steps:
            save_checkpoint(run, done)
    progress.close()


def _optimizer_step(run: Run, step: int, started: float) -> StepRecord:
    """One optimizer step over the global batch: every micro batch forward and backward, then the update."""
    import deepspeed.comm as dist

    config, engine, plan = run.config, run.engine, run.plan
    step_started = time.monotonic()
    lr = learning_rate(step, config.train.lr, config.train.warmup_steps)
    optimizer = getattr(engine.optimizer, "optimizer", engine.optimizer)  # ZeRO wraps the torch optimizer
    for group in optimizer.param_groups:
        group["lr"] = lr
    batches = [_micro_batch(run, step, micro_step) for micro_step in range(plan.accumulation_steps)]
    totals = torch.tensor(
        [
            0.0,
            sum(batch.n_labels for batch in batches),
            sum(batch.n_tokens for batch in batches),
            sum(batch.n_positions for batch in batches),
        ],
        dtype=torch.float64,
        device=engine.device,
    )  # summed loss, labelled tokens, sample tokens, positions (sample tokens + padding)
    labelled_tokens = totals.clone()
    dist.all_reduce(labelled_tokens)
    # DeepSpeed divides by ranks x accumulation steps; weighting each micro batch's mean loss by its
    # share of the global batch's labelled tokens makes a step minimise the mean over all of them,
    # however the global batch is split over ranks and micro batches
    weight = plan.world_size * plan.accumulation_steps / float(labelled_tokens[1])
    for batch in batches:
        output = _forward(engine, batch)
        if batch.n_labels:
            engine.backward(output.loss * (batch.n_labels * weight))
            totals[0] += output.loss.item() * batch.n_labels
        else:  # the mean over no tokens is NaN; a zero loss keeps every rank's backward in step
            engine.backward(output.logits.sum() * 0.0)
        engine.step()
    dist.all_reduce(totals)
    grad_norm = engine.get_global_grad_norm()
    now = time.monotonic()
    return StepRecord(
        step=step + 1,
        loss=float(totals[0] / totals[1]),
        lr=lr,
        epoch=plan.epoch(step + 1),
        labelled_tokens=int(totals[1]),
        tokens=int(totals[2]),
        positions=int(totals[3]),
        step_s=now - step_started,
        elapsed_s=now - started,
        grad_norm=None if grad_norm is None else float(grad_norm),
    )


def _micro_batch(run: Run, step: int, micro_step: int) -> Batch:
    examples = [run.training_set.examples[i] for i in run.plan.micro_batch(step, run.rank, micro_step)]
    if run.packing.enabled:
        return collate_packed(examples, run.packing.row_length, _pad_id(run.tokenizer))
    return collate_padded(examples, _pad_id(run.tokenizer))


def _forward(engine: Any, batch: Batch, labels: bool = True) -> Any:
    return engine(**batch.model_inputs(engine.device, labels=labels))


# ---------------------------------------------------------------- save


def save_checkpoint(run: Run, step: int) -> None:
    """DeepSpeed state (weights, optimizer, step) to resume from; keeps the newest train.keep_checkpoints."""
    import deepspeed.comm as dist

    checkpoints = run.output_dir / CHECKPOINTS
    run.engine.save_checkpoint(
        str(checkpoints), tag=f"step-{step}", client_state={"step": step, "data_fingerprint": run.data_fingerprint}
    )
    dist.barrier()
    if run.is_main:
        tags = sorted(
            (int(match.group(1)), path)
            for path in checkpoints.iterdir()
            if (match := re.fullmatch(r"step-(\d+)", path.name))
        )
        for _, path in tags[: -run.config.train.keep_checkpoints]:
            shutil.rmtree(path, ignore_errors=True)
        print(f"checkpoint: saved {checkpoints / f'step-{step}'}", flush=True)


def save_final(run: Run) -> Path:
    """Write OUTPUT/final: weights (ZeRO-3 gathered), config, tokenizer, chat template, training metadata."""
    import deepspeed
    import deepspeed.comm as dist
    import transformers

    engine = run.engine
    if run.config.deepspeed.zero_stage == 3:
        state_dict = engine._zero3_consolidated_16bit_state_dict()  # collective: every rank must call it
    else:
        state_dict = engine.module.state_dict() if run.is_main else None
    final = run.output_dir / FINAL
    if run.is_main:
        config = run.config
        metadata = TrainingMetadata(
            base_model=config.model.path,
            data_path=config.data.path,
            data_k=None if config.data.k is None else list(config.data.k),
            data_fingerprint=run.data_fingerprint,
            data_rows=len(run.training_set.examples),
            chat_template_sha256=chat_template_hash(run.tokenizer.chat_template),
            steps=max(run.start_step, config.train.steps),
            packing=run.packing.enabled,
            packing_reason=run.packing.reason,
            zero_stage=config.deepspeed.zero_stage,
            world_size=run.world_size,
            precision="bf16" if run.bf16 else "fp32",
            config=config.to_dict(),
            versions={
                "torch": torch.__version__,
                "transformers": transformers.__version__,
                "deepspeed": deepspeed.__version__,
            },
        )
        export_checkpoint(engine.module, state_dict, run.tokenizer, metadata, final)
        print(f"final: saved Hugging Face checkpoint to {final}", flush=True)
    dist.barrier()
    return final


# ---------------------------------------------------------------- cleanup


def cleanup(run: Run) -> None:
    import deepspeed.comm as dist

    report = run.monitor.finish() if run.monitor is not None else None
    dist.barrier()
    run.say(f"done: {run.output_dir / FINAL} (log {run.output_dir / LOG_FILE}, plot {report})")
    if torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


def main(argv: Sequence[str] | None = None) -> int:
    # the launcher appends --local_rank unless told not to; the rank comes from the environment anyway
    argv = [a for a in (sys.argv[1:] if argv is None else argv) if not a.startswith("--local_rank")]
    run = None
    try:
        path, overrides = split_arguments(argv)
        config = prepare(load_config(path, overrides))
        run = setup(config)
        train(run)
        save_final(run)
        cleanup(run)
    except HarnessError as error:
        print(f"error: {error}", file=sys.stderr, flush=True)
        return 2
    except KeyboardInterrupt:
        print("interrupted: run the same command again to resume from the last checkpoint", file=sys.stderr)
        return 130
    finally:
        if run is not None and run.monitor is not None:
            run.monitor.close()  # keeps what was logged before a failure readable
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
