"""Agreement statistics, checked by hand and against scikit-learn, krippendorff and scipy.

judges.agreement calls those libraries; the comparisons check how it feeds them (label
sequences, missing labels, value counts) and the hand-worked values pin the results.
"""

import json
import math
import warnings

import krippendorff
import numpy as np
import pytest
from scipy import stats
from sklearn import metrics

from harness.core.errors import HarnessError
from judges.agreement import (
    Rating,
    alpha_from_counts,
    bootstrap,
    cohen_kappa,
    confusion,
    kendall_tau,
    krippendorff_alpha,
    percent_agreement,
    read_ratings_csv,
)
from judges.agreement_report import agreement_report, rank_agreement

# A 2-rater, 10-item table worked on paper:
#   pairs (A, B): (1,1) x4, (1,0) x2, (0,0) x3, (0,1) x1
RATER_A = [1, 1, 1, 1, 1, 1, 0, 0, 0, 0]
RATER_B = [1, 1, 1, 1, 0, 0, 0, 0, 0, 1]


def test_percent_agreement_by_hand():
    # 4 + 3 = 7 agreements of 10
    assert percent_agreement(RATER_A, RATER_B) == pytest.approx(0.7)
    assert math.isnan(percent_agreement([], []))
    with pytest.raises(ValueError):
        percent_agreement([1], [1, 0])


def test_cohen_kappa_by_hand():
    # p_o = 0.7; A says 1 six times, B five times:
    # p_e = 0.6 * 0.5 + 0.4 * 0.5 = 0.5, kappa = (0.7 - 0.5) / (1 - 0.5) = 0.4
    assert cohen_kappa(RATER_A, RATER_B) == pytest.approx(0.4)


def test_confusion_by_hand():
    # rows are A's label, columns B's: A=0 -> B 0 three times, B 1 once; A=1 -> 2 and 4
    assert confusion(RATER_A, RATER_B).tolist() == [[3, 1], [2, 4]]
    with pytest.raises(ValueError):
        confusion([2], [1])
    # scikit-learn alone would drop the (2, 1) pair and count the rest
    with pytest.raises(ValueError):
        confusion([0, 2], [0, 1])
    assert confusion([], []).tolist() == [[0, 0], [0, 0]]


def test_alpha_by_hand_two_raters():
    # 20 values: eleven 1s (6 + 5) and nine 0s. Each of the 3 disagreeing units
    # (m = 2) adds (2^2 - 1 - 1) / (2 - 1) = 2 to the observed mass: 6 in all.
    # Expected mass (20^2 - 11^2 - 9^2) / 19 = 198 / 19.
    # alpha = 1 - 6 / (198 / 19) = 1 - 114 / 198 = 14 / 33
    units = [[a, b] for a, b in zip(RATER_A, RATER_B, strict=True)]
    assert krippendorff_alpha(units) == pytest.approx(14 / 33)


def test_alpha_by_hand_with_missing():
    units = [[1, 1, None], [0, 0, 0], [1, None, None], [0, 1, 1]]
    # unit 3 has a single value and is dropped. Observed: unit 1 (1,1) -> 0,
    # unit 2 (0,0,0) -> 0, unit 4 one 0 and two 1s -> (9 - 1 - 4) / 2 = 2.
    # n = 8 with four 0s and four 1s: expected (64 - 16 - 16) / 7 = 32 / 7.
    # alpha = 1 - 2 / (32 / 7) = 1 - 14 / 32 = 0.5625
    assert krippendorff_alpha(units) == pytest.approx(0.5625)


def _correlated_labels(rng, n_raters, n_units, flip=0.25, missing=0.2, n_values=2):
    truth = rng.integers(0, n_values, size=n_units)
    labels = np.tile(truth, (n_raters, 1)).astype(float)
    flips = rng.random(labels.shape) < flip
    labels[flips] = rng.integers(0, n_values, size=flips.sum())
    labels[rng.random(labels.shape) < missing] = np.nan
    return labels  # raters x units


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_alpha_matches_krippendorff_package(seed):
    labels = _correlated_labels(np.random.default_rng(seed), n_raters=4, n_units=60)
    units = [[None if np.isnan(v) else int(v) for v in column] for column in labels.T]
    expected = krippendorff.alpha(reliability_data=labels, level_of_measurement="nominal")
    assert krippendorff_alpha(units) == pytest.approx(expected, abs=1e-12)


def test_alpha_matches_krippendorff_package_three_values():
    labels = _correlated_labels(np.random.default_rng(7), n_raters=3, n_units=40, n_values=3)
    units = [[None if np.isnan(v) else int(v) for v in column] for column in labels.T]
    expected = krippendorff.alpha(reliability_data=labels, level_of_measurement="nominal")
    assert krippendorff_alpha(units) == pytest.approx(expected, abs=1e-12)


