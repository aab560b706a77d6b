"""Load a rule catalog: the open catalog format plus a ``check`` column that makes every skill decidable.

A rule catalog (``tasks/rules/``) is an open catalog (see ``harness.catalog``)
whose ``skills.csv`` has one more column, ``check``, holding the skill's checker
as ``kind:parameter`` (see ``judges.rules``). ``load_open_catalog`` reads the
four usual columns and ignores this one; this module reads it from the same
file, so the definitions the student sees and the checks the judge runs come
from the same rows.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

from harness.core.catalog import Catalog, load_open_catalog
from harness.core.errors import HarnessError
from judges.rules import RuleWorld

CHECK_COLUMN = "check"


@dataclass(frozen=True)
class RuleCatalog:
    catalog: Catalog
    world: RuleWorld


def load_rule_catalog(directory: Path | str) -> RuleCatalog:
    """Read a rule catalog directory; every skill must have a valid check."""
    directory = Path(directory)
    catalog = load_open_catalog(directory)
    skills_path = directory / "skills.csv"
    with skills_path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        if CHECK_COLUMN not in (reader.fieldnames or []):
            raise HarnessError(f"{skills_path}: no {CHECK_COLUMN!r} column, so this is not a rule catalog")
        specs = {row["skill"].strip(): (row[CHECK_COLUMN] or "").strip() for row in reader}
    missing = sorted(skill.name for skill in catalog.skills if not specs.get(skill.name))
    if missing:
        raise HarnessError(f"{skills_path}: skill(s) without a check: {', '.join(missing)}")
    world = RuleWorld.from_rows(
        ((skill.name, specs[skill.name]) for skill in catalog.skills),
        (topic.name for topic in catalog.topics),
    )
    return RuleCatalog(catalog, world)
