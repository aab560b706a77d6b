"""Agreement statistics between raters (judges and humans) on binary rubric labels.

Input is long format: one ``Rating`` per (item, criterion, rater). A *unit* is an
(item, criterion) pair: the thing several raters labelled. Statistics:
percent agreement and Cohen's kappa per pair of raters, Krippendorff's alpha
(nominal) across all raters, percentile-bootstrap CIs that resample units, 2x2
confusion matrices, and Kendall's tau-b between raters' rankings of models.
The report that puts them together is in judges.agreement_report.

Undefined statistics (kappa when both raters used a single label, alpha with one
label value in the data) are NaN, reported as "n/a" with a note saying why.
"""

from __future__ import annotations

import csv
import itertools
import math
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

import numpy as np

from harness.core.errors import HarnessError
from harness.core.stats import percentile_interval

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


def value_counts(units: Sequence[Sequence[Hashable | None]]) -> np.ndarray:
    """Per-unit counts of each label value (units x values), missing labels dropped."""
    values = sorted({v for unit in units for v in unit if v is not None}, key=repr)
    column = {v: i for i, v in enumerate(values)}
    counts = np.zeros((len(units), len(values)), dtype=float)
    for row, unit in enumerate(units):
        for v in unit:
            if v is not None:
                counts[row, column[v]] += 1
    return counts


def alpha_from_counts(counts: np.ndarray) -> float:
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
    return alpha_from_counts(value_counts(units))


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