def test_alpha_degenerate():
    assert math.isnan(krippendorff_alpha([[1, 1], [1, 1, None]]))  # one value only
    assert math.isnan(krippendorff_alpha([[1, None], [None, 0]]))  # nothing pairable
    assert math.isnan(krippendorff_alpha([]))
    # a bootstrap resample that kept only units labelled 0 (the domain still has 0 and 1)
    assert math.isnan(alpha_from_counts(np.array([[2.0, 0.0], [3.0, 0.0]])))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_kappa_matches_scikit_learn(seed):
    labels = _correlated_labels(np.random.default_rng(seed), 2, 80, missing=0, n_values=2 + seed)
    a, b = labels.astype(int).tolist()
    assert cohen_kappa(a, b) == pytest.approx(metrics.cohen_kappa_score(a, b), abs=1e-12)
    assert (
        confusion(a, b, labels=list(range(2 + seed))).tolist()
        == metrics.confusion_matrix(a, b, labels=list(range(2 + seed))).tolist()
    )


def test_kappa_degenerate_cases():
    # both raters always say 1: p_e = 1, kappa is 0/0
    assert math.isnan(cohen_kappa([1, 1, 1], [1, 1, 1]))
    assert math.isnan(cohen_kappa([], []))
    # one rater constant: p_e = 1 * p_o, so kappa = 0 (no agreement beyond chance)
    assert cohen_kappa([1, 1, 1, 1], [1, 0, 1, 1]) == pytest.approx(0.0)
    # complete disagreement on balanced labels: p_o = 0, p_e = 0.5 -> -1
    assert cohen_kappa([0, 1, 0, 1], [1, 0, 1, 0]) == pytest.approx(-1.0)


def test_kendall_tau_by_hand():
    # pairs (1,2) concordant, (1,3) concordant, (2,3) discordant: (2 - 1) / 3
    assert kendall_tau([1, 2, 3], [1, 3, 2]) == pytest.approx(1 / 3)
    assert kendall_tau([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)
    assert math.isnan(kendall_tau([1, 1, 1], [1, 2, 3]))
    assert math.isnan(kendall_tau([1], [1]))
    assert math.isnan(kendall_tau([], []))
    assert math.isnan(kendall_tau([1, 2], [5, 5]))


def test_undefined_statistics_are_quiet_nans():
    # the libraries warn on these; the report explains them in its notes instead
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert math.isnan(cohen_kappa([0, 0], [0, 0]))
        assert math.isnan(krippendorff_alpha([[1, 1], [1, 1]]))
        assert math.isnan(alpha_from_counts(np.array([[0.0, 2.0], [0.0, 3.0]])))
        assert math.isnan(kendall_tau([1], [2]))
        assert math.isnan(kendall_tau([3, 3, 3], [1, 2, 3]))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_kendall_tau_matches_scipy_with_ties(seed):
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 4, size=12).tolist()  # small range forces ties
    y = (np.array(x) + rng.integers(-1, 2, size=12)).tolist()
    assert kendall_tau(x, y) == pytest.approx(stats.kendalltau(x, y).statistic, abs=1e-12)


def test_bootstrap_is_seeded_and_covers_the_estimate():
    labels = _correlated_labels(np.random.default_rng(5), 2, 200, missing=0)
    rows = labels.T.astype(int)

    def kappa(sample):
        return cohen_kappa(sample[:, 0], sample[:, 1])

    first = bootstrap(rows, kappa, n_resamples=300, seed=11)
    assert first == bootstrap(rows, kappa, n_resamples=300, seed=11)
    assert first != bootstrap(rows, kappa, n_resamples=300, seed=12)
    assert first[0] <= kappa(rows) <= first[1]
    assert all(math.isnan(v) for v in bootstrap(rows[:0], kappa))
    # every resample of a constant table is undefined, so the CI is too
    assert all(math.isnan(v) for v in bootstrap(np.ones((5, 2), dtype=int), kappa))


# ---------------------------------------------------------------- report


def _ratings():
    """Three raters over skill and topic items; carol skips two skill items."""
    rng = np.random.default_rng(0)
    ratings = []
    for kind, count in (("skill", 40), ("topic", 20)):
        truth = rng.integers(0, 2, size=count)
        for rater, flip in (("alice", 0.1), ("bob", 0.2), ("carol", 0.3)):
            labels = np.where(rng.random(count) < flip, 1 - truth, truth)
            for index, label in enumerate(labels):
                if rater == "carol" and kind == "skill" and index < 2:
                    continue
                ratings.append(Rating(f"a{index}", kind, rater, int(label)))
    return ratings


