"""What the command line prints while an evaluation runs: progress bars, warnings, request counts.

Shared by `harness run` and `harness generate-data`; library code reports through
``harness.evaluation.Events`` and never prints.
"""

from __future__ import annotations

import sys

import click
from tqdm import tqdm

from harness.core.store import RunStore
from harness.core.vllm import terminate_on_sigterm
from harness.evaluation import Evaluation, Events
from harness.runner import Plan


class ProgressBars(Events):
    """Two tqdm bars on stderr (answers, grading runs) and yellow warnings."""

    def __init__(self) -> None:
        self._bars: list[tqdm] = []

    def warning(self, message: str) -> None:
        click.secho(f"warning: {message}", fg="yellow", err=True)

    def from_cache(self, generations: int, grades: int) -> None:
        if generations or grades:
            click.echo(f"from the response cache: {generations} answers, {grades} grading runs", err=True)

    def planned(self, plan: Plan) -> None:
        if plan.empty:
            click.echo("nothing to do: every answer and grade is in the store (no server started)", err=True)
            return
        click.echo(f"to do: {plan.n_generations} answers, {plan.n_grades} grading runs", err=True)
        self._bars = [
            tqdm(total=plan.n_generations, desc="generate", unit="answer", position=0, file=sys.stderr),
            tqdm(total=plan.n_grades, desc="grade   ", unit="grade", position=1, file=sys.stderr),
        ]

    def generated(self) -> None:
        self._bars[0].update(1)

    def graded(self) -> None:
        self._bars[1].update(1)

    def finished(self) -> None:
        for bar in self._bars:
            bar.close()
        self._bars = []


def run_evaluation(evaluation: Evaluation) -> RunStore:
    """Open the run's store, do what it lacks with progress bars, and print per-model request counts.

    Ctrl-C (or SIGTERM) stops the servers, keeps what finished and says how to resume. A run
    that fails or is stopped before its first answer is stored leaves no store behind.
    """
    store = evaluation.open_store()
    for warning in store.warnings:
        click.secho(f"warning: {warning}", fg="yellow", err=True)
    click.echo(f"run directory: {evaluation.out}", err=True)
    try:
        with terminate_on_sigterm():
            stats = evaluation.run(store, ProgressBars())
    except KeyboardInterrupt:
        if store.abandon():
            click.echo("interrupted before anything was stored", err=True)
        else:
            click.echo(
                f"interrupted; what finished is saved in {evaluation.out}. Run the same command again to resume.",
                err=True,
            )
        raise SystemExit(130) from None
    except BaseException:
        store.abandon()
        raise
    for name, counts in stats.items():
        click.echo(
            f"{name}: {counts.requests} requests, {counts.cache_hits} from cache, {counts.retries} retries", err=True
        )
    return store
