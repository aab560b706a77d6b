"""Build tiny random Llama-architecture chat models locally, with no download.

The default run and the test suite need real checkpoints that both
transformers and vLLM load. We train a byte-level BPE tokenizer on a small
corpus shipped in the package, give it a chat template, and save it next to a
randomly initialised `LlamaForCausalLM`. The weights are random: the models
produce noise, which is what we want for exercising the serving, grading and
training paths end to end.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from harness.core.errors import HarnessError

# ChatML-style turns. `<|im_end|>` ends every turn and is the EOS token, so
# training on it teaches the model to stop, and vLLM stops on it.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|pad|>"]


@dataclass(frozen=True)
class TinyModelSpec:
    """Shape of a tiny model. vLLM's CPU attention needs head_dim >= 64."""

    hidden_size: int = 128
    num_layers: int = 2
    num_heads: int = 2
    intermediate_size: int = 256
    vocab_size: int = 2048
    max_positions: int = 4096
    seed: int = 0

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_heads


SIZES: dict[str, TinyModelSpec] = {
    "tiny": TinyModelSpec(),
    "small": TinyModelSpec(hidden_size=256, num_layers=4, num_heads=4, intermediate_size=512, vocab_size=4096),
}
# The rule world's student (harness.rules_student gives it a tokenizer trained on rule-world text).
# Chosen by a CPU study: at a fixed CPU budget a 2-layer, hidden-128 model with a 1024-token
# vocabulary learned the rule skills faster than wider or deeper ones, and a small vocabulary
# keeps the tied embedding cheap.
RULES_STUDENT = TinyModelSpec(vocab_size=1024, max_positions=2048)


def _corpus() -> list[str]:
    """Text to train the tokenizer on: the package's own prompts and catalog, plus a fixed paragraph."""
    root = Path(__file__).resolve().parents[2] / "tasks"
    texts = [
        "The quick brown fox jumps over the lazy dog. Answer: Explanation: Point earned: 0 1 Grade:",
        "| Criteria | Points Earned |\n|---|---|\n| Total Points Earned | 3 |",
        "0123456789 .,;:!?'\"()[]{}<>-_/*#%&+=@$^~`|\\",
    ]
    for path in sorted(root.rglob("*")):
        if path.suffix in {".txt", ".csv", ".yaml", ".md"} and path.is_file():
            texts.append(path.read_text(encoding="utf-8", errors="replace"))
    return texts


def build_tokenizer(vocab_size: int, corpus: Sequence[str] | None = None):
    """A byte-level BPE chat tokenizer trained on `corpus` (default: the package's tasks/ text)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(_corpus() if corpus is None else corpus, trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        bos_token="<|endoftext|>",
        eos_token="<|im_end|>",
        pad_token="<|pad|>",
        unk_token=None,
    )
    fast.chat_template = CHAT_TEMPLATE
    return fast


def build_tiny_model(
    directory: Path,
    spec: TinyModelSpec = TinyModelSpec(),
    overwrite: bool = False,
    corpus: Sequence[str] | None = None,
) -> Path:
    """Write a random tiny Llama chat model to `directory` and return the path.

    The tokenizer is trained on `corpus` when given (a model meant to learn one kind of text
    tokenizes it in fewer, more meaningful pieces), else on the package's tasks/ text.
    """
    import torch
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    directory = Path(directory)
    if (directory / "config.json").exists() and not overwrite:
        raise HarnessError(f"{directory} already holds a model; pass --overwrite to replace it")
    if spec.hidden_size % spec.num_heads or spec.head_dim < 64:
        raise HarnessError(
            f"hidden size {spec.hidden_size} with {spec.num_heads} heads gives head_dim {spec.head_dim}; "
            "vLLM's CPU attention needs a whole head_dim of at least 64"
        )
    directory.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tokenizer(spec.vocab_size, corpus)
    torch.manual_seed(spec.seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=spec.hidden_size,
        intermediate_size=spec.intermediate_size,
        num_hidden_layers=spec.num_layers,
        num_attention_heads=spec.num_heads,
        num_key_value_heads=spec.num_heads,
        head_dim=spec.head_dim,
        max_position_embeddings=spec.max_positions,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=True,
        torch_dtype="float32",
    )
    model = LlamaForCausalLM(config)
    model.generation_config = GenerationConfig(
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    model.save_pretrained(directory, safe_serialization=True)
    tokenizer.save_pretrained(directory)
    (directory / "tiny_model.json").write_text(json.dumps(asdict(spec), indent=2) + "\n")
    return directory
