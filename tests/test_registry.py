"""Task registry: YAML validation, family expansion, includes, catalog overrides and `harness tasks`."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from harness.cli.tasks import tasks as tasks_cli
from harness.core.catalog import load_open_catalog
from harness.core.errors import HarnessError
from harness.core.registry import Registry, load_registry
from harness.core.taskfile import BUILTIN_TASKS_DIR, family_files, read_family_file

DATA = Path(__file__).resolve().parent / "data"
FIXTURE_TASKS = DATA / "tasks"
SKILLMIX_FIXTURE = DATA / "skillmix-format"
SPLITS = ("train", "heldout", "all")


def write_family(directory: Path, name: str, **keys: object) -> Path:
    config = {
        "family": name,
        "version": 1,
        "catalog": str(DATA / "catalog"),
        "seed": 1,
        **keys,
    }
    path = directory / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


def fixture_registry() -> Registry:
    return load_registry(FIXTURE_TASKS, builtin=False)


def test_every_builtin_yaml_file_validates() -> None:
    files = family_files(BUILTIN_TASKS_DIR)
    assert {f.name for f in files} >= {"skillmix.yaml", "skillmix-small.yaml"}
    for path in files:
        config = read_family_file(path)
        assert isinstance(config["version"], int) and config["version"] >= 1
        assert config["prompt_dir"].is_dir()


def test_builtin_registry_has_the_fifteen_skillmix_tasks() -> None:
    registry = load_registry()
    expected = [f"skillmix-k{k}-{split}" for k in range(1, 6) for split in SPLITS]
    assert [name for name in registry.names() if name.startswith("skillmix-k")] == expected
    assert [f"skillmix-small-k{k}-{split}" for k in range(1, 6) for split in SPLITS] == [
        name for name in registry.names() if name.startswith("skillmix-small-")
    ]
    task = registry.get("skillmix-k4-heldout")
    assert (task.k, task.split, task.n_combinations, task.version) == (
        4,
        "heldout",
        100,
        1,
    )
    assert (task.generation_rounds, task.grading_runs, task.prompt_version) == (
        3,
        3,
        "v1",
    )
    assert task.student_sampling == {"temperature": 0.7, "max_tokens": 512}
    small = registry.get("skillmix-small-k4-heldout")
    assert (small.n_combinations, small.generation_rounds, small.grading_runs) == (
        20,
        1,
        1,
    )
    assert small.catalog is task.catalog  # the variant reuses the family's catalog


def assert_no_leaks(registry: Registry) -> None:
    checked = 0
    for task in registry:
        if task.split == "all":
            continue
        heldout_categories = set(task.catalog.heldout_categories or ())
        heldout_topics = {t.name for t in task.catalog.topics if t.split == "heldout"}
        categories = {s.name: s.category for s in task.catalog.skills}
        for combination in task.combinations():
            in_heldout = [categories[name] in heldout_categories for name in combination.skills]
            assert all(in_heldout) if task.split == "heldout" else not any(in_heldout), task.name
            assert (combination.topic in heldout_topics) == (task.split == "heldout"), task.name
            checked += 1
    assert checked > 0


def test_no_heldout_skill_or_topic_in_any_train_task_of_the_fixture() -> None:
    assert_no_leaks(fixture_registry())


def test_no_heldout_skill_or_topic_in_any_builtin_train_task() -> None:
    assert_no_leaks(load_registry())


def test_family_expands_into_named_tasks() -> None:
    registry = fixture_registry()
    base = [f"fixture-k{k}-{split}" for k in range(1, 6) for split in SPLITS]
    variant = [f"fixture-table-k{k}-{split}" for k in range(1, 6) for split in SPLITS]
    assert registry.names() == base + variant
    assert len(registry) == 30 and "fixture-k2-heldout" in registry
    task = registry.get("fixture-k2-heldout")
    assert (task.family, task.k, task.split, task.n_combinations, task.seed) == (
        "fixture",
        2,
        "heldout",
        12,
        13,
    )
    assert task.source == FIXTURE_TASKS / "fixture.yaml"


def test_variant_overrides_and_inherits() -> None:
    task = fixture_registry().get("fixture-table-k3-train")
    assert (task.family, task.version, task.grading_style) == (
        "fixture-table",
        3,
        "table",
    )
    assert task.student_sampling == {
        "temperature": 1.0,
        "max_tokens": 512,
    }  # max_tokens from the default
    assert (task.n_combinations, task.seed) == (12, 13)  # from the included file
    # The included file's relative catalog path is resolved next to that file.
    assert task.catalog.sources[0] == (DATA / "catalog" / "skills.csv").resolve()


def test_combinations_are_deterministic_and_differ_between_tasks() -> None:
    first = fixture_registry().get("fixture-k3-train").combinations()
    assert fixture_registry().get("fixture-k3-train").combinations() == first
    assert len(first) == 12
    assert fixture_registry().get("fixture-table-k3-train").combinations() != first


def test_to_dict_is_json_and_records_the_catalog() -> None:
    task = fixture_registry().get("fixture-k3-heldout")
    resolved = json.loads(json.dumps(task.to_dict()))
    assert resolved["name"] == "fixture-k3-heldout" and resolved["version"] == 1
    assert resolved["combinations"] == 12 and resolved["grading_runs"] == 3
    catalog = resolved["catalog"]
    assert catalog["content_hash"] == load_open_catalog(DATA / "catalog").content_hash
    assert catalog["heldout_categories"] == ["logical", "theory of mind"]
    assert (catalog["skills_in_split"], catalog["topics_in_split"]) == (6, 3)
    assert catalog["sources"][0].endswith("skills.csv")


@pytest.mark.parametrize(
    ("keys", "message"),
    [
        (
            {"combinatons": 5},
            r"unknown key\(s\) 'combinatons' \(did you mean 'combinations'\?\)",
        ),
        (
            {"combinations": "many"},
            "'combinations' must be a whole number of at least 1",
        ),
        ({"combinations": 0}, "'combinations' must be a whole number of at least 1"),
        ({"grading_runs": True}, "'grading_runs' must be a whole number"),
        ({"k": [0, 2]}, "'k' values must be distinct and at least 1"),
        ({"k": [2, 2]}, "'k' values must be distinct"),
        ({"k": "3"}, "'k' must be a whole number or a list"),
        ({"splits": ["train", "test"]}, "'splits' must be a list of distinct values"),
        ({"grading_style": "no spaces please"}, "'grading_style' must name a reply style"),
        ({"student_sampling": {"temp": 0.5}}, "unknown key.*temp"),
        (
            {"judge_sampling": {"temperature": 3}},
            "temperature must be between 0.0 and 2.0",
        ),
        ({"judge_sampling": {"max_tokens": 0.5}}, "max_tokens must be a whole number"),
        ({"student_sampling": [0.7]}, "must be a mapping"),
        ({"prompt_version": "v999"}, "prompt_version 'v999' has no directory"),
        ({"family": "Skill Mix"}, "'family' must be lower-case"),
    ],
)
def test_invalid_family_files_name_the_file(tmp_path: Path, keys: dict, message: str) -> None:
    path = write_family(tmp_path, "broken", **keys)
    with pytest.raises(HarnessError, match=message) as error:
        load_registry(tmp_path, builtin=False)
    assert str(path) in str(error.value)


def test_missing_required_key_is_named(tmp_path: Path) -> None:
    path = tmp_path / "x.yaml"
    path.write_text("family: x\nversion: 1\ncatalog: .\n", encoding="utf-8")
    with pytest.raises(HarnessError, match=r"x\.yaml: missing required key 'seed'"):
        load_registry(tmp_path, builtin=False)
    path.write_text("- not a mapping\n", encoding="utf-8")
    with pytest.raises(HarnessError, match="must be a YAML mapping"):
        load_registry(tmp_path, builtin=False)


def test_include_errors(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text("include: missing.yaml\nfamily: a\n", encoding="utf-8")
    with pytest.raises(HarnessError, match=r"a\.yaml: included file 'missing.yaml' not found"):
        load_registry(tmp_path, builtin=False)
    (tmp_path / "a.yaml").write_text("include: b.yaml\nfamily: a\n", encoding="utf-8")
    (tmp_path / "b.yaml").write_text("include: a.yaml\nfamily: b\n", encoding="utf-8")
    with pytest.raises(HarnessError, match="include cycle"):
        load_registry(tmp_path, builtin=False)


def test_variant_without_its_own_family_collides(tmp_path: Path) -> None:
    write_family(tmp_path, "base")
    (tmp_path / "copy.yaml").write_text("include: base.yaml\nseed: 2\n", encoding="utf-8")
    with pytest.raises(
        HarnessError,
        match="family 'base' is defined in both .*give the variant its own 'family:'",
    ):
        load_registry(tmp_path, builtin=False)


def test_a_tasks_dir_family_may_not_reuse_a_builtin_name(tmp_path: Path) -> None:
    write_family(tmp_path, "skillmix")
    with pytest.raises(HarnessError, match="family 'skillmix' is defined in both"):
        load_registry(tmp_path)


def test_tasks_dir_variant_can_include_a_builtin_family(tmp_path: Path) -> None:
    path = tmp_path / "mine.yaml"
    path.write_text("include: skillmix.yaml\nfamily: mine\ncombinations: 7\n", encoding="utf-8")
    config = read_family_file(path)
    assert config["catalog"] == (BUILTIN_TASKS_DIR / "catalog").resolve()
    assert (config["family"], config["combinations"], config["seed"]) == ("mine", 7, 13)
    registry = load_registry(tmp_path)
    assert registry.get("mine-k2-train").n_combinations == 7 and "skillmix-k2-train" in registry


def test_unknown_task_suggests_close_names() -> None:
    with pytest.raises(HarnessError) as error:
        fixture_registry().get("fixture-k3-heldot")
    message = str(error.value)
    assert "fixture-k3-heldout" in message and "harness tasks list" in message


@pytest.mark.parametrize(
    "name, expected",
    [
        ("skillmix-k9-train", "task family skillmix has k = 1..5 and splits train, heldout, all"),
        ("skillmix-k0-heldout", "task family skillmix has k = 1..5"),
        ("skillmix-k2-test", "task family skillmix has k = 1..5 and splits train, heldout, all"),
        ("skillmix-small-k6-all", "task family skillmix-small has k = 1..5"),
    ],
)
def test_an_unknown_k_or_split_of_a_known_family_says_which_there_are(name: str, expected: str) -> None:
    with pytest.raises(HarnessError, match=re.escape(expected)):
        load_registry().get(name)


def test_skills_and_topics_replace_every_catalog() -> None:
    registry = load_registry(
        FIXTURE_TASKS,
        SKILLMIX_FIXTURE / "skills.csv",
        SKILLMIX_FIXTURE / "topics.txt",
        builtin=False,
    )
    task = registry.get("fixture-k2-all")
    assert task.catalog.format == "skillmix" and task.supported
    assert {s for c in task.combinations() for s in c.skills} <= {
        "metaphor",
        "red herring",
        "modus ponens",
        "folk physics",
        "buoyancy",
    }
    train = registry.get("fixture-k2-train")
    assert not train.supported
    with pytest.raises(HarnessError, match="fixture-k2-train.*use the '-all' tasks"):
        train.combinations()
    with pytest.raises(HarnessError, match=r"C\(5, 5\) skill sets x 4 topics"):
        registry.get("fixture-k5-all").combinations()


def test_skills_without_topics_is_an_error() -> None:
    with pytest.raises(HarnessError, match="give --skills and --topics together"):
        load_registry(skills_file=SKILLMIX_FIXTURE / "skills.csv", builtin=False)
    with pytest.raises(HarnessError, match="only applies with --skills"):
        load_registry(heldout_categories=["logical"], builtin=False)


def test_public_skillmix_sample_runs_the_all_tasks(reference_dir: Path) -> None:
    registry = load_registry(
        skills_file=reference_dir / "skillmix-public-skills.csv",
        topics_file=reference_dir / "skillmix-public-topics.txt",
    )
    combinations = registry.get("skillmix-k3-all").combinations()
    assert len(combinations) == 100
    assert all(len(set(c.skills)) == 3 for c in combinations)


def invoke(*args: str) -> str:
    result = CliRunner().invoke(tasks_cli, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def test_cli_list_shows_split_sizes() -> None:
    output = invoke("list")
    catalog = load_registry().get("skillmix-k1-all").catalog
    for split in SPLITS:
        row = next(line for line in output.splitlines() if line.startswith(f"skillmix-k3-{split} "))
        cells = row.split()
        assert cells[1:5] == ["skillmix", "1", "3", split]
        assert cells[5:] == [
            str(len(catalog.skills_in(split))),
            str(len(catalog.topics_in(split))),
            "100",
        ]
    assert sum(line.startswith("skillmix-k") for line in output.splitlines()) == 15


def test_cli_list_marks_splits_a_catalog_cannot_form() -> None:
    output = invoke(
        "list",
        "--skills",
        str(SKILLMIX_FIXTURE / "skills.csv"),
        "--topics",
        str(SKILLMIX_FIXTURE / "topics.txt"),
    )
    train_row = next(line for line in output.splitlines() if line.startswith("skillmix-k2-train "))
    all_row = next(line for line in output.splitlines() if line.startswith("skillmix-k2-all "))
    assert "n/a" in train_row and all_row.split()[5:7] == ["5", "4"]
    assert "only the -all tasks can run" in output


def test_cli_show_json_is_stable_and_complete() -> None:
    first = invoke("show", "skillmix-k4-heldout", "--json")
    assert invoke("show", "skillmix-k4-heldout", "--json") == first
    document = json.loads(first)
    assert document["task"]["name"] == "skillmix-k4-heldout"
    combinations = document["combinations"]
    assert len(combinations) == document["task"]["combinations"] == 100
    assert [c["index"] for c in combinations] == list(range(100))
    assert all(isinstance(c["skills"], list) and len(c["skills"]) == 4 and c["topic"] for c in combinations)


def test_cli_show_prints_config_and_first_combinations(tmp_path: Path) -> None:
    output = invoke("show", "fixture-k2-train", "--tasks-dir", str(FIXTURE_TASKS))
    config_text, table = output.split("\nfirst 5 of 12 combinations:\n")
    assert yaml.safe_load(config_text)["name"] == "fixture-k2-train"
    first = fixture_registry().get("fixture-k2-train").combinations()[:5]
    rows = table.strip().splitlines()[2:]
    assert len(rows) == 5
    for row, combination in zip(rows, first, strict=True):
        assert ", ".join(combination.skills) in row and row.rstrip().endswith(combination.topic)


def test_cli_unknown_task_raises_harness_error() -> None:
    result = CliRunner().invoke(tasks_cli, ["show", "skillmix-k9-all"])
    assert isinstance(result.exception, HarnessError)
    assert "harness tasks list" in str(result.exception)
