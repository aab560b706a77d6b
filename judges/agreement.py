"""Agreement between raters (judges and humans) on binary rubric labels.

Input is long format: one ``Rating`` per (item, criterion, rater). A *unit* is an
(item, criterion) pair: the thing several raters labelled. Statistics:
percent agreement and Cohen's kappa per pair of raters, Krippendorff's alpha
(nominal) across all raters, percentile-bootstrap CIs that resample units, 2x2
confusion matrices, and Kendall's tau-b between raters' rankings of models.

Undefined statistics (kappa when both raters used a single label, alpha with one
label value in the data) are NaN, reported as "n/a" with a note saying why.
"""

from __future__ import annotations

import csv
import itertools
import math
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TextIO

import numpy as np
from tabulate import tabulate

from harness.errors import HarnessError
from harness.metrics import MetricValue, json_ready, percentile_interval
from judges.rubric import RUBRIC_KINDS

LABELS = (0, 1)
OVERALL = "overall"
FULL_MARKS = "full_marks"
CSV_COLUMNS = ("item", "criterion", "rater", "label")


@dataclass(frozen=True)
class Rating:
    """One rater's binary label for one rubric item (or combination outcome)."""

    item: str
    criterion: str
    rater: str
    label: int


# ---------------------------------------------------------------- statistics


def _check_aligned(a: Sequence[Hashable], b: Sequence[Hashable]) -> None:
    if len(a) != len(b):
        raise ValueError(f"label sequences differ in length: {len(a)} vs {len(b)}")


def percent_agreement(a: Sequence[Hashable], b: Sequence[Hashable]) -> float:
    """Share of positions where the two raters gave the same label (NaN when empty)."""
    _check_aligned(a, b)
    if len(a) == 0:
        return math.nan
    return float(np.mean(np.asarray(a) == np.asarray(b)))


def cohen_kappa(a: Sequence[Hashable], b: Sequence[Hashable]) -> float:
    """Cohen's kappa of two aligned label sequences.

    NaN when empty or when chance agreement is 1 (both raters used one and the same
    label throughout), where kappa is 0/0.
    """
    _check_aligned(a, b)
    n = len(a)
    if n == 0:
        return math.nan
    _, codes = np.unique(np.concatenate([np.asarray(a), np.asarray(b)]), return_inverse=True)
    codes_a, codes_b = codes[:n], codes[n:]
    observed = float(np.mean(codes_a == codes_b))
    size = int(codes.max()) + 1
    marginals = np.bincount(codes_a, minlength=size) * np.bincount(codes_b, minlength=size)
    expected = float(marginals.sum()) / (n * n)
    if expected >= 1:
        return math.nan
    return (observed - expected) / (1 - expected)


def confusion(
    a: Sequence[Hashable], b: Sequence[Hashable], labels: Sequence[Hashable] = LABELS
) -> np.ndarray:
    """Counts with rows = rater a's label and columns = rater b's label, in ``labels`` order."""
    _check_aligned(a, b)
    position = {label: i for i, label in enumerate(labels)}
    matrix = np.zeros((len(labels), len(labels)), dtype=int)
    for x, y in zip(a, b, strict=True):
        if x not in position or y not in position:
            raise ValueError(f"label pair ({x!r}, {y!r}) is outside labels {tuple(labels)}")
        matrix[position[x], position[y]] += 1
    return matrix


def _value_counts(units: Sequence[Sequence[Hashable | None]]) -> np.ndarray:
    """Per-unit counts of each label value (units x values), missing labels dropped."""
    values = sorted({v for unit in units for v in unit if v is not None}, key=repr)
    column = {v: i for i, v in enumerate(values)}
    counts = np.zeros((len(units), len(values)), dtype=float)
    for row, unit in enumerate(units):
        for v in unit:
            if v is not None:
                counts[row, column[v]] += 1
    return counts


def _alpha_from_counts(counts: np.ndarray) -> float:
    # Nominal alpha = 1 - D_o / D_e with the coincidence matrix written in counts:
    # a unit with m values, n_c of value c, adds (m^2 - sum_c n_c^2) / (m - 1) to the
    # observed off-diagonal mass; expected mass is (n^2 - sum_c n_c^2) / (n - 1).
    per_unit = counts.sum(axis=1)
    pairable = counts[per_unit >= 2]
    m = pairable.sum(axis=1)
    n = m.sum()
    if n < 2:
        return math.nan
    observed = ((m**2 - (pairable**2).sum(axis=1)) / (m - 1)).sum()
    totals = pairable.sum(axis=0)
    expected = (n**2 - (totals**2).sum()) / (n - 1)
    if expected == 0:
        return math.nan
    return float(1 - observed / expected)


def krippendorff_alpha(units: Sequence[Sequence[Hashable | None]]) -> float:
    """Krippendorff's alpha for nominal data; ``units`` holds each unit's labels across raters.

    None marks a missing label. Units with fewer than two labels carry no pairs and
    are ignored. NaN when no unit is pairable or only one value occurs.
    """
    return _alpha_from_counts(_value_counts(units))


def kendall_tau(x: Sequence[float], y: Sequence[float]) -> float:
    """Kendall's tau-b (ties corrected); NaN when fewer than two pairs or a side is constant."""
    _check_aligned(x, y)
    concordant = discordant = tied_x = tied_y = pairs = 0
    for (x1, y1), (x2, y2) in itertools.combinations(zip(x, y, strict=True), 2):
        pairs += 1
        dx, dy = np.sign(x1 - x2), np.sign(y1 - y2)
        tied_x += dx == 0
        tied_y += dy == 0
        concordant += dx * dy > 0
        discordant += dx * dy < 0
    denominator = math.sqrt((pairs - tied_x) * (pairs - tied_y))
    if denominator == 0:
        return math.nan
    return float((concordant - discordant) / denominator)


