"""`harness generate-data` through its click command, with a scripted teacher and scripted judges.

Each combination's fate is decided here by its topic (see `fate`), so the
expected kept / rejected / unscored / held-out counts follow from the
combinations the registry draws, counted in this file independently of the
export code.
"""

from __future__ import annotations

import json
import re
import shutil
import sqlite3
from collections import Counter
from dataclasses import replace
from pathlib import Path

import pytest
from click.testing import CliRunner
from scripted_server import ScriptedServer

from harness.cli.data import generate_data
from harness.core.audit import audit_dataset, heldout_tasks
from harness.core.errors import HarnessError
from harness.core.prompts import render_student_turn1
from harness.core.registry import load_registry
from harness.datagen import KEPT, REJECTED, UNSCORED, KeepRule, answer_verdict, parse_ks
from judges.rubric import Score
from trainers.dataset import load_conversations

FAMILY = "skillmix-small"  # one generation round and one grading run per answer
PER_K = 8
KS = (1, 2, 3)
TEXT = "The harbour master checked the tide table before dawn."
LEAKY_TEXT = "The harbour master hummed a tune from the opera before dawn."  # "opera" is a held-out topic


def fate(topic: str) -> str:
    """full | miss-one | unscored | leak: what the scripted models do for this topic."""
    return ("full", "full", "miss-one", "unscored", "leak")[len(topic) % 5]


def teacher(body: dict) -> str:
    topic = re.search(r"in the context of (.+?)\. The text must", body["messages"][0]["content"]).group(1)
    text = LEAKY_TEXT if fate(topic) == "leak" else TEXT
    return f"Answer: {text}\nExplanation: it shows every skill."


def rubric_of(prompt: str) -> list[str]:
    return re.findall(r"^\d+\. (.+)$", prompt.split("Rubric (", 1)[1], flags=re.MULTILINE)


def judge(body: dict) -> str:
    items = rubric_of(body["messages"][-1]["content"])
    topic = items[-3].removeprefix("Pertains to ")
    if fate(topic) == "unscored":
        return "I cannot grade this."
    points = [0 if fate(topic) == "miss-one" and index == 0 else 1 for index in range(len(items))]
    lines = [
        line for index, item in enumerate(items) for line in (f"{index + 1}. {item}", f"Point earned: {points[index]}")
    ]
    return "\n".join([*lines, f"Grade: {sum(points)}"])


def rejecting_judge(body: dict) -> str:
    items = rubric_of(body["messages"][-1]["content"])
    return "\n".join(f"{i + 1}. {item}\nPoint earned: 0" for i, item in enumerate(items)) + "\nGrade: 0"


@pytest.fixture(scope="module")
def expected() -> dict[int, Counter]:
    registry = load_registry()
    fates = {}
    for k in KS:
        task = replace(registry.get(f"{FAMILY}-k{k}-train"), n_combinations=PER_K)
        fates[k] = Counter(fate(c.topic) for c in task.combinations())
    # every fate must occur, and every k keep something, or the test would not show it is handled
    assert all(sum(f[name] for f in fates.values()) for name in ("full", "miss-one", "unscored", "leak"))
    assert all(fates[k]["full"] for k in KS)
    return fates


def generate(out: Path, cache: Path, teacher_url: str, *judges: str, extra: tuple[str, ...] = ()):
    judge_args = [arg for judge_url in judges for arg in ("--judge", judge_url)]
    args = ["--teacher", f"teach={teacher_url}", *judge_args, "--family", FAMILY, "--k", ",".join(map(str, KS)),
            "--per-k", str(PER_K), "--out", str(out), "--cache", str(cache), "--max-grade-attempts", "1", *extra]  # fmt: skip
    return CliRunner().invoke(generate_data, args, catch_exceptions=False)


def provenance(out: Path) -> dict:
    return json.loads((out / "dataset" / "provenance.json").read_text())


