"""Judges measured against the truth: how well each rater recovers a reference rater's "earned" labels.

In the verifiable rule world the rule judge (``--judge rules``) decides every rubric
point exactly, so its labels are the truth and any other rater (a model judge, GPT-4,
a human) can be scored against it, not merely compared. For each other rater, per
rubric-item kind (skill, topic, sense, sentences, and all kinds pooled) and per k
(and all k pooled, when the run has several), on the items both labelled:

- n, and how many of them the truth says are earned;
- accuracy: the share of items where the rater's label is the truth's;
- precision of "earned": of the items the rater says are earned, the share truly earned;
- recall of "earned": of the truly earned items, the share the rater says are earned;
- Cohen's kappa against the truth.

The numbers come from scikit-learn (``accuracy_score``, ``precision_score``,
``recall_score``; kappa through ``judges.agreement.cohen_kappa``). A statistic that
is 0/0 (precision when the rater never says "earned", recall when nothing is
earned, kappa when both give one label throughout) is NaN, shown as "n/a".
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from judges.agreement import OVERALL, Rating, cohen_kappa
from judges.rubric import RUBRIC_KINDS

ALL_K = "all"
TRUTH_HEADERS = ["rater", "item kind", "k", "n", "earned (truth)", "accuracy", "precision", "recall", "kappa"]


@dataclass(frozen=True)
class TruthRow:
    """One rater against the truth on one item kind and one k (or all of them pooled)."""

    rater: str
    criterion: str  # a rubric kind, or "overall" for all kinds pooled
    k: int | str  # a k, or "all"
    n: int
    truth_earned: int
    accuracy: float
    precision: float
    recall: float
    kappa: float

    def cells(self) -> list[str]:
        values = (self.accuracy, self.precision, self.recall, self.kappa)
        return [self.rater, self.criterion, str(self.k), str(self.n), str(self.truth_earned),
                *("n/a" if math.isnan(v) else f"{v:.3f}" for v in values)]  # fmt: skip


def _row(rater: str, criterion: str, k: int | str, pairs: Sequence[tuple[int, int]]) -> TruthRow:
    truth = [t for t, _ in pairs]
    said = [s for _, s in pairs]
    if not pairs:
        return TruthRow(rater, criterion, k, 0, 0, math.nan, math.nan, math.nan, math.nan)
    # Imported here: scikit-learn takes seconds to import, and every `harness run` imports this module.
    from sklearn.exceptions import UndefinedMetricWarning
    from sklearn.metrics import accuracy_score, precision_score, recall_score

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UndefinedMetricWarning)
        precision = precision_score(truth, said, labels=[0, 1], pos_label=1, zero_division=math.nan)
        recall = recall_score(truth, said, labels=[0, 1], pos_label=1, zero_division=math.nan)
    return TruthRow(
        rater, criterion, k, len(pairs), sum(truth), float(accuracy_score(truth, said)),
        float(precision), float(recall), cohen_kappa(truth, said),
    )  # fmt: skip


def truth_table(
    ratings: Sequence[Rating], truth: str, item_k: Mapping[str, int], raters: Sequence[str] | None = None
) -> tuple[TruthRow, ...]:
    """Every rater except ``truth`` against ``truth``, per item kind and per k (see the module docstring).

    ``item_k`` gives each rated item's k (the number of skills of its answer); ``raters``
    picks and orders the raters compared (default: all but the truth, sorted).
    """
    labels: dict[tuple[str, str], dict[str, int]] = {}
    for rating in ratings:
        labels.setdefault((rating.item, rating.criterion), {})[rating.rater] = rating.label
    others = [r for r in (raters if raters is not None else sorted({r.rater for r in ratings})) if r != truth]
    criteria = {criterion for _, criterion in labels}
    kinds = [kind for kind in RUBRIC_KINDS if kind in criteria] + sorted(criteria - set(RUBRIC_KINDS))
    ks = sorted({item_k[item] for item, _ in labels})
    rows: list[TruthRow] = []
    for rater in others:
        both = [
            (criterion, item_k[item], unit[truth], unit[rater])
            for (item, criterion), unit in labels.items()
            if truth in unit and rater in unit
        ]
        for criterion in [*kinds, OVERALL]:
            chosen = [entry for entry in both if criterion in (OVERALL, entry[0])]
            rows += [_row(rater, criterion, k, [(t, s) for _, kk, t, s in chosen if kk == k]) for k in ks]
            if len(ks) > 1:
                rows.append(_row(rater, criterion, ALL_K, [(t, s) for _, _, t, s in chosen]))
    return tuple(rows)