def bootstrap(
    data: np.ndarray,
    statistic: Callable[[np.ndarray], float],
    *,
    n_resamples: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
) -> tuple[float, float]:
    """Percentile CI of ``statistic`` over resamples of the rows (units) of ``data``.

    Resamples where the statistic is undefined (NaN) are left out of the percentiles;
    when all are, or ``data`` is empty, the CI is (NaN, NaN).
    """
    if len(data) == 0:
        return (math.nan, math.nan)
    rng = np.random.default_rng(seed)
    estimates = np.array(
        [statistic(data[rng.integers(0, len(data), size=len(data))]) for _ in range(n_resamples)],
        dtype=float,
    )
    return percentile_interval(estimates, confidence)


# ---------------------------------------------------------------- report


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
        return tables

    def to_markdown(self) -> str:
        parts = ["# Judge agreement", ""]
        for title, headers, rows in self.to_tables():
            parts += [
                f"## {title}",
                "",
                tabulate(rows, headers=headers, tablefmt="github", disable_numparse=True),
                "",
            ]
        parts.append(
            f"CIs: percentile bootstrap over units, {self.n_resamples} resamples, seed {self.seed}."
        )
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


def _pair_kappa(rows: np.ndarray) -> float:
    return cohen_kappa(rows[:, 0], rows[:, 1])


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
        kappa = _estimate(rows, _pair_kappa, seed, n_resamples)
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
    counts = _value_counts([[u.get(rater) for rater in raters] for u in units])
    counts = counts[counts.sum(axis=1) >= 2]
    alpha = _estimate(counts, _alpha_from_counts, seed, n_resamples)
    if len(counts) and math.isnan(alpha.value):
        notes.append(f"{criterion}: alpha is undefined: every label in the data is the same")
    return GroupAgreement(criterion, tuple(raters), len(counts), tuple(pairs), alpha)


def _check_ratings(ratings: Sequence[Rating]) -> None:
    seen: set[tuple[str, str, str]] = set()
    for r in ratings:
        if r.label not in LABELS:
            raise HarnessError(f"rating {r} has label {r.label!r}; labels must be 0 or 1")
        if r.criterion == OVERALL:
            raise HarnessError(
                f"criterion name {OVERALL!r} is reserved for the pooled statistics; rename it"
            )
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
) -> AgreementReport:
    """Agreement per criterion kind and overall; on combination outcomes when ``outcomes``
    (criterion "full_marks") are given; rank agreement when ``model_scores`` maps
    rater -> model -> score. ``raters`` picks and orders the raters (default: all, sorted).
    """
    _check_ratings(ratings)
    _check_ratings(outcomes or [])
    present = sorted({r.rater for r in ratings})
    chosen = list(raters) if raters is not None else present
    unknown = [rater for rater in chosen if rater not in present]
    if unknown:
        raise HarnessError(
            f"no ratings from rater(s) {', '.join(unknown)}; raters present: {', '.join(present)}"
        )
    if len(chosen) < 2:
        raise HarnessError(
            f"agreement needs at least two raters; found: {', '.join(chosen) or 'none'}"
        )
    kept = [r for r in ratings if r.rater in chosen]
    criteria = {r.criterion for r in kept}
    ordered = [kind for kind in RUBRIC_KINDS if kind in criteria] + sorted(
        criteria - set(RUBRIC_KINDS)
    )
    notes: list[str] = []
    groups = [
        _group_agreement(c, [r for r in kept if r.criterion == c], chosen, seed, n_resamples, notes)
        for c in ordered
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
            notes.append(
                f"rank agreement {rank.rater_a} vs {rank.rater_b}: tau undefined over {rank.n_models} models"
            )
    return AgreementReport(tuple(groups), tuple(ranks), tuple(notes), seed, n_resamples)


# ---------------------------------------------------------------- CSV input


def open_csv(path: Path, what: str) -> TextIO:
    """Open a user's CSV file for reading (a spreadsheet's byte-order mark is dropped)."""
    try:
        return path.open(newline="", encoding="utf-8-sig")
    except OSError as error:
        raise HarnessError(f"cannot read {what} {path}: {error.strerror}") from error


def read_ratings_csv(path: str | Path) -> list[Rating]:
    """Read long-format ratings (columns item, criterion, rater, label; more columns are ignored)."""
    path = Path(path)
    with open_csv(path, "ratings file") as handle:
        reader = csv.DictReader(handle)
        missing = [c for c in CSV_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise HarnessError(
                f"{path} line 1: missing column(s) {', '.join(missing)}; the header must name {','.join(CSV_COLUMNS)}"
            )
        ratings: list[Rating] = []
        first_line: dict[tuple[str, str, str], int] = {}
        for row in reader:
            line = reader.line_num
            fields = {c: (row[c] or "").strip() for c in CSV_COLUMNS}
            empty = [c for c in ("item", "criterion", "rater") if not fields[c]]
            if empty:
                raise HarnessError(f"{path} line {line}: empty {', '.join(empty)}")
            if fields["label"] not in ("0", "1"):
                raise HarnessError(
                    f"{path} line {line}: label must be 0 or 1, got {fields['label']!r}"
                )
            key = (fields["item"], fields["criterion"], fields["rater"])
            if key in first_line:
                raise HarnessError(
                    f"{path} line {line}: rater {key[2]!r} already labelled item {key[0]!r} ({key[1]}) "
                    f"on line {first_line[key]}; keep one label per item, criterion and rater"
                )
            first_line[key] = line
            ratings.append(Rating(key[0], key[1], key[2], int(fields["label"])))
    return ratings
