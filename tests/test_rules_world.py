"""The rule world wired into the harness: its task family, `--judge rules`, `--student/--teacher rules`,
and judges measured against the truth in `harness agreement`.

Everything here runs the real commands on real SQLite stores; model judges and students are
scripted OpenAI-compatible HTTP servers (tests/scripted_server.py), so no vLLM server is needed.
The one vLLM test (marked integration) puts a real tiny judge next to the rule judge.
"""

from __future__ import annotations

import asyncio
import json
import re
import threading
from pathlib import Path

import pytest
from click.testing import CliRunner
from scripted_server import ScriptedServer

from harness.cli import cli
from harness.core.connect import connect
from harness.core.errors import HarnessError
from harness.core.models import RULES, resolve_model
from harness.core.registry import load_registry
from harness.core.store import AnswerKey, RunStore
from harness.core.vllm import ServingOptions
from judges.grader import BEGIN_MARKER, END_MARKER, Grader
from judges.registry import resolve_judge
from judges.rubric import Score, item_count
from judges.styles import read_reply
from trainers.dataset import load_conversations

FAMILY = "skillmix-rules"


def invoke(*args: str):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


# -- the task family -------------------------------------------------------------------


def test_the_family_has_every_k_and_split_on_the_rule_catalog() -> None:
    registry = load_registry()
    names = {task.name for task in registry if task.family == FAMILY}
    assert names == {f"{FAMILY}-k{k}-{split}" for k in range(1, 6) for split in ("train", "heldout", "all")}
    task = registry.get(f"{FAMILY}-k4-train")
    assert task.prompt_version == "rules-v1" and task.catalog.sources[0].parent.name == "rules"
    assert task.catalog.heldout_categories == ("tool_words", "signs", "kinds")
    assert (len(task.skills()), len(task.topics())) == (36, 107)
    assert (len(registry.get(f"{FAMILY}-k4-heldout").skills()), len(registry.get(f"{FAMILY}-k4-heldout").topics())) == (
        20,
        54,
    )


def test_first_combinations_of_k4_train_are_pinned() -> None:
    # Changing the seed, the catalog or the sampling rule changes these: that is a new task version.
    task = load_registry().get(f"{FAMILY}-k4-train")
    first = task.combinations()[:3]
    assert [(c.index, c.skills, c.topic) for c in first] == [
        (0, ("ladder word", "digit number", "repeated word", "orchard word"), "king"),
        (1, ("repeated word", "river word", "parentheses", "canyon word"), "diary"),
        (2, ("acorn word", "comma use", "today opening", "mirror word"), "rocket"),
    ]
    train_skills = {skill.name for skill in task.skills()}
    assert all(set(c.skills) <= train_skills and c.topic in task.topics() for c in task.combinations())


def test_tasks_list_shows_the_family() -> None:
    result = invoke("tasks", "list")
    assert result.exit_code == 0
    assert re.search(rf"^{FAMILY}-k4-heldout\s", result.output, flags=re.MULTILINE)


# -- the model-free backend ------------------------------------------------------------


def test_rules_names_a_model_free_backend_that_connect_leaves_alone() -> None:
    student, judge = resolve_model(RULES, "student"), resolve_model(RULES, "judge")
    assert (student.name, judge.name, student.kind, student.model_free) == ("rules-student", "rules", RULES, True)
    # Nothing to serve or contact: connect yields no client for it (and would fail if it tried to serve).
    with connect([student, judge], ServingOptions(device="cpu")) as clients:
        assert clients == {}


def test_the_rule_judge_grades_through_the_grader_with_raw_checks_and_reasons() -> None:
    task = load_registry().get(f"{FAMILY}-k4-train")
    combination = task.combinations()[0]  # ladder word, digit number, repeated word, orchard word; topic king
    answer = "The king moved the ladder into the orchard at 7. The LADDER word fell."
    grader = Grader(resolve_judge(RULES), None)
    grade = asyncio.run(grader.grade(task, combination, answer, AnswerKey(task.name, 0, "s", 0), 0))
    # Every skill check passes ("ladder" twice: the repeat), the topic occurs, three words are outside the
    # lexicon, two sentences are within the limit of 3.
    assert grade.points == (1.0, 1.0, 1.0, 1.0, 1.0, 0.0, 1.0)
    assert "words outside the lexicon: fell, into, word" in grade.reply and "passes repeat:4" in grade.reply
    assert (grade.usable, grade.attempts, grade.sampling, grade.style) == (True, 1, None, "items")
    # The raw check passed though the text names "ladder word"; scoring applies the penalty, as for any judge.
    scored = Score.from_points(grade.points).corrected(answer, combination.skills, name_penalty=True)
    assert scored.points == (0.0, 1.0, 1.0, 1.0, 1.0, 0.0, 1.0)


