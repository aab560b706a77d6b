"""report.html: made by the real `harness run` against scripted servers, checked as data and in headless Chromium.

One run serves every test here: 2 students x 2 judges x 2 tasks (training and
held-out skills), so every section of the page appears. The students and judges
are scripted HTTP servers, so each answer's outcome is known by hand:

* student ``plain`` writes one clean sentence; student ``hostile`` writes markup
  and a ``</script>`` that would run code if the page parsed it as HTML;
* judge ``generous`` gives every point; judge ``picky`` gives every point to
  ``plain``, fails the first skill of ``hostile`` at k=2 and cannot grade
  ``hostile`` at k=3 (an unparseable reply, so those answers are unscored).
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner
from scripted_server import ScriptedServer

from harness.cli import cli
from harness.core.store import RunStore
from harness.report_html import HTML_NAME, script_json

TASKS = ("skillmix-small-k2-train", "skillmix-small-k3-heldout")
COMBINATIONS = 3
HOSTILE = (
    'Answer: <img src=x onerror="window.__injected=1"></script><script>window.__injected=2</script> '
    "The tide &amp; the <b>harbour</b> turned\nExplanation: -"
)
PLAIN = "Answer: The harbour master checked the tide table before dawn.\nExplanation: it shows every skill."
UNGRADABLE = "I cannot grade this."


def _rubric(prompt: str) -> list[str]:
    return re.findall(r"^\d+\. (.+)$", prompt.split("Rubric (", 1)[1], flags=re.MULTILINE)


def _student(reply: str):
    return lambda body: reply


def _judge(picky: bool):
    def respond(body: dict) -> str:
        prompt = body["messages"][-1]["content"]
        items = _rubric(prompt)
        hostile = "__injected" in prompt
        if picky and hostile and len(items) == 3 + 3:
            return UNGRADABLE
        points = [0 if picky and hostile and index == 0 else 1 for index in range(len(items))]
        lines = [
            f"{i + 1}. {item}\nFine.\nPoint earned: {p}" for i, (item, p) in enumerate(zip(items, points, strict=True))
        ]
        return "\n".join(lines) + f"\nGrade: {sum(points)}"

    return respond


def _invoke(*args: str):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("report")
    out = root / "run"
    with (
        ScriptedServer(responder=_student(PLAIN)) as plain,
        ScriptedServer(responder=_student(HOSTILE)) as hostile,
        ScriptedServer(responder=_judge(picky=False)) as generous,
        ScriptedServer(responder=_judge(picky=True)) as picky,
    ):
        result = _invoke(
            "run", *TASKS, "--combinations", str(COMBINATIONS), "--out", str(out), "--cache", str(root / "cache.sqlite"),
            "--student", f"plain={plain.endpoint.base_url}", "--student", f"hostile={hostile.endpoint.base_url}",
            "--judge", f"generous={generous.endpoint.base_url}", "--judge", f"picky={picky.endpoint.base_url}",
        )  # fmt: skip
    assert result.exit_code == 0, result.output
    return out


def _page_data(page: str) -> dict:
    match = re.search(r'<script type="application/json" id="report-data">(.*?)</script>', page, flags=re.DOTALL)
    assert match, "the page has no data block"
    return json.loads(match.group(1))


# ---------------------------------------------------------------- the page as data


def test_run_writes_a_self_contained_page_with_every_section(run_dir: Path) -> None:
    page = (run_dir / HTML_NAME).read_text(encoding="utf-8")
    for section in ("figures", "results", "agreement", "answers", "profile"):
        assert f'id="{section}"' in page
    assert page.count("<svg") == 2  # each metric against k; training against held-out skills
    # nothing to fetch: no external script, style, font or image
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", page)
    assert "@import" not in page and not re.search(r"url\((?!#)", page)  # SVG's url(#clip) stays in the page
    # the student's markup stays data: exactly two script elements, the data block and the browser
    assert page.count("</script>") == 2 and "window.__injected=2</script>" not in page
    assert "\u03ba" in page and "Krippendorff" in page  # the agreement section of two judges
    assert "scoring profile" in page


def test_page_data_holds_every_answer_and_the_votes_the_metrics_use(run_dir: Path) -> None:
    data = _page_data((run_dir / HTML_NAME).read_text(encoding="utf-8"))
    store = RunStore(run_dir, create=False)
    try:
        generations = list(store.generations())
    finally:
        store.close()
    assert len(data["answers"]) == len(generations) == len(TASKS) * COMBINATIONS * 2
    strings = data["strings"]
    hostile_answers = [a for a in data["answers"] if a["student"] == "hostile"]
    assert all("</script><script>" in strings[a["answer"]] for a in hostile_answers)
    outcomes: dict[tuple[str, str, str], list[str]] = {}
    for answer in data["answers"]:
        for verdict in answer["verdicts"]:
            outcomes.setdefault((answer["task"], answer["student"], verdict["judge"]), []).append(verdict["outcome"])
    assert outcomes[("skillmix-small-k2-train", "hostile", "picky")] == ["skill"] * COMBINATIONS
    assert outcomes[("skillmix-small-k3-heldout", "hostile", "picky")] == ["unscored"] * COMBINATIONS
    assert set(outcomes[("skillmix-small-k3-heldout", "plain", "generous")]) == {"full"}
    # one generation round per combination here, so the share of full-marks votes is the metric itself
    results = json.loads((run_dir / "results.json").read_text())["results"]
    for row in results:
        votes = outcomes[(row["task"], row["student"], row["judge"])]
        scored = [v for v in votes if v != "unscored"]
        assert row["metrics"]["n"] == len(scored) and row["metrics"]["unscored"] == len(votes) - len(scored)
        if scored:
            assert row["metrics"]["full_marks"]["value"] == pytest.approx(scored.count("full") / len(scored))
    # each unscored answer keeps the raw replies of its grading run
    unscored = next(a for a in hostile_answers if a["task"] == "skillmix-small-k3-heldout")
    (picky_verdict,) = [v for v in unscored["verdicts"] if v["judge"] == "picky"]
    assert picky_verdict["vote"] is None and strings[picky_verdict["runs"][0]["reply"]] == UNGRADABLE


def test_a_run_with_nothing_graded_yet_still_gets_a_page(tmp_path: Path) -> None:
    from harness.report import scored_view, write_run_reports

    store = RunStore(tmp_path / "empty")
    try:
        view = scored_view(store, tmp_path / "empty")
        write_run_reports(tmp_path / "empty", view)
    finally:
        store.close()
    page = (tmp_path / "empty" / HTML_NAME).read_text(encoding="utf-8")
    assert view.results == () and view.agreement is None
    assert "nothing to plot" in page and 'id="agreement"' not in page
    assert _page_data(page)["answers"] == []


def test_script_json_cannot_close_its_element() -> None:
    hostile = {"a": "</script><!-- <script> & \u2028"}
    text = script_json(hostile)
    assert "<" not in text and ">" not in text and "&" not in text
    assert json.loads(text) == hostile


def test_report_compares_runs_in_one_page(run_dir: Path, tmp_path: Path) -> None:
    other = tmp_path / "elsewhere" / run_dir.name  # same directory name: the page names runs by path
    shutil.copytree(run_dir, other)
    combined = tmp_path / "both.html"
    result = _invoke("report", str(run_dir), str(other), "--html", str(combined))
    assert result.exit_code == 0, result.output
    data = _page_data(combined.read_text(encoding="utf-8"))
    assert [run["name"] for run in data["runs"]] == [str(run_dir), str(other)]
    assert len(data["answers"]) == 2 * len(TASKS) * COMBINATIONS * 2
    assert (other / HTML_NAME).is_file()


def test_human_labels_join_the_agreement_section(run_dir: Path, tmp_path: Path) -> None:
    import csv

    copy = tmp_path / "run"  # report rewrites the run's own pages; keep the shared run as it was
    shutil.copytree(run_dir, copy)
    sheet = tmp_path / "labels.csv"
    assert _invoke("labels", "export", str(copy), "--n", "4", "--out", str(sheet)).exit_code == 0
    with sheet.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    for row in rows:
        row.update({f"item_{i}": "1" for i in range(1, int(row["k"]) + 4)})
    with sheet.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    result = _invoke("report", str(copy), "--human", str(sheet))
    assert result.exit_code == 0, result.output
    page = (copy / HTML_NAME).read_text(encoding="utf-8")
    agreement = page[page.index('id="agreement"') : page.index('id="answers"')]
    assert "generous vs human" in agreement and "picky vs human" in agreement
    assert "generous, picky, human" in agreement  # alpha across all three raters


def test_human_labels_belong_to_one_run(run_dir: Path, tmp_path: Path) -> None:
    from harness.core.errors import HarnessError

    sheet = tmp_path / "labels.csv"
    sheet.write_text("id\n")
    with pytest.raises(HarnessError, match="--human labels belong to one run"):
        _invoke("report", str(run_dir), str(run_dir), "--human", str(sheet))


# ---------------------------------------------------------------- the page in a browser

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync",
]  # fmt: skip


@pytest.fixture(scope="module")
def browser():
    """Debian's chromium driven by Playwright (never Playwright's own browser download)."""
    problem = None
    if not Path(CHROMIUM).is_file():
        problem = f"{CHROMIUM} is missing (apt-get install -y chromium; .ci/run installs it)"
    else:
        try:
            from playwright.sync_api import sync_playwright
        except ImportError:
            problem = "the playwright package is missing (pip install -e '.[dev]')"
    if problem:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"the browser test cannot run in CI: {problem}")
        pytest.skip(f"no headless browser: {problem}")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


def test_report_renders_in_chromium_and_its_filters_work(run_dir: Path, browser, tmp_path: Path) -> None:
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    problems: list[str] = []
    page.on("console", lambda message: problems.append(f"console {message.type}: {message.text}")
            if message.type in ("error", "warning") else None)  # fmt: skip
    page.on("pageerror", lambda error: problems.append(f"page error: {error}"))
    page.on("dialog", lambda dialog: (problems.append(f"dialog: {dialog.message}"), dialog.dismiss()))
    page.route(
        re.compile(r"^(?!file:|data:|about:)"),
        lambda route: (problems.append(f"fetch: {route.request.url}"), route.abort()),
    )
    page.goto((run_dir / HTML_NAME).as_uri())
    page.wait_for_selector("#answer-browser.ready")
    answers = len(TASKS) * COMBINATIONS * 2

    figures = page.locator("#figures svg")
    assert figures.count() == 2
    for index in range(2):
        box = figures.nth(index).bounding_box()
        assert box and box["width"] > 300 and box["height"] > 300
    assert page.locator("#agreement table").count() >= 3
    assert page.locator("#results tbody tr").first.is_visible()

    rows = page.locator("#answer-browser details.answer")
    assert rows.count() == answers
    assert page.inner_text(".answer-status") == f"1\u2013{answers} of {answers} answers"
    page.select_option("[data-filter=outcome]", "unscored")
    assert rows.count() == COMBINATIONS
    assert page.get_attribute("#answer-browser", "data-shown") == str(COMBINATIONS)
    page.select_option("[data-filter=outcome]", "skill")
    page.select_option("[data-filter=judge]", "generous")
    assert rows.count() == 0 and "No answer matches" in page.inner_text("#answer-browser")
    page.select_option("[data-filter=judge]", "picky")
    assert rows.count() == COMBINATIONS

    # An answer opens on a click, its model-written markup shown as text and never run.
    rows.first.locator("summary").click()
    body = rows.first.locator(".answer-body")
    assert "</script><script>window.__injected=2</script>" in body.locator(".graded-text").inner_text()
    assert body.locator("table.grades tbody tr").count() == 2 + 3
    reply = body.locator("details.collapsible", has_text="judge picky")
    reply.locator("summary").click()
    assert "Point earned: 0" in reply.locator("pre").inner_text()
    assert page.evaluate("window.__injected") is None
    assert page.locator("img[src=x]").count() == 0

    page.screenshot(path=str(tmp_path / "report-html-screenshot.png"), full_page=True)
    assert (tmp_path / "report-html-screenshot.png").stat().st_size > 10_000
    assert problems == []


def test_the_settings_state_how_grading_runs_were_combined() -> None:
    from harness.report_html import _profile_rules

    voted = dict(_profile_rules({"profile": "harness", "grading_runs": "vote"}))
    averaged = dict(_profile_rules({"profile": "harness", "grading_runs": "average"}))
    reference = dict(_profile_rules({"profile": "reference", "grading_runs": "vote"}))
    assert "strict majority" in voted["grading runs"]
    assert "mean of the runs" in averaged["grading runs"] and "majority" not in averaged["grading runs"]
    assert "half to even" in reference["grading runs"]
