"""Load a rule catalog: the open catalog format plus a ``check`` column that makes every skill decidable.

A rule catalog (``tasks/rules/``) is an open catalog (see ``harness.core.catalog``)
whose ``skills.csv`` has one more column, ``check``, holding the skill's checker
as ``kind:parameter`` (see ``judges.rules``). ``load_open_catalog`` reads the
four usual columns and ignores this one; ``judges.rules.rule_world`` reads it from
the same file, so the definitions the student sees and the checks the judge runs
come from the same rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from harness.core.catalog import Catalog, load_open_catalog
from judges.rules import RuleWorld, rule_world


@dataclass(frozen=True)
class RuleCatalog:
    catalog: Catalog
    world: RuleWorld


def load_rule_catalog(directory: Path | str) -> RuleCatalog:
    """Read a rule catalog directory; every skill must have a valid check."""
    catalog = load_open_catalog(Path(directory))
    return RuleCatalog(catalog, rule_world(catalog))