def test_a_model_judge_without_a_client_is_a_programming_error() -> None:
    judge = resolve_judge("openai:gpt-4o")
    with pytest.raises(HarnessError, match="needs a connected client"):
        Grader(judge, None)


@pytest.fixture(scope="module")
def oracle_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The rule teacher as student, graded by the rule judge, on a train and a held-out task."""
    out = tmp_path_factory.mktemp("oracle") / "run"
    result = invoke(
        "run", f"{FAMILY}-k2-train", f"{FAMILY}-k5-heldout", "--student", "rules", "--judge", "rules",
        "--combinations", "4", "--out", str(out),
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    return out


def test_oracle_student_and_rule_judge_give_full_marks(oracle_run: Path) -> None:
    results = json.loads((oracle_run / "results.json").read_text())["results"]
    assert {(r["task"], r["student"], r["judge"]) for r in results} == {
        (f"{FAMILY}-k2-train", "rules-student", "rules"),
        (f"{FAMILY}-k5-heldout", "rules-student", "rules"),
    }
    for result in results:
        assert result["complete"] and result["metrics"]["n"] == 4
        for metric in ("full_marks", "all_skills", "skill_fraction"):
            assert result["metrics"][metric]["value"] == 1.0
    for name in ("report.md", "report.html"):
        assert (oracle_run / name).is_file()


def test_rule_grades_are_stored_like_any_judges(oracle_run: Path) -> None:
    store = RunStore(oracle_run, create=False)
    try:
        models = {model.name: (model.role, model.kind, model.identity) for model in store.models()}
        assert models == {"rules-student": ("student", RULES, "rules:v1"), "rules": ("judge", RULES, "rules:v1")}
        combinations = store.combinations(f"{FAMILY}-k5-heldout")
        grades = list(store.grades(f"{FAMILY}-k5-heldout"))
        generations = {g.key: g for g in store.generations(f"{FAMILY}-k5-heldout")}
    finally:
        store.close()
    assert len(grades) == 4 * 3 * 3  # combinations x generation rounds x grading runs
    for grade in grades:
        skills, topic = combinations[grade.key.combination]
        assert grade.judge == "rules" and grade.usable and grade.attempts == 1 and grade.sampling is None
        assert grade.points == (1.0,) * item_count(5)
        # The reply is in the per-item format, one check's reason per item, and parses back to the same points.
        assert read_reply(grade.reply, skills, topic, "items").score.points == grade.points
        assert f"passes word:{topic}" not in grade.reply and f"the word(s) {topic!r} occur" in grade.reply
        generation = generations[grade.key]
        assert generation.answer_marked and generation.turn2_reply == f"Answer: {generation.answer}"
        assert all(skill in generation.turn1_prompt for skill in skills)  # the real request was rendered
    assert len({g.answer for g in generations.values()}) == len(generations)  # rounds differ


def test_a_finished_oracle_run_resumes_with_nothing_to_do(oracle_run: Path) -> None:
    result = invoke(
        "run", f"{FAMILY}-k2-train", "--student", "rules", "--judge", "rules", "--combinations", "4",
        "--out", str(oracle_run),
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "nothing to do" in result.output


@pytest.mark.parametrize("flag", ["--judge", "--student"])
def test_rules_on_a_task_outside_the_rule_world_is_refused(tmp_path: Path, flag: str) -> None:
    # The other role is a model that is never contacted: the refusal comes first.
    other = ("--student", "openai:gpt-4o") if flag == "--judge" else ("--judge", "openai:gpt-4o")
    with pytest.raises(HarnessError, match=rf"^{flag} rules.* on task skillmix-k2-train: .* not a rule catalog"):
        invoke("run", "skillmix-k2-train", flag, "rules", *other, "--out", str(tmp_path / "run"))
    assert not (tmp_path / "run").exists()  # refused before the run directory is made


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["serve", "--student", "rules"], "nothing to serve"),
        (["judges", "adversarial", "--judge", "rules"], "nothing to talk it into"),
    ],
)
def test_commands_without_a_use_for_the_rule_backend_refuse_it(args: list[str], message: str) -> None:
    with pytest.raises(HarnessError, match=message):
        invoke(*args)


def test_a_judge_file_cannot_take_the_rule_judges_name(tmp_path: Path) -> None:
    (tmp_path / "rules.yaml").write_text("model: openai:gpt-4o\n")
    with pytest.raises(HarnessError, match="belongs to the built-in rule judge"):
        invoke("judges", "list", "--judges-dir", str(tmp_path))


# -- generate-data --teacher rules -------------------------------------------------------


def test_generate_data_with_the_rule_teacher_writes_trainable_rows(tmp_path: Path) -> None:
    result = invoke("generate-data", "--teacher", "rules", "--per-k", "6", "--out", str(tmp_path))
    assert result.exit_code == 0, result.output
    assert "audit OK" in result.output
    conversations = load_conversations(tmp_path / "dataset", [1, 2, 3])
    # every answer is kept: 6 combinations x 3 generation rounds per k, graded by the rule judge by default
    assert conversations.k_counts == {1: 18, 2: 18, 3: 18}
    texts = []
    for messages in conversations.messages:
        user, assistant = messages
        assert user["role"] == "user" and "Skill:" in user["content"]
        assert assistant["role"] == "assistant" and assistant["content"].startswith("Answer: ")
        texts.append(assistant["content"])
    assert len(set(texts)) == len(texts)
    provenance = json.loads((tmp_path / "dataset" / "provenance.json").read_text())
    assert provenance["teacher"]["name"] == "rules-teacher" and provenance["judges"][0]["name"] == "rules"
    assert all(task.startswith(f"{FAMILY}-k") for task in provenance["tasks"])


# -- judges against the truth ----------------------------------------------------------


def _answer_in(prompt: str) -> str:
    return prompt.split(BEGIN_MARKER, 1)[1].split(END_MARKER, 1)[0]


class WrongJudge:
    """A per-item judge with known mistakes.

    On a teacher's text (every point truly earned) it denies the first skill. On the
    student's "zzz" (no skill, no topic, no sense) it grants every skill and denies topic
    and sense. Its sentence value does not matter: code recomputes that point.
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.count = 0

    def __call__(self, body: dict) -> str:
        with self.lock:
            self.count += 1
        prompt = body["messages"][-1]["content"]
        items = re.findall(r"^\d+\. (.+)$", prompt.split(END_MARKER, 1)[1], flags=re.MULTILINE)
        k = len(items) - 3
        if "zzz" in _answer_in(prompt):
            points = [1] * k + [0, 0, 1]
        else:
            points = [0] + [1] * (k - 1) + [1, 1, 1]
        lines = [
            f"{n}. {item}\nChecked.\nPoint earned: {p}"
            for n, (item, p) in enumerate(zip(items, points, strict=True), 1)
        ]
        return "\n".join([*lines, f"Grade: {sum(points)}"])


