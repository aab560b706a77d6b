"""Agreement statistics between raters (judges and humans) on binary rubric labels.

Input is long format: one ``Rating`` per (item, criterion, rater). A *unit* is an
(item, criterion) pair: the thing several raters labelled. Statistics:
percent agreement and Cohen's kappa per pair of raters, Krippendorff's alpha
(nominal) across all raters, percentile-bootstrap CIs that resample units, 2x2
confusion matrices, and Kendall's tau-b between raters' rankings of models.
The report that puts them together is in judges.agreement_report.

The statistics themselves come from scikit-learn (kappa, confusion matrix), the
krippendorff package (alpha) and SciPy (tau); this module fixes the input format and
the rule for undefined statistics (kappa when both raters used a single label, alpha
with one label value in the data, tau with a constant side): they are NaN, without a
library warning, and the report shows "n/a" with a note saying why.
"""

from __future__ import annotations

import contextlib
import csv
import math
import warnings
from collections.abc import Callable, Hashable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import krippendorff
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
    """Cohen's kappa of two aligned label sequences (``sklearn.metrics.cohen_kappa_score``).

    NaN when empty or when chance agreement is 1 (both raters used one and the same
    label throughout), where kappa is 0/0.
    """
    _check_aligned(a, b)
    if len(a) == 0:
        return math.nan  # scikit-learn raises on empty input
    # Imported here, not at the top: scikit-learn (with pandas) and SciPy take seconds to import,
    # and every `harness run` imports this module through the report, most without agreement to compute.
    from sklearn.exceptions import UndefinedMetricWarning
    from sklearn.metrics import cohen_kappa_score

    # Chance agreement 1 is scikit-learn's "undefined" case: it warns and returns NaN
    # (older releases divide 0 by 0); the report gives its own note instead.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UndefinedMetricWarning)
        warnings.simplefilter("ignore", RuntimeWarning)
        warnings.filterwarnings("ignore", "A single label was found", UserWarning)
        return float(cohen_kappa_score(a, b))


def confusion(a: Sequence[Hashable], b: Sequence[Hashable], labels: Sequence[Hashable] = LABELS) -> np.ndarray:
    """Counts with rows = rater a's label and columns = rater b's label, in ``labels`` order."""
    _check_aligned(a, b)
    # scikit-learn silently drops pairs outside ``labels`` and raises on empty input.
    known = set(labels)
    for x, y in zip(a, b, strict=True):
        if x not in known or y not in known:
            raise ValueError(f"label pair ({x!r}, {y!r}) is outside labels {tuple(labels)}")
    if len(a) == 0:
        return np.zeros((len(labels), len(labels)), dtype=int)
    from sklearn.metrics import confusion_matrix  # slow to import: see cohen_kappa

    return confusion_matrix(a, b, labels=list(labels))


def value_counts(units: Sequence[Sequence[Hashable | None]]) -> np.ndarray:
    """Per-unit counts of each label value (units x values), missing labels dropped.

    This is the ``value_counts`` input of ``krippendorff.alpha``; the report bootstraps
    alpha by resampling its rows, so the labels are counted once, not per resample.
    """
    values = sorted({v for unit in units for v in unit if v is not None}, key=repr)
    column = {v: i for i, v in enumerate(values)}
    counts = np.zeros((len(units), len(values)), dtype=float)
    for row, unit in enumerate(units):
        for v in unit:
            if v is not None:
                counts[row, column[v]] += 1
    return counts


def alpha_from_counts(counts: np.ndarray) -> float:
    """Nominal Krippendorff's alpha of ``value_counts`` rows (``krippendorff.alpha``).

    NaN when no unit has two labels or only one value occurs: the package raises on
    the first and on a one-column domain, and divides 0 by 0 when a resample keeps
    just one of several values.
    """
    if counts.ndim != 2 or counts.shape[1] < 2 or not (counts.sum(axis=1) >= 2).any():
        return math.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return float(krippendorff.alpha(value_counts=counts, level_of_measurement="nominal"))


