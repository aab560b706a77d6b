"""Fingerprints and the training-metadata file saved next to a fine-tuned checkpoint.

`training_metadata.json` says which data (fingerprint of the dataset files and
the k selection), which resolved config and which chat template produced the
weights. The template hash lets the harness warn when a server applies a
different template than the one the model was trained with.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

METADATA_FILE = "training_metadata.json"
FORMAT_VERSION = 1


def chat_template_hash(template: str) -> str:
    """sha256 (hex) of a chat template string exactly as the tokenizer holds it."""
    return hashlib.sha256(template.encode("utf-8")).hexdigest()


def data_fingerprint(dataset_dir: str | Path, k: Sequence[int] | None) -> str:
    """sha256 over the dataset directory's files (relative paths and bytes) and the k selection."""
    root = Path(dataset_dir)
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        # datasets may leave a lock or cache file behind; they say nothing about the rows
        if path.name.endswith(".lock") or path.name.startswith("cache-"):
            continue
        digest.update(path.relative_to(root).as_posix().encode("utf-8") + b"\0")
        with path.open("rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
        digest.update(b"\0")
    selection = "all" if k is None else ",".join(str(value) for value in sorted(k))
    digest.update(f"k={selection}".encode())
    return digest.hexdigest()


@dataclass(frozen=True)
class TrainingMetadata:
    base_model: str
    data_path: str
    data_k: list[int] | None
    data_fingerprint: str
    data_rows: int
    chat_template_sha256: str
    steps: int
    packing: bool
    packing_reason: str
    zero_stage: int
    world_size: int
    precision: str
    config: dict[str, Any]
    versions: dict[str, str] = field(default_factory=dict)
    format_version: int = FORMAT_VERSION

    def write(self, directory: str | Path) -> Path:
        path = Path(directory) / METADATA_FILE
        path.write_text(json.dumps(asdict(self), indent=2, sort_keys=False) + "\n", encoding="utf-8")
        return path


def read_training_metadata(directory: str | Path) -> dict[str, Any] | None:
    """The metadata saved with a checkpoint, or None when the directory has none (e.g. a base model)."""
    path = Path(directory) / METADATA_FILE
    if not path.is_file():
        return None
    return json.loads(path.read_text(encoding="utf-8"))
