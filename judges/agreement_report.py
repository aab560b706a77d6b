"""The agreement report: every statistic of judges.agreement per rubric-item kind and overall, with CIs.

Per criterion kind (skill, topic, sense, sentences, any other) and overall: percent
agreement and Cohen's kappa per pair of raters with bootstrap CIs and confusion
matrices, Krippendorff's alpha across raters; optionally full-marks outcomes and
Kendall's tau between raters' rankings of models; and, when one rater is the truth
(the rule judge), every other rater measured against it (judges.truth). Renders as
JSON, markdown and terminal tables.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass

import numpy as np
from tabulate import tabulate

from harness.core.errors import HarnessError
from harness.core.stats import MetricValue, json_ready, percentile_interval
from judges.agreement import (
    FULL_MARKS,
    LABELS,
    OVERALL,
    Rating,
    alpha_from_counts,
    bootstrap,
    cohen_kappa,
    confusion,
    kappa_resamples,
    kendall_tau,
    percent_agreement,
    value_counts,
)
from judges.rubric import RUBRIC_KINDS
from judges.truth import TRUTH_HEADERS, TruthRow, truth_table

# A statistic with its bootstrap CI, NaN where undefined.
Estimate = MetricValue


@dataclass(frozen=True)
class PairAgreement:
    """Agreement of two raters on the units both labelled."""

    rater_a: str
    rater_b: str
    n: int
    percent: Estimate
    kappa: Estimate
    # rows: rater_a's label 0/1, columns: rater_b's label 0/1
    confusion: tuple[tuple[int, int], tuple[int, int]]


@dataclass(frozen=True)
class GroupAgreement:
    """All agreement statistics for one criterion kind, "overall" or "full_marks"."""

    criterion: str
    raters: tuple[str, ...]
    n_units: int  # units with at least two labels, the ones alpha uses
    pairs: tuple[PairAgreement, ...]
    alpha: Estimate


@dataclass(frozen=True)
class RankAgreement:
    """Kendall's tau-b between two raters' scores of the same models."""

    rater_a: str
    rater_b: str
    n_models: int
    tau: float


def rank_agreement(
    scores_by_rater: Mapping[str, Mapping[str, float]],
) -> list[RankAgreement]:
    """Kendall's tau-b for each pair of raters, over the models both scored."""
    result = []
    for rater_a, rater_b in itertools.combinations(scores_by_rater, 2):
        models = sorted(set(scores_by_rater[rater_a]) & set(scores_by_rater[rater_b]))
        tau = kendall_tau(
            [scores_by_rater[rater_a][m] for m in models],
            [scores_by_rater[rater_b][m] for m in models],
        )
        result.append(RankAgreement(rater_a, rater_b, len(models), tau))
    return result


def _fmt(value: float, digits: int = 3) -> str:
    return "n/a" if math.isnan(value) else f"{value:.{digits}f}"


def _fmt_ci(estimate: Estimate) -> str:
    if math.isnan(estimate.ci_low):
        return "n/a"
    return f"[{estimate.ci_low:.3f}, {estimate.ci_high:.3f}]"


PAIR_HEADERS = ["criterion", "rater A", "rater B", "n", "agreement", "95% CI", "kappa", "95% CI"]
ALPHA_HEADERS = ["criterion", "raters", "units", "alpha", "95% CI"]
CONFUSION_HEADERS = ["criterion", "rater A", "rater B", "A0 B0", "A0 B1", "A1 B0", "A1 B1"]
RANK_HEADERS = ["rater A", "rater B", "models", "Kendall tau-b"]


def _pair_row(criterion: str, p: PairAgreement) -> list[str]:
    percent, kappa = p.percent, p.kappa
    cells = [_fmt(percent.value), _fmt_ci(percent), _fmt(kappa.value), _fmt_ci(kappa)]
    return [criterion, p.rater_a, p.rater_b, str(p.n), *cells]


def _alpha_row(g: GroupAgreement) -> list[str]:
    return [g.criterion, ", ".join(g.raters), str(g.n_units), _fmt(g.alpha.value), _fmt_ci(g.alpha)]


def _confusion_row(criterion: str, p: PairAgreement) -> list[str]:
    return [criterion, p.rater_a, p.rater_b, *(str(c) for row in p.confusion for c in row)]


