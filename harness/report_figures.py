"""The HTML report's figures, drawn with matplotlib as inline SVG in the paper's style.

Zhao et al. (2024) plot each metric against k, training skills beside held-out
skills, base model beside fine-tuned. Here each figure is a grid: one row per
metric, one column per panel (a split, or a student), CI bars on every point.
Colour tells students (or splits) apart and the marker and line style tell judges
apart, so one figure carries both comparisons without a second legend.
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from harness.core.stats import MetricValue
from harness.scoring import TaskResult

METRIC_LABELS = (
    ("full_marks", "ratio of full marks"),
    ("all_skills", "ratio of all skills"),
    ("skill_fraction", "skill fraction"),
)
SPLIT_LABELS = {
    "train": "training skills and topics",
    "heldout": "held-out skills and topics",
    "all": "all skills and topics",
}
SPLIT_ORDER = ("train", "heldout", "all")
# Okabe-Ito: tells colours apart for the common forms of colour blindness, and prints in grey.
PALETTE = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000", "#F0E442")
SPLIT_COLOURS = {"train": "#0072B2", "heldout": "#D55E00", "all": "#555555"}
JUDGE_STYLES = (("o", "-"), ("s", "--"), ("^", ":"), ("D", "-."), ("v", (0, (5, 1, 1, 1))))


@dataclass(frozen=True)
class Point:
    """One task's result in a figure: whose it is and where it goes."""

    run: str
    result: TaskResult


@dataclass(frozen=True)
class Figure:
    """An SVG figure with its caption, ready to inline."""

    title: str
    caption: str
    svg: str
    panels: int  # columns of panels: a wide figure gets the page's whole width


def _student_label(point: Point, several_runs: bool) -> str:
    return f"{point.run} · {point.result.student}" if several_runs else point.result.student


def split_order(split: str) -> tuple[int, str]:
    return (SPLIT_ORDER.index(split) if split in SPLIT_ORDER else len(SPLIT_ORDER), split)


def _finite(metric: MetricValue) -> bool:
    return metric.value is not None and not math.isnan(metric.value)


