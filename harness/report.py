"""Reports of scored runs: a terminal table, results.json, report.md, a plot, and report.html (harness.report_html).

Every report names the scoring profile it was scored under (harness.scoring). When the
run has the rule judge and other raters, results.json (``truth_rater``, ``truth``) and
report.md also carry every other judge measured against it (judges.truth).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from tabulate import tabulate

from harness.core.stats import MetricValue, json_ready
from harness.core.store import RunStore
from harness.report_data import RunView, run_view
from harness.report_html import HTML_NAME, write_html
from harness.scoring import ScoringProfile, TaskResult, score_store, scoring_profile
from judges.agreement_report import AgreementReport

METRICS = (("full_marks", "full marks"), ("all_skills", "all skills"), ("skill_fraction", "skill fraction"))


def _value(metric: MetricValue) -> str:
    if metric.value is None or (isinstance(metric.value, float) and math.isnan(metric.value)):
        return "–"
    # The reference's own uncertainty (std / sqrt(n)) goes next to our CI, printed as it prints it.
    uncertainty = getattr(metric, "uncertainty", None)
    spread = "" if uncertainty is None else f" ± {uncertainty:.3f}"
    return f"{metric.value:.2f}{spread} ({metric.ci_low:.2f}–{metric.ci_high:.2f})"


def _sort_key(result: TaskResult) -> tuple:
    return (result.split, result.k, result.task, result.student, result.judge)


def result_rows(results: Sequence[TaskResult]) -> tuple[list[str], list[list[Any]]]:
    headers = ["task", "k", "split", "student", "judge", "n", *[label for _, label in METRICS], "unscored"]
    rows = []
    for result in sorted(results, key=_sort_key):
        metrics = result.metrics
        unscored = f"{metrics.unscored}" + (
            "" if result.complete else f" (incomplete: {result.answers}/{result.expected_answers} answers)"
        )
        rows.append(
            [result.task, result.k, result.split, result.student, result.judge, metrics.n,
             *[_value(getattr(metrics, key)) for key, _ in METRICS], unscored]
        )  # fmt: skip
    return headers, rows


def _has_uncertainty(results: Sequence[TaskResult]) -> bool:
    return any(getattr(result.metrics.full_marks, "uncertainty", None) is not None for result in results)


def _values_note(results: Sequence[TaskResult]) -> str:
    return (
        "values: ratio over combinations (best of generation rounds)"
        + (", ± the reference code's std/sqrt(n)" if _has_uncertainty(results) else "")
        + ", with bootstrap 95% CI; unscored: combinations no judge reply could score"
    )


def terminal_table(results: Sequence[TaskResult], scoring: str | None = None) -> str:
    """The results as a table; ``scoring`` (a profile's ``describe()``) is named under it."""
    lines = [f"scoring: {scoring}"] if scoring else []
    if not results:
        return "\n".join([*lines, "no graded answers yet"])
    headers, rows = result_rows(results)
    return "\n".join([tabulate(rows, headers=headers, tablefmt="simple"), _values_note(results), *lines])


def comparison_table(runs: Sequence[tuple[str, Sequence[TaskResult]]]) -> str:
    """Several runs side by side: one column per run with full marks / all skills / skill fraction."""
    keys: dict[tuple, None] = {}
    by_run: list[dict[tuple, TaskResult]] = []
    for _, results in runs:
        table = {}
        for result in sorted(results, key=_sort_key):
            key = (result.task, result.k, result.split, result.student, result.judge)
            keys.setdefault(key)
            table[key] = result
        by_run.append(table)
    headers = ["task", "k", "split", "student", "judge"] + [f"{label}\nFM / AS / SF (n)" for label, _ in runs]
    rows = []
    for key in keys:
        cells = []
        for table in by_run:
            result = table.get(key)
            if result is None:
                cells.append("")
                continue
            m = result.metrics
            values = [getattr(m, name).value for name, _ in METRICS]
            cells.append(" / ".join("–" if v is None or v != v else f"{v:.2f}" for v in values) + f" ({m.n})")
        rows.append([*key, *cells])
    return tabulate(rows, headers=headers, tablefmt="simple")


def results_document(
    results: Sequence[TaskResult], meta: dict[str, Any], agreement: AgreementReport | None = None
) -> dict[str, Any]:
    document = {**meta, "results": [result.to_dict() for result in sorted(results, key=_sort_key)]}
    if agreement is not None and agreement.truth:
        document["truth_rater"] = agreement.truth_rater
        document["truth"] = json_ready([asdict(row) for row in agreement.truth])
    return document


def truth_markdown(agreement: AgreementReport | None) -> list[str]:
    """report.md's section on judges measured against the rule judge; none without it."""
    lines: list[str] = []
    for title, headers, rows in agreement.truth_tables() if agreement is not None else []:
        lines += [f"## {title}", "", tabulate(rows, headers=headers, tablefmt="github", disable_numparse=True), ""]
        lines.append(
            "The rule judge decides every point exactly, so its labels are the truth. Accuracy: share of items "
            "where the judge agrees with it; precision and recall of an earned point; Cohen's kappa. The sentence "
            "point is recomputed by code for every judge, so it agrees by construction. `harness agreement` gives "
            "the same table with the other agreement statistics."
        )
        lines.append("")
    return lines


def markdown_report(
    results: Sequence[TaskResult], meta: dict[str, Any], agreement: AgreementReport | None = None
) -> str:
    lines = ["# SKILL-MIX results", ""]
    lines += [f"- run directory: `{meta.get('run_dir')}`", f"- scoring: {meta.get('scoring_description')}"]
    for model in meta.get("models", []):
        lines.append(f"- {model['role']} `{model['name']}`: `{model['identity']}` (from `{model['reference']}`)")
    lines.append("")
    if results:
        headers, rows = result_rows(results)
        lines.append(tabulate(rows, headers=headers, tablefmt="github"))
        lines.append("")
        lines.append("Mean over generation rounds (instead of the best round):")
        lines.append("")
        mean_rows = [
            [r.task, r.student, r.judge, *[_value(getattr(r.metrics, f"{key}_mean")) for key, _ in METRICS]]
            for r in sorted(results, key=_sort_key)
        ]
        lines.append(
            tabulate(
                mean_rows, headers=["task", "student", "judge", *[label for _, label in METRICS]], tablefmt="github"
            )
        )
        lines.append("")
        lines.append(
            "Full marks: all k+3 points. All skills: every skill point and at least 2 of the 3 others. "
            "Skill fraction: skill points / k when the 3 other points are all earned, else 0. "
            "Intervals are percentile bootstrap 95% CIs over combinations"
            + ("; ± is the SKILL-MIX reference code's std/sqrt(n)." if _has_uncertainty(results) else ".")
        )
    else:
        lines.append("No graded answers yet.")
    truth = truth_markdown(agreement)
    if truth:
        lines += ["", *truth]
    return "\n".join(lines).rstrip("\n") + "\n"


def plot(results: Sequence[TaskResult], path: Path) -> Path | None:
    """Ratio of full marks against k, one line per (student, judge, split). None when there is nothing to draw."""
    series: dict[tuple[str, str, str], list[TaskResult]] = {}
    for result in results:
        if result.metrics.n:
            series.setdefault((result.student, result.judge, result.split), []).append(result)
    if not series:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, len(METRICS), figsize=(5 * len(METRICS), 4), sharey=True)
    for axis, (key, label) in zip(axes, METRICS, strict=True):
        for (student, judge, split), points in sorted(series.items()):
            points = sorted(points, key=lambda r: r.k)
            values = [getattr(r.metrics, key) for r in points]
            ks = [r.k for r in points]
            centre = [v.value for v in values]
            errors = [[v.value - v.ci_low for v in values], [v.ci_high - v.value for v in values]]
            axis.errorbar(ks, centre, yerr=errors, marker="o", capsize=3, label=f"{student} / {judge} / {split}")
        axis.set_title(label)
        axis.set_xlabel("k")
        axis.set_xticks(range(1, 6))
        axis.set_xlim(0.5, 5.5)
        axis.set_ylim(-0.02, 1.02)
        axis.grid(alpha=0.3)
    axes[0].set_ylabel("ratio (95% CI)")
    axes[-1].legend(fontsize=7, loc="upper right")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path


