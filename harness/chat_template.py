"""Check that a fine-tuned student is served with the chat template it was trained with.

A student trained on one chat template and served with another sees turn
markers it never learned, and its SKILL-MIX scores drop for reasons that have
nothing to do with skill composition. The trainer writes the template's hash
into training_metadata.json; here we compare it with what vLLM will apply.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from trainers.metadata import chat_template_hash, read_training_metadata


def served_chat_template(model_dir: Path, vllm_args: Sequence[str] = ()) -> str | None:
    """The template vLLM applies: a --chat-template argument (file or literal), else the tokenizer's own."""
    args = list(vllm_args)
    for index, arg in enumerate(args):
        value = None
        if arg == "--chat-template" and index + 1 < len(args):
            value = args[index + 1]
        elif arg.startswith("--chat-template="):
            value = arg.split("=", 1)[1]
        if value is not None:
            path = Path(value).expanduser()
            return path.read_text(encoding="utf-8") if path.is_file() else value
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(model_dir)).chat_template


def chat_template_warning(model_dir: Path, vllm_args: Sequence[str] = ()) -> str | None:
    """A warning when the served template differs from the trained one; None when they agree or nothing is known."""
    metadata = read_training_metadata(model_dir)
    if not metadata or not metadata.get("chat_template_sha256"):
        return None
    served = served_chat_template(model_dir, vllm_args)
    if served is None:
        return f"{model_dir} was fine-tuned with a chat template, but the served tokenizer has none"
    if chat_template_hash(served) != metadata["chat_template_sha256"]:
        return (
            f"the chat template vLLM will apply to {model_dir.name} differs from the one it was trained with "
            f"(sha256 {chat_template_hash(served)[:12]} vs {metadata['chat_template_sha256'][:12]}); "
            "scores may drop for reasons unrelated to skill composition"
        )
    return None