def _grid(
    points: Sequence[Point],
    panel_of: Callable[[Point], str],
    panel_title: Callable[[str], str],
    colour_of: Callable[[Point], tuple[str, str]],
    judges: Sequence[str],
) -> str:
    """Rows: the three metrics; columns: panels; one line per (colour key, judge) in each panel."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = list(dict.fromkeys(panel_of(p) for p in points))
    colour_keys = list(dict.fromkeys(colour_of(p) for p in points))
    ks = sorted({p.result.k for p in points})
    several_judges = len(judges) > 1
    series_count = len(colour_keys) * len(judges)
    # Series side by side at each k, so their CI bars do not hide each other.
    width = min(0.5, 0.12 * series_count)
    offsets = {
        (colour, judge): (index - (series_count - 1) / 2) * (width / max(series_count - 1, 1))
        for index, (colour, judge) in enumerate((c, j) for c in colour_keys for j in judges)
    }
    with plt.rc_context({"text.parse_math": False, "font.size": 9, "svg.hashsalt": "skillmix-report"}):
        figure, axes = plt.subplots(
            len(METRIC_LABELS), len(panels), figsize=(0.75 + 3.0 * len(panels), 1.2 + 1.9 * len(METRIC_LABELS)),
            sharex=True, sharey=True, squeeze=False,
        )  # fmt: skip
        handles: dict[str, object] = {}
        for column, panel in enumerate(panels):
            for row, (metric, metric_label) in enumerate(METRIC_LABELS):
                axis = axes[row][column]
                for colour_key in colour_keys:
                    label, colour = colour_key
                    for judge_index, judge in enumerate(judges):
                        chosen = sorted(
                            (p for p in points if panel_of(p) == panel and colour_of(p) == colour_key
                             and p.result.judge == judge and _finite(getattr(p.result.metrics, metric))),
                            key=lambda p: p.result.k,
                        )  # fmt: skip
                        if not chosen:
                            continue
                        values = [getattr(p.result.metrics, metric) for p in chosen]
                        marker, line = JUDGE_STYLES[judge_index % len(JUDGE_STYLES)]
                        name = f"{label} · judge {judge}" if several_judges else label
                        drawn = axis.errorbar(
                            [p.result.k + offsets[(colour_key, judge)] for p in chosen],
                            [v.value for v in values],
                            yerr=[[v.value - v.ci_low for v in values], [v.ci_high - v.value for v in values]],
                            color=colour, marker=marker, linestyle=line, linewidth=1.4, markersize=5,
                            capsize=2.5, elinewidth=1, label=name,
                        )  # fmt: skip
                        handles.setdefault(name, drawn)
                axis.set_ylim(-0.04, 1.04)
                axis.set_xticks(ks)
                axis.set_xlim(ks[0] - 0.6, ks[-1] + 0.6)
                axis.grid(alpha=0.25, linewidth=0.6)
                axis.spines[["top", "right"]].set_visible(False)
                if row == 0:
                    axis.set_title(panel_title(panel), fontsize=10)
                if row == len(METRIC_LABELS) - 1:
                    axis.set_xlabel("k (skills per combination)")
                if column == 0:
                    axis.set_ylabel(metric_label)
        columns = max(1, min(len(handles), 2 if several_judges else 4))
        figure.legend(
            list(handles.values()), list(handles), loc="lower center", ncol=columns, frameon=False, fontsize=9
        )
        # Keep room at the bottom for the legend: about 0.2 inch per legend row.
        # Fixed margins in inches rather than tight_layout, which draws the whole figure once more
        # just to measure it: the labels here have known sizes. About 0.2 inch per legend row.
        width, height = figure.get_size_inches()
        bottom = 0.62 + 0.2 * math.ceil(len(handles) / columns)
        figure.subplots_adjust(left=0.65 / width, right=1 - 0.1 / width, top=1 - 0.3 / height, bottom=bottom / height,
                               wspace=0.08, hspace=0.12)  # fmt: skip
        buffer = io.StringIO()
        figure.savefig(buffer, format="svg", metadata={"Date": None})  # the same run draws the same bytes
        plt.close(figure)
    svg = buffer.getvalue()
    return svg[svg.index("<svg") :]  # drop the XML prolog and doctype: the SVG sits inside HTML


def metric_figures(points: Sequence[Point]) -> list[Figure]:
    """Each metric against k by split (students side by side), and training against held-out per student."""
    points = [p for p in points if p.result.metrics.n]
    if not points:
        return []
    several_runs = len({p.run for p in points}) > 1
    judges = list(dict.fromkeys(p.result.judge for p in sorted(points, key=lambda p: p.result.judge)))
    students = list(dict.fromkeys(_student_label(p, several_runs) for p in points))
    student_colours = {student: PALETTE[i % len(PALETTE)] for i, student in enumerate(students)}
    by_split = sorted(points, key=lambda p: split_order(p.result.split))
    judged = f"; marker and line style: judge ({', '.join(judges)})" if len(judges) > 1 else f" (judge {judges[0]})"
    figures = [
        Figure(
            "Each metric against k" + (", students side by side" if len(students) > 1 else ""),
            "Rows: metric; columns: the skills and topics the combinations were drawn from; colour: student"
            + judged
            + ". Bars: bootstrap 95% CI over combinations (best of generation rounds).",
            _grid(
                by_split,
                panel_of=lambda p: p.result.split,
                panel_title=lambda split: SPLIT_LABELS.get(split, split),
                colour_of=lambda p: (label := _student_label(p, several_runs), student_colours[label]),
                judges=judges,
            ),
            len({p.result.split for p in points}),
        )
    ]
    splits = {p.result.split for p in points}
    if {"train", "heldout"} <= splits:
        figures.append(
            Figure(
                "Training against held-out skills",
                "Rows: metric; columns: student; colour: training (blue) or held-out (orange) skills and topics"
                + judged
                + ". Bars: bootstrap 95% CI.",
                _grid(
                    by_split,
                    panel_of=lambda p: _student_label(p, several_runs),
                    panel_title=lambda student: f"student {student}",
                    colour_of=lambda p: (
                        SPLIT_LABELS.get(p.result.split, p.result.split),
                        SPLIT_COLOURS.get(p.result.split, "#555555"),
                    ),
                    judges=judges,
                ),
                len(students),
            )  # fmt: skip
        )
    return figures