def write_reports(
    run_dir: Path, results: Sequence[TaskResult], meta: dict[str, Any], agreement: AgreementReport | None = None
) -> list[Path]:
    run_dir = Path(run_dir)
    document = results_document(results, meta, agreement)
    (run_dir / "results.json").write_text(json.dumps(document, indent=2, default=_json_default) + "\n")
    (run_dir / "report.md").write_text(markdown_report(results, meta, agreement))
    written = [run_dir / "results.json", run_dir / "report.md"]
    picture = plot(results, run_dir / "report.png")
    if picture:
        written.append(picture)
    return written


def _json_default(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def run_meta(store: RunStore, run_dir: Path, profile: ScoringProfile) -> dict[str, Any]:
    """What a report says about the run besides its results."""
    sessions = store.sessions()
    return {
        "run_dir": str(run_dir),
        "scoring": profile.to_dict(),
        "scoring_description": profile.describe(),
        "name_penalty": profile.name_penalty,
        "models": [{"name": m.name, "role": m.role, "identity": m.identity, "reference": m.reference}
                   for m in store.models()],
        "versions": sessions[-1]["versions"] if sessions else None,
        "sessions": [{"started": s["started"], "versions": s["versions"]} for s in sessions],
        "settings": store.get_meta("evaluation"),
        "tasks": store.task_configs(),
    }  # fmt: skip


def report_run(
    store: RunStore, run_dir: Path, profile: ScoringProfile | None = None, *, human: Path | None = None
) -> list[TaskResult]:
    """Score the run from its store under ``profile`` (default: the default profile) and write
    results.json, report.md, report.png and report.html into ``run_dir``."""
    view = scored_view(store, run_dir, profile, human=human)
    write_run_reports(run_dir, view)
    return list(view.results)


def scored_view(
    store: RunStore, run_dir: Path, profile: ScoringProfile | None = None, *, human: Path | None = None
) -> RunView:
    """The run scored under ``profile`` with everything its reports show; writes nothing, so that a
    read-only run still reports and several runs can share one page.

    ``human``: a filled label sheet whose labels join the judges in the agreement section.
    """
    profile = profile or scoring_profile()
    results = score_store(store, profile)
    meta = run_meta(store, run_dir, profile)
    return run_view(store, run_dir, results, meta, profile=profile, human=human)


def write_run_reports(target: Path, view: RunView) -> list[Path]:
    """Write one scored run's results.json, report.md, report.png and report.html into ``target``."""
    written = write_reports(target, view.results, view.meta, view.agreement)
    written.append(write_html(Path(target) / HTML_NAME, [view]))
    return written
