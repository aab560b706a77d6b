"""Write a trained model as a Hugging Face directory that transformers loads and vLLM serves as is.

The directory is assembled under a staging name and renamed into place only
once it is complete, so a crash never leaves a half-written `final/` that a
server could pick up.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from trainers.metadata import TrainingMetadata

REQUIRED_FILES = ("config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json")


def export_checkpoint(
    model: Any, state_dict: dict[str, Any], tokenizer: Any, metadata: TrainingMetadata, directory: Path
) -> Path:
    """Save weights from `state_dict` (full, not partitioned), config, tokenizer and chat template, metadata."""
    directory = Path(directory)
    staging = directory.with_name(f"{directory.name}.partial")
    shutil.rmtree(staging, ignore_errors=True)
    # the model object only supplies config and generation config; under ZeRO-3 its own tensors are empty
    model.save_pretrained(staging, state_dict=state_dict, max_shard_size="5GB")
    tokenizer.save_pretrained(staging)
    metadata.write(staging)
    missing = missing_files(staging)
    if missing:
        raise RuntimeError(f"the exported checkpoint in {staging} lacks {', '.join(missing)}")
    shutil.rmtree(directory, ignore_errors=True)
    staging.rename(directory)
    return directory


def missing_files(directory: Path) -> list[str]:
    """What a directory lacks for vLLM to serve it with the trained chat template."""
    missing = [name for name in REQUIRED_FILES if not (directory / name).is_file()]
    if not list(directory.glob("*.safetensors")):
        missing.append("*.safetensors")
    tokenizer_config = directory / "tokenizer_config.json"
    in_config = tokenizer_config.is_file() and "chat_template" in json.loads(tokenizer_config.read_text("utf-8"))
    if not (directory / "chat_template.jinja").is_file() and not in_config:
        missing.append("chat template")
    return missing