@pytest.fixture(scope="module")
def truth_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two students (the rule teacher, and a scripted one that writes "zzz"), the rule judge and a wrong judge."""
    out = tmp_path_factory.mktemp("truth") / "run"
    wrong = WrongJudge()
    with (
        ScriptedServer(responder=lambda body: "Answer: zzz") as student,
        ScriptedServer(responder=wrong) as judge,
    ):
        result = invoke(
            "run", f"{FAMILY}-k1-train", f"{FAMILY}-k2-heldout", "--combinations", "5", "--out", str(out),
            "--student", "rules", "--student", f"zzz={student.endpoint.base_url}",
            "--judge", "rules", "--judge", f"wrong={judge.endpoint.base_url}",
            "--cache", str(out.parent / "cache.sqlite"),
        )  # fmt: skip
        assert result.exit_code == 0, result.output
    # 2 tasks x 5 combinations x 3 rounds x 2 students x 3 grading runs, and no retry (every reply parses)
    assert wrong.count == 180
    return out


def _truth_rows(document: dict) -> dict[tuple[str, str | int], dict]:
    assert document["truth_rater"] == "rules"
    return {(row["criterion"], row["k"]): row for row in document["truth"] if row["rater"] == "wrong"}


def test_agreement_measures_a_judge_against_the_rule_judge(truth_run: Path) -> None:
    result = invoke("agreement", str(truth_run), "--resamples", "100")
    assert result.exit_code == 0, result.output
    assert "Against the truth (rules)" in result.output
    rows = _truth_rows(json.loads((truth_run / "agreement.json").read_text()))

    def check(criterion: str, k: int | str, n: int, earned: int, accuracy, precision, recall, kappa) -> None:
        row = rows[(criterion, k)]
        assert (row["n"], row["truth_earned"]) == (n, earned), (criterion, k)
        for name, want in (("accuracy", accuracy), ("precision", precision), ("recall", recall), ("kappa", kappa)):
            got = row[name]
            assert (got is None and want is None) or got == pytest.approx(want), (criterion, k, name, got)

    # Per k, 15 answers of each student (5 combinations x 3 rounds). Worked out by hand from WrongJudge:
    # k=1 skill items: teacher's 15 truly earned, all denied; zzz's 15 not earned, all granted.
    check("skill", 1, 30, 15, 0.0, 0.0, 0.0, -1.0)
    # k=2: teacher's 30 earned, 15 denied (the first skill); zzz's 30 not earned, all granted.
    # accuracy 15/60; precision 15/45; recall 15/30; kappa (0.25 - 0.5) / (1 - 0.5).
    check("skill", 2, 60, 30, 0.25, 1 / 3, 0.5, -0.5)
    # pooled: TP 15, FN 30, FP 45, TN 0 of 90; chance agreement 0.5 x 2/3 + 0.5 x 1/3 = 0.5.
    check("skill", "all", 90, 45, 15 / 90, 15 / 60, 15 / 45, (15 / 90 - 0.5) / 0.5)
    # topic and sense: the wrong judge gets them all right.
    for kind in ("topic", "sense"):
        check(kind, "all", 60, 30, 1.0, 1.0, 1.0, 1.0)
    # sentences: code decides the point for every judge, and both texts are one sentence: kappa is 0/0.
    check("sentences", "all", 60, 60, 1.0, 1.0, 1.0, None)
    # all items: TP 15+30+30+60, FN 30, FP 45, TN 0+30+30 of 270.
    tp, fn, fp, tn = 135, 30, 45, 60
    po = (tp + tn) / 270
    pe = ((tp + fn) * (tp + fp) + (tn + fp) * (tn + fn)) / 270**2
    check("overall", "all", 270, 165, po, tp / (tp + fp), tp / (tp + fn), (po - pe) / (1 - pe))
    markdown = (truth_run / "agreement.md").read_text()
    assert "Against the truth (rules)" in markdown


def test_reports_carry_the_truth_table(truth_run: Path) -> None:
    result = invoke("report", str(truth_run))
    assert result.exit_code == 0, result.output
    document = json.loads((truth_run / "results.json").read_text())
    rows = _truth_rows(document)
    assert rows[("skill", 2)]["accuracy"] == pytest.approx(0.25)
    assert "Against the truth (rules)" in (truth_run / "report.md").read_text()
    html = (truth_run / "report.html").read_text()
    assert "against the truth" in html.lower() and "wrong" in html


def test_per_run_agreement_leaves_the_truth_table_out_and_says_so(truth_run: Path, tmp_path: Path) -> None:
    result = invoke("agreement", str(truth_run), "--per-run", "--resamples", "100", "--out", str(tmp_path))
    assert result.exit_code == 0, result.output
    document = json.loads((tmp_path / "agreement.json").read_text())
    assert document["truth"] == [] and any("--per-run" in note for note in document["notes"])


# -- a real tiny vLLM judge next to the rule judge -----------------------------------------


@pytest.mark.integration
def test_a_real_tiny_judge_is_measured_against_the_rule_judge(vllm_servers, tmp_path: Path, monkeypatch) -> None:
    from conftest import SERVER_API_KEY

    _, endpoints = vllm_servers
    monkeypatch.setenv("VLLM_API_KEY", SERVER_API_KEY)
    out = tmp_path / "run"
    result = invoke(
        "run", f"{FAMILY}-k2-train", "--combinations", "4", "--out", str(out), "--student", "rules",
        "--judge", "rules", "--judge", f"tiny={endpoints['judge'].base_url}", "--constrained-judges",
        "--cache", str(tmp_path / "cache.sqlite"),
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    store = RunStore(out, create=False)
    try:
        judges = {grade.judge for grade in store.grades()}
    finally:
        store.close()
    assert judges == {"rules", "tiny"}
    result = invoke("agreement", str(out), "--resamples", "100")
    assert result.exit_code == 0, result.output
    rows = [row for row in json.loads((out / "agreement.json").read_text())["truth"] if row["rater"] == "tiny"]
    assert {row["criterion"] for row in rows} == {"skill", "topic", "sense", "sentences", "overall"}
    for row in rows:
        assert row["n"] > 0
        for name in ("accuracy", "precision", "recall"):
            assert row[name] is None or 0.0 <= row[name] <= 1.0
        assert row["kappa"] is None or -1.0 <= row["kappa"] <= 1.0
    overall = [row for row in rows if row["criterion"] == "overall"]
    assert overall and all(row["accuracy"] is not None for row in overall)
