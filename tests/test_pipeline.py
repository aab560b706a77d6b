"""bin/pipeline_open.sh on a tiny local model: training data, DeepSpeed fine-tuning, vLLM evaluation of the checkpoint.

The base model is also the teacher and the judge, so each step serves it once for two roles, and the
judge is constrained to the rubric's format (short replies that parse).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import datasets
import pytest

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[1]
COMBINATIONS = 1  # per evaluation task: 2 students x 2 tasks x 3 rounds, on two servers that share two cores
TASKS = ("skillmix-k2-train", "skillmix-k2-heldout")  # training and held-out skills; the script's default has 4


def test_pipeline_trains_a_student_that_vllm_serves_and_the_harness_evaluates(tmp_path: Path) -> None:
    out = tmp_path / "pipeline"
    base = tmp_path / "base"  # the student, the teacher and the judge: seed 2, the embedded default judge's
    subprocess.run([sys.executable, "-m", "harness", "models", "tiny", str(base), "--seed", "2"], check=True)
    env = {
        **os.environ,
        "OUT": str(out),
        "BASE": str(base),
        "TEACHER": f"teacher={base}",
        "JUDGE": f"judge={base}",
        "CONSTRAINED": "1",  # replies in the rubric's format parse, so some texts are scored and kept
        "PER_K": "6",  # fewer: tiny random models may then leave no text to train on
        "COMBINATIONS": str(COMBINATIONS),
        "STEPS": "4",
        "TASKS": " ".join(TASKS),
        "SKILLMIX_CACHE": str(tmp_path / "cache" / "responses.sqlite"),
    }
    finished = subprocess.run(
        [str(REPO / "bin" / "pipeline_open.sh")], env=env, capture_output=True, text=True, timeout=1500
    )
    assert finished.returncode == 0, finished.stderr[-4000:]

    rows = datasets.load_from_disk(str(out / "data" / "dataset"))
    provenance = json.loads((out / "data" / "dataset" / "provenance.json").read_text())
    assert len(rows) > 0 and set(rows["k"]) <= {1, 2, 3}
    assert sum(count["kept"] for count in provenance["counts"].values()) == len(rows) == provenance["rows"]
    for k, count in provenance["counts"].items():
        assert count["answers"] == count["kept"] + count["rejected"] + count["unscored"] + count["heldout_mention"], k

    final = out / "train" / "final"
    assert (final / "training_metadata.json").is_file() and (final / "model.safetensors").is_file()
    assert "audit OK" in finished.stderr + finished.stdout  # the leak audit ran before training

    results = json.loads((out / "eval" / "results.json").read_text())["results"]
    evaluated = {(row["student"], row["task"]) for row in results}
    assert evaluated == {(student, task) for student in ("base", "ft") for task in TASKS}
    for row in results:
        assert row["answers"] == COMBINATIONS * 3 and row["grades"] == COMBINATIONS * 3 * 3  # x rounds (x runs)
    # One model in two roles was served once: teacher and judge for the data, base student and judge
    # for the evaluation (on two cores, three servers would share them with the fine-tuned student's).
    served = {step: sorted(log.name for log in (out / step).rglob("vllm-*.log")) for step in ("data", "eval")}
    assert served == {"data": ["vllm-teacher-teacher+judge-judge.log"],
                      "eval": ["vllm-student-base+judge-judge.log", "vllm-student-ft.log"]}, served  # fmt: skip
    # The fine-tuned student was served with the template it was trained with: no warning.
    assert "differs from the one it was trained with" not in finished.stderr
