"""report.html: one self-contained page per run (or several runs side by side) that opens from disk.

The page holds everything inline: the CSS and the answer browser's script from
harness/report_assets/, the figures as SVG, and the answers as JSON in a
``<script type="application/json">`` block. Nothing is fetched, so it opens with
no server and no network. Every value from the run is escaped here (HTML) or
inserted as text by the script; the JSON block escapes ``<``, ``>`` and ``&`` so
that an answer holding ``</script>`` cannot end it.
"""

from __future__ import annotations

import html
import json
import math
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from harness.core.stats import MetricValue
from harness.report_data import OUTCOMES, RunView
from harness.report_figures import METRIC_LABELS, Figure, Point, metric_figures, split_order
from harness.scoring import TaskResult
from judges.agreement_report import AgreementReport, GroupAgreement, PairAgreement
from judges.truth import TRUTH_HEADERS

HTML_NAME = "report.html"
ASSETS = Path(__file__).with_name("report_assets")
# The answer texts the page holds once however many records share them (prompts repeat a lot).
_SHARED_TEXTS = ("turn1_prompt", "turn1_reply", "turn2_prompt", "turn2_reply", "answer")


def esc(value: object) -> str:
    return html.escape(str(value), quote=True)


def _finite(value: float | None) -> bool:
    return value is not None and not math.isnan(value)


def _estimate_cell(estimate: MetricValue, digits: int = 2) -> str:
    if not _finite(estimate.value):
        return '<td class="num na">n/a</td>'
    ci = (
        f' <span class="ci">[{estimate.ci_low:.{digits}f}, {estimate.ci_high:.{digits}f}]</span>'
        if _finite(estimate.ci_low)
        else ""
    )
    return f'<td class="num">{estimate.value:.{digits}f}{ci}</td>'


def _table(
    headers: Sequence[str], rows: Iterable[Sequence[str]], numeric: set[int] = frozenset(), classes: str = ""
) -> str:
    """A table from escaped headers and cells that are already HTML (``<td>...</td>`` or text to escape)."""
    head = "".join(f"<th{' class=num' if i in numeric else ''}>{esc(h)}</th>" for i, h in enumerate(headers))
    body = []
    for row in rows:
        cells = [
            cell if cell.startswith("<td") else f"<td{' class=num' if i in numeric else ''}>{esc(cell)}</td>"
            for i, cell in enumerate(row)
        ]
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f'<div class="table-scroll"><table class="{classes}"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table></div>'


def _sort_key(result: TaskResult) -> tuple:
    return (split_order(result.split), result.k, result.task, result.student, result.judge)


# ---------------------------------------------------------------- sections


def _summary(views: Sequence[RunView]) -> str:
    results = [r for view in views for r in view.results]
    answers = [a for view in views for a in view.answers]
    grading_runs = [run for a in answers for v in a.verdicts for run in v.grading_runs]
    cards = [
        (len({r.task for r in results}), "tasks"),
        (len({a.student for a in answers}), "students"),
        (len({j for view in views for j in view.judges}), "judges"),
        (len(answers), "answers"),
        (len(grading_runs), "grading runs"),
        (sum(not run.usable for run in grading_runs), "unusable grading runs"),
        (sum(v.outcome == "unscored" for a in answers for v in a.verdicts), "unscored answers (per judge)"),
    ]
    return '<div class="cards">' + "".join(
        f'<div class="card"><div class="value">{value}</div><div class="label">{esc(label)}</div></div>' for value, label in cards
    ) + "</div>"  # fmt: skip


def _figures(views: Sequence[RunView]) -> str:
    points = [Point(view.name, result) for view in views for result in view.results]
    figures: list[Figure] = metric_figures(points)
    if not figures:
        return '<p class="muted">No scored combination yet, so there is nothing to plot.</p>'
    return (
        '<div class="figures">'
        + "".join(
            f'<figure class="plot{" wide" if figure.panels > 2 else ""}"><div class="svg">{figure.svg}</div>'
            f"<figcaption><strong>{esc(figure.title)}.</strong> {esc(figure.caption)}</figcaption></figure>"
            for figure in figures
        )
        + "</div>"
    )