def _aligned(ratings, kind, rater_a, rater_b):
    table = {(r.item, r.criterion, r.rater): r.label for r in ratings}
    keys = sorted({(r.item, r.criterion) for r in ratings if kind in (None, r.criterion)})
    pairs = [
        (table[(*k, rater_a)], table[(*k, rater_b)]) for k in keys if (*k, rater_a) in table and (*k, rater_b) in table
    ]
    return [a for a, _ in pairs], [b for _, b in pairs]


def test_report_matches_the_plain_statistics():
    ratings = _ratings()
    report = agreement_report(ratings, n_resamples=200)
    assert [g.criterion for g in report.groups] == ["skill", "topic", "overall"]
    skill = report.groups[0]
    assert skill.raters == ("alice", "bob", "carol")
    pair = {(p.rater_a, p.rater_b): p for p in skill.pairs}
    a, c = _aligned(ratings, "skill", "alice", "carol")
    assert pair[("alice", "carol")].n == 38 == len(a)
    assert pair[("alice", "carol")].kappa.value == pytest.approx(cohen_kappa(a, c))
    assert pair[("alice", "carol")].percent.value == pytest.approx(percent_agreement(a, c))
    assert pair[("alice", "bob")].n == 40
    # overall pools skill and topic units: 40 + 20 for alice and bob
    overall = report.groups[-1]
    a, b = _aligned(ratings, None, "alice", "bob")
    assert overall.pairs[0].n == 60 == len(a)
    assert overall.pairs[0].kappa.value == pytest.approx(cohen_kappa(a, b))
    assert np.array(overall.pairs[0].confusion).tolist() == confusion(a, b).tolist()
    for group in report.groups:
        for p in group.pairs:
            assert p.kappa.ci_low <= p.kappa.value <= p.kappa.ci_high
        assert group.alpha.ci_low <= group.alpha.value <= group.alpha.ci_high


def test_report_alpha_matches_krippendorff_package():
    ratings = _ratings()
    report = agreement_report(ratings, n_resamples=50)
    units = sorted({(r.item, r.criterion) for r in ratings if r.criterion == "skill"})
    table = {(r.item, r.criterion, r.rater): r.label for r in ratings}
    data = [[table.get((*u, rater), np.nan) for u in units] for rater in ("alice", "bob", "carol")]
    expected = krippendorff.alpha(reliability_data=data, level_of_measurement="nominal")
    assert report.groups[0].alpha.value == pytest.approx(expected, abs=1e-12)
    assert report.groups[0].n_units == 40


def test_report_outputs_and_rater_choice():
    outcomes = [
        Rating(f"c{i}", "full_marks", rater, label)
        for i, (x, y) in enumerate([(1, 1), (0, 0), (1, 0), (0, 0), (1, 1)])
        for rater, label in (("alice", x), ("bob", y))
    ]
    scores = {"alice": {"m1": 0.5, "m2": 0.2, "m3": 0.9}, "bob": {"m1": 0.4, "m2": 0.3, "m3": 0.1}}
    report = agreement_report(
        _ratings(), raters=["bob", "alice"], outcomes=outcomes, model_scores=scores, n_resamples=50
    )
    assert [g.criterion for g in report.groups][-1] == "full_marks"
    full = report.groups[-1]
    # 4 of 5 outcomes agree; rows are bob's label: bob 0 -> alice 0 twice, alice 1 once
    assert (full.pairs[0].rater_a, full.pairs[0].n) == ("bob", 5)
    assert full.pairs[0].percent.value == pytest.approx(0.8)
    assert full.pairs[0].confusion == ((2, 1), (0, 2))
    # m1 > m2 > m3 for bob, m3 > m1 > m2 for alice: one concordant pair of three
    assert report.ranks[0].tau == pytest.approx(-1 / 3)
    data = json.loads(json.dumps(report.to_dict(), allow_nan=False))
    assert data["groups"][0]["pairs"][0]["rater_b"] == "alice"
    titles = [title for title, _, _ in report.to_tables()]
    assert titles[-1] == "Rank agreement of models"
    for _, headers, rows in report.to_tables():
        assert all(len(row) == len(headers) for row in rows)
    markdown = report.to_markdown()
    assert "## Pairwise agreement" in markdown and "| full_marks" in markdown


