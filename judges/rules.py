"""The rule judge of the verifiable SKILL-MIX world: exact, model-free checks for every rubric point.

Each skill of the rule catalog (``tasks/rules/skills.csv``) carries a ``check``
column, a checker kind and its parameter, and this module turns that column into
a function ``text -> bool``. The catalog and the code cannot drift apart: the
checker is read from the same row as the definition the student sees.

Words. A *word* is a maximal run of letters and digits (Unicode letters count;
apostrophes, hyphens and all punctuation split words), compared in lower case.
"Well-known" is the two words "well" and "known"; "lanterns" is not "lantern".

Checker kinds (``kind:parameter`` in the ``check`` column):

``word:W``          the word W occurs.
``anyword:A|B|C``   at least one of the listed words occurs.
``char:C``          the character C occurs anywhere in the text.
``enclosed:O|C``    an opening mark O is later followed by a closing mark C with at
                    least one letter or digit between them and no C in between
                    (``enclosed:"|"`` is a pair of straight double quotes).
``digits``          a number written in digits (0-9) occurs.
``capsword:N``      a word of at least N letters, all of them capitals, occurs.
``longword:N``      a word of at least N letters occurs.
``repeat:N``        some word of at least N letters occurs at least twice.
``first:W``         the first word of the text is W.

Topic point: the topic's word(s) occur as consecutive words.

"Makes sense" in this world (``makes_sense``) means a well-formed, in-vocabulary,
non-degenerate text. All of these must hold:

1. it has between 3 and 80 words;
2. every word is in the world's lexicon (``judges.rules_lexicon.BASE_WORDS`` plus
   every word the catalog names: check words, list words, topics), or is a number
   written in digits;
3. no word is directly followed by the same word ("the the"), punctuation between
   them ignored;
4. no word of four or more letters occurs more than three times;
5. the first letter of the text is a capital;
6. the text ends with ``.``, ``?`` or ``!``, optionally followed by a closing ``"`` or ``)``.

Sentence point: ``judges.rubric.count_sentences`` <= max(1, k - 1), the same rule
as everywhere else in the harness. Skill points get the explicit-name penalty of
``judges.rubric.names_skill`` (on by default), as model judges' points do.
"""

from __future__ import annotations

import csv
import functools
import re
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from harness.core.catalog import Catalog
from harness.core.errors import HarnessError
from harness.core.names import names_skill
from harness.core.prompts import sentence_limit
from judges.rubric import count_sentences, rubric_items
from judges.rules_lexicon import BASE_WORDS

CHECK_COLUMN = "check"
CHECK_KINDS = ("word", "anyword", "char", "enclosed", "digits", "capsword", "longword", "repeat", "first")
MIN_WORDS, MAX_WORDS = 3, 80
MAX_LONG_WORD_USES = 3  # rule 4 of "makes sense", for words of LONG_WORD_LETTERS or more
LONG_WORD_LETTERS = 4

_WORD = re.compile(r"[^\W_]+")
_DIGITS = re.compile(r"[0-9]")
_FINAL_MARK = re.compile(r"[.?!][\")]?\s*$")
_FIRST_LETTER = re.compile(r"[^\W\d_]")


def words(text: str) -> list[str]:
    """The text's words, lower-cased, in order (see the module docstring)."""
    return [match.group(0).lower() for match in _WORD.finditer(text)]


def _raw_words(text: str) -> list[str]:
    return [match.group(0) for match in _WORD.finditer(text)]


def _is_number(word: str) -> bool:
    return word.isascii() and word.isdigit()


@dataclass(frozen=True)
class Check:
    """One skill's checker, parsed from its ``kind:parameter`` spec."""

    kind: str
    words: tuple[str, ...] = ()  # word, anyword, first: the words it looks for
    marks: tuple[str, ...] = ()  # char: (C,); enclosed: (O, C)
    number: int = 0  # capsword, longword, repeat: the least number of letters
    spec: str = ""

    def passes(self, text: str) -> bool:
        return _CHECKERS[self.kind](self, text)

    @property
    def named_words(self) -> tuple[str, ...]:
        """Words this check makes part of the world's vocabulary."""
        return self.words


def _check_words(check: Check, text: str) -> bool:
    present = set(words(text))
    return any(word in present for word in check.words)


def _check_char(check: Check, text: str) -> bool:
    return check.marks[0] in text


def _check_enclosed(check: Check, text: str) -> bool:
    opening, closing = check.marks
    start = text.find(opening)
    while start != -1:
        end = text.find(closing, start + len(opening))
        if end == -1:
            return False
        if _WORD.search(text[start + len(opening) : end]):
            return True
        start = text.find(opening, start + len(opening))
    return False


