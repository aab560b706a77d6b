"""The warning when vLLM would serve a fine-tuned student with another chat template than it was trained with."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.chat_template import chat_template_warning, served_chat_template
from harness.core.tinymodel import CHAT_TEMPLATE, TinyModelSpec, build_tiny_model
from trainers.metadata import METADATA_FILE, chat_template_hash


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("m") / "tiny", TinyModelSpec(seed=4))


def write_metadata(model: Path, template: str) -> None:
    (model / METADATA_FILE).write_text(json.dumps({"chat_template_sha256": chat_template_hash(template)}))


def test_no_metadata_means_no_warning(model: Path) -> None:
    (model / METADATA_FILE).unlink(missing_ok=True)
    assert chat_template_warning(model) is None


def test_same_template_is_silent_and_a_changed_one_warns(model: Path) -> None:
    assert served_chat_template(model) == CHAT_TEMPLATE
    write_metadata(model, CHAT_TEMPLATE)
    assert chat_template_warning(model) is None
    write_metadata(model, CHAT_TEMPLATE.replace("<|im_start|>", "[INST]"))
    warning = chat_template_warning(model)
    assert warning is not None and "differs from the one it was trained with" in warning


def test_a_chat_template_argument_to_vllm_is_what_counts(model: Path, tmp_path: Path) -> None:
    write_metadata(model, CHAT_TEMPLATE)
    other = tmp_path / "other.jinja"
    other.write_text("{% for m in messages %}{{ m['content'] }}{% endfor %}")
    assert chat_template_warning(model, ["--chat-template", str(other)]) is not None
    same = tmp_path / "same.jinja"
    same.write_text(CHAT_TEMPLATE)
    assert chat_template_warning(model, [f"--chat-template={same}"]) is None