@dataclass(frozen=True)
class AgreementReport:
    """Agreement per criterion group, rank agreement of models, and notes on undefined values."""

    groups: tuple[GroupAgreement, ...]
    ranks: tuple[RankAgreement, ...]
    notes: tuple[str, ...]  # why a statistic is undefined
    seed: int
    n_resamples: int
    truth_rater: str | None = None  # the rater whose labels are the truth (the rule judge), if any
    truth: tuple[TruthRow, ...] = ()  # every other rater against it, per item kind and k

    def truth_tables(self) -> list[tuple[str, list[str], list[list[str]]]]:
        if not self.truth:
            return []
        title = f"Against the truth ({self.truth_rater}): accuracy, precision and recall of 'earned', kappa"
        return [(title, TRUTH_HEADERS, [row.cells() for row in self.truth])]

    def to_dict(self) -> dict[str, object]:
        return json_ready(asdict(self))  # type: ignore[return-value]

    def to_tables(self) -> list[tuple[str, list[str], list[list[str]]]]:
        """(title, headers, rows) for each table, ready for ``tabulate``."""
        pairs = [(g.criterion, p) for g in self.groups for p in g.pairs]
        tables = [
            ("Pairwise agreement", PAIR_HEADERS, [_pair_row(c, p) for c, p in pairs]),
            ("Krippendorff's alpha (nominal)", ALPHA_HEADERS, [_alpha_row(g) for g in self.groups]),
            ("Confusion matrices", CONFUSION_HEADERS, [_confusion_row(c, p) for c, p in pairs]),
        ]
        if self.ranks:
            rows = [[r.rater_a, r.rater_b, str(r.n_models), _fmt(r.tau)] for r in self.ranks]
            tables.append(("Rank agreement of models", RANK_HEADERS, rows))
        return self.truth_tables() + tables

    def to_markdown(self) -> str:
        parts = ["# Judge agreement", ""]
        for title, headers, rows in self.to_tables():
            parts += [
                f"## {title}",
                "",
                tabulate(rows, headers=headers, tablefmt="github", disable_numparse=True),
                "",
            ]
        parts.append(f"CIs: percentile bootstrap over units, {self.n_resamples} resamples, seed {self.seed}.")
        if self.notes:
            parts += ["", "## Notes", "", *(f"- {note}" for note in self.notes)]
        return "\n".join(parts) + "\n"


def _estimate(
    data: np.ndarray,
    statistic: Callable[[np.ndarray], float],
    seed: int,
    n_resamples: int,
) -> Estimate:
    low, high = bootstrap(data, statistic, n_resamples=n_resamples, seed=seed)
    value = statistic(data) if len(data) else math.nan
    return Estimate(value, low, high)


def _kappa_estimate(rows: np.ndarray, seed: int, n_resamples: int) -> Estimate:
    """Kappa from scikit-learn, its CI from the same resamples as every other statistic (kappa_resamples)."""
    if len(rows) == 0:
        return Estimate(math.nan, math.nan, math.nan)
    low, high = percentile_interval(kappa_resamples(rows, n_resamples, seed), 0.95)
    return Estimate(cohen_kappa(rows[:, 0], rows[:, 1]), low, high)


def _pair_percent(rows: np.ndarray) -> float:
    return percent_agreement(rows[:, 0], rows[:, 1])


def _group_agreement(
    criterion: str,
    ratings: Sequence[Rating],
    raters: Sequence[str],
    seed: int,
    n_resamples: int,
    notes: list[str],
) -> GroupAgreement:
    labels: dict[tuple[str, str], dict[str, int]] = {}
    for r in ratings:
        labels.setdefault((r.item, r.criterion), {})[r.rater] = r.label
    units = list(labels.values())
    pairs = []
    for rater_a, rater_b in itertools.combinations(raters, 2):
        rows = np.array(
            [(u[rater_a], u[rater_b]) for u in units if rater_a in u and rater_b in u],
            dtype=int,
        )
        rows = rows.reshape(-1, 2)
        kappa = _kappa_estimate(rows, seed, n_resamples)
        matrix = confusion(rows[:, 0].tolist(), rows[:, 1].tolist())
        if len(rows) == 0:
            notes.append(f"{criterion}: {rater_a} and {rater_b} labelled no unit in common")
        elif math.isnan(kappa.value):
            notes.append(
                f"{criterion}: kappa for {rater_a} vs {rater_b} is undefined: both gave every one of "
                f"{len(rows)} units label {rows[0, 0]}"
            )
        pairs.append(
            PairAgreement(
                rater_a,
                rater_b,
                len(rows),
                _estimate(rows, _pair_percent, seed, n_resamples),
                kappa,
                (
                    (int(matrix[0, 0]), int(matrix[0, 1])),
                    (int(matrix[1, 0]), int(matrix[1, 1])),
                ),
            )
        )
    counts = value_counts([[u.get(rater) for rater in raters] for u in units])
    counts = counts[counts.sum(axis=1) >= 2]
    alpha = _estimate(counts, alpha_from_counts, seed, n_resamples)
    if len(counts) and math.isnan(alpha.value):
        notes.append(f"{criterion}: alpha is undefined: every label in the data is the same")
    return GroupAgreement(criterion, tuple(raters), len(counts), tuple(pairs), alpha)


