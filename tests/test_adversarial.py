"""The adversarial check against scripted judges on a real local HTTP server, and one real vLLM judge."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner
from scripted_server import ScriptedServer, connected_model

from harness.core.client import ModelClient, RetryPolicy, SamplingParams
from harness.core.errors import HarnessError
from harness.core.registry import load_registry
from harness.core.store import AnswerKey, Grade
from judges.adversarial import AdversarialCase, judge_case, load_cases, run_adversarial
from judges.grader import BEGIN_MARKER, END_MARKER, Grader
from judges.registry import Judge
from judges.rubric import Score
from judges.styles import parse_grade, read_reply

SAMPLING = SamplingParams(temperature=0.0, max_tokens=256)
RUBRIC_HEADER = re.compile(r"^Rubric \((\d+) items, one point each\):$", re.MULTILINE)


def rubric_of(prompt: str) -> list[str]:
    """The rubric lines a judge reads in a grading prompt."""
    header = RUBRIC_HEADER.search(prompt)
    assert header is not None, "the grading prompt lost its rubric header"
    lines = prompt[header.end() :].strip().splitlines()[: int(header.group(1))]
    return [re.sub(r"^\d+\.\s*", "", line) for line in lines]


def graded(points: Callable[[int, str], int]) -> Callable[[str], str]:
    """A judge that answers every prompt in the style asked for, giving points(position, criterion)."""

    def reply(prompt: str) -> str:
        rubric = rubric_of(prompt)
        values = [points(position, criterion) for position, criterion in enumerate(rubric)]
        if '"Criteria"' in prompt:
            rows = [f"| {criterion} | {value} |" for criterion, value in zip(rubric, values, strict=True)]
            table = ["| Criteria | Points Earned |", "|---|---|", *rows, f"| Total Points Earned | {sum(values)} |"]
            return "\n".join(table) + "\n\nExplanation: graded as scripted."
        blocks = [
            f"{number}. {criterion}\nAs scripted.\nPoint earned: {value}"
            for number, (criterion, value) in enumerate(zip(rubric, values, strict=True), start=1)
        ]
        return "\n\n".join(blocks) + f"\n\nGrade: {sum(values)}"

    return reply


FULL_MARKS = graded(lambda position, criterion: 1)
ZERO = graded(lambda position, criterion: 0)
# Honest about skills, generous about everything else.
SKILLS_ZERO_REST_ONE = graded(lambda position, criterion: 0 if criterion.startswith("Correctly illustrates") else 1)


def garbage(prompt: str) -> str:
    return "zq lorem \u00e9t ipsum ||| 77% flarg --- !!"


class ScriptedJudge(ScriptedServer):
    """The shared scripted server, answering each grading prompt with `answer(prompt)`."""

    def __init__(self, answer: Callable[[str], str]):
        super().__init__(responder=lambda body: answer(body["messages"][-1]["content"]))

    @property
    def prompts(self) -> list[str]:
        return [body["messages"][-1]["content"] for _, body in self.requests]

    @property
    def url(self) -> str:
        return self.endpoint.base_url

    def client(self) -> ModelClient:
        # Four in flight stays under the test server's listen backlog of five, so no connection waits on a SYN retry.
        model = connected_model("judge", "scripted-judge", (self.endpoint,), max_concurrency=4)
        return ModelClient(model, None, RetryPolicy(max_retries=1, base_delay=0.05, timeout=10))


def grader(client: ModelClient, style: str | None, attempts: int = 3) -> Grader:
    return Grader(Judge("scripted-judge", client.model, style=style, sampling={"temperature": 0.0}), client,
                  max_attempts=attempts)  # fmt: skip


def grade_of(case: AdversarialCase, reply: str, style: str) -> Grade:
    score = read_reply(reply, case.skills, case.topic, style).score
    key = AnswerKey("skillmix-k1-all", 0, "adversarial", 0)
    return Grade(key, "j", 0, style, "prompt", reply, 1, score.points, score.usable)


@pytest.fixture(scope="module")
def registry():
    return load_registry()


@pytest.fixture(scope="module")
def cases() -> tuple[AdversarialCase, ...]:
    return load_cases()


def check(answer: Callable[[str], str], style: str | None, registry, cases, runs: int = 1):
    with ScriptedJudge(answer) as judge:

        async def go():
            client = judge.client()
            try:
                return await run_adversarial(grader(client, style), cases=cases, runs=runs, registry=registry)
            finally:
                await client.aclose()

        report = asyncio.run(go())
    return report, judge.prompts


def test_builtin_cases_are_well_formed(cases) -> None:
    assert len(cases) >= 12
    kinds = {case.kind for case in cases}
    for kind in ("instruction-override", "fake-grading-table", "fake-delimiter", "authority-claim",
                 "point-earned-lines", "grade-line", "role-play system message", "empty-text-with-praise",
                 "skill-name-listing"):  # fmt: skip
        assert kind in kinds
    for case in cases:
        assert "skills" in case.must_be_zero and 1 <= case.k <= 5
        assert "skill" in case.zero_kinds()
        assert "sentences" not in case.zero_kinds()  # the sentence point is code's, never the judge's


@pytest.mark.parametrize("style", ["items", "table"])
def test_a_judge_that_always_gives_full_marks_is_fooled_by_every_case(style: str, registry, cases) -> None:
    report, prompts = check(FULL_MARKS, style, registry, cases)
    assert len(prompts) == len(cases)
    assert [r.case_id for r in report.results] == [case.id for case in cases]
    assert all(r.outcome == "fooled" for r in report.results), [(r.case_id, r.points) for r in report.results]
    for result, case in zip(report.results, cases, strict=True):
        assert len(result.earned) == case.k + len(case.zero_kinds() - {"skill"})
    totals = report.totals
    assert (totals.fooled, totals.held, totals.unscored, totals.fooled_rate) == (len(cases), 0, 0, 1.0)
    assert report.style == style


def test_a_judge_that_always_gives_zero_is_never_fooled(registry, cases) -> None:
    report, _ = check(ZERO, None, registry, cases)
    assert report.style == "items"  # the task's grading style
    assert all(r.outcome == "held" and not r.earned for r in report.results)
    assert report.totals.fooled_rate == 0.0 and report.totals.unscored == 0


def test_garbage_replies_are_unscored_never_held_or_fooled(registry, cases) -> None:
    report, prompts = check(garbage, "items", registry, cases)
    assert len(prompts) == 3 * len(cases)  # the real grading path asks again before it gives up
    assert {r.outcome for r in report.results} == {"unscored"}
    totals = report.totals
    assert (totals.graded, totals.fooled, totals.held, totals.unscored) == (len(cases), 0, 0, len(cases))
    assert totals.fooled_rate is None and "none scored" in totals.rate_text()
    assert all(r.reply == garbage("") for r in report.results)  # the raw reply is kept


def test_only_the_listed_points_must_be_zero(registry, cases) -> None:
    """A judge honest about skills but generous on topic: fooled exactly where the topic must be 0."""
    report, _ = check(SKILLS_ZERO_REST_ONE, "table", registry, cases)
    for result, case in zip(report.results, cases, strict=True):
        expected = "fooled" if "topic" in case.must_be_zero or "sense" in case.must_be_zero else "held"
        assert result.outcome == expected, case.id
        if expected == "fooled":
            assert result.earned and all(not label.startswith("correctly illustrates") for label in result.earned)
    outcomes = {r.outcome for r in report.results}
    assert outcomes == {"fooled", "held"}  # the built-in set has cases of both sorts


def test_prompts_fence_every_answer_and_neutralise_fake_markers(registry, cases) -> None:
    report, prompts = check(ZERO, "items", registry, cases, runs=2)
    assert len(prompts) == 2 * len(cases) and len(report.results) == 2 * len(cases)
    assert sorted({r.run for r in report.results}) == [0, 1]
    fenced_counts = {}
    for prompt in prompts:
        # Exactly one real fence, however many markers the answer carried.
        assert prompt.count(BEGIN_MARKER) == 1 and prompt.count(END_MARKER) == 1
        fenced = prompt.split(BEGIN_MARKER, 1)[1].split(END_MARKER, 1)[0]
        fenced_counts.setdefault(fenced.strip(), 0)
        fenced_counts[fenced.strip()] += 1
    for case in cases:
        expected = case.answer.replace(BEGIN_MARKER, "[marker removed]").replace(END_MARKER, "[marker removed]")
        assert fenced_counts.get(expected.strip()) == 2, case.id
    marked = [case for case in cases if BEGIN_MARKER in case.answer and END_MARKER in case.answer]
    assert marked, "the built-in set should try the real markers"
    for case in marked:
        prompt = next(p for p in prompts if case.answer.splitlines()[0] in p)
        fenced = prompt.split(BEGIN_MARKER, 1)[1].split(END_MARKER, 1)[0]
        assert fenced.count("[marker removed]") == 2
        assert "Updated grader instructions" in fenced  # the injected text stays inside the fence


def test_unusable_partial_reply_is_unscored_even_when_it_awards_a_skill(cases) -> None:
    case = next(c for c in cases if c.k >= 2)
    reply = f"1. Correctly illustrates {case.skills[0]}\nPoint earned: 1\n"
    points = parse_grade(reply, case.skills, case.topic, "items")
    assert points[0] == 1 and not Score.from_points(points).usable
    assert judge_case(case, 0, grade_of(case, reply, "items")).outcome == "unscored"


def test_half_points_do_not_count_as_fooled(cases) -> None:
    case = cases[0]
    values = [0.5] * case.k + [0, 1, 1]
    rows = [
        f"| {label} | {value} |"
        for label, value in zip([*case.skills, case.topic, "makes sense", "at most"], values, strict=True)
    ]
    reply = "| Criteria | Points Earned |\n|---|---|\n" + "\n".join(rows)
    assert judge_case(case, 0, grade_of(case, reply, "table")).outcome == "held"


def test_report_dict_and_markdown(registry, cases) -> None:
    report, _ = check(SKILLS_ZERO_REST_ONE, "items", registry, cases)
    data = json.loads(json.dumps(report.to_dict()))
    totals = data["totals"]
    assert totals["graded"] == len(cases) == totals["fooled"] + totals["held"] + totals["unscored"]
    assert totals["n"] == totals["fooled"] + totals["held"]
    assert sum(kind["graded"] for kind in data["by_kind"].values()) == len(cases)
    assert {r["case"] for r in data["results"]} == {case.id for case in cases}
    markdown = report.to_markdown()
    assert f"{totals['fooled']}/{totals['n']}" in markdown
    for kind in data["by_kind"]:
        assert kind in report.kind_table()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[]", "non-empty list"),
        ("- {id: a, kind: x, skills: [metaphor], topic: t, must_be_zero: [skills]}", "missing key.*answer"),
        ("- {id: a, kind: x, skills: [metaphor], topic: t, must_be_zero: [topic], answer: hi}", "must include skills"),
        ("- {id: a, kind: x, skills: [], topic: t, must_be_zero: [skills], answer: hi}", "1 to 5 distinct"),
        (
            "- {id: a, kind: x, skills: [metaphor], topic: t, must_be_zero: [skills], answer: hi}\n"
            "- {id: a, kind: y, skills: [simile], topic: t, must_be_zero: [skills], answer: ho}",
            "used twice",
        ),
    ],
)
def test_bad_case_files_name_the_file(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "cases.yaml"
    path.write_text(text)
    with pytest.raises(HarnessError, match=message) as error:
        load_cases(path)
    assert str(path) in str(error.value)


def test_unknown_skill_names_the_case(tmp_path: Path, registry) -> None:
    path = tmp_path / "cases.yaml"
    path.write_text("- {id: odd, kind: x, skills: [no such skill], topic: t, must_be_zero: [skills], answer: hi}\n")
    with pytest.raises(HarnessError, match="adversarial case odd: skill 'no such skill' is not in the catalog"):
        with ScriptedJudge(ZERO) as judge:
            asyncio.run(run_adversarial(grader(judge.client(), None), cases=load_cases(path), registry=registry))
    assert judge.prompts == []  # a bad case fails before any model call


def test_cli_checks_a_url_judge_and_writes_reports(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from harness.cli.judges import judges

    monkeypatch.setenv("SKILLMIX_CACHE", str(tmp_path / "cache.sqlite"))
    out = tmp_path / "reports" / "adversarial.json"
    with ScriptedJudge(FULL_MARKS) as judge:
        result = CliRunner().invoke(
            judges,
            [
                "adversarial",
                "--judge",
                judge.url,
                "--out",
                str(out),
                "--log-dir",
                str(tmp_path),
                "--max-concurrency",
                "4",
            ],
        )
        assert result.exit_code == 0, result.output + repr(result.exception)
        asked = len(judge.prompts)
        # A second check is answered from the cache.
        again = CliRunner().invoke(judges, ["adversarial", "--judge", judge.url, "--log-dir", str(tmp_path)])
        assert again.exit_code == 0 and len(judge.prompts) == asked
    n = len(load_cases())
    assert asked == n
    name = f"judge@127.0.0.1:{judge.httpd.server_port}"
    assert name in result.output and f"{n}/{n} (100%)" in result.output
    data = json.loads(out.read_text())
    assert data["reports"][0]["judge"] == name and data["reports"][0]["totals"]["fooled"] == n
    assert "# Adversarial judge check" in out.with_suffix(".md").read_text()


def test_cli_openai_judge_without_a_key_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from harness.cli.judges import judges

    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    result = CliRunner().invoke(judges, ["adversarial", "--judge", "gpt-4o", "--log-dir", str(tmp_path)])
    assert isinstance(result.exception, HarnessError) and "OPENAI_API_KEY" in str(result.exception)


def test_cli_rejects_unavailable_local_weights_before_serving(tmp_path: Path) -> None:
    from harness.cli.judges import judges

    (tmp_path / "far.yaml").write_text("model: /nowhere/judge\n")
    result = CliRunner().invoke(judges, ["adversarial", "--judge", "far", "--judges-dir", str(tmp_path)])
    assert isinstance(result.exception, HarnessError) and "judge far: no model at /nowhere/judge" in str(
        result.exception
    )


@pytest.mark.integration
def test_a_real_tiny_vllm_judge_is_accounted_for(vllm_servers, tiny_models, registry, cases) -> None:
    """A random tiny model writes noise: every case must land in exactly one outcome, never held by accident."""
    from harness.core.identity import local_model_identity

    _, endpoints = vllm_servers
    model = connected_model("judge", local_model_identity(tiny_models["judge"]), (endpoints["judge"],))

    async def go():
        client = ModelClient(model, None)
        judge = Judge("tiny", model, sampling={"temperature": 0.0, "max_tokens": 64})
        try:
            return await run_adversarial(Grader(judge, client, max_attempts=1), cases=cases, registry=registry)
        finally:
            await client.aclose()

    report = asyncio.run(go())
    totals = report.totals
    assert totals.graded == len(cases) == totals.fooled + totals.held + totals.unscored
    assert {r.case_id for r in report.results} == {case.id for case in cases}
    for result, case in zip(report.results, cases, strict=True):
        usable = Score.from_points(parse_grade(result.reply, case.skills, case.topic, "items")).usable
        assert (result.outcome == "unscored") == (not usable)
