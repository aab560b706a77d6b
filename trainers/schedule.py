"""What each optimizer step uses: its learning rate and the samples of each rank's micro batches.

Both are pure functions of the step number, so a resumed run continues exactly
where the checkpoint left off without storing sampler or scheduler state.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np


def learning_rate(step: int, peak: float, warmup_steps: int) -> float:
    """Linear warm-up over `warmup_steps` optimizer steps, then constant.

    `step` counts from 0; step 0 already gets peak / warmup_steps, so no step is
    wasted at a learning rate of zero, and step warmup_steps - 1 reaches the peak.
    """
    if warmup_steps <= 0 or step >= warmup_steps:
        return peak
    return peak * (step + 1) / warmup_steps


@lru_cache(maxsize=4)
def _permutation(n_examples: int, seed: int, epoch: int) -> np.ndarray:
    return np.random.default_rng([seed, epoch]).permutation(n_examples)


@dataclass(frozen=True)
class BatchPlan:
    """Splits an endless stream of shuffled epochs into global batches, ranks and micro batches.

    The stream is epoch 0's permutation, then epoch 1's, and so on; step s takes
    the global batch at stream positions [s * G, (s + 1) * G), which rank r reads
    in micro batches of m samples: micro batch j of rank r is the block
    j * world_size + r. A global batch may straddle two epochs.
    """

    n_examples: int
    global_batch_size: int
    micro_batch_size: int
    world_size: int
    seed: int

    def __post_init__(self) -> None:
        if self.n_examples <= 0:
            raise ValueError("a batch plan needs at least one example")
        if self.global_batch_size % (self.micro_batch_size * self.world_size):
            raise ValueError("global batch size must be a multiple of micro batch size x world size")

    @property
    def accumulation_steps(self) -> int:
        return self.global_batch_size // (self.micro_batch_size * self.world_size)

    def micro_batch(self, step: int, rank: int, micro_step: int) -> list[int]:
        """Example indices for one rank's micro batch within an optimizer step."""
        block = micro_step * self.world_size + rank
        start = step * self.global_batch_size + block * self.micro_batch_size
        return [self._at(position) for position in range(start, start + self.micro_batch_size)]

    def epoch(self, step: int) -> float:
        return step * self.global_batch_size / self.n_examples

    def _at(self, position: int) -> int:
        epoch, offset = divmod(position, self.n_examples)
        return int(_permutation(self.n_examples, self.seed, epoch)[offset])