def test_generate_data_keeps_full_marks_and_exports_a_trainable_dataset(tmp_path: Path, expected) -> None:
    out, cache = tmp_path / "data", tmp_path / "cache.sqlite"
    with ScriptedServer(responder=teacher) as t, ScriptedServer(responder=judge) as j:
        result = generate(out, cache, t.endpoint.base_url, f"jud={j.endpoint.base_url}")
        assert result.exit_code == 0, result.output
        calls = (len(t.requests), len(j.requests))
        assert calls == (2 * PER_K * len(KS), PER_K * len(KS))  # two turns per answer; one grading run

        counts = provenance(out)["counts"]
        for k in KS:
            fates = expected[k]
            assert counts[str(k)] == {
                "answers": PER_K,
                "kept": fates["full"],
                "rejected": fates["miss-one"],
                "unscored": fates["unscored"],
                "heldout_mention": fates["leak"],
            }
        assert "audit OK" in result.output and "data.path=" in result.output

        # The trainer reads it, and data.k selects the cumulative mix D(1,2).
        dataset_dir = out / "dataset"
        mix = load_conversations(dataset_dir, [1, 2])
        assert mix.total_rows == sum(expected[k]["full"] for k in KS)
        assert mix.k_counts == {k: expected[k]["full"] for k in (1, 2) if expected[k]["full"]}
        assert all(
            conversation[1] == {"role": "assistant", "content": f"Answer: {TEXT}"} for conversation in mix.messages
        )

        import datasets

        rows = datasets.load_from_disk(str(dataset_dir))
        registry = load_registry()
        train_skills = {s.name for s in registry.get(f"{FAMILY}-k1-train").skills()}
        for row in rows:
            task = replace(registry.get(row["task"]), n_combinations=PER_K)
            combination = task.combinations()[row["combination"]]
            assert fate(combination.topic) == "full"
            assert row["messages"][0] == {"role": "user", "content": render_student_turn1(task, combination)}
            assert (row["skills"], row["topic"], row["k"]) == (list(combination.skills), combination.topic, task.k)
            assert set(row["skills"]) <= train_skills and (row["teacher"], row["judge"]) == ("teach", "jud")
        assert audit_dataset(dataset_dir, heldout_tasks(registry, FAMILY)).ok

        first = provenance(out)
        assert first["teacher"]["name"] == "teach" and first["judges"][0]["name"] == "jud"
        assert first["tasks"][f"{FAMILY}-k2-train"]["combinations"] == PER_K
        assert first["keep_rule"]["threshold_points"] == {"1": 4, "2": 5, "3": 6}

        # Resuming a finished run makes no model call and re-exports the same bytes.
        again = generate(out, cache, t.endpoint.base_url, f"jud={j.endpoint.base_url}")
        assert again.exit_code == 0, again.output
        assert (len(t.requests), len(j.requests)) == calls and "nothing to do" in again.output
        assert provenance(out) == first

        # A lower threshold re-selects from the store: one missed point of k+3 passes 0.75.
        looser = generate(out, cache, t.endpoint.base_url, f"jud={j.endpoint.base_url}", extra=("--min-points", "0.75"))
        assert looser.exit_code == 0, looser.output
        assert (len(t.requests), len(j.requests)) == calls
        for k in KS:
            assert provenance(out)["counts"][str(k)]["kept"] == expected[k]["full"] + expected[k]["miss-one"]
            assert provenance(out)["counts"][str(k)]["unscored"] == expected[k]["unscored"]

        # Under the reference's rules an unreadable reply is zeros: rejected, not unscored. No model call.
        reference = generate(
            out, cache, t.endpoint.base_url, f"jud={j.endpoint.base_url}", extra=("--scoring", "reference")
        )
        assert reference.exit_code == 0, reference.output
        assert (len(t.requests), len(j.requests)) == calls and "scoring: reference" in reference.output
        assert provenance(out)["keep_rule"]["scoring"]["profile"] == "reference"
        for k in KS:
            counts = provenance(out)["counts"][str(k)]
            assert (counts["kept"], counts["unscored"]) == (expected[k]["full"], 0)
            assert counts["rejected"] == expected[k]["miss-one"] + expected[k]["unscored"]

        # A fresh run directory is answered from the response cache: still no model call.
        shutil.rmtree(out / "run")
        fresh = generate(out, cache, t.endpoint.base_url, f"jud={j.endpoint.base_url}")
        assert fresh.exit_code == 0, fresh.output
        assert (len(t.requests), len(j.requests)) == calls
        assert provenance(out)["counts"] == first["counts"]