def krippendorff_alpha(units: Sequence[Sequence[Hashable | None]]) -> float:
    """Krippendorff's alpha for nominal data; ``units`` holds each unit's labels across raters.

    None marks a missing label. Units with fewer than two labels carry no pairs and
    are ignored. NaN when no unit is pairable or only one value occurs.
    """
    return alpha_from_counts(value_counts(units))


def kendall_tau(x: Sequence[float], y: Sequence[float]) -> float:
    """Kendall's tau-b (ties corrected, ``scipy.stats.kendalltau``).

    NaN when fewer than two pairs or a side is constant.
    """
    _check_aligned(x, y)
    from scipy.stats import kendalltau  # slow to import: see cohen_kappa

    with warnings.catch_warnings():
        # SciPy warns (SmallSampleWarning, a RuntimeWarning) with fewer than two models
        warnings.simplefilter("ignore", RuntimeWarning)
        return float(kendalltau(x, y, variant="b").statistic)


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
    estimates = np.array(
        [statistic(data[index]) for index in resample_indices(len(data), n_resamples, seed)], dtype=float
    )
    return percentile_interval(estimates, confidence)


def resample_indices(n: int, n_resamples: int, seed: int) -> np.ndarray:
    """The row indices of each bootstrap resample (n_resamples x n), the same stream for every statistic."""
    rng = np.random.default_rng(seed)
    return np.stack([rng.integers(0, n, size=n) for _ in range(n_resamples)])


def kappa_resamples(pairs: np.ndarray, n_resamples: int = 1000, seed: int = 0) -> np.ndarray:
    """Cohen's kappa of every bootstrap resample of ``pairs`` (units x 2 binary labels), NaN where undefined.

    Each resample's kappa comes from its 2x2 table, all resamples at once. It is the number
    ``cohen_kappa_score`` gives for that resample (tests check this resample by resample), but
    the library costs about a millisecond a call in input checks, and a report bootstraps every
    rater pair of every rubric kind a thousand times: ten times the report's whole run time.
    """
    n = len(pairs)
    codes = (2 * pairs[:, 0] + pairs[:, 1])[resample_indices(n, n_resamples, seed)]
    t00, t01, t10, t11 = ((codes[..., None] == np.arange(4)).sum(axis=1).astype(float)).T
    observed = (t00 + t11) / n
    expected = ((t00 + t01) * (t00 + t10) + (t10 + t11) * (t01 + t11)) / (n * n)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(expected < 1, (observed - expected) / (1 - expected), np.nan)


# ---------------------------------------------------------------- CSV input


@contextlib.contextmanager
def csv_rows(path: Path, what: str) -> Iterator[csv.DictReader]:
    """A DictReader over a user's CSV file (a spreadsheet's byte-order mark is dropped).

    A file that cannot be read, is not UTF-8 text or is not CSV is a HarnessError naming it,
    wherever in the file the problem is.
    """
    reader: csv.DictReader | None = None
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            yield reader
    except OSError as error:
        raise HarnessError(f"cannot read {what} {path}: {error.strerror}") from None
    except UnicodeDecodeError as error:
        raise HarnessError(
            f"{path}: the {what} is not UTF-8 text (byte {error.object[error.start]:#04x} at offset {error.start}); "
            "save it as UTF-8 CSV (spreadsheets offer 'CSV UTF-8')"
        ) from None
    except csv.Error as error:
        line = f" line {reader.line_num}" if reader is not None else ""
        raise HarnessError(f"{path}{line}: the {what} is not valid CSV ({error})") from None


def read_ratings_csv(path: str | Path) -> list[Rating]:
    """Read long-format ratings (columns item, criterion, rater, label; more columns are ignored)."""
    path = Path(path)
    with csv_rows(path, "ratings file") as reader:
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
                raise HarnessError(f"{path} line {line}: label must be 0 or 1, got {fields['label']!r}")
            key = (fields["item"], fields["criterion"], fields["rater"])
            if key in first_line:
                raise HarnessError(
                    f"{path} line {line}: rater {key[2]!r} already labelled item {key[0]!r} ({key[1]}) "
                    f"on line {first_line[key]}; keep one label per item, criterion and rater"
                )
            first_line[key] = line
            ratings.append(Rating(key[0], key[1], key[2], int(fields["label"])))
    return ratings
