"""The `harness` command line: a click group whose subcommands load lazily.

Each command group lives in its own module under harness/cli/ and is only
imported when it is invoked, so `harness --help` stays fast even though some
commands pull in torch or vLLM.
"""

from __future__ import annotations

import importlib
import os
import sys

import click

from harness.core.errors import HarnessError

# command name -> "module:attribute"
COMMANDS: dict[str, str] = {
    "serve": "harness.cli.serve:serve",
    "models": "harness.cli.serve:models",
    "parse-grade": "harness.cli.grades:parse_grade",
    "tasks": "harness.cli.tasks:tasks",
    "run": "harness.cli.run:run",
    "report": "harness.cli.run:report",
    "import-skillmix": "harness.cli.skillmix:import_skillmix",
    "judges": "harness.cli.judges:judges",
    "agreement": "harness.cli.agreement:agreement",
    "bench": "harness.cli.bench:bench",
    "labels": "harness.cli.agreement:labels",
    "generate-data": "harness.cli.data:generate_data",
    "data": "harness.cli.data:data",
}


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        target = COMMANDS.get(name)
        if target is None:
            return None
        module_name, attribute = target.split(":")
        return getattr(importlib.import_module(module_name), attribute)


@click.group(cls=LazyGroup)
@click.version_option(package_name="skillmix-harness")
def cli() -> None:
    """SKILL-MIX evaluation harness with a self-hosted judge."""


def main() -> None:
    # transformers imports DeepSpeed when it is installed, and DeepSpeed warns at length while it
    # probes for an accelerator; on a machine without a GPU, tell it the answer up front.
    if "DS_ACCELERATOR" not in os.environ:
        from harness.core.vllm import detect_device

        if detect_device() == "cpu":
            os.environ["DS_ACCELERATOR"] = "cpu"
    try:
        code = cli.main(standalone_mode=False)
        if isinstance(code, int):
            sys.exit(code)
    except HarnessError as error:
        click.secho(f"error: {error}", fg="red", err=True)
        sys.exit(2)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.ClickException as error:
        error.show()
        sys.exit(error.exit_code)
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        sys.exit(130)