def test_with_two_judges_every_judge_must_keep(tmp_path: Path, expected) -> None:
    out, cache = tmp_path / "data", tmp_path / "cache.sqlite"
    with (
        ScriptedServer(responder=teacher) as t,
        ScriptedServer(responder=judge) as a,
        ScriptedServer(responder=rejecting_judge) as b,
    ):
        assert generate(out, cache, t.endpoint.base_url, f"a={a.endpoint.base_url}").exit_code == 0
        teacher_calls = len(t.requests)
        both = generate(out, cache, t.endpoint.base_url, f"a={a.endpoint.base_url}", f"b={b.endpoint.base_url}")
        assert both.exit_code == 0, both.output
        assert len(t.requests) == teacher_calls and len(b.requests) == PER_K * len(KS)
    for k in KS:
        assert provenance(out)["counts"][str(k)] == {
            "answers": PER_K,
            "kept": 0,
            "rejected": PER_K,
            "unscored": 0,
            "heldout_mention": 0,
        }
    assert "dataset is empty" in both.output
    with pytest.raises(HarnessError, match="no rows"):
        load_conversations(out / "dataset", [1, 2, 3])


def test_a_store_with_a_heldout_skill_is_refused_at_export(tmp_path: Path) -> None:
    out, cache = tmp_path / "data", tmp_path / "cache.sqlite"
    with ScriptedServer(responder=teacher) as t, ScriptedServer(responder=judge) as j:
        assert generate(out, cache, t.endpoint.base_url, j.endpoint.base_url).exit_code == 0
        # tamper with the recorded combinations, as a sampling bug would
        with sqlite3.connect(out / "run" / "run.sqlite") as db:
            db.execute(
                "UPDATE combinations SET skills = ? WHERE task = ?", (json.dumps(["friction"]), f"{FAMILY}-k1-train")
            )
        with pytest.raises(HarnessError, match="not in the training split"):
            generate(out, cache, t.endpoint.base_url, j.endpoint.base_url)


def test_answer_verdict_rules() -> None:
    full, missing_one = Score.from_points([1, 1, 1, 1]), Score.from_points([0, 1, 1, 1])
    assert answer_verdict([full], 4) == KEPT
    assert answer_verdict([missing_one], 4) == REJECTED
    assert answer_verdict([missing_one], 3) == KEPT
    assert answer_verdict([None], 4) == UNSCORED
    assert (
        answer_verdict([Score.from_points([1, None, 1, 1])], 3) == UNSCORED
    )  # a missing point is never read as 0 or 1
    assert answer_verdict([full, None], 4) == UNSCORED  # one judge could not score it
    assert answer_verdict([missing_one, None], 4) == REJECTED
    assert answer_verdict([full, missing_one], 4) == REJECTED
    assert answer_verdict([], 4) == UNSCORED


def test_keep_rule_thresholds_and_k_lists() -> None:
    assert [KeepRule().threshold(k) for k in (1, 2, 3)] == [4, 5, 6]
    assert KeepRule(0.8).threshold(2) == 4  # 0.8 x 5 = 4 exactly
    assert KeepRule(0.75).threshold(3) == 5  # 4.5 rounds up
    with pytest.raises(HarnessError):
        KeepRule(0.0)
    assert parse_ks("3,1, 2") == [1, 2, 3]
    for bad in ("", "1,x", "0,1", "1,1"):
        with pytest.raises(HarnessError):
            parse_ks(bad)