def _results_tables(views: Sequence[RunView]) -> str:
    several = len(views) > 1
    lead = ["run"] if several else []
    rows, mean_rows, count_rows = [], [], []
    for view in views:
        for r in sorted(view.results, key=_sort_key):
            first = [view.name] if several else []
            key = [*first, r.task, str(r.k), r.split, r.student, r.judge]
            m = r.metrics
            rows.append(
                [*key, str(m.n), str(m.unscored), *[_estimate_cell(getattr(m, name)) for name, _ in METRIC_LABELS]]
            )
            mean_rows.append([*key, *[_estimate_cell(getattr(m, f"{name}_mean")) for name, _ in METRIC_LABELS]])
            state = "complete" if r.complete else "incomplete"
            count_rows.append([*key, f"{r.answers} / {r.expected_answers}", state, str(r.answers_unmarked),
                               str(r.grades), str(r.grades_unusable), str(m.n_rounds_unscored)])  # fmt: skip
    key_headers = [*lead, "task", "k", "split", "student", "judge"]
    offset = len(key_headers)
    metrics = [label for _, label in METRIC_LABELS]
    return (
        _table(
            [*key_headers, "n", "unscored", *metrics],
            rows,
            numeric=set(range(offset - 4, offset - 3)) | set(range(offset, offset + 5)),
        )
        + '<p class="note small">n: scored combinations; unscored: combinations that no judge reply could score (left out of n, '
        "never counted as zero). Values: mean over combinations of each combination's best generation round, with a "
        "percentile-bootstrap 95% CI over combinations.</p>"
        + '<details class="collapsible"><summary>Mean over generation rounds instead of the best round</summary>'
        + _table([*key_headers, *metrics], mean_rows, numeric=set(range(offset, offset + 3)))
        + "</details>"
        + '<details class="collapsible"><summary>Answers and grading runs behind each row</summary>'
        + _table(
            [*key_headers, "answers", "", "without \u201cAnswer:\u201d", "grading runs", "unusable", "rounds unscored"],
            count_rows,
            numeric={offset, offset + 2, offset + 3, offset + 4, offset + 5},
        )  # fmt: skip
        + "</details>"
    )


def _pair_label(pair: PairAgreement) -> str:
    return f"{pair.rater_a} vs {pair.rater_b}"


def _confusion(group: GroupAgreement, pair: PairAgreement) -> str:
    (a0b0, a0b1), (a1b0, a1b1) = pair.confusion
    return (
        f'<div class="matrix"><div class="title">{esc(group.criterion)} \u00b7 {esc(_pair_label(pair))}</div>'
        f'<table class="confusion"><thead><tr><th></th><th>{esc(pair.rater_b)}: 0</th><th>{esc(pair.rater_b)}: 1</th></tr></thead>'
        f'<tbody><tr><th>{esc(pair.rater_a)}: 0</th><td class="agree">{a0b0}</td><td class="disagree">{a0b1}</td></tr>'
        f'<tr><th>{esc(pair.rater_a)}: 1</th><td class="disagree">{a1b0}</td><td class="agree">{a1b1}</td></tr></tbody></table></div>'
    )


def _agreement_block(report: AgreementReport) -> str:
    pair_rows = [
        [
            group.criterion,
            _pair_label(pair),
            str(pair.n),
            _estimate_cell(pair.percent, 3),
            _estimate_cell(pair.kappa, 3),
        ]
        for group in report.groups
        for pair in group.pairs
    ]
    alpha_rows = [[g.criterion, ", ".join(g.raters), str(g.n_units), _estimate_cell(g.alpha, 3)] for g in report.groups]
    parts = []
    if report.truth:
        truth_rows = [row.cells() for row in report.truth]
        parts += [
            f"<h3>Judges against the truth ({esc(report.truth_rater or '')})</h3>",
            _table(TRUTH_HEADERS, truth_rows, numeric={3, 4, 5, 6, 7, 8}),
            '<p class="note small">The rule judge decides every point exactly, so its labels are the truth. '
            "Accuracy: share of items where the judge agrees with it; precision and recall of an earned point; "
            "Cohen\u2019s \u03ba. Code recomputes the sentence point for every judge, so it agrees by construction.</p>",
        ]
    parts += [
        "<h3>Cohen\u2019s \u03ba per pair of raters</h3>",
        _table(["item kind", "raters", "n", "agreement", "\u03ba"], pair_rows, numeric={2, 3, 4}),
        "<h3>Krippendorff\u2019s \u03b1 across raters</h3>",
        _table(["item kind", "raters", "units", "\u03b1 (nominal)"], alpha_rows, numeric={2, 3}),
        "<h3>Confusion matrices</h3>",
        '<div class="confusions">' + "".join(_confusion(g, p) for g in report.groups for p in g.pairs) + "</div>",
    ]
    if report.ranks:
        rank_rows = [
            [r.rater_a, r.rater_b, str(r.n_models), "n/a" if math.isnan(r.tau) else f"{r.tau:.3f}"]
            for r in report.ranks
        ]
        parts += [
            "<h3>Rank agreement of students</h3>",
            _table(["rater A", "rater B", "students", "Kendall \u03c4-b"], rank_rows, numeric={2, 3}),
        ]
    parts.append(
        f'<p class="note small">Item kinds: each skill point, the topic, sense and sentence points, all items pooled (overall) '
        f"and the combination outcome (full marks). CIs: percentile bootstrap over units, {report.n_resamples} resamples, "
        f"seed {report.seed}. Each judge is its majority vote over grading runs, after the code-side corrections.</p>"
    )
    if report.notes:
        parts.append('<ul class="notes">' + "".join(f"<li>{esc(note)}</li>" for note in report.notes) + "</ul>")
    return "".join(parts)


