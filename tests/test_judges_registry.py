"""The judge registry: built-in configs, resolving --judge arguments, and clear errors for bad YAML."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from click.testing import CliRunner

from harness.core.errors import HarnessError
from judges.registry import (
    BUILTIN_JUDGES_DIR,
    JudgeConfig,
    check_judge_model,
    load_judges,
    read_judge_file,
    resolve_judge,
)


@pytest.fixture(autouse=True)
def no_user_judges(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SKILLMIX_JUDGES_DIR", raising=False)


def model_dir(path: Path) -> Path:
    path.mkdir(parents=True)
    (path / "config.json").write_text("{}")
    return path


def test_every_builtin_config_loads_and_validates() -> None:
    files = sorted(BUILTIN_JUDGES_DIR.glob("*.yaml"))
    judges = load_judges()
    assert len(files) >= 3 and len(judges) == len(files)
    for path in files:
        spec = read_judge_file(path)
        assert judges[spec.name] == spec
        assert spec.style in (None, "table", "items")
        assert spec.description
    big = judges["llama-3.1-70b-instruct"]
    assert big.vllm_args[big.vllm_args.index("--tensor-parallel-size") + 1] == "8"
    assert Path(big.model).is_absolute()
    gpt = judges["gpt-4o"]
    assert gpt.model == "openai:gpt-4o" and gpt.style == "table" and gpt.vllm_args == ()
    small = [spec for spec in judges.values() if "--tensor-parallel-size" not in spec.vllm_args]
    assert any(not spec.model.startswith("openai:") for spec in small)  # a one-GPU local judge


def test_resolve_by_registered_name() -> None:
    config = load_judges()["gpt-4o"]
    judge = resolve_judge("gpt-4o")
    assert (judge.name, judge.style, judge.sampling, judge.description) == (
        config.name, config.style, config.sampling, config.description
    )  # fmt: skip
    assert judge.model.kind == "openai" and judge.model.source == ("gpt-4o",) and judge.model.name == "gpt-4o"
    assert judge.model.concurrency == config.max_concurrency == 8
    renamed = resolve_judge("second=gpt-4o")
    assert renamed.name == renamed.model.name == "second"


def test_resolve_a_local_path(tmp_path: Path) -> None:
    path = model_dir(tmp_path / "models" / "my-judge-7b")
    judge = resolve_judge(str(path))
    assert judge.name == "my-judge-7b" and judge.model.path == path.resolve() and judge.model.kind == "local"
    assert judge.style is None and not judge.constrained  # the task's grading style
    assert judge.model.concurrency == 64


def test_resolve_openai_name() -> None:
    judge = resolve_judge("openai:gpt-4-turbo")
    assert judge.name == "gpt-4-turbo" and judge.model.reference == "openai:gpt-4-turbo"
    assert judge.style == "table" and judge.model.concurrency == 8
    with pytest.raises(HarnessError, match="model name"):
        resolve_judge("openai:")
    with pytest.raises(HarnessError, match="OpenAI API"):
        judge.constrain()


def test_resolve_urls_and_replicas() -> None:
    one = resolve_judge("http://10.0.0.5:8000/v1")
    assert one.name == "judge@10.0.0.5:8000" and one.style is None
    assert one.model.source == ("http://10.0.0.5:8000/v1",)
    two = resolve_judge("http://10.0.0.5:8000/v1, http://10.0.0.6:8000/v1")
    assert two.name == "judge@10.0.0.5:8000"
    assert two.model.source == ("http://10.0.0.5:8000/v1", "http://10.0.0.6:8000/v1")
    with pytest.raises(HarnessError, match="mixes URLs"):
        resolve_judge("http://10.0.0.5:8000/v1,/models/x")


def test_unknown_argument_names_the_choices(tmp_path: Path) -> None:
    with pytest.raises(HarnessError, match="not a registered judge.*gpt-4o") as error:
        resolve_judge(str(tmp_path / "no-such-model"))
    assert "openai:NAME" in str(error.value)


def test_user_directory_adds_and_replaces_judges(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    user = tmp_path / "judges"
    user.mkdir()
    weights = model_dir(user / "weights" / "llama70b")
    (user / "override.yaml").write_text(
        "name: llama-3.1-70b-instruct\nmodel: weights/llama70b\nvllm_args: [--tensor-parallel-size, 4]\n"
    )
    (user / "local.yml").write_text("model: /srv/judge\nstyle: table\nsampling: {max_tokens: 300}\n")
    judges = load_judges(user)
    replaced = judges["llama-3.1-70b-instruct"]
    assert replaced.model == str(weights.resolve())  # relative to the YAML file
    assert replaced.vllm_args == ("--tensor-parallel-size", "4")
    assert judges["local"].style == "table"  # name defaults to the file stem
    assert "gpt-4o" in judges
    # The same directory through the environment, as `harness run --judge NAME` would see it.
    monkeypatch.setenv("SKILLMIX_JUDGES_DIR", str(user))
    assert load_judges()["local"].model == "/srv/judge"
    with pytest.raises(HarnessError, match="judge local: no model at /srv/judge"):
        resolve_judge("local")
    assert resolve_judge("llama-3.1-70b-instruct").model.path == weights.resolve()


def test_judge_sampling_overrides_the_task() -> None:
    task = {"temperature": 0.0, "max_tokens": 512}
    judge = resolve_judge("openai:x")
    assert replace(judge, sampling={"max_tokens": 1024, "top_p": 0.9}).sampling_for(task) == {
        "temperature": 0.0, "max_tokens": 1024, "top_p": 0.9
    }  # fmt: skip
    assert judge.sampling_for(task) == task


def test_missing_weights_name_the_judge() -> None:
    config = JudgeConfig(name="big", model="/nowhere/at/all")
    with pytest.raises(HarnessError, match=r"judge big: no model at /nowhere/at/all.*big\.yaml"):
        check_judge_model(config)
    check_judge_model(JudgeConfig(name="api", model="openai:gpt-4o"))
    check_judge_model(JudgeConfig(name="url", model="http://127.0.0.1:9/v1"))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("model: [unclosed\n", r"bad\.yaml:\d+: not valid YAML"),
        ("- just\n- a list\n", "must be a mapping"),
        ("style: items\n", "'model' is required"),
        ("model: openai:x\ntemprature: 0\n", "unknown key.*temprature"),
        ("model: openai:x\nstyle: essay\n", "'style': unknown grading style 'essay'; use one of: table, items"),
        ("model: openai:x\nsampling: {temperature: 9}\n", "temperature must be between"),
        ("model: openai:x\nsampling: {seed: 1}\n", "unknown key.*seed"),
        ("model: openai:x\nvllm_args: --tensor-parallel-size 8\n", "'vllm_args' must be a list"),
        ("model: openai:x\nmax_concurrency: 0\n", "'max_concurrency'"),
        ("name: has space\nmodel: openai:x\n", "'name' must be"),
    ],
)
def test_bad_judge_file_names_the_file(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(HarnessError, match=message) as error:
        load_judges(tmp_path)
    assert str(path) in str(error.value)


def test_two_files_with_one_name_are_an_error(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text("name: same\nmodel: openai:x\n")
    (tmp_path / "b.yaml").write_text("name: same\nmodel: openai:y\n")
    with pytest.raises(HarnessError, match="defined twice.*a.yaml.*b.yaml"):
        load_judges(tmp_path)


def test_missing_directory_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(HarnessError, match="not a directory"):
        load_judges(tmp_path / "nope")


def test_cli_lists_the_judges(tmp_path: Path) -> None:
    from harness.cli.judges import judges

    (tmp_path / "mine.yaml").write_text("model: openai:gpt-4o-mini\ndescription: my own\n")
    result = CliRunner().invoke(judges, ["list", "--judges-dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    for name in ("llama-3.1-70b-instruct", "gpt-4o", "mine", "--tensor-parallel-size 8", "my own"):
        assert name in result.output
