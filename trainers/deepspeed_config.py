"""Turn a ZeRO JSON template plus the resolved training config into DeepSpeed's config dict.

The JSON files in trainers/configs/ hold only what is specific to a ZeRO stage.
Batch sizes, precision and optimizer hyper-parameters come from the YAML config,
so they are written in one place; a template that sets them too is an error
rather than a silent second source of truth. No value is left as "auto".
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.core.errors import HarnessError
from trainers.config import CONFIG_DIR, TrainingConfig

# keys the recipe owns; a template must not set them
RECIPE_KEYS = (
    "train_batch_size",
    "train_micro_batch_size_per_gpu",
    "gradient_accumulation_steps",
    "gradient_clipping",
    "bf16",
    "fp16",
    "scheduler",
)
OPTIMIZER_PARAMS = ("lr", "betas", "eps", "weight_decay")


@dataclass(frozen=True)
class BatchLayout:
    """How the global batch splits over ranks and accumulation steps."""

    global_batch_size: int
    micro_batch_size: int
    world_size: int
    accumulation_steps: int


def batch_layout(global_batch_size: int, micro_batch_size: int, world_size: int) -> BatchLayout:
    per_step = micro_batch_size * world_size
    if global_batch_size % per_step:
        raise HarnessError(
            f"train.global_batch_size {global_batch_size} is not a multiple of micro_batch_size {micro_batch_size} "
            f"x {world_size} ranks = {per_step}; change train.micro_batch_size or the number of ranks"
        )
    return BatchLayout(global_batch_size, micro_batch_size, world_size, global_batch_size // per_step)


def template_path(config: TrainingConfig) -> Path:
    if config.deepspeed.config is not None:
        return Path(config.deepspeed.config)
    return CONFIG_DIR / f"zero{config.deepspeed.zero_stage}.json"


def build_deepspeed_config(config: TrainingConfig, layout: BatchLayout, bf16: bool) -> dict[str, Any]:
    """DeepSpeed's config: the stage template filled with explicit values from the training config."""
    path = template_path(config)
    try:
        template = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as error:
        raise HarnessError(f"cannot read DeepSpeed template {path}: {error}") from None
    clashes = [key for key in RECIPE_KEYS if key in template]
    if clashes:
        raise HarnessError(
            f"{path} sets {', '.join(clashes)}; these come from the YAML config (train.*), remove them from the template"
        )
    stage = template.get("zero_optimization", {}).get("stage")
    if stage != config.deepspeed.zero_stage:
        raise HarnessError(
            f"{path} has zero_optimization.stage {stage} but deepspeed.zero_stage is {config.deepspeed.zero_stage} "
            f"({config.where('deepspeed.zero_stage')})"
        )
    resolved = copy.deepcopy(template)
    resolved.update(
        train_batch_size=layout.global_batch_size,
        train_micro_batch_size_per_gpu=layout.micro_batch_size,
        gradient_accumulation_steps=layout.accumulation_steps,
        gradient_clipping=config.train.gradient_clipping,
        # bf16 on GPUs; plain fp32 on the CPU, where bf16 matmuls are slow and the tiny model gains nothing
        bf16={"enabled": bf16},
        fp16={"enabled": False},
    )
    optimizer = resolved.setdefault("optimizer", {"type": "Adam", "params": {}})
    params = optimizer.setdefault("params", {})
    clashes = [key for key in OPTIMIZER_PARAMS if key in params]
    if clashes:
        raise HarnessError(
            f"{path} sets optimizer {', '.join(clashes)}; set train.lr/adam_betas/adam_eps/weight_decay instead"
        )
    # the recipe sets the learning rate itself before every step (warm-up, then constant)
    params.update(
        lr=config.train.lr,
        betas=list(config.train.adam_betas),
        eps=config.train.adam_eps,
        weight_decay=config.train.weight_decay,
    )
    return resolved