def test_degenerate_groups_are_reported_not_fatal():
    ratings = [Rating(f"i{i}", "sense", rater, 1) for i in range(6) for rater in ("j1", "j2")]
    ratings += [Rating("x", "topic", "j1", 0)]
    report = agreement_report(ratings, n_resamples=20)
    # groups follow rubric order: topic before sense
    assert [g.criterion for g in report.groups] == ["topic", "sense", "overall"]
    topic, sense = report.groups[0], report.groups[1]
    assert sense.pairs[0].percent.value == 1.0
    assert math.isnan(sense.pairs[0].kappa.value) and math.isnan(sense.alpha.value)
    assert topic.pairs[0].n == 0 and topic.n_units == 0
    assert any("sense: kappa" in note for note in report.notes)
    assert any("topic: j1 and j2 labelled no unit in common" in note for note in report.notes)
    assert "n/a" in report.to_markdown()
    assert report.to_dict()["groups"][1]["pairs"][0]["kappa"]["value"] is None


def test_report_input_errors():
    ratings = _ratings()
    with pytest.raises(HarnessError, match="dave"):
        agreement_report(ratings, raters=["alice", "dave"])
    with pytest.raises(HarnessError, match="at least two raters"):
        agreement_report(ratings, raters=["alice"])
    with pytest.raises(HarnessError, match="twice"):
        agreement_report([*ratings, ratings[0]])
    with pytest.raises(HarnessError, match="0 or 1"):
        agreement_report([*ratings, Rating("z", "skill", "alice", 2)])


def test_rank_agreement_uses_shared_models():
    ranks = rank_agreement({"a": {"m1": 1, "m2": 2, "m3": 3}, "b": {"m1": 1, "m2": 2, "m9": 0}})
    assert ranks[0].n_models == 2 and ranks[0].tau == pytest.approx(1.0)


# ---------------------------------------------------------------- CSV


def _write(tmp_path, text):
    path = tmp_path / "ratings.csv"
    path.write_text(text, encoding="utf-8")
    return path


def test_read_ratings_csv(tmp_path):
    path = _write(tmp_path, "item,criterion,rater,label,note\nq1,skill,gpt4,1,x\nq1,skill, human ,0,\n")
    assert read_ratings_csv(path) == [
        Rating("q1", "skill", "gpt4", 1),
        Rating("q1", "skill", "human", 0),
    ]


@pytest.mark.parametrize(
    "text, message",
    [
        ("item,criterion,label\nq1,skill,1\n", "line 1: missing column(s) rater"),
        (
            "item,criterion,rater,label\nq1,skill,a,1\nq2,skill,a,2\n",
            "line 3: label must be 0 or 1",
        ),
        ("item,criterion,rater,label\nq1,skill,a,1\nq2,skill,a,\n", "line 3: label must be 0 or 1"),
        ("item,criterion,rater,label\nq1,,a,1\n", "line 2: empty criterion"),
        ("item,criterion,rater,label\nq1,skill,a,1\nq2,skill,a,0\nq1,skill,a,0\n", "line 4"),
    ],
)
def test_read_ratings_csv_errors_name_the_line(tmp_path, text, message):
    path = _write(tmp_path, text)
    with pytest.raises(HarnessError) as error:
        read_ratings_csv(path)
    assert str(path) in str(error.value) and message in str(error.value)


def test_duplicate_names_both_lines(tmp_path):
    path = _write(tmp_path, "item,criterion,rater,label\nq1,skill,a,1\nq2,skill,a,0\nq1,skill,a,0\n")
    with pytest.raises(HarnessError, match="line 4: .* on line 2"):
        read_ratings_csv(path)


def test_missing_ratings_file(tmp_path):
    with pytest.raises(HarnessError, match="cannot read"):
        read_ratings_csv(tmp_path / "nope.csv")


@pytest.mark.parametrize("seed", range(4))
def test_resampled_kappas_are_scikit_learns_resample_by_resample(seed: int) -> None:
    from sklearn.metrics import cohen_kappa_score

    from judges.agreement import kappa_resamples, resample_indices

    rng = np.random.default_rng(100 + seed)
    pairs = rng.integers(0, 2, size=(25 + seed * 10, 2))
    pairs[: 10 + seed, 1] = pairs[: 10 + seed, 0]  # some agreement, so kappa is not just noise
    kappas = kappa_resamples(pairs, n_resamples=200, seed=seed)
    indices = resample_indices(len(pairs), 200, seed)
    assert kappas.shape == (200,) and indices.shape == (200, len(pairs))
    for kappa, index in zip(kappas, indices, strict=True):
        resample = pairs[index]
        if len(set(resample[:, 0])) == len(set(resample[:, 1])) == 1 and resample[0, 0] == resample[0, 1]:
            assert np.isnan(kappa)  # one label everywhere: chance agreement is 1
        else:
            assert kappa == pytest.approx(cohen_kappa_score(resample[:, 0], resample[:, 1]), abs=1e-12)
    # a constant pair of raters gives undefined kappa in every resample
    assert np.isnan(kappa_resamples(np.ones((5, 2), dtype=int), n_resamples=10)).all()
