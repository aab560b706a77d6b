"""Sequence packing: several samples per row, with no attention from one sample to another.

A micro batch's samples are concatenated into rows with position ids that
restart at 0 for every sample and no attention mask. transformers reads
restarting position ids as sample boundaries (a block-diagonal causal mask for
sdpa and eager, variable-length kernels for flash attention), provided no KV
cache is in use, so the model is called with use_cache=False. Flash attention
only does this for a batch of one row, so for it the whole micro batch becomes
one row. The first token of every sample is labelled -100 so that the last
token of one sample is never trained to predict the start of the next.

Whether a backend keeps samples apart is not assumed: `choose_packing`
compares a few samples' logits alone and packed on the model being trained,
and falls back to padding when they differ.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from trainers.data import IGNORE_INDEX, Batch, TokenizedExample

# attention implementations whose transformers code turns restarting position ids into sample boundaries
PACKING_BACKENDS = ("sdpa", "eager", "flash_attention_2", "flash_attention_3", "flex_attention")
# relative logit change allowed between a sample alone and packed; attending across samples gives 0.1 to 1
PACKING_TOLERANCE = 0.02
PROBE_TOKENS = 32


@dataclass(frozen=True)
class PackingChoice:
    """Whether micro batches are packed, why, and the row length (None: one row)."""

    enabled: bool
    reason: str
    row_length: int | None = None


def pack_rows(examples: Sequence[TokenizedExample], row_length: int | None) -> list[list[int]]:
    """Group example indices into rows of at most `row_length` tokens, in order (first fit).

    `row_length=None` puts everything in one row (the layout flash attention needs).
    """
    if row_length is None:
        return [list(range(len(examples)))] if examples else []
    rows: list[list[int]] = []
    room: list[int] = []
    for index, example in enumerate(examples):
        if len(example) > row_length:
            raise ValueError(f"example {index} has {len(example)} tokens, more than a row of {row_length}")
        for row, space in enumerate(room):
            if len(example) <= space:
                rows[row].append(index)
                room[row] -= len(example)
                break
        else:
            rows.append([index])
            room.append(row_length - len(example))
    return rows


def collate_packed(examples: Sequence[TokenizedExample], row_length: int | None, pad_id: int) -> Batch:
    """Concatenate examples into rows with restarting position ids; pad short rows as a separate segment."""
    rows = []
    for row in pack_rows(examples, row_length):
        input_ids: list[int] = []
        labels: list[int] = []
        positions: list[int] = []
        for index in row:
            example = examples[index]
            input_ids.extend(example.input_ids)
            labels.extend((IGNORE_INDEX, *example.labels[1:]))
            positions.extend(range(len(example)))
        rows.append((input_ids, labels, positions))
    width = max(len(input_ids) for input_ids, _, _ in rows)
    padded = [
        # padding restarts at position 0 too, so it forms its own segment and no sample attends to it
        (
            ids + [pad_id] * (width - len(ids)),
            labels + [IGNORE_INDEX] * (width - len(ids)),
            positions + list(range(width - len(ids))),
        )
        for ids, labels, positions in rows
    ]
    return Batch(
        input_ids=torch.tensor([ids for ids, _, _ in padded], dtype=torch.long),
        labels=torch.tensor([labels for _, labels, _ in padded], dtype=torch.long),
        position_ids=torch.tensor([positions for _, _, positions in padded], dtype=torch.long),
        n_tokens=sum(len(ids) for ids, _, _ in rows),
    )


def packing_row_length(attn_implementation: str, max_length: int) -> int | None:
    """Flash attention reads packed samples only from a single row; the mask-based backends take any rows."""
    return None if attn_implementation.startswith("flash_attention") else max_length


def packing_separation_error(
    logits_fn: Callable[[Batch], torch.Tensor],
    examples: Sequence[TokenizedExample],
    row_length: int | None,
    pad_id: int,
) -> float:
    """How much packing changes an example's logits: the mean absolute difference between its logits alone
    and inside the packed batch, relative to its mean absolute logit, for the worst example.

    Rounding-level (1e-7 in fp32) when packing keeps samples apart; of order 0.1 to 1 when tokens attend
    across samples, because every token after the first sample then sees different context.
    """
    packed = collate_packed(examples, row_length, pad_id)
    packed_logits = logits_fn(packed).float()
    worst = 0.0
    for row_number, row in enumerate(pack_rows(examples, row_length)):
        offset = 0
        for index in row:
            length = len(examples[index])
            alone = logits_fn(collate_packed([examples[index]], None, pad_id)).float()[0]
            inside = packed_logits[row_number, offset : offset + length]
            scale = alone.abs().mean().clamp_min(1e-6)
            worst = max(worst, float((alone - inside).abs().mean() / scale))
            offset += length
    return worst


def choose_packing(
    requested: bool,
    backend: str,
    logits_fn: Callable[[Batch], torch.Tensor],
    examples: Sequence[TokenizedExample],
    max_length: int,
    pad_id: int,
) -> PackingChoice:
    """Pack only when asked to and when `backend` keeps samples apart on this very model; else pad.

    `logits_fn` runs the model (in eval mode, without gradients) on a batch.
    """
    if not requested:
        return PackingChoice(False, "disabled by data.packing=false")
    if backend not in PACKING_BACKENDS:
        return PackingChoice(False, f"attention backend {backend!r} has no sample-boundary support")
    row_length = packing_row_length(backend, max_length)
    probes = [TokenizedExample(e.input_ids[:PROBE_TOKENS], e.labels[:PROBE_TOKENS]) for e in examples[:3]]
    if len(probes) < 2:
        return PackingChoice(False, "fewer than two examples to check packing with")
    error = packing_separation_error(logits_fn, probes, row_length, pad_id)
    if error > PACKING_TOLERANCE:
        return PackingChoice(False, f"backend {backend!r} failed the check: packed logits differ by {error:.3f}")
    layout = "one row per micro batch" if row_length is None else f"rows of up to {row_length} tokens"
    return PackingChoice(
        True, f"backend {backend!r}, {layout}, checked: packed logits differ by {error:.1e}", row_length
    )
