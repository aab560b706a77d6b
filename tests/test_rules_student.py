"""The rule world's student: a tokenizer fitted to rule-world text, in a model vLLM's CPU backend can serve."""

from __future__ import annotations

import json
import random
from pathlib import Path

from harness.core.registry import load_registry
from harness.core.tinymodel import RULES_STUDENT, build_tokenizer
from harness.rules_student import FAMILY, build_rules_student, rules_corpus
from harness.rules_teacher import write_text
from judges.rules import rule_world


def test_the_corpus_is_training_split_text_only() -> None:
    corpus = rules_corpus(rows_per_k=5)
    assert len(corpus) == 3 * 5 * 3  # per k: request, teacher answer, turn-2 request
    heldout = load_registry().get(f"{FAMILY}-k1-heldout")
    for skill in heldout.skills():
        assert all(skill.name not in text for text in corpus), skill.name


def test_a_rule_world_tokenizer_writes_teacher_text_in_fewer_tokens() -> None:
    task = load_registry().get(f"{FAMILY}-k3-train")
    world = rule_world(task.catalog)
    rng = random.Random(0)
    texts = [write_text(world, c.skills, c.topic, rng) for c in task.combinations()[:30]]
    fitted = build_tokenizer(RULES_STUDENT.vocab_size, rules_corpus(rows_per_k=100))
    general = build_tokenizer(RULES_STUDENT.vocab_size)
    fitted_tokens = sum(len(fitted(text)["input_ids"]) for text in texts)
    general_tokens = sum(len(general(text)["input_ids"]) for text in texts)
    assert fitted_tokens < 0.9 * general_tokens, (fitted_tokens, general_tokens)


def test_the_student_is_a_servable_chat_model(tmp_path: Path) -> None:
    directory = build_rules_student(tmp_path / "student")
    config = json.loads((directory / "config.json").read_text())
    assert config["head_dim"] >= 64  # vLLM's CPU attention rejects smaller heads
    assert (
        config["hidden_size"] == RULES_STUDENT.hidden_size and config["num_hidden_layers"] == RULES_STUDENT.num_layers
    )
    assert config["vocab_size"] <= RULES_STUDENT.vocab_size + 4
    template = (directory / "chat_template.jinja").read_text()
    assert "<|im_start|>" in template