def _agreement(views: Sequence[RunView]) -> str:
    parts = []
    for view in views:
        heading = f"<h3>{esc(view.name)}</h3>" if len(views) > 1 else ""
        if view.agreement is not None:
            parts.append(heading + _agreement_block(view.agreement))
        elif view.agreement_note is not None:
            parts.append(heading + f'<p class="muted">No agreement statistics: {esc(view.agreement_note)}</p>')
    return "".join(parts)


def _sampling(sampling: dict[str, Any] | None) -> str:
    return ", ".join(f"{key} {value}" for key, value in sorted((sampling or {}).items())) or "task default"


# How each scoring profile (harness.scoring) decides the sentence point and combines grading runs.
_PROFILE_RULES = {
    "harness": (
        ("sentence point", "recomputed by code from the graded text; overrides the judge"),
        ("grading runs", "per rubric item, strict majority of the usable grading runs; a tie is not earned"),
    ),
    "reference": (
        ("sentence point", "recomputed with the reference code's sentence rule; overrides the judge"),
        ("grading runs", "per rubric item, the mean of all runs rounded half to even; a failed parse counts 0"),
    ),
}


def _profile_rules(scoring: dict[str, Any]) -> list[tuple[str, str]]:
    """The profile's rules; with --grading-runs average, the runs are averaged whatever the profile."""
    rules = list(_PROFILE_RULES.get(str(scoring.get("profile", "harness")), ()))
    if scoring.get("grading_runs") == "average":
        rules = [rule for rule in rules if rule[0] != "grading runs"]
        rules.append(("grading runs", "per rubric item, the mean of the runs' points (--grading-runs average)"))
    return rules


def _profile(view: RunView) -> str:
    meta, settings = view.meta, view.meta.get("settings") or {}
    facts = [
        ("scoring profile", str(meta.get("scoring_description", "harness"))),
        ("explicit-name penalty", "on" if meta.get("name_penalty") else "off"),
        *_profile_rules(meta.get("scoring") or {}),
        ("combination score", "best generation round (mean over rounds in the second table)"),
        ("grading attempts", f"up to {settings.get('max_grade_attempts', '?')} per grading run, then unscored"),
    ]
    parts = ['<dl class="settings">' + "".join(f"<dt>{esc(k)}</dt><dd>{esc(v)}</dd>" for k, v in facts) + "</dl>"]
    task_rows = [
        [name, str(c.get("k")), str(c.get("split", "all")), str(c.get("combinations")), str(c.get("generation_rounds")),
         str(c.get("grading_runs")), str(c.get("grading_style")), str(c.get("prompt_version")),
         _sampling(c.get("student_sampling")), _sampling(c.get("judge_sampling"))]
        for name, c in sorted((meta.get("tasks") or {}).items())
    ]  # fmt: skip
    parts.append(_table(["task", "k", "split", "combinations", "rounds", "grading runs", "style", "prompts",
                         "student sampling", "judge sampling"], task_rows, numeric={1, 3, 4, 5}))  # fmt: skip
    judges = settings.get("judges") or {}
    judge_rows = [
        [
            name,
            str(j.get("style") or "the task's"),
            "yes" if j.get("constrained") else "no",
            _sampling(j.get("sampling")),
        ]
        for name, j in judges.items()
    ]
    if judge_rows:
        parts.append(_table(["judge", "reply style", "constrained", "sampling override"], judge_rows))
    model_rows = [[m["role"], m["name"], m["identity"], m["reference"]] for m in meta.get("models", [])]
    parts.append(_table(["role", "name", "identity", "from"], model_rows))
    sessions = meta.get("sessions") or []
    if sessions:
        rows = [[time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(s["started"])),
                 ", ".join(f"{k} {v}" for k, v in sorted(s["versions"].items()))] for s in sessions]  # fmt: skip
        parts.append('<details class="collapsible"><summary>Sessions (one per invocation)</summary>'
                     + _table(["started", "versions"], rows) + "</details>")  # fmt: skip
    return "".join(parts)


