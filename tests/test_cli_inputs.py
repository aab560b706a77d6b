"""Files and streams a user hands the command line: a bad one is an ``error:`` line, never a traceback.

Each case goes through ``harness.cli.main`` as the console script does, so an exception
other than HarnessError fails the test with the traceback a user would have seen.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cli_process import main

REPLY = "1. Skill: metaphor\nFine.\nPoint earned: 1\nGrade: 1\n"


def test_parse_grade_reads_a_reply_from_stdin(capsys, monkeypatch) -> None:
    result = main(
        ["parse-grade", "--skills", "metaphor", "--topic", "tides"], capsys, monkeypatch, stdin=REPLY.encode()
    )
    assert result.code == 0, result.err
    assert json.loads(result.out)["points"][0] == 1


@pytest.mark.parametrize(
    "stdin",
    [b"Point earned: \xff\xfe 1\n", b"\x80" * 50, "Punkt erhalten: ü".encode("latin-1")],
    ids=["invalid bytes", "a lone continuation byte", "latin-1"],
)
def test_parse_grade_on_bytes_that_are_not_utf8_is_an_error(capsys, monkeypatch, stdin: bytes) -> None:
    result = main(["parse-grade", "--skills", "metaphor", "--topic", "tides"], capsys, monkeypatch, stdin=stdin)
    assert result.code == 2, result.err
    assert result.err.startswith("error: stdin is not UTF-8 text") and "iconv" in result.err


BAD_CSV = {
    "latin-1": "item,criterion,rater,label\nä,skill,a,1\n".encode("latin-1"),
    "binary": b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR",
    "a field over the CSV size limit": b"item,criterion,rater,label\n" + b"a" * 200_000 + b",skill,a,1\n",
    "unclosed quote at the end": b'item,criterion,rater,label\na,skill,"a,1',
}


@pytest.mark.parametrize("content", BAD_CSV.values(), ids=BAD_CSV.keys())
def test_agreement_from_a_csv_that_is_not_utf8_text_is_an_error(
    tmp_path: Path, capsys, monkeypatch, content: bytes
) -> None:
    path = tmp_path / "ratings.csv"
    path.write_bytes(content)
    result = main(["agreement", "--from-csv", path], capsys, monkeypatch)
    assert result.code == 2, result.err
    assert result.err.startswith(f"error: {path}"), result.err


@pytest.mark.parametrize("content", BAD_CSV.values(), ids=BAD_CSV.keys())
def test_a_label_sheet_that_is_not_utf8_text_is_an_error(tmp_path: Path, capsys, monkeypatch, content: bytes) -> None:
    from harness.core.errors import HarnessError
    from judges.labels import read_label_sheet

    path = tmp_path / "labels.csv"
    path.write_bytes(content.replace(b"item,criterion,rater,label", b"id,k,item_1"))
    with pytest.raises(HarnessError, match=str(path)):
        read_label_sheet(path, None)
