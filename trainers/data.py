"""Turn chat conversations into training tensors: template rendering, assistant-only labels, padding.

The conversation is rendered once with the model's own chat template and
tokenized once, as at inference. To find what the assistant wrote, each
assistant turn is located by rendering the conversation up to the turn (with
the generation prompt) and up to the end of the turn: the characters between
the two renderings are the assistant's, including whatever end-of-turn or EOS
token the template appends. Tokens that start inside those characters keep
their id as label; every other token is labelled -100. Nothing here knows a
particular template, so Llama-2, Mistral and ChatML all work. Packing several
samples into one row lives in trainers/packing.py.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from harness.core.errors import HarnessError

IGNORE_INDEX = -100
Message = dict[str, str]


@dataclass(frozen=True)
class TokenizedExample:
    input_ids: tuple[int, ...]
    labels: tuple[int, ...]
    truncated: bool = False

    @property
    def n_labels(self) -> int:
        return sum(label != IGNORE_INDEX for label in self.labels)

    def __len__(self) -> int:
        return len(self.input_ids)


@dataclass(frozen=True)
class Batch:
    """Model inputs for one micro batch: packed rows carry position_ids, padded rows an attention_mask."""

    input_ids: torch.Tensor
    labels: torch.Tensor
    position_ids: torch.Tensor | None = None
    attention_mask: torch.Tensor | None = None
    n_tokens: int = 0  # positions holding sample tokens; the rest of input_ids is padding

    @property
    def n_positions(self) -> int:
        return self.input_ids.numel()

    def model_inputs(self, device: torch.device | str | None = None, labels: bool = True) -> dict[str, Any]:
        tensors = {"input_ids": self.input_ids}
        if labels:
            tensors["labels"] = self.labels
        if self.position_ids is not None:
            tensors["position_ids"] = self.position_ids
        if self.attention_mask is not None:
            tensors["attention_mask"] = self.attention_mask
        if device is not None:
            tensors = {name: tensor.to(device) for name, tensor in tensors.items()}
        # transformers only reads restarting position ids as sample boundaries when no KV cache is in play
        return {**tensors, "use_cache": False}

    @property
    def n_labels(self) -> int:
        # the model shifts labels by one, so a label in column 0 is never predicted
        return int((self.labels[:, 1:] != IGNORE_INDEX).sum())


def render(tokenizer: Any, messages: Sequence[Message], add_generation_prompt: bool = False) -> str:
    try:
        return tokenizer.apply_chat_template(
            list(messages), tokenize=False, add_generation_prompt=add_generation_prompt
        )
    except Exception as error:  # jinja raises its own errors, e.g. Llama-2's "roles must alternate"
        raise HarnessError(f"the chat template cannot render this conversation: {error}") from None


def assistant_spans(tokenizer: Any, messages: Sequence[Message]) -> tuple[str, list[tuple[int, int]]]:
    """The rendered conversation and the [start, end) character spans written by the assistant."""
    if not messages:
        raise HarnessError("a training conversation has no messages")
    text = render(tokenizer, messages)
    spans = []
    for index, message in enumerate(messages):
        if message.get("role") != "assistant":
            continue
        through = render(tokenizer, messages[: index + 1])
        start = None
        for generation_prompt in (True, False):
            before = render(tokenizer, messages[:index], add_generation_prompt=generation_prompt) if index else ""
            if through.startswith(before):
                start = len(before)
                break
        if start is None or not text.startswith(through):
            raise HarnessError(
                "the chat template does not render conversations incrementally (a rendered prefix is not a prefix "
                "of the full rendering), so assistant tokens cannot be located; use a template without "
                "turn-dependent rewriting"
            )
        spans.append((start, len(through)))
    return text, spans


def encode_conversation(tokenizer: Any, messages: Sequence[Message], max_length: int) -> TokenizedExample:
    """Token ids and labels for one conversation: assistant tokens keep their id, all others get -100."""
    text, spans = assistant_spans(tokenizer, messages)
    # the template already wrote any BOS it wants into the text
    encoding = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    input_ids = list(encoding["input_ids"])
    labels = []
    for token_id, (start, _end) in zip(input_ids, encoding["offset_mapping"], strict=True):
        inside = any(span_start <= start < span_end for span_start, span_end in spans)
        labels.append(token_id if inside else IGNORE_INDEX)
    truncated = len(input_ids) > max_length
    return TokenizedExample(tuple(input_ids[:max_length]), tuple(labels[:max_length]), truncated)


def collate_padded(examples: Sequence[TokenizedExample], pad_id: int) -> Batch:
    """One example per row, right-padded to the longest, with an attention mask."""
    width = max(len(example) for example in examples)
    input_ids, labels, mask = [], [], []
    for example in examples:
        pad = width - len(example)
        input_ids.append(list(example.input_ids) + [pad_id] * pad)
        labels.append(list(example.labels) + [IGNORE_INDEX] * pad)
        mask.append([1] * len(example) + [0] * pad)
    return Batch(
        input_ids=torch.tensor(input_ids, dtype=torch.long),
        labels=torch.tensor(labels, dtype=torch.long),
        attention_mask=torch.tensor(mask, dtype=torch.long),
        n_tokens=sum(len(example) for example in examples),
    )
