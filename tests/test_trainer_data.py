"""Unit tests of the SFT recipe's pure parts: config, DeepSpeed config, schedule, labels, packing, data."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from harness.core.errors import HarnessError
from trainers.config import CONFIG_DIR, TrainingConfig, check_paths, load_config
from trainers.data import IGNORE_INDEX, TokenizedExample, collate_padded, encode_conversation
from trainers.dataset import load_conversations, tokenize_conversations
from trainers.deepspeed_config import batch_layout, build_deepspeed_config
from trainers.metadata import chat_template_hash, data_fingerprint
from trainers.packing import (
    choose_packing,
    collate_packed,
    pack_rows,
    packing_row_length,
    packing_separation_error,
)
from trainers.schedule import BatchPlan, learning_rate

REPO = Path(__file__).resolve().parents[1]
TOPICS = ("gardening", "sailing", "chess", "baking", "astronomy", "cycling", "jazz", "pottery")


def write_skillmix_dataset(directory: Path, n_rows: int = 32) -> Path:
    """A SKILL-MIX-shaped training set: a request per row and a short, highly repetitive answer.

    The answers repeat one pattern per topic, so even a random 2-layer model learns them within a
    few dozen steps; k cycles through 1, 2, 3.
    """
    import datasets

    rows = []
    for index in range(n_rows):
        topic, k = TOPICS[index % len(TOPICS)], index % 3 + 1
        rows.append(
            {
                "messages": [
                    {"role": "user", "content": f"Write a short text about {topic} that shows {k} skills."},
                    {"role": "assistant", "content": f"Answer: {topic} is fun. {topic} is fun. {topic} is fun."},
                ],
                "k": k,
            }
        )
    datasets.Dataset.from_list(rows).save_to_disk(str(directory))
    (directory / "provenance.json").write_text(json.dumps({"made_by": "tests"}) + "\n")
    return directory


@pytest.fixture(scope="module")
def tokenizer(tiny_models):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_models["student"])


@pytest.fixture(scope="module", params=["sdpa", "eager"])
def model(request, tiny_models):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(tiny_models["student"], attn_implementation=request.param).eval()


def conversation(user: str, assistant: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": user}, {"role": "assistant", "content": assistant}]


def labelled(example: TokenizedExample) -> list[int]:
    return [label for label in example.labels if label != IGNORE_INDEX]


# ---------------------------------------------------------------- config


def test_defaults_yaml_matches_builtin_defaults():
    # the YAML spells out the paper's settings; the dataclass defaults must say the same
    assert load_config(CONFIG_DIR / "defaults.yaml") == TrainingConfig()
    train = TrainingConfig().train
    assert (train.steps, train.global_batch_size, train.lr, train.warmup_steps, train.max_length) == (
        4000,
        64,
        2e-5,
        64,
        1024,
    )


@pytest.mark.parametrize("path", sorted(CONFIG_DIR.glob("*.yaml")), ids=lambda p: p.name)
def test_every_config_file_resolves(path):
    config = load_config(path)
    layout = batch_layout(config.train.global_batch_size, config.train.micro_batch_size, 1)
    ds_config = build_deepspeed_config(config, layout, bf16=True)
    assert ds_config["zero_optimization"]["stage"] == config.deepspeed.zero_stage
    if path.stem.endswith("_full"):
        assert Path(config.model.path).is_absolute(), "model configs point at local weights"
        assert config.train.steps == 4000 and config.train.lr == 2e-5  # paper settings


def test_overrides_set_nested_values_with_types():
    config = load_config(
        CONFIG_DIR / "tiny_cpu.yaml", ["train.steps=7", "train.lr=2e-5", "data.k=[1, 2]", "deepspeed.zero_stage=3"]
    )
    assert config.train.steps == 7
    assert config.train.lr == pytest.approx(2e-5)  # PyYAML reads 2e-5 as a string
    assert config.data.k == (1, 2)
    assert config.deepspeed.zero_stage == 3
    assert load_config(None, ["data.k=2"]).data.k == (2,)
    assert load_config(None, ["data.k=null"]).data.k is None
    assert "command line" in config.where("train.steps")


def test_unknown_key_names_the_file_and_line(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("output_dir: x\ntrain:\n  steps: 3\n  stepz: 4\n")
    with pytest.raises(HarnessError, match=r"train\.stepz.*bad\.yaml line 4"):
        load_config(path)


def test_wrong_type_says_where_it_was_set():
    with pytest.raises(HarnessError, match=r"train\.steps must be int.*command line"):
        load_config(None, ["train.steps=many"])
    with pytest.raises(HarnessError, match="multiple of"):
        load_config(None, ["train.global_batch_size=10", "train.micro_batch_size=4"])


def test_missing_model_path_says_how_to_fix():
    config = load_config(CONFIG_DIR / "llama2-13b-chat_full.yaml", ["model.path=/nonexistent/llama"])
    with pytest.raises(HarnessError, match=r"model\.path /nonexistent/llama does not exist.*model\.path="):
        check_paths(config)


def test_config_check_exits_2_with_message_and_no_traceback():
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "trainers.config",
            str(CONFIG_DIR / "mistral-7b-instruct-v0.2_full.yaml"),
            "model.path=/nonexistent/mistral",
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
    )
    assert result.returncode == 2
    assert "model.path /nonexistent/mistral does not exist" in result.stderr
    assert "Traceback" not in result.stderr


def test_recipe_exits_2_on_missing_model_path(capsys, tmp_path, monkeypatch):
    from trainers.sft import main

    monkeypatch.setenv("SKILLMIX_CACHE", str(tmp_path / "cache" / "responses.sqlite"))  # builtin:demo goes here

    code = main([str(CONFIG_DIR / "tiny_cpu.yaml"), "model.path=/nonexistent/tiny", f"output_dir={tmp_path}"])
    captured = capsys.readouterr()
    assert code == 2
    assert "error: model.path /nonexistent/tiny does not exist" in captured.err
    assert "Traceback" not in captured.err


# ---------------------------------------------------------------- DeepSpeed config and schedule


def test_deepspeed_config_is_explicit_and_follows_the_yaml():
    config = load_config(CONFIG_DIR / "llama2-13b-chat_full.yaml")
    layout = batch_layout(64, 2, 4)
    gpu = build_deepspeed_config(config, layout, bf16=True)
    cpu = build_deepspeed_config(config, layout, bf16=False)
    assert (gpu["train_batch_size"], gpu["train_micro_batch_size_per_gpu"], gpu["gradient_accumulation_steps"]) == (
        64,
        2,
        8,
    )
    assert gpu["bf16"] == {"enabled": True} and cpu["bf16"] == {"enabled": False}
    assert gpu["zero_optimization"]["stage"] == 3
    assert gpu["optimizer"]["params"]["lr"] == 2e-5 and gpu["optimizer"]["type"] == "Adam"
    assert "auto" not in json.dumps(gpu)


def test_template_may_not_set_what_the_yaml_owns(tmp_path):
    template = tmp_path / "mine.json"
    template.write_text(json.dumps({"zero_optimization": {"stage": 2}, "train_batch_size": 32}))
    config = load_config(None, [f"deepspeed.config={template}"])
    with pytest.raises(HarnessError, match="train_batch_size"):
        build_deepspeed_config(config, batch_layout(64, 4, 1), bf16=False)
    with pytest.raises(HarnessError, match="not a multiple"):
        batch_layout(64, 4, 3)


def test_learning_rate_warms_up_linearly_then_stays_constant():
    rates = [learning_rate(step, 2e-5, 64) for step in range(200)]
    assert rates[0] == pytest.approx(2e-5 / 64)
    assert rates[31] == pytest.approx(1e-5)
    assert rates[63] == rates[64] == rates[199] == pytest.approx(2e-5)
    assert all(a < b for a, b in zip(rates[:63], rates[1:64], strict=True))
    assert learning_rate(0, 1.0, 0) == 1.0


def test_batch_plan_splits_global_batches_over_ranks_and_epochs():
    plan = BatchPlan(n_examples=40, global_batch_size=8, micro_batch_size=2, world_size=2, seed=3)
    assert plan.accumulation_steps == 2
    seen = []
    for step in range(5):  # five global batches of 8 = exactly one epoch of 40
        batch = [i for rank in range(2) for micro in range(2) for i in plan.micro_batch(step, rank, micro)]
        assert len(batch) == 8
        seen.extend(batch)
    assert sorted(seen) == list(range(40))
    assert plan.micro_batch(2, 1, 0) == plan.micro_batch(2, 1, 0)  # a resumed run sees the same samples
    other_epoch = [i for rank in range(2) for micro in range(2) for i in plan.micro_batch(5, rank, micro)]
    assert other_epoch != seen[:8]  # each epoch is reshuffled
    # the same global batches whatever the number of ranks: losses stay comparable across world sizes
    single = BatchPlan(40, 8, 4, 1, 3)
    assert sorted(single.micro_batch(1, 0, 0) + single.micro_batch(1, 0, 1)) == sorted(
        i for rank in range(2) for micro in range(2) for i in plan.micro_batch(1, rank, micro)
    )


# ---------------------------------------------------------------- assistant-only labels


def test_chatml_labels_only_the_assistant_turn_and_its_end_of_turn(tokenizer):
    example = encode_conversation(tokenizer, conversation("Name a colour.", "Blue is calm."), max_length=256)
    end_of_turn = tokenizer.convert_tokens_to_ids("<|im_end|>")
    assert tokenizer.decode(labelled(example)) == "Blue is calm.<|im_end|>\n"
    assert end_of_turn in labelled(example)
    # the prompt, including the user's own <|im_end|> and the assistant header, is all -100
    first = next(i for i, label in enumerate(example.labels) if label != IGNORE_INDEX)
    assert tokenizer.decode(example.input_ids[:first]) == (
        "<|im_start|>user\nName a colour.<|im_end|>\n<|im_start|>assistant\n"
    )
    assert all(label == IGNORE_INDEX for label in example.labels[:first])
    assert end_of_turn in example.input_ids[:first]
    # labels that are kept are the token ids themselves
    assert all(label in (IGNORE_INDEX, token) for label, token in zip(example.labels, example.input_ids, strict=True))


def test_inst_style_template_labels_answer_and_eos(tokenizer):
    # shaped like Llama-2 / Mistral templates: BOS in the text, no generation prompt, EOS after each answer
    tokenizer = tokenizer.__class__.from_pretrained(tokenizer.name_or_path)
    tokenizer.chat_template = (
        "{{ bos_token }}{% for m in messages %}{% if m['role'] == 'user' %}{{ '[INST] ' + m['content'] + ' [/INST]' }}"
        "{% else %}{{ ' ' + m['content'] + ' ' + eos_token }}{% endif %}{% endfor %}"
    )
    messages = [*conversation("First?", "One."), *conversation("Second?", "Two.")]
    example = encode_conversation(tokenizer, messages, max_length=256)
    assert tokenizer.decode(labelled(example)) == " One. <|im_end|> Two. <|im_end|>"
    assert labelled(example).count(tokenizer.eos_token_id) == 2
    assert example.labels[0] == IGNORE_INDEX and example.input_ids[0] == tokenizer.bos_token_id
    user_text = tokenizer.decode(
        [token for token, label in zip(example.input_ids, example.labels, strict=True) if label == IGNORE_INDEX]
    )
    assert "[INST] Second? [/INST]" in user_text and "Two" not in user_text


def test_truncation_is_flagged_and_examples_without_labels_are_dropped(tokenizer, tmp_path):
    long = encode_conversation(tokenizer, conversation("word " * 50, "short"), max_length=20)
    assert long.truncated and len(long) == 20 and long.n_labels == 0
    short = encode_conversation(tokenizer, conversation("hi", "short"), max_length=64)
    assert not short.truncated and short.n_labels > 0


def test_template_that_rewrites_earlier_turns_is_rejected(tokenizer):
    tokenizer = tokenizer.__class__.from_pretrained(tokenizer.name_or_path)
    # renders a turn differently depending on whether it is the last one, so prefixes do not line up
    tokenizer.chat_template = (
        "{% for m in messages %}{% if loop.last %}{{ 'LAST ' }}{% endif %}{{ m['role'] + ': ' + m['content'] + '\n' }}"
        "{% endfor %}"
    )
    with pytest.raises(HarnessError, match="incrementally"):
        encode_conversation(tokenizer, conversation("a", "b"), max_length=64)


# ---------------------------------------------------------------- packing


def examples_of(tokenizer, lengths=(1, 3, 5, 7, 2)) -> list[TokenizedExample]:
    return [
        encode_conversation(
            tokenizer, conversation(f"Tell me about item {n}. " * n, "It is fine. " * (n + 1)), max_length=512
        )
        for n in lengths
    ]


def test_pack_rows_first_fit_and_collation_restarts_positions():
    examples = [TokenizedExample(tuple(range(10, 10 + n)), tuple(range(10, 10 + n))) for n in (5, 4, 3, 2)]
    assert pack_rows(examples, 8) == [[0, 2], [1, 3]]
    assert pack_rows(examples, None) == [[0, 1, 2, 3]]
    batch = collate_packed(examples, 8, pad_id=0)
    assert batch.input_ids.tolist() == [[10, 11, 12, 13, 14, 10, 11, 12], [10, 11, 12, 13, 10, 11, 0, 0]]
    assert batch.position_ids.tolist() == [[0, 1, 2, 3, 4, 0, 1, 2], [0, 1, 2, 3, 0, 1, 0, 1]]
    # the first token of every sample is never a target, so no sample learns to predict the next one's start
    assert batch.labels.tolist() == [[-100, 11, 12, 13, 14, -100, 11, 12], [-100, 11, 12, 13, -100, 11, -100, -100]]
    assert batch.attention_mask is None
    assert (batch.n_tokens, batch.n_positions) == (14, 16)  # the monitor's efficiency: 14 of 16 are samples
    padded = collate_padded(examples[:2], pad_id=0)
    assert padded.attention_mask.tolist() == [[1, 1, 1, 1, 1], [1, 1, 1, 1, 0]]
    assert (padded.n_tokens, padded.n_positions) == (9, 10)
    assert packing_row_length("flash_attention_2", 1024) is None  # flash reads packing from one row only
    assert packing_row_length("sdpa", 1024) == 1024


def test_packing_keeps_samples_separate(model, tokenizer):
    """Each sample's logits inside packed rows equal its logits computed alone; a packed row without
    position ids (plain causal attention over the row) does not, so the comparison can fail."""
    examples = examples_of(tokenizer)
    pad = tokenizer.pad_token_id
    for row_length in (max(len(e) for e in examples) + 10, None):  # several padded rows, and one long row
        batch = collate_packed(examples, row_length, pad)
        assert batch.input_ids.shape[0] < len(examples)  # really packed
        with torch.no_grad():
            packed = model(**batch.model_inputs(labels=False)).logits
            crossed = model(input_ids=batch.input_ids, use_cache=False).logits
        worst_crossed = 0.0
        for row_number, row in enumerate(pack_rows(examples, row_length)):
            offset = 0
            for index in row:
                ids = torch.tensor([examples[index].input_ids])
                with torch.no_grad():
                    alone = model(input_ids=ids, use_cache=False).logits[0]
                span = slice(offset, offset + len(examples[index]))
                torch.testing.assert_close(packed[row_number, span], alone, atol=1e-4, rtol=1e-4)
                worst_crossed = max(worst_crossed, float((crossed[row_number, span] - alone).abs().max()))
                offset += len(examples[index])
        assert worst_crossed > 0.05


def test_packed_loss_equals_padded_loss(model, tokenizer):
    examples = examples_of(tokenizer)
    packed = collate_packed(examples, 512, tokenizer.pad_token_id)
    padded = collate_padded(examples, tokenizer.pad_token_id)
    assert packed.n_labels == padded.n_labels == sum(e.n_labels for e in examples)
    with torch.no_grad():
        packed_loss = model(**packed.model_inputs()).loss
        padded_loss = model(**padded.model_inputs()).loss
    assert float(packed_loss) == pytest.approx(float(padded_loss), abs=1e-4)


def test_separation_check_tells_working_from_broken_packing(model, tokenizer):
    examples = examples_of(tokenizer, (2, 4, 6))
    with torch.no_grad():
        good = packing_separation_error(
            lambda b: model(**b.model_inputs(labels=False)).logits, examples, 512, tokenizer.pad_token_id
        )
        broken = packing_separation_error(
            lambda b: model(input_ids=b.input_ids, use_cache=False).logits, examples, 512, tokenizer.pad_token_id
        )
    assert good < 1e-4 < 0.05 < broken


def test_choose_packing_falls_back_to_padding_and_says_why(model, tokenizer):
    examples = examples_of(tokenizer, (2, 4, 6))
    pad = tokenizer.pad_token_id

    def working(batch):
        return model(**batch.model_inputs(labels=False)).logits

    def crossing(batch):  # a backend that ignores sample boundaries
        return model(input_ids=batch.input_ids, use_cache=False).logits

    with torch.no_grad():
        on = choose_packing(True, "sdpa", working, examples, 512, pad)
        broken = choose_packing(True, "sdpa", crossing, examples, 512, pad)
    assert on.enabled and on.row_length == 512 and "checked" in on.reason
    assert not broken.enabled and "failed the check" in broken.reason
    unknown = choose_packing(True, "paged_attention", working, examples, 512, pad)
    assert not unknown.enabled and "paged_attention" in unknown.reason
    assert choose_packing(False, "sdpa", working, examples, 512, pad).reason == "disabled by data.packing=false"


# ---------------------------------------------------------------- data and metadata


def test_load_conversations_selects_the_k_mix(tmp_path, tokenizer):
    data = write_skillmix_dataset(tmp_path / "data", n_rows=9)
    mix = load_conversations(data, [1, 2])
    assert mix.k_counts == {1: 3, 2: 3} and mix.total_rows == 9 and len(mix.messages) == 6
    assert mix.messages[0][1]["role"] == "assistant"
    assert len(load_conversations(data, None).messages) == 9
    with pytest.raises(HarnessError, match="no rows"):
        load_conversations(data, [5])
    training_set = tokenize_conversations(tokenizer, mix, max_length=256)
    assert len(training_set.examples) == 6 and training_set.n_truncated == 0


def test_load_conversations_requires_messages_and_k(tmp_path):
    import datasets

    datasets.Dataset.from_list([{"text": "hello"}]).save_to_disk(str(tmp_path / "plain"))
    with pytest.raises(HarnessError, match="lacks column"):
        load_conversations(tmp_path / "plain", None)


def test_fingerprints(tmp_path):
    data = write_skillmix_dataset(tmp_path / "data", n_rows=6)
    first = data_fingerprint(data, [1, 2, 3])
    assert first == data_fingerprint(data, (3, 2, 1))  # order of the selection does not matter
    assert first != data_fingerprint(data, [1, 2])
    (data / "provenance.json").write_text("{}")
    assert data_fingerprint(data, [1, 2, 3]) != first
    template = "{{ messages }}"
    assert chat_template_hash(template) == hashlib.sha256(template.encode()).hexdigest()