def _check_digits(check: Check, text: str) -> bool:
    return _DIGITS.search(text) is not None


def _check_capsword(check: Check, text: str) -> bool:
    return any(word.isalpha() and word.isupper() and len(word) >= check.number for word in _raw_words(text))


def _check_longword(check: Check, text: str) -> bool:
    return any(word.isalpha() and len(word) >= check.number for word in words(text))


def _check_repeat(check: Check, text: str) -> bool:
    counts = Counter(word for word in words(text) if word.isalpha() and len(word) >= check.number)
    return any(count >= 2 for count in counts.values())


def _check_first(check: Check, text: str) -> bool:
    found = words(text)
    return bool(found) and found[0] == check.words[0]


_CHECKERS: dict[str, Callable[[Check, str], bool]] = {
    "word": _check_words,
    "anyword": _check_words,
    "char": _check_char,
    "enclosed": _check_enclosed,
    "digits": _check_digits,
    "capsword": _check_capsword,
    "longword": _check_longword,
    "repeat": _check_repeat,
    "first": _check_first,
}


def parse_check(spec: str, skill: str = "?") -> Check:
    """Parse a ``kind:parameter`` spec; a HarnessError names the skill when it is malformed."""
    kind, _, parameter = spec.strip().partition(":")

    def fail(why: str) -> HarnessError:
        return HarnessError(f"skill {skill!r}: bad check {spec!r}: {why}")

    if kind not in CHECK_KINDS:
        raise fail(f"unknown kind {kind!r}; use one of {', '.join(CHECK_KINDS)}")
    if kind == "digits":
        if parameter:
            raise fail("digits takes no parameter")
        return Check(kind, spec=spec)
    if not parameter:
        raise fail(f"{kind} needs a parameter after the colon")
    if kind in ("word", "first", "anyword"):
        listed = parameter.split("|")
        if kind != "anyword" and len(listed) != 1:
            raise fail(f"{kind} takes one word")
        for word in listed:
            if words(word) != [word] or word != word.lower():
                raise fail(f"{word!r} is not one lower-case word of letters and digits")
        return Check(kind, words=tuple(listed), spec=spec)
    if kind == "char":
        if len(parameter) != 1:
            raise fail("char takes exactly one character")
        return Check(kind, marks=(parameter,), spec=spec)
    if kind == "enclosed":
        marks = parameter.split("|")
        if len(marks) != 2 or not all(marks):
            raise fail("enclosed takes an opening and a closing mark, as O|C")
        return Check(kind, marks=(marks[0], marks[1]), spec=spec)
    if not parameter.isdigit() or int(parameter) < 1:
        raise fail(f"{kind} takes a positive whole number of letters")
    return Check(kind, number=int(parameter), spec=spec)


@dataclass(frozen=True)
class RuleWorld:
    """The rule catalog as the judge needs it: each skill's check, the topics and the lexicon."""

    checks: Mapping[str, Check]
    topics: tuple[str, ...]
    lexicon: frozenset[str] = field(default_factory=frozenset)

    @classmethod
    def from_rows(cls, skill_checks: Iterable[tuple[str, str]], topics: Iterable[str]) -> RuleWorld:
        """Build from (skill name, check spec) pairs and topic names."""
        checks: dict[str, Check] = {}
        for name, spec in skill_checks:
            if name in checks:
                raise HarnessError(f"skill {name!r} has two checks")
            checks[name] = parse_check(spec, name)
        topics = tuple(topics)
        for topic in topics:
            if not words(topic) or " ".join(words(topic)) != topic.lower().strip():
                raise HarnessError(f"topic {topic!r} must be made of words only, so the topic check can find it")
        lexicon = set(BASE_WORDS)
        for check in checks.values():
            lexicon.update(check.named_words)
        for topic in topics:
            lexicon.update(words(topic))
        return cls(checks, topics, frozenset(lexicon))

    def check(self, skill: str) -> Check:
        try:
            return self.checks[skill]
        except KeyError:
            raise HarnessError(f"skill {skill!r} is not in the rule catalog") from None


def rule_world(catalog: Catalog, where: str = "") -> RuleWorld:
    """The rule world of a catalog whose skills.csv has a ``check`` column; a HarnessError for any other.

    The checks are read from the same skills.csv rows as the definitions the student sees.
    ``where`` names what needs the world (a task, a judge) in the error message.
    """
    try:
        return _world(catalog)
    except HarnessError as error:
        raise HarnessError(f"{where}: {error}" if where else str(error)) from None


