"""The rule teacher: writes short texts that show exactly the requested skills of the rule world.

``write_text(world, skills, topic, rng)`` plans where each requested feature
goes (a word in a noun slot, an adjective, an adverbial, a mark, a sentence
form), fills the rest from the world's base vocabulary
(``judges.rules_lexicon``) with the random generator it is given, and renders
one to max(1, k - 1) sentences. It then grades its own text with the rule judge
and draws again until every point is earned, so every text it returns earns
full marks. Features nobody asked for are not added on purpose: a comma, a
question mark, digits, capitals, a long word, "today" first or a negation only
appear when their skill is requested (a word of four or more letters may still
repeat by chance).

Variety comes from the draw: the number of sentences, which sentence gets which
feature, subjects, verbs, determiners, adjectives, prepositions, time and
manner phrases, question and quotation forms, list words chosen from a list,
and word order within a clause (fronted or final adverbials). The teacher is
pure: the same world, skills, topic and generator state give the same text.

As a model-free backend (``--teacher rules`` in ``harness generate-data``,
``--student rules`` in ``harness run``), ``write_generation`` plays a whole
SKILL-MIX conversation: it is sent the real turn prompts, so training rows hold
the requests a student is evaluated on, and answers both turns with
"Answer: " and one text, drawn with a generator seeded by the task, the
combination and the generation round (rounds differ, re-runs repeat).
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass, field

from harness.core.errors import HarnessError
from harness.core.prompts import render_student_turn1, render_student_turn2, sentence_limit
from harness.core.store import Generation
from harness.runner import Conversation
from judges import rules_lexicon as lex
from judges.rules import Check, RuleWorld, grade_answer, rule_world

MAX_ATTEMPTS = 200
# How list words of the rule catalog are used in a sentence; a word not listed is used as a noun.
ADJECTIVE_WORDS = frozenset(
    {"red", "blue", "green", "yellow", "purple", "brown", "iron", "copper", "silver", "tin", "brass", "zinc"}
)
WEEKDAYS = frozenset({"monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"})
NUMBER_WORDS = frozenset({"two", "three", "four", "five", "six", "seven", "eight", "nine", "ten"})
WEATHER_WORDS = frozenset({"rain", "snow", "fog", "hail", "frost", "drizzle"})
NEGATIONS = frozenset({"not", "never"})
SENTENCE_FORMS = ("question", "semicolon", "colon", "quote")


@dataclass
class Clause:
    """One clause before rendering: a person does something to some things, somewhere, sometime."""

    subject: str
    verb: tuple[str, str]  # (past, base)
    objects: list[str] = field(default_factory=list)  # noun phrases
    places: list[str] = field(default_factory=list)  # prepositional phrases
    adverbials: list[str] = field(default_factory=list)
    negation: str | None = None
    joiners: list[str] = field(default_factory=list)  # marks such as "&" between objects; "and" after them
    colon_lead: str | None = None
    quote: str | None = None
    paren: str | None = None


@dataclass
class Sentence:
    clauses: list[Clause]
    question: str | None = None  # "did", "why did", ...
    opener: str | None = None  # "Today", "Well", ...
    comma_after_opener: bool = False
    caps: bool = False


def write_text(world: RuleWorld, skills: Sequence[str], topic: str, rng: random.Random) -> str:
    """A text for this combination that earns all k + 3 points of the rule judge."""
    checks = [world.check(skill) for skill in skills]
    for _ in range(MAX_ATTEMPTS):
        text = _draft(checks, topic, len(skills), rng)
        if all(grade_answer(world, skills, topic, text).points):
            return text
    raise HarnessError(f"the rule teacher found no text for skills {list(skills)} on {topic!r}; check the catalog")


def write_generation(conversation: Conversation) -> Generation:
    """One SKILL-MIX conversation answered by the rule teacher (see the module docstring)."""
    task, combination = conversation.task, conversation.combination
    world = rule_world(task.catalog, f"the rule {conversation.key.student} on task {task.name}")
    seed = f"{task.seed}:{task.name}:{combination.index}:{conversation.generation_round}"
    text = write_text(world, combination.skills, combination.topic, random.Random(seed))
    reply = f"Answer: {text}"
    return Generation(
        key=conversation.key,
        turn1_prompt=render_student_turn1(task, combination),
        turn1_reply=reply,
        turn2_prompt=render_student_turn2(task, combination),
        turn2_reply=reply,
        answer=text,
        answer_marked=True,
        finish_reason="stop",
        sampling=None,  # nothing was sent to a model
    )


def _draft(checks: Sequence[Check], topic: str, k: int, rng: random.Random) -> str:
    limit = sentence_limit(k)
    count = rng.randint(min(limit, max(1, math.ceil(k / 3))), limit)
    sentences = [Sentence([_clause(rng)]) for _ in range(count)]
    nouns = [topic]
    adjectives: list[str] = []

    def some_sentence() -> Sentence:
        return rng.choice(sentences)

    def some_clause() -> Clause:
        return rng.choice(some_sentence().clauses)

    for check in checks:
        kind = check.kind
        if kind in ("word", "anyword") and set(check.words) <= NEGATIONS:
            some_clause().negation = rng.choice(check.words)
        elif kind in ("word", "anyword"):
            word = rng.choice(check.words)
            if word in ADJECTIVE_WORDS:
                adjectives.append(word)
            elif word in WEEKDAYS:
                some_clause().adverbials.append(f"on {word.capitalize()}")
            elif word in NUMBER_WORDS:
                some_clause().adverbials.append(
                    rng.choice([f"for {word} hours", f"{word} days ago", f"{word} minutes later"])
                )
            elif word in WEATHER_WORDS:
                some_clause().adverbials.append(rng.choice([f"in the {word}", f"through the {word}"]))
            else:
                nouns.append(word)
        elif kind == "first":
            sentences[0].opener = check.words[0].capitalize()
        elif kind == "char":
            _place_mark(check.marks[0], sentences, rng)
        elif kind == "enclosed":
            _place_enclosure(check.marks, sentences, rng)
        elif kind == "digits":
            some_clause().adverbials.append(
                rng.choice(
                    [f"at {rng.randint(1, 12)}", f"for {rng.randint(2, 9)} hours", f"in {rng.randint(1900, 2024)}"]
                )
            )
        elif kind == "capsword":
            some_sentence().caps = True
        elif kind == "longword":
            if rng.random() < 0.5:
                some_clause().adverbials.append(rng.choice(lex.LONG_ADVERBS))
            else:
                adjectives.append(rng.choice(lex.LONG_ADJECTIVES))
        elif kind == "repeat":
            noun = rng.choice([noun for noun in lex.NOUNS if len(noun) >= check.number])
            nouns.extend([noun, noun])
        else:  # pragma: no cover - parse_check admits no other kind
            raise HarnessError(f"the rule teacher cannot write a {kind!r} check")
    rng.shuffle(nouns)
    for noun in nouns:
        clause = some_clause()
        phrase = _noun_phrase(noun, rng)
        if clause.quote is None and (not clause.objects or rng.random() < 0.4):
            clause.objects.append(phrase)
        else:
            clause.places.append(f"{rng.choice(lex.PREPOSITIONS)} {phrase}")
    for adjective in adjectives:
        clause = some_clause()
        target = clause.objects if clause.objects and clause.quote is None else clause.places
        if target:
            index = rng.randrange(len(target))
            target[index] = _add_adjective(target[index], adjective)
        else:
            clause.places.append(
                f"{rng.choice(lex.PREPOSITIONS)} {_noun_phrase(rng.choice(lex.NOUNS), rng, adjective)}"
            )
    return " ".join(_render(sentence, rng) for sentence in sentences)


def _clause(rng: random.Random) -> Clause:
    subject = rng.choice(lex.PRONOUN_SUBJECTS if rng.random() < 0.6 else lex.NOUN_SUBJECTS)
    clause = Clause(subject, rng.choice(lex.VERBS))
    if rng.random() < 0.5:
        clause.adverbials.append(rng.choice(lex.TIME_PHRASES + lex.MANNER_ADVERBS))
    return clause


def _noun_phrase(noun: str, rng: random.Random, adjective: str | None = None) -> str:
    if adjective is None and rng.random() < 0.3:
        adjective = rng.choice(lex.ADJECTIVES)
    words = [adjective, noun] if adjective else [noun]
    determiner = rng.choice(lex.DETERMINERS)
    if determiner == "a" and words[0][0] in "aeiou":
        determiner = "an"
    return " ".join([determiner, *words])


def _add_adjective(phrase: str, adjective: str) -> str:
    determiner, *rest = phrase.split(" ")
    if determiner in ("a", "an"):
        determiner = "an" if adjective[0] in "aeiou" else "a"
    return " ".join([determiner, adjective, *rest])


def _place_mark(mark: str, sentences: list[Sentence], rng: random.Random) -> None:
    sentence = rng.choice(sentences)
    if mark == "?":
        sentence.question = rng.choice(["did", "why did", "when did", "where did"])
    elif mark == ";":
        sentence.clauses.append(_clause(rng))
    elif mark == ":":
        clause = rng.choice(sentence.clauses)
        clause.colon_lead = rng.choice(lex.COLON_LEADS)
    elif mark == ",":
        sentence.comma_after_opener = True
    else:  # a symbol between two noun phrases
        clause = rng.choice(sentence.clauses)
        clause.joiners.append(mark)
        while len(clause.objects) < len(clause.joiners) + 1:
            clause.objects.append(_noun_phrase(rng.choice(lex.NOUNS), rng))


def _place_enclosure(marks: tuple[str, ...], sentences: list[Sentence], rng: random.Random) -> None:
    clause = rng.choice(rng.choice(sentences).clauses)
    if marks == ('"', '"'):
        clause.quote = rng.choice(lex.QUOTE_PHRASES)
        clause.verb = rng.choice(lex.QUOTE_VERBS)
    else:
        clause.paren = f"{marks[0]}{rng.choice(lex.PAREN_PHRASES)}{marks[1]}"


def _render_clause(clause: Clause, question: str | None, rng: random.Random) -> str:
    past, base = clause.verb
    words: list[str] = []
    if question:
        words.append(question)
        words.append(clause.subject)
        if clause.negation:
            words.append("not" if clause.negation == "not" else "never")
        words.append(base)
    else:
        words.append(clause.subject)
        if clause.negation == "not":
            words.extend(["did", "not", base])
        elif clause.negation == "never":
            words.extend(["never", past])
        else:
            words.append(past)
    if clause.quote is not None:
        words.append(f'"{clause.quote}"')
    objects = list(clause.objects)
    if clause.quote is None and not objects:
        objects.append(_noun_phrase(rng.choice(lex.NOUNS), rng))
    if objects and clause.paren and rng.random() < 0.5:
        objects[0] = f"{objects[0]} {clause.paren}"
        paren_at_end = False
    else:
        paren_at_end = clause.paren is not None
    object_text = objects[0] if objects else ""
    for index, phrase in enumerate(objects[1:]):
        joiner = clause.joiners[index] if index < len(clause.joiners) else "and"
        object_text += f" {joiner} {phrase}"
    if clause.colon_lead and object_text:
        words.append(f"{clause.colon_lead}: {object_text}")
    elif object_text:
        words.append(object_text)
    if clause.colon_lead and not object_text:
        words.append(f"{clause.colon_lead}: {_noun_phrase(rng.choice(lex.NOUNS), rng)}")
    places_and_times = clause.places + clause.adverbials
    rng.shuffle(places_and_times)
    # a colon list must stay last, so what follows it goes in front of the clause
    if clause.colon_lead and places_and_times:
        words = [*places_and_times, *words]
    elif places_and_times and rng.random() < 0.2:
        words = [places_and_times[0], *words, *places_and_times[1:]]
    else:
        words.extend(places_and_times)
    if paren_at_end:
        words.append(clause.paren or "")
    return " ".join(words)


def _render(sentence: Sentence, rng: random.Random) -> str:
    parts = []
    for index, clause in enumerate(sentence.clauses):
        last = index == len(sentence.clauses) - 1
        parts.append(_render_clause(clause, sentence.question if last else None, rng))
    body = "; ".join(parts)
    opener = sentence.opener
    if sentence.comma_after_opener and opener is None:
        opener = rng.choice(lex.COMMA_OPENERS)
    if opener:
        body = f"{opener}, {body}" if sentence.comma_after_opener else f"{opener} {body}"
    if sentence.caps:
        body = _shout_one_word(body, rng)
    body = body[0].upper() + body[1:]
    return body + ("?" if sentence.question else ".")


def _shout_one_word(text: str, rng: random.Random) -> str:
    tokens = text.split(" ")
    candidates = [i for i, token in enumerate(tokens) if token.isalpha() and token.islower() and len(token) >= 2]
    if not candidates:
        return text
    index = rng.choice(candidates)
    tokens[index] = tokens[index].upper()
    return " ".join(tokens)
