"""Judge-reply parsers: a grading reply's raw text -> the judge's k + 3 rubric values.

Two reply styles are read:

* table style (GPT-4 class): a markdown table ``Criteria | Points Earned`` with
  one row per rubric item and a ``Total Points Earned`` row. When a reply has
  no pipe table at all, lines of the form ``<criterion>: <number>`` are read as
  rows instead.
* per-item style (open judges): one ``Point earned: <number>`` (or ``Point
  earned for <criterion>: <number>``) per item, ending in ``Grade: <total>``.

Each value found is matched to a rubric item by content, not by position: by
the skill's name (whole, before its parenthesis, or its parenthetical of two
words or more, ignoring case, punctuation and hyphens), the topic's name, or
keywords ("pertains"/"topic"/"relevant" for the topic, "makes sense"/
"coherent"/"clarity" for sense, "at most"/"sentences"/"length" for the
sentence limit). A table row or ``for <criterion>`` label is matched on its
earliest mention, then on word overlap with a skill name for paraphrases. A
bare ``Point earned`` is matched on the text since the previous one, preferring
headings (bold text or a line's first words) over mentions inside explanations.
Rows are matched by position only when there are exactly k + 3 of them and
every row whose label is informative already sits at its own position.

Values are never invented: an item with no value, a value that is not a number
in [0, 1], or two different values for one item gives None. Totals are never
items. Which parser reads a reply, and the fallback between them, is decided
in judges.styles.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from dataclasses import dataclass

from judges.rubric import RubricItem, Score

_NUMBER = r"(\d+(?:\.\d+)?|\.\d+)"
_VALUE = re.compile(rf"{_NUMBER}(?:\s*/\s*\d+(?:\.\d+)?)?")
_SEPARATOR_CELL = re.compile(r":?-{2,}:?|")
_MARKER = re.compile(
    r"points?\s+earned(?:\s+for\s+(?P<label>[^:\n]{1,200}?))?[*_ \t]*[:=][*_`'\" \t]*"
    rf"(?P<value>{_NUMBER}(?:\s*/\s*\d+(?:\.\d+)?)?)?",
    re.IGNORECASE,
)
_GRADE_LINE = re.compile(rf"(?<![A-Za-z])grade\s*[*_]*\s*[:=][*_ \t]*{_NUMBER}", re.IGNORECASE)
# The label runs greedily up to its first letter (that stretch holds none), then lazily: the same
# matches as a lazy prefix, but each line costs linear time instead of quadratic.
_LABEL_VALUE_LINE = re.compile(
    rf"^(?P<label>[^\n|A-Za-z]*[A-Za-z][^\n|]*?)[*_ \t]*[:=\-\u2013\u2014][*_`'\" \t]*"
    rf"(?P<value>{_NUMBER}(?:\s*/\s*\d+(?:\.\d+)?)?)"
    r"[ \t]*(?:points?|pts?)?[*_`'\". \t]*$",
    re.MULTILINE | re.IGNORECASE,
)
_BOLD = re.compile(r"\*\*(.+?)\*\*|__(.+?)__", re.DOTALL)
_LIST_MARKER = re.compile(r"\s*(?:[-*\u2022>#]+|\d+[.)]|\(\d+\))\s")
_LINE_START_JUNK = re.compile(r"[\s>#*\-\u2022\d.)(\[\"'\u201c\u2018`_]*")
_HEAD_WIDTH = 80


def _phrases(text: str) -> tuple[str, ...]:
    return tuple(phrase.strip() for phrase in text.split(","))


_TOPIC_WORDS = _phrases("pertains, pertain, pertaining, pertinent, relevance, relevant, topic")
_SENSE_WORDS = _phrases("makes sense, make sense, making sense, sense, sensible, coherent, coherence, clarity")
_SENTENCE_WORDS = _phrases("at most, sentences, sentence limit, sentence count, number of sentences, length")
# Words that say nothing about which skill a label names ("Correctly illustrates the skill of ...").
_STOP_WORDS = frozenset(
    _phrases(
        "a, an, the, of, to, in, on, for, and, or, with, by, is, its, it, text, student, s, answer, "
        "correctly, illustrates, illustrate, illustrated, illustration, contains, uses, use, shows, "
        "demonstrates, skill, skills, criterion, criteria"
    )
)
_TOTAL_WORDS = frozenset({"total", "overall", "grade", "score", "sum"})


@dataclass(frozen=True)
class GradeReading:
    """What a parser read from one reply. ``style`` is the parser that found
    rubric values, or None when no parser found any."""

    score: Score
    total: float | None
    style: str | None

    @property
    def found(self) -> int:
        """How many rubric values the reply gave."""
        return sum(value is not None for value in self.score.points)


@dataclass(frozen=True)
class _Alias:
    item: int
    pattern: re.Pattern[str]
    weak: bool  # a bare topic name: the answer's subject, so often mentioned in passing


@dataclass(frozen=True)
class _Mention:
    item: int
    start: int
    end: int
    weak: bool


@dataclass(frozen=True)
class _Entry:
    item: int | None  # None: its label named no rubric item
    value: float | None


class _FoldTable(dict):
    """str.translate table for ``_fold``, filled one character at a time as characters are met."""

    def __missing__(self, code: int) -> str:
        char = chr(code)
        folded = (low if len(low := char.lower()) == 1 else char) if char.isalnum() else " "
        self[code] = folded
        return folded


_FOLD_TABLE = _FoldTable()


def _fold(text: str) -> str:
    """Lower-case, every non-alphanumeric char -> space; keeps positions aligned with ``text``."""
    return text.translate(_FOLD_TABLE)


def _words(text: str) -> list[str]:
    return _fold(text).split()


def _phrase(words: Sequence[str]) -> re.Pattern[str]:
    """The words as a whole-word phrase. The pattern opens with the first word and checks the
    character before it afterwards, so the regex engine can jump between occurrences of that word."""
    first = re.escape(words[0])
    return re.compile(
        first + rf"(?<![^\W_]{first})" + "".join(r"\s+" + re.escape(word) for word in words[1:]) + r"(?![^\W_])"
    )


def _aliases(items: Sequence[RubricItem]) -> tuple[_Alias, ...]:
    return _rubric_aliases(tuple(items))


@functools.lru_cache(maxsize=1024)  # a run grades each rubric many times
def _rubric_aliases(items: tuple[RubricItem, ...]) -> tuple[_Alias, ...]:
    aliases: list[_Alias] = []
    for index, item in enumerate(items):
        if item.kind == "skill":
            names = {item.label, item.label.split("(", 1)[0]}
            inner = re.search(r"\((.*?)\)?$", item.label)
            if inner and len(_words(inner.group(1))) >= 2:
                names.add(inner.group(1))
            phrases = [(name, False) for name in names]
        elif item.kind == "topic":
            topic = item.label
            phrases = [
                (topic, True),
                (re.sub(r"^\s*the\s+", "", topic, flags=re.IGNORECASE), True),
            ]
            phrases += [(word, False) for word in _TOPIC_WORDS]
        elif item.kind == "sense":
            phrases = [(word, False) for word in _SENSE_WORDS]
        else:
            phrases = [(word, False) for word in _SENTENCE_WORDS]
        for text, weak in phrases:
            if words := _words(text):
                aliases.append(_Alias(index, _phrase(words), weak))
    return tuple(aliases)


def _mentions(folded: str, aliases: Sequence[_Alias], start: int = 0, end: int | None = None) -> list[_Mention]:
    """Rubric-item mentions in folded[start:end] (text already passed through ``_fold``), ordered by
    start, longest first, dropping any that lies inside a longer mention.

    One sweep in that order finds the contained ones, so a reply with thousands of mentions costs
    n log n, not n squared.
    """
    end = len(folded) if end is None else end
    found = sorted(
        (
            _Mention(alias.item, match.start(), match.end(), alias.weak)
            for alias in aliases
            for match in alias.pattern.finditer(folded, start, end)
        ),
        key=lambda mention: (mention.start, -(mention.end - mention.start)),
    )
    kept = []
    reach_before = -1  # the furthest end of the mentions that start before the current start
    group_start, group_reach = -1, -1  # the current start, and the end of its longest mention
    for mention in found:
        if mention.start != group_start:
            reach_before = max(reach_before, group_reach)
            group_start, group_reach = mention.start, mention.end
        # Inside a longer one: one that starts earlier and ends no sooner, or one that starts here
        # and ends later (a same-span twin is not longer, so it does not hide this one).
        if reach_before >= mention.end or group_reach > mention.end:
            continue
        kept.append(mention)
    return kept


def _fuzzy_skill(label: str, items: Sequence[RubricItem]) -> int | None:
    """The one skill whose name shares most of its content words with ``label``."""
    label_words = set(_words(label)) - _STOP_WORDS
    scores: list[tuple[float, int]] = []
    for index, item in enumerate(items):
        if item.kind != "skill":
            continue
        best = 0.0
        for name in (item.label, item.label.split("(", 1)[0]):
            name_words = set(_words(name)) - _STOP_WORDS
            if name_words:
                best = max(best, len(label_words & name_words) / len(name_words))
        scores.append((best, index))
    scores.sort(reverse=True)
    if scores and scores[0][0] > 0.5 and (len(scores) == 1 or scores[1][0] < scores[0][0]):
        return scores[0][1]
    return None


def _match_label(label: str, items: Sequence[RubricItem], aliases: Sequence[_Alias]) -> int | None:
    mentions = _mentions(_fold(label), aliases)
    if mentions:
        return mentions[0].item
    return _fuzzy_skill(label, items)


def _is_total_label(label: str) -> bool:
    return bool(_TOTAL_WORDS & set(_words(label)))


def _read_number(cell: str | None) -> float | None:
    """The number a cell or marker starts with; ``n/d`` reads as n (points earned out of d)."""
    if cell is None:
        return None
    match = _VALUE.match(cell.replace("\u00bd", "0.5").strip(" \t*_`'\""))
    return float(match.group(1)) if match else None


def _read_value(cell: str | None) -> float | None:
    """A rubric value: a number in [0, 1]; anything else is missing, never clamped."""
    value = _read_number(cell)
    return value if value is not None and 0 <= value <= 1 else None


def _assign(entries: Sequence[_Entry], size: int) -> list[float | None]:
    """Rubric values from matched entries; position only as described in the module docstring."""
    positional = len(entries) == size and all(
        entry.item is None or entry.item == position for position, entry in enumerate(entries)
    )
    found: dict[int, set[float | None]] = {}
    for position, entry in enumerate(entries):
        item = entry.item
        if item is None and positional:
            item = position
        if item is not None:
            found.setdefault(item, set()).add(entry.value)
    points: list[float | None] = [None] * size
    for item, values in found.items():
        if len(values) == 1:
            points[item] = next(iter(values))
    return points


def _reading(entries: Sequence[_Entry], size: int, total: float | None, style: str) -> GradeReading:
    points = _assign(entries, size)
    return GradeReading(Score.from_points(points), total, style if any(p is not None for p in points) else None)


def _table_rows(reply: str) -> list[list[str]]:
    rows = []
    for line in reply.splitlines():
        if "|" not in line:
            continue
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) < 2 or all(_SEPARATOR_CELL.fullmatch(cell) for cell in cells):
            continue
        rows.append(cells)
    return rows


def _header_columns(cells: Sequence[str]) -> tuple[int, int] | None:
    """(label column, points column) when ``cells`` is a table header."""
    label_column = points_column = None
    for index, cell in enumerate(cells):
        words = set(_words(cell))
        if label_column is None and words & {"criteria", "criterion", "rubric", "item"}:
            label_column = index
        elif points_column is None and words & {"points", "point", "earned", "score"}:
            points_column = index
    if label_column is None or points_column is None:
        return None
    return label_column, points_column


def parse_table(reply: str, items: Sequence[RubricItem]) -> GradeReading:
    """Read a table-style reply (see the module docstring)."""
    aliases = _aliases(items)
    entries: list[_Entry] = []
    total = None
    rows = _table_rows(reply)
    label_column, points_column = 0, None
    for cells in rows:
        header = _header_columns(cells)
        if header is not None:
            label_column, points_column = header
            continue
        label = cells[label_column] if label_column < len(cells) else ""
        if points_column is not None:
            value_cell = cells[points_column] if points_column < len(cells) else None
        else:
            value_cell = next(
                (cell for cell in cells[label_column + 1 :] if _read_number(cell) is not None),
                None,
            )
        item = _match_label(label, items, aliases)
        if item is None and _is_total_label(label):
            total = _read_number(value_cell)
            continue
        entries.append(_Entry(item, _read_value(value_cell)))
    if not rows:
        # No table: read "<criterion>: <number>" lines, by content only.
        for match in _LABEL_VALUE_LINE.finditer(reply):
            label = match.group("label")
            item = _match_label(label, items, aliases)
            if item is not None:
                entries.append(_Entry(item, _read_value(match.group("value"))))
            elif _is_total_label(label):
                total = _read_number(match.group("value"))
    return _reading(entries, len(items), total, "table")


def _mention_tier(reply: str, mention: _Mention, bold_spans: Sequence[tuple[int, int]]) -> int:
    """0: a heading (bold, or a line's first words); 1: early in a list item; 2: early in a line; 3: elsewhere."""
    line_start = reply.rfind("\n", 0, mention.start) + 1
    if any(start <= mention.start and mention.end <= end for start, end in bold_spans):
        return 0
    if _LINE_START_JUNK.fullmatch(reply[line_start : mention.start]):
        return 0
    if mention.weak:
        return 3
    if mention.start - line_start < _HEAD_WIDTH:
        return 1 if _LIST_MARKER.match(reply, line_start) else 2
    return 3


def _match_segment(reply: str, folded: str, start: int, end: int, aliases: Sequence[_Alias]) -> int | None:
    mentions = _mentions(folded, aliases, start, end)
    if not mentions:
        return None
    bold_spans = [match.span() for match in _BOLD.finditer(reply, start, end)]
    best = min(
        mentions,
        key=lambda mention: (_mention_tier(reply, mention, bold_spans), mention.start),
    )
    return best.item


def parse_items(reply: str, items: Sequence[RubricItem]) -> GradeReading:
    """Read a per-item reply (see the module docstring)."""
    aliases = _aliases(items)
    folded = _fold(reply)  # once: folding per marker made long replies quadratic
    entries: list[_Entry] = []
    total = None
    segment_start = 0
    for marker in _MARKER.finditer(reply):
        line_start = reply.rfind("\n", 0, marker.start()) + 1
        if _is_total_label(reply[line_start : marker.start()]):
            total = _read_number(marker.group("value"))
        else:
            label = marker.group("label")
            if label is not None:
                item = _match_label(label, items, aliases)
            else:
                item = _match_segment(reply, folded, segment_start, marker.start(), aliases)
            entries.append(_Entry(item, _read_value(marker.group("value"))))
        # The next item's label starts on the next line, not in this item's trailing remark.
        line_end = reply.find("\n", marker.end())
        segment_start = marker.end() if line_end == -1 else line_end + 1
    grades = list(_GRADE_LINE.finditer(reply))
    if grades:
        total = float(grades[-1].group(1))
    return _reading(entries, len(items), total, "items")


def looks_like_table(reply: str) -> bool:
    """True when the reply holds a pipe table, so the table parser should read it first."""
    return bool(_table_rows(reply))