@functools.lru_cache(maxsize=8)
def _world(catalog: Catalog) -> RuleWorld:
    not_rules = "so it is not a rule catalog; the rule backend works on the skillmix-rules-* tasks (tasks/rules) only"
    if catalog.format != "open":
        raise HarnessError(f"the catalog {catalog.describe()} has no check per skill, {not_rules}")
    path = catalog.sources[0]
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        reader.fieldnames = [name.strip().lower() for name in reader.fieldnames or []]
        if CHECK_COLUMN not in reader.fieldnames:
            raise HarnessError(f"{path} has no {CHECK_COLUMN!r} column, {not_rules}")
        specs = {row["skill"].strip(): (row[CHECK_COLUMN] or "").strip() for row in reader if row.get("skill")}
    missing = sorted(skill.name for skill in catalog.skills if not specs.get(skill.name))
    if missing:
        raise HarnessError(f"{path}: skill(s) without a check: {', '.join(missing)}")
    return RuleWorld.from_rows(
        ((skill.name, specs[skill.name]) for skill in catalog.skills), (topic.name for topic in catalog.topics)
    )


def mentions_topic(text: str, topic: str) -> bool:
    """Whether the topic's words occur as consecutive words of the text."""
    wanted = words(topic)
    found = words(text)
    return bool(wanted) and any(found[i : i + len(wanted)] == wanted for i in range(len(found) - len(wanted) + 1))


def sense_problem(text: str, lexicon: frozenset[str]) -> str | None:
    """Why the text does not make sense under the module docstring's rule, or None when it does."""
    found = words(text)
    if not MIN_WORDS <= len(found) <= MAX_WORDS:
        return f"{len(found)} words; a text needs {MIN_WORDS} to {MAX_WORDS}"
    unknown = sorted({word for word in found if word not in lexicon and not _is_number(word)})
    if unknown:
        return f"words outside the lexicon: {', '.join(unknown[:5])}"
    for before, after in zip(found, found[1:], strict=False):
        if before == after:
            return f"the word {before!r} is repeated back to back"
    counts = Counter(word for word in found if len(word) >= LONG_WORD_LETTERS)
    overused = sorted(word for word, count in counts.items() if count > MAX_LONG_WORD_USES)
    if overused:
        return f"{overused[0]!r} occurs more than {MAX_LONG_WORD_USES} times"
    first_letter = _FIRST_LETTER.search(text)
    if first_letter is None or not first_letter.group(0).isupper():
        return "the text does not start with a capital letter"
    if not _FINAL_MARK.search(text):
        return "the text does not end with . ? or !"
    return None


def makes_sense(text: str, lexicon: frozenset[str]) -> bool:
    return sense_problem(text, lexicon) is None


@dataclass(frozen=True)
class RulePoint:
    kind: str  # skill | topic | sense | sentences, as judges.rubric.RUBRIC_KINDS
    label: str
    earned: bool
    reason: str


@dataclass(frozen=True)
class RuleGrade:
    items: tuple[RulePoint, ...]

    @property
    def points(self) -> list[int]:
        """The k + 3 points in rubric order."""
        return [int(item.earned) for item in self.items]


def grade_answer(
    world: RuleWorld, skills: Sequence[str], topic: str, answer: str, *, name_penalty: bool = True
) -> RuleGrade:
    """Grade one answer exactly: k skill points, topic, sense, sentences, each with a one-line reason."""
    items: list[RulePoint] = []
    for rubric_item in rubric_items(skills, topic):
        if rubric_item.kind == "skill":
            skill = rubric_item.label
            check = world.check(skill)
            if name_penalty and names_skill(answer, skill):
                items.append(RulePoint("skill", skill, False, f"the text names the skill {skill!r}"))
            elif check.passes(answer):
                items.append(RulePoint("skill", skill, True, f"passes {check.spec}"))
            else:
                items.append(RulePoint("skill", skill, False, f"fails {check.spec}"))
        elif rubric_item.kind == "topic":
            found = mentions_topic(answer, topic)
            reason = f"the word(s) {topic!r} {'occur' if found else 'do not occur'}"
            items.append(RulePoint("topic", topic, found, reason))
        elif rubric_item.kind == "sense":
            problem = sense_problem(answer, world.lexicon)
            items.append(RulePoint("sense", rubric_item.label, problem is None, problem or "well formed, in lexicon"))
        else:
            limit = sentence_limit(len(skills))
            count = count_sentences(answer)
            reason = f"{count} sentence{'s' if count != 1 else ''}, limit {limit}"
            items.append(RulePoint("sentences", rubric_item.label, count <= limit, reason))
    return RuleGrade(tuple(items))
