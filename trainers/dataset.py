"""Write and read the SKILL-MIX training set on disk, select the k mix, and tokenize it.

The data side saves a Hugging Face `datasets` dataset with `save_to_disk` (`save_rows`): a
`messages` column (user = generation request, assistant = kept text) and a
`k` column. Training on the cumulative mix D(1,2) means keeping the rows whose
k is 1 or 2; `data.k` lists them.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.core.errors import HarnessError
from trainers.data import Message, TokenizedExample, encode_conversation

REQUIRED_COLUMNS = ("messages", "k")


def save_rows(rows: Sequence[dict[str, Any]], directory: Path, features: Any) -> None:
    """Save rows (dicts holding every column of ``features``) as one-shard dataset at ``directory``."""
    import datasets

    dataset = datasets.Dataset.from_dict({name: [row[name] for row in rows] for name in features}, features=features)
    bars_were_on = not datasets.are_progress_bars_disabled()
    datasets.disable_progress_bars()
    try:
        # one shard even when empty: a zero-shard dataset cannot be loaded back
        dataset.save_to_disk(str(directory), num_shards=1)
    finally:
        if bars_were_on:
            datasets.enable_progress_bars()


@dataclass(frozen=True)
class Conversations:
    """The selected rows of a training set."""

    messages: tuple[tuple[Message, ...], ...]
    k_counts: dict[int, int] = field(default_factory=dict)
    total_rows: int = 0


@dataclass(frozen=True)
class TrainingSet:
    examples: tuple[TokenizedExample, ...]
    n_truncated: int
    n_without_labels: int  # dropped: truncation removed every assistant token

    @property
    def n_tokens(self) -> int:
        return sum(len(example) for example in self.examples)


def load_conversations(path: str | Path, k: Sequence[int] | None) -> Conversations:
    """Rows of the dataset at `path` whose k is in `k` (all rows when k is None)."""
    import datasets

    path = Path(path)
    try:
        dataset = datasets.load_from_disk(str(path))
    except (FileNotFoundError, ValueError) as error:
        raise HarnessError(f"cannot load the training data at {path}: {error}") from None
    if isinstance(dataset, datasets.DatasetDict):
        if "train" not in dataset:
            raise HarnessError(f"{path} holds splits {sorted(dataset)} but no 'train' split")
        dataset = dataset["train"]
    missing = [column for column in REQUIRED_COLUMNS if column not in dataset.column_names]
    if missing:
        raise HarnessError(
            f"the training data at {path} lacks column(s) {', '.join(missing)}; it has {dataset.column_names}"
        )
    ks = list(dataset["k"])
    wanted = None if k is None else set(k)
    keep = [index for index, row_k in enumerate(ks) if wanted is None or row_k in wanted]
    if not keep:
        raise HarnessError(
            f"no rows of {path} have k in {sorted(wanted or [])}; the data has k values {sorted(set(ks))}"
        )
    selected = dataset.select(keep)
    messages = tuple(tuple(_message(turn, path) for turn in row) for row in list(selected["messages"]))
    return Conversations(messages, dict(sorted(Counter(ks[index] for index in keep).items())), len(ks))


def _message(turn: Any, path: Path) -> Message:
    if not isinstance(turn, dict) or not {"role", "content"} <= set(turn):
        raise HarnessError(f"a message in {path} is not a {{role, content}} mapping: {turn!r}")
    return {"role": str(turn["role"]), "content": str(turn["content"])}


def tokenize_conversations(tokenizer: Any, conversations: Conversations, max_length: int) -> TrainingSet:
    examples = []
    truncated = without_labels = 0
    for messages in conversations.messages:
        example = encode_conversation(tokenizer, messages, max_length)
        truncated += example.truncated
        if example.n_labels == 0:
            without_labels += 1
            continue
        examples.append(example)
    if not examples:
        raise HarnessError(
            "no training example keeps an assistant token within train.max_length; raise train.max_length "
            "or check that the data has assistant turns"
        )
    return TrainingSet(tuple(examples), truncated, without_labels)
