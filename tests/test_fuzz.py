"""Every parser and reader of outside input, fed random bytes and random valid-looking input.

Each must give a result or a HarnessError whose message says what is wrong, never another
exception (which a user would see as a traceback): the judge-reply parsers in every style,
the CSV readers (ratings, label sheets, SKILL-MIX catalogs, reference result trees), the
task and judge YAML readers, and the handling of what an OpenAI-compatible server answers,
both the body reader and the client against a real HTTP server sending random bodies.

Hypothesis runs derandomized (the same examples every run) with a modest number of
examples and a deadline, so the file stays in the fast subset.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import string
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from raw_server import RawServer
from scripted_server import connected_model

from harness.core.catalog import load_skillmix_catalog
from harness.core.client import MalformedReply, ModelClient, RetryPolicy, SamplingParams, read_completion
from harness.core.connect import connect
from harness.core.errors import HarnessError
from harness.core.models import resolve_model
from harness.core.registry import load_registry
from harness.core.taskfile import KNOWN_KEYS, read_family_file
from harness.core.vllm import ServingOptions
from harness.skillmix_tree import TreeReader
from judges.agreement import CSV_COLUMNS, read_ratings_csv
from judges.labels import read_label_sheet
from judges.registry import JUDGE_KEYS, read_judge_file
from judges.rubric import rubric_lines
from judges.styles import STYLES, parse_grade, read_reply

FUZZ = settings(
    max_examples=50,
    deadline=timedelta(seconds=3),  # generous: the machine is shared; a hang still fails
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
T = TypeVar("T")

SKILL_NAMES = [skill.name for skill in load_registry().get("skillmix-k1-all").skills()][:40]
TOPICS = ["tides", "a bakery", "chess", "Sewing (by hand)"]


def result_or_harness_error(call: Callable[[], T]) -> T | HarnessError:
    """What ``call`` returns, or the HarnessError it raises (with a message); anything else escapes."""
    try:
        return call()
    except HarnessError as error:
        assert str(error).strip(), "a HarnessError must say what is wrong"
        return error


# -- strategies ------------------------------------------------------------------------------
skills_strategy = st.lists(st.sampled_from(SKILL_NAMES), min_size=1, max_size=5, unique=True)
short_text = st.text(max_size=40)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=12,
)
yaml_values = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 200) | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20) | st.sampled_from(["v1", "items", "table", "train", "heldout", "all", "catalog", "x"]),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4),
    max_leaves=10,
)  # fmt: skip
point_values = st.sampled_from(["0", "1", "0.5", "1/1", "0/1", "one", "yes", "-1", "2", "", "N/A", "1.0", "½"])


@st.composite
def valid_looking_reply(draw: st.DrawFn, skills: list[str], topic: str) -> str:
    """A judge reply in one of the styles, with random labels, values, bold, gaps and extra text."""
    labels = [*rubric_lines(skills, topic), *skills, topic, "Topic", "Makes sense", "Sentences", "Total"]
    rows = draw(st.lists(st.tuples(st.sampled_from(labels) | short_text, point_values), max_size=len(skills) + 5))
    bold = draw(st.booleans())
    if draw(st.sampled_from(["table", "items"])) == "table":
        lines = ["| Criteria | Points Earned |", "|---|---|"]
        lines += [f"| {'**' + label + '**' if bold else label} | {value} |" for label, value in rows]
        lines.append(f"| Total Points Earned | {draw(point_values)} |")
    else:
        lines = []
        for number, (label, value) in enumerate(rows, start=1):
            lines += [f"{number}. {'**' + label + '**' if bold else label}", draw(short_text), f"Point earned: {value}"]
        lines.append(f"Grade: {draw(point_values)}")
    noise = draw(st.lists(short_text, max_size=3))
    return "\n".join([*noise[:1], *lines, *noise[1:]])


def csv_text(rows: list[list[str]]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer).writerows(rows)
    return buffer.getvalue()


# -- judge replies -----------------------------------------------------------------------------
@FUZZ
@given(reply=st.text(max_size=600), skills=skills_strategy, style=st.sampled_from([None, *STYLES]))
def test_reply_parsers_read_any_text(reply: str, skills: list[str], style: str | None) -> None:
    reading = read_reply(reply, skills, "tides", style)
    assert len(reading.score.points) == len(skills) + 3
    assert all(value is None or isinstance(value, float | int) for value in reading.score.points)


@FUZZ
@given(data=st.data(), skills=skills_strategy, topic=st.sampled_from(TOPICS), style=st.sampled_from([None, *STYLES]))
def test_reply_parsers_read_valid_looking_replies(
    data: st.DataObject, skills: list[str], topic: str, style: str | None
) -> None:
    reply = data.draw(valid_looking_reply(skills, topic))
    assert len(parse_grade(reply, skills, topic, style)) == len(skills) + 3


@FUZZ
@given(
    skills=skills_strategy,
    topic=st.sampled_from(TOPICS),
    data=st.data(),
    justification=st.text(alphabet=string.ascii_letters + " ,.;'()-", max_size=120),
)
def test_a_reply_in_the_constrained_format_reads_back_exactly(skills: list[str], topic: str, data: st.DataObject,
                                                              justification: str) -> None:  # fmt: skip
    # The format vLLM judges are decoded under: any justification line, the points come back as written.
    lines = rubric_lines(skills, topic)
    points = data.draw(st.lists(st.sampled_from([0, 1]), min_size=len(lines), max_size=len(lines)))
    reply = (
        "".join(
            f"{number}. {line}\n{justification}\nPoint earned: {point}\n"
            for number, (line, point) in enumerate(zip(lines, points, strict=True), start=1)
        )
        + f"Grade: {sum(points)}"
    )
    assert parse_grade(reply, skills, topic, "items") == points


# -- CSV readers --------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def scratch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


cells = st.text(max_size=12) | st.sampled_from(["0", "1", "", " 1 ", "2", "a", "skill", "topic"])


@FUZZ
@given(content=st.binary(max_size=600) | st.text(max_size=600).map(str.encode))
def test_ratings_csv_reader_on_random_bytes(scratch: Path, content: bytes) -> None:
    path = scratch / "ratings.csv"
    path.write_bytes(content)
    result_or_harness_error(lambda: read_ratings_csv(path))


@FUZZ
@given(rows=st.lists(st.lists(cells, min_size=0, max_size=6), max_size=12), header_first=st.booleans())
def test_ratings_csv_reader_on_valid_looking_files(scratch: Path, rows: list[list[str]], header_first: bool) -> None:
    path = scratch / "ratings.csv"
    path.write_text(csv_text(([list(CSV_COLUMNS)] if header_first else []) + rows), encoding="utf-8")
    ratings = result_or_harness_error(lambda: read_ratings_csv(path))
    if not isinstance(ratings, HarnessError):
        assert all(rating.label in (0, 1) for rating in ratings)


@FUZZ
@given(
    content=st.binary(max_size=600),
    rows=st.lists(st.lists(cells, max_size=7), max_size=10),
    header=st.lists(st.sampled_from(["id", "k", "item_1", "item_2", "item_3", "item_4", "item_9", "comment", "x"]), max_size=7),
    random_bytes=st.booleans(),
)  # fmt: skip
def test_label_sheet_reader(
    scratch: Path, content: bytes, rows: list[list[str]], header: list[str], random_bytes: bool
) -> None:
    path = scratch / "labels.csv"
    path.write_bytes(content if random_bytes else csv_text([header, *rows]).encode())
    result_or_harness_error(lambda: read_label_sheet(path, None))


@FUZZ
@given(content=st.binary(max_size=600), rows=st.lists(st.lists(cells, min_size=3, max_size=7), max_size=8),
       random_bytes=st.booleans())  # fmt: skip
def test_skillmix_catalog_reader(scratch: Path, content: bytes, rows: list[list[str]], random_bytes: bool) -> None:
    skills, topics = scratch / "skills.csv", scratch / "topics.txt"
    header = ["category", "skill", "definition", "example", "comments", "status", "added by"]
    skills.write_bytes(content if random_bytes else csv_text([header, *rows]).encode())
    topics.write_text("tides\nchess\n", encoding="utf-8")
    result_or_harness_error(lambda: load_skillmix_catalog(skills, topics))


GENERATION_HEADER = ["k", "skills", "topic", "system prompt", "user_0", "assistant_0", "model_input_0", "text_0"]
GRADING_HEADER = ["k", "skills", "topic", "system prompt", "user_0", "assistant_0", "model_input_0", "score_0"]


@FUZZ
@given(
    generation=st.binary(max_size=500) | st.lists(st.lists(cells, min_size=8, max_size=8), max_size=5).map(
        lambda rows: csv_text([GENERATION_HEADER, *rows]).encode()
    ),
    grading=st.binary(max_size=500) | st.lists(st.lists(cells | st.just("1. metaphor\nPoint earned: 1"), min_size=8,
                                                        max_size=8), max_size=5).map(
        lambda rows: csv_text([GRADING_HEADER, *rows]).encode()
    ),
)  # fmt: skip
def test_reference_tree_reader(scratch: Path, generation: bytes, grading: bytes) -> None:
    root = scratch / "tree"
    answers = root / "k2_s1_vdefault_r1" / "student"
    graded = answers / "graded" / "by_gpt-4_on_text_0_1_gpt"
    graded.mkdir(parents=True, exist_ok=True)
    (answers / "records.csv").write_bytes(generation)
    (graded / "records.csv").write_bytes(grading)
    result_or_harness_error(lambda: TreeReader(root).read())


# -- YAML readers --------------------------------------------------------------------------------
@FUZZ
@given(
    content=st.binary(max_size=300),
    mapping=st.dictionaries(st.sampled_from(sorted(KNOWN_KEYS)) | st.text(max_size=8), yaml_values, max_size=8),
    random_bytes=st.booleans(),
)
def test_task_yaml_reader(scratch: Path, content: bytes, mapping: dict[str, Any], random_bytes: bool) -> None:
    path = scratch / "family.yaml"
    path.write_bytes(content if random_bytes else yaml.safe_dump(mapping, allow_unicode=True).encode())
    result_or_harness_error(lambda: read_family_file(path))


@FUZZ
@given(
    content=st.binary(max_size=300),
    mapping=st.dictionaries(st.sampled_from(JUDGE_KEYS) | st.text(max_size=8), yaml_values, max_size=6),
    random_bytes=st.booleans(),
)
def test_judge_yaml_reader(scratch: Path, content: bytes, mapping: dict[str, Any], random_bytes: bool) -> None:
    path = scratch / "judge.yaml"
    path.write_bytes(content if random_bytes else yaml.safe_dump(mapping, allow_unicode=True).encode())
    result_or_harness_error(lambda: read_judge_file(path))


# -- what an OpenAI-compatible server answers -------------------------------------------------------------
@st.composite
def completion_like(draw: st.DrawFn) -> bytes:
    """A chat-completion body whose parts may be missing or of the wrong type."""
    message = draw(
        st.dictionaries(st.sampled_from(["role", "content"]), json_values | st.text(max_size=30), max_size=2)
    )
    choice = draw(st.dictionaries(st.sampled_from(["index", "message", "finish_reason"]),
                                  json_values | st.just(message) | st.sampled_from(["stop", "length"]), max_size=3))  # fmt: skip
    choices = draw(st.lists(st.just(choice) | json_values, max_size=2))
    body = draw(
        st.dictionaries(
            st.sampled_from(["id", "object", "choices", "error"]), json_values | st.just(choices), max_size=4
        )
    )
    return json.dumps(body).encode()


bodies = st.binary(max_size=300) | completion_like() | json_values.map(lambda value: json.dumps(value).encode())


@FUZZ
@given(body=bodies)
def test_completion_body_reader(body: bytes) -> None:
    try:
        text, finish_reason = read_completion(body)
    except MalformedReply as error:
        assert str(error)
        return
    assert isinstance(text, str) and (finish_reason is None or isinstance(finish_reason, str))


class Answering:
    """A real HTTP server that answers whatever the running example put in ``status`` and ``body``,
    and one client of it on one event loop (making a client per example would dominate the time)."""

    def __init__(self) -> None:
        self.status, self.body = 200, b""
        self.server = RawServer(lambda method, path, number: (self.status, self.body))
        self.loop = asyncio.new_event_loop()
        self.client = ModelClient(connected_model("judge", "raw@1", (self.server.endpoint,)), None,
                                  RetryPolicy(max_retries=0, timeout=10))  # fmt: skip

    def ask(self) -> object:
        try:
            return self.loop.run_until_complete(self.client.chat([{"role": "user", "content": "x"}], SamplingParams()))
        except HarnessError as error:
            assert str(error).strip()
            return error


@pytest.fixture(scope="module")
def answering() -> Answering:
    answering = Answering()
    with answering.server:
        yield answering
        answering.loop.run_until_complete(answering.client.aclose())
        answering.loop.close()


@FUZZ
@given(body=bodies, status=st.sampled_from([200, 200, 200, 201, 400, 404, 422, 500, 503]))
def test_client_against_a_server_sending_random_bodies(answering: Answering, body: bytes, status: int) -> None:
    answering.status, answering.body = status, body
    outcome = answering.ask()
    assert isinstance(outcome, HarnessError) or isinstance(outcome.text, str)


@FUZZ
@given(body=st.binary(max_size=200) | json_values.map(lambda value: json.dumps(value).encode())
       | st.lists(st.dictionaries(st.sampled_from(["id", "root", "object"]), json_values, max_size=3), max_size=2).map(
           lambda models: json.dumps({"data": models}).encode()),
       status=st.sampled_from([200, 200, 401, 404, 500]))  # fmt: skip
def test_attaching_to_a_server_whose_model_list_is_random(answering: Answering, body: bytes, status: int) -> None:
    answering.status, answering.body = status, body
    model = resolve_model(answering.server.base_url, "judge")

    def attach() -> str:
        with connect([model], ServingOptions()) as clients:
            return clients[model.name].model.identity

    identity = result_or_harness_error(attach)
    assert isinstance(identity, HarnessError) or identity.startswith("served:")