def _check_ratings(ratings: Sequence[Rating]) -> None:
    seen: set[tuple[str, str, str]] = set()
    for r in ratings:
        if r.label not in LABELS:
            raise HarnessError(f"rating {r} has label {r.label!r}; labels must be 0 or 1")
        if r.criterion == OVERALL:
            raise HarnessError(f"criterion name {OVERALL!r} is reserved for the pooled statistics; rename it")
        key = (r.item, r.criterion, r.rater)
        if key in seen:
            raise HarnessError(f"rater {r.rater!r} labelled item {r.item!r} ({r.criterion}) twice")
        seen.add(key)


def agreement_report(
    ratings: Sequence[Rating],
    *,
    raters: Sequence[str] | None = None,
    outcomes: Sequence[Rating] | None = None,
    model_scores: Mapping[str, Mapping[str, float]] | None = None,
    seed: int = 0,
    n_resamples: int = 1000,
    truth: str | None = None,
    item_k: Mapping[str, int] | None = None,
) -> AgreementReport:
    """Agreement per criterion kind and overall; on combination outcomes when ``outcomes``
    (criterion "full_marks") are given; rank agreement when ``model_scores`` maps
    rater -> model -> score. ``raters`` picks and orders the raters (default: all, sorted).
    ``truth`` names a rater whose labels are the truth; every other rater is then measured
    against it per item kind and per k, which ``item_k`` (item -> k) gives.
    """
    _check_ratings(ratings)
    _check_ratings(outcomes or [])
    present = sorted({r.rater for r in ratings})
    chosen = list(raters) if raters is not None else present
    unknown = [rater for rater in chosen if rater not in present]
    if unknown:
        raise HarnessError(f"no ratings from rater(s) {', '.join(unknown)}; raters present: {', '.join(present)}")
    if len(chosen) < 2:
        raise HarnessError(f"agreement needs at least two raters; found: {', '.join(chosen) or 'none'}")
    kept = [r for r in ratings if r.rater in chosen]
    criteria = {r.criterion for r in kept}
    ordered = [kind for kind in RUBRIC_KINDS if kind in criteria] + sorted(criteria - set(RUBRIC_KINDS))
    notes: list[str] = []
    groups = [
        _group_agreement(c, [r for r in kept if r.criterion == c], chosen, seed, n_resamples, notes) for c in ordered
    ]
    groups.append(_group_agreement(OVERALL, kept, chosen, seed, n_resamples, notes))
    if outcomes:
        groups.append(
            _group_agreement(
                FULL_MARKS,
                [r for r in outcomes if r.rater in chosen],
                chosen,
                seed,
                n_resamples,
                notes,
            )
        )
    ranks = rank_agreement(model_scores) if model_scores else []
    for rank in ranks:
        if math.isnan(rank.tau):
            notes.append(f"rank agreement {rank.rater_a} vs {rank.rater_b}: tau undefined over {rank.n_models} models")
    truth_rows: tuple[TruthRow, ...] = ()
    if truth is not None:
        if truth not in chosen:
            raise HarnessError(f"the truth rater {truth!r} is not among the raters: {', '.join(chosen)}")
        if item_k is None:
            raise HarnessError("measuring raters against the truth needs each item's k (item_k)")
        truth_rows = truth_table(kept, truth, item_k, chosen)
    return AgreementReport(tuple(groups), tuple(ranks), tuple(notes), seed, n_resamples, truth, truth_rows)