def _answer_browser() -> str:
    selects = "".join(
        f'<label>{esc(label)}<select data-filter="{name}"><option value="">{esc(everything)}</option></select></label>'
        for name, label, everything in (
            ("run", "run", "all runs"), ("task", "task", "all tasks"), ("student", "student", "all students"),
            ("judge", "judge", "all judges"), ("outcome", "outcome", "any outcome"),
        )
    )  # fmt: skip
    return (
        '<div id="answer-browser" data-shown="">'
        f'<div class="filters">{selects}<label>text, topic or skill<input type="search" data-filter="search" '
        'placeholder="search"></label><button type="button" data-filter-reset>reset</button></div>'
        '<div class="browse-bar"><span class="answer-status"></span><span class="pager">'
        '<button type="button" data-page="previous">previous</button><span class="page-label"></span>'
        '<button type="button" data-page="next">next</button></span></div>'
        '<div class="answer-list"></div>'
        '<noscript><p class="warning">The answer browser needs JavaScript; the tables above do not.</p></noscript>'
        "</div>"
    )


# ---------------------------------------------------------------- data and page


def browser_data(views: Sequence[RunView]) -> dict[str, Any]:
    """The answer browser's data: runs, combinations, answers; long texts held once in ``strings``."""
    strings: dict[str, int] = {}

    def intern(text: str) -> int:
        return strings.setdefault(text, len(strings))

    combinations: list[dict[str, Any]] = []
    answers: list[dict[str, Any]] = []
    for run_index, view in enumerate(views):
        index_of: dict[tuple[str, int], int] = {}
        for combination in view.combinations:
            index_of[(combination.task, combination.combination)] = len(combinations)
            combinations.append(asdict(combination))
        for answer in view.answers:
            record = asdict(answer)
            record.update(run=run_index, combination=index_of[(answer.task, answer.combination)])
            for field in _SHARED_TEXTS:
                record[field] = intern(record[field])
            for verdict in record["verdicts"]:
                for grading_run in verdict["grading_runs"]:
                    grading_run["reply"] = intern(grading_run["reply"])
                verdict["runs"] = verdict.pop("grading_runs")
            record["index"] = answer.combination
            answers.append(record)
    return {
        "outcomes": OUTCOMES,
        "runs": [{"name": view.name, "run_dir": view.run_dir, "judges": list(view.judges)} for view in views],
        "combinations": combinations,
        "answers": answers,
        "strings": list(strings),
    }


def script_json(value: Any) -> str:
    """JSON that is safe inside a <script> element: no '<', '>' or '&' can close it or open a comment."""
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    return text.replace("&", "\\u0026").replace("<", "\\u003c").replace(">", "\\u003e")


def _asset(name: str, closing_tag: str) -> str:
    """An asset to inline; one holding its element's closing tag would end the element early."""
    text = (ASSETS / name).read_text(encoding="utf-8")
    if closing_tag in text.lower():
        raise ValueError(f"{ASSETS / name} contains {closing_tag!r}, which would end its inline element")
    return text


def render_page(views: Sequence[RunView]) -> str:
    """The whole report page for one run or several side by side."""
    if not views:
        raise ValueError("a report needs at least one run")
    names = ", ".join(view.name for view in views)
    runs = "; ".join(f"{view.name}: {view.run_dir}" for view in views)
    has_agreement = any(view.agreement is not None or view.agreement_note is not None for view in views)
    sections = [
        ("figures", "Figures", _figures(views)),
        ("results", "Results", _results_tables(views)),
        *([("agreement", "Judge agreement", _agreement(views))] if has_agreement else []),
        ("answers", "Answers", '<p class="lead">Every student answer with both turns, the text that was graded, and '
                               "each judge\u2019s points, vote and raw reply. Click an answer to open it.</p>" + _answer_browser()),
        ("profile", "Scoring profile and run", "".join(
            (f"<h3>{esc(view.name)}</h3>" if len(views) > 1 else "") + _profile(view) for view in views)),
    ]  # fmt: skip
    nav = "".join(f'<a href="#{key}">{esc(title)}</a>' for key, title, _ in sections)
    body = "".join(
        f'<section class="block" id="{key}"><h2>{esc(title)}</h2>{content}</section>'
        for key, title, content in sections
    )
    css, script = _asset("report.css", "</style"), _asset("report.js", "</script")
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>SKILL-MIX report \u2014 {esc(names)}</title><style>{css}</style></head><body>"
        f'<header class="page"><div class="inner"><h1>SKILL-MIX report</h1><p>{esc(runs)}</p>'
        f"<p>Written by skillmix-harness from the run store; re-render with <code>harness report</code>.</p></div></header>"
        f'<nav class="sections"><div class="inner">{nav}</div></nav>'
        f"<main>{_summary(views)}{body}</main>"
        f'<script type="application/json" id="report-data">{script_json(browser_data(views))}</script>'
        f"<script>{script}</script></body></html>\n"
    )


def write_html(path: Path, views: Sequence[RunView]) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_page(views), encoding="utf-8")
    return path


def distinct_names(views: Sequence[RunView]) -> list[RunView]:
    """The views with names that tell them apart: the directory name, or the whole path where two share one."""
    names = [view.name for view in views]
    return [replace(view, name=view.run_dir) if names.count(view.name) > 1 else view for view in views]
