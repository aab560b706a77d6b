"""Model identities: the part of a cache key that says which model answered.

A local checkpoint's identity includes a fingerprint of its files, so a model
retrained at the same path never hits cache entries of the old weights. Small
files (configs, tokenizer, chat template) are hashed whole. Weight files can
be tens of GB, so for files over `WHOLE_FILE_LIMIT` we hash the size plus
1 MiB samples at eight evenly spaced offsets: any retraining changes every
sampled block, and a 13B checkpoint fingerprints in well under a second.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from harness.core.errors import HarnessError

WHOLE_FILE_LIMIT = 16 * 1024 * 1024
SAMPLE_SIZE = 1024 * 1024
SAMPLES = 8
FINGERPRINTED_SUFFIXES = {".json", ".jinja", ".safetensors", ".bin", ".model", ".txt", ".pt", ".pth", ".tiktoken"}


def _file_digest(path: Path, digest: hashlib._Hash) -> None:
    size = path.stat().st_size
    digest.update(f"{path.name}:{size}\n".encode())
    with open(path, "rb") as handle:
        if size <= WHOLE_FILE_LIMIT:
            digest.update(handle.read())
            return
        for index in range(SAMPLES):
            handle.seek((size - SAMPLE_SIZE) * index // (SAMPLES - 1))
            digest.update(handle.read(SAMPLE_SIZE))


def fingerprint(model_dir: Path) -> str:
    """A short hash of the files that decide what a local model answers."""
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise HarnessError(f"model path {model_dir} is not a directory")
    digest = hashlib.sha256()
    files = sorted(p for p in model_dir.iterdir() if p.is_file() and p.suffix in FINGERPRINTED_SUFFIXES)
    if not files:
        raise HarnessError(f"{model_dir} holds no model files (config.json, *.safetensors, tokenizer files)")
    for path in files:
        _file_digest(path, digest)
    return digest.hexdigest()[:16]


def local_model_identity(model_dir: Path) -> str:
    model_dir = Path(model_dir).resolve()
    return f"local:{model_dir.name}@{fingerprint(model_dir)}"
