"""The package layering: cli -> orchestration (harness/) -> judges / trainers -> core (harness/core/).

Read from the source with ast, so a new import that breaks the layering fails here
whatever imports it happens to trigger at run time.
"""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("harness", "judges", "trainers", "tasks")
# What each layer may import from the project.
ALLOWED = {
    "core": {"core"},
    "judges": {"core", "judges"},
    "trainers": {"core", "trainers"},
    "tasks": {"core", "tasks"},
    "orchestration": {"core", "judges", "trainers", "orchestration"},
    "cli": {"core", "judges", "trainers", "orchestration", "cli"},
}
# The CLI's shared modules; command modules import these, never each other.
CLI_SHARED = {"harness.cli", "harness.cli.options", "harness.cli.console"}


def layer(module: str) -> str | None:
    if module.startswith("harness.core"):
        return "core"
    if module.startswith("harness.cli") or module == "harness.__main__":
        return "cli"
    for package in ("harness", "judges", "trainers", "tasks"):
        if module == package or module.startswith(package + "."):
            return "orchestration" if package == "harness" else package
    return None


def project_imports() -> list[tuple[str, str]]:
    """(importing module, imported module) for every project import in the source tree."""
    found = []
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            module = ".".join(path.relative_to(REPO).with_suffix("").parts).removesuffix(".__init__")
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                    names = [node.module]
                else:
                    continue
                found += [(module, name) for name in names if layer(name) is not None]
    return found


def test_every_import_points_down_the_layers() -> None:
    imports = project_imports()
    assert len(imports) > 100  # the walk really read the source
    wrong = [
        f"{source} ({layer(source)}) imports {target} ({layer(target)})"
        for source, target in imports
        if layer(target) not in ALLOWED[layer(source)]
    ]
    assert wrong == []


def test_command_modules_do_not_import_each_other() -> None:
    wrong = [
        f"{source} imports {target}"
        for source, target in project_imports()
        if source.startswith("harness.cli.") and source not in CLI_SHARED
        and target.startswith("harness.cli") and target not in CLI_SHARED
    ]  # fmt: skip
    assert wrong == []


def test_the_layering_check_catches_a_violation() -> None:
    assert layer("harness.core.store") == "core" and layer("harness.runner") == "orchestration"
    assert "judges" not in ALLOWED["core"] and "orchestration" not in ALLOWED["judges"]
    assert layer("harness.cli.run") == "cli" and layer("numpy") is None


# Seconds to import each, on the 2-core development machine; `harness run` needs none of them to start.
HEAVY = ("sklearn", "scipy", "pandas", "matplotlib", "torch", "transformers", "vllm", "deepspeed")


def test_starting_a_run_imports_no_heavy_library() -> None:
    """Every `harness run` pays its imports before its first request (scikit-learn alone took 2 of
    its 3 s), so the statistics, plotting and model libraries are imported where they are used."""
    import subprocess
    import sys

    probe = "import sys, harness.cli.run; print(' '.join(sorted({m.split('.')[0] for m in sys.modules})))"
    loaded = set(
        subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout.split()
    )
    assert "harness" in loaded
    assert not loaded & set(HEAVY), sorted(loaded & set(HEAVY))
