"""The verifiable rule world: its catalog, the exact checkers, the rule judge and the rule teacher."""

from __future__ import annotations

import random
import shutil
from pathlib import Path

import pytest

from harness.core.errors import HarnessError
from harness.core.names import names_skill
from harness.rules_teacher import write_text
from harness.rules_world import load_rule_catalog
from judges.rubric import count_sentences
from judges.rules import RuleWorld, grade_answer, makes_sense, mentions_topic, parse_check, sense_problem, words
from judges.rules_lexicon import BASE_WORDS

RULES_DIR = Path(__file__).resolve().parents[1] / "tasks" / "rules"


@pytest.fixture(scope="module")
def rule_catalog():
    return load_rule_catalog(RULES_DIR)


@pytest.fixture(scope="module")
def world(rule_catalog) -> RuleWorld:
    return rule_catalog.world


# ---------------------------------------------------------------- the catalog


def test_catalog_loads_with_enough_skills_categories_and_a_split(rule_catalog):
    catalog = rule_catalog.catalog
    assert len(catalog.skills) >= 40
    categories = {skill.category for skill in catalog.skills}
    assert len(categories) >= 5
    train, heldout = catalog.skills_in("train"), catalog.skills_in("heldout")
    assert train and heldout and len(train) + len(heldout) == len(catalog.skills)
    assert 0.25 <= len(heldout) / len(catalog.skills) <= 0.45
    # whole categories are held out
    assert {s.category for s in train}.isdisjoint({s.category for s in heldout})
    assert catalog.topics_in("train") and catalog.topics_in("heldout")
    assert set(catalog.topics_in("train")).isdisjoint(catalog.topics_in("heldout"))


def test_every_skill_has_a_check_and_its_example_passes_it(rule_catalog, world):
    for skill in rule_catalog.catalog.skills:
        check = world.check(skill.name)
        assert check.passes(skill.example), skill.name
        assert makes_sense(skill.example, world.lexicon), (skill.name, sense_problem(skill.example, world.lexicon))
        assert not names_skill(skill.example, skill.name), skill.name


def test_examples_show_only_their_own_copyable_target(rule_catalog, world):
    # an example must not also show another skill's word, list word or symbol, or a student could learn the wrong one
    copyable = {name: check for name, check in world.checks.items() if check.kind in ("word", "anyword", "char")}
    for skill in rule_catalog.catalog.skills:
        others = [name for name, check in copyable.items() if name != skill.name and check.passes(skill.example)]
        assert others == [], (skill.name, others)


def test_check_words_and_topics_never_collide(world):
    owners: dict[str, str] = {}
    for name, check in world.checks.items():
        for word in check.words:
            assert word not in owners, f"{word!r} is checked by both {owners[word]!r} and {name!r}"
            owners[word] = name
    for topic in world.topics:
        assert topic not in owners, topic
        assert not BASE_WORDS & set(words(topic)), topic
    assert not BASE_WORDS & set(owners), sorted(BASE_WORDS & set(owners))
    # only the long-word skill's own words are that long
    assert all(len(word) < 10 for word in set(owners) | set(world.topics))


def test_skill_names_never_occur_in_definitions_or_examples_of_other_skills(rule_catalog):
    skills = rule_catalog.catalog.skills
    for skill in skills:
        for other in skills:
            if other.name != skill.name:
                assert not names_skill(other.example, skill.name), (skill.name, other.name)


def test_catalog_without_check_column_is_refused(tmp_path):
    for name in ("skills.csv", "topics.csv", "split.yaml"):
        shutil.copy(RULES_DIR / name, tmp_path / name)
    lines = (tmp_path / "skills.csv").read_text(encoding="utf-8").splitlines()
    (tmp_path / "skills.csv").write_text("\n".join(line.rsplit(",", 1)[0] for line in lines) + "\n", encoding="utf-8")
    with pytest.raises(HarnessError, match="no 'check' column"):
        load_rule_catalog(tmp_path)


# ---------------------------------------------------------------- the checkers


CHECK_CASES = [
    # spec, text, expected
    ("word:lantern", "We lit the Lantern at dusk.", True),
    ("word:lantern", "We lit two lanterns.", False),  # a plural is another word
    ("word:lantern", "The lantern-maker left.", True),  # a hyphen splits words
    ("word:lantern", "Our LANTERNS shone.", False),
    ("word:tin", "She opened the tinted box.", False),  # whole words only
    ("anyword:red|blue", "A blue door.", True),
    ("anyword:red|blue", "The bread was fresh.", False),
    ("char:,", "Well, we left.", True),
    ("char:,", "We left.", False),
    ("char:?", "Did we leave?", True),
    ("char:;", "We left; they stayed.", True),
    ("char::", "One thing: rope.", True),
    ("char::", "One thing; rope.", False),
    ("char:&", "Salt & pepper.", True),
    ("char:&", "Salt and pepper.", False),
    ('enclosed:"|"', 'He said "yes" to me.', True),
    ('enclosed:"|"', 'He said "" to me.', False),  # nothing between the quotes
    ('enclosed:"|"', 'He said "yes to me.', False),  # one quote only
    ('enclosed:"|"', 'A " , " then "ok".', True),  # the second pair has a word
    ("enclosed:(|)", "We kept it (the old one).", True),
    ("enclosed:(|)", "We kept it ( ).", False),
    ("enclosed:(|)", "We kept it ) old (.", False),  # wrong order
    ("digits", "We left at 7.", True),
    ("digits", "We left at seven.", False),
    ("capsword:2", "We were SO tired.", True),
    ("capsword:2", "I was tired.", False),  # a one-letter capital word is not shouting
    ("capsword:2", "We met Anna.", False),
    ("longword:10", "It was everywhere.", True),  # ten letters
    ("longword:10", "It was wonderful.", False),  # nine letters
    ("repeat:4", "The rope and the rope.", True),
    ("repeat:4", "The cat and the cat.", False),  # three letters is too short
    ("repeat:4", "The Rope held the ROPE.", True),  # any case
    ("first:today", "Today, we left.", True),
    ("first:today", '"Today" we left.', True),  # punctuation before the first word is not a word
    ("first:today", "We left today.", False),
]


@pytest.mark.parametrize(("spec", "text", "expected"), CHECK_CASES)
def test_checker(spec: str, text: str, expected: bool):
    assert parse_check(spec).passes(text) is expected


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("colour:red", "unknown kind"),
        ("word:", "needs a parameter"),
        ("word:Red", "lower-case word"),
        ("word:red|blue", "takes one word"),
        ("anyword:red|dark blue", "lower-case word"),
        ("char:ab", "exactly one character"),
        ("enclosed:(", "opening and a closing"),
        ("digits:3", "no parameter"),
        ("longword:ten", "positive whole number"),
    ],
)
def test_bad_check_specs_are_refused_with_the_skill_named(spec: str, message: str):
    with pytest.raises(HarnessError, match=message) as error:
        parse_check(spec, "some skill")
    assert "some skill" in str(error.value)


def test_topic_is_found_as_whole_words():
    assert mentions_topic("We rode the Bicycle home.", "bicycle")
    assert not mentions_topic("We rode bicycles.", "bicycle")
    assert mentions_topic("A new fire station opened.", "fire station")
    assert not mentions_topic("The station was on fire.", "fire station")


SENSE_LEXICON = frozenset({"we", "found", "the", "rope", "and", "a", "lantern", "near", "gate", "did", "not"})


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("We found the rope.", None),
        ("We found 12 lanterns.", "outside the lexicon"),  # "lanterns" is not a lexicon word
        ("We found 12 lantern.", None),  # a number in digits is always allowed
        ("We found.", "2 words"),
        ("We found the the rope.", "back to back"),
        ("We found the rope, rope.", "back to back"),  # punctuation between does not help
        ("We found the rope and the rope and the rope and the rope.", "more than 3 times"),
        ("we found the rope.", "capital"),
        ("We found the rope", "does not end"),
        ('We found the "rope."', None),  # a closing quote or bracket may follow the end mark
        ("We found the rope (near the gate.)", None),
        ('We found the "rope"', "does not end"),
        ("We found the rope near the gate " * 20, "words; a text needs"),
        ("We found the lantérn.", "outside the lexicon"),
    ],
)
def test_sense_rule(text: str, problem: str | None):
    found = sense_problem(text, SENSE_LEXICON)
    if problem is None:
        assert found is None, found
    else:
        assert found is not None and problem in found


def test_grade_answer_gives_k_plus_3_points_in_rubric_order_with_reasons(world):
    skills = ["lantern word", "question mark", "digit number"]
    answer = "Did we find the lantern near the bakery? We left at 7."
    grade = grade_answer(world, skills, "bakery", answer)
    assert [item.kind for item in grade.items] == ["skill", "skill", "skill", "topic", "sense", "sentences"]
    assert grade.points == [1, 1, 1, 1, 1, 1]
    assert all(item.reason for item in grade.items)

    grade = grade_answer(world, skills, "castle", "Did we find the lantern? We left at seven. Then we sat.")
    # no digits, no castle, "sat" and "seven" are outside the lexicon, three sentences for a limit of two
    assert grade.points == [1, 1, 0, 0, 0, 0]
    assert "3 sentences, limit 2" in grade.items[-1].reason
    assert "outside the lexicon" in grade.items[4].reason


def test_grade_answer_applies_the_name_penalty(world):
    answer = "We found the lantern near the long word."
    assert count_sentences(answer) == 1
    penalised = grade_answer(world, ["lantern word"], "bakery", "We found the lantern word near the bakery.")
    assert penalised.points[0] == 0 and "names the skill" in penalised.items[0].reason
    kept = grade_answer(world, ["lantern word"], "bakery", "We found the lantern word.", name_penalty=False)
    assert kept.points[0] == 1


def test_grade_answer_rejects_unknown_skills(world):
    with pytest.raises(HarnessError, match="not in the rule catalog"):
        grade_answer(world, ["metaphor"], "bakery", "We found the rope.")


# ---------------------------------------------------------------- the teacher


def _combinations(catalog, split: str, k: int, count: int, rng: random.Random):
    skills = [skill.name for skill in catalog.skills_in(split)]
    topics = catalog.topics_in(split)
    return [(rng.sample(skills, k), rng.choice(topics)) for _ in range(count)]


@pytest.mark.parametrize("split", ["train", "heldout", "all"])
@pytest.mark.parametrize("k", [1, 2, 3, 4, 5])
def test_teacher_texts_earn_every_point(rule_catalog, world, split: str, k: int):
    rng = random.Random(f"{split}-{k}")
    for skills, topic in _combinations(rule_catalog.catalog, split, k, 150, rng):
        text = write_text(world, skills, topic, rng)
        grade = grade_answer(world, skills, topic, text)
        assert all(grade.points), (skills, topic, text, [item.reason for item in grade.items])
        assert not any(names_skill(text, name) for name in world.checks), text


def test_teacher_covers_every_skill_alone_and_with_every_other(rule_catalog, world):
    rng = random.Random(5)
    names = sorted(world.checks)
    topic = rule_catalog.catalog.topics_in("all")[0]
    for first in names:
        for second in names:
            if first < second:
                text = write_text(world, [first, second], topic, rng)
                assert all(grade_answer(world, [first, second], topic, text).points), text


def test_teacher_training_texts_hold_no_heldout_material(rule_catalog, world):
    catalog = rule_catalog.catalog
    heldout_words = {word for skill in catalog.skills_in("heldout") for word in world.check(skill.name).words}
    heldout_marks = {mark for skill in catalog.skills_in("heldout") for mark in world.check(skill.name).marks}
    heldout_topics = set(catalog.topics_in("heldout"))
    assert heldout_words and heldout_marks and heldout_topics
    rng = random.Random(11)
    for k in (1, 2, 3):
        for skills, topic in _combinations(catalog, "train", k, 300, rng):
            text = write_text(world, skills, topic, rng)
            assert not set(words(text)) & (heldout_words | heldout_topics), text
            assert not any(mark in text for mark in heldout_marks), text


@pytest.mark.parametrize(
    ("skill", "feature"),
    [
        ("question mark", lambda text: "?" in text),
        ("semicolon use", lambda text: ";" in text),
        ("colon use", lambda text: ":" in text),
        ("comma use", lambda text: "," in text),
        ("quotation", lambda text: '"' in text),
        ("parentheses", lambda text: "(" in text or ")" in text),
        ("digit number", lambda text: any(c.isdigit() for c in text)),
        ("capital word", lambda text: any(w.isupper() and len(w) > 1 for w in text.split())),
        ("long word", lambda text: any(len(w) >= 10 for w in words(text))),
        ("today opening", lambda text: "today" in words(text)),
        ("negation", lambda text: {"not", "never"} & set(words(text))),
    ],
)
def test_teacher_adds_a_feature_only_when_its_skill_is_requested(rule_catalog, world, skill, feature):
    rng = random.Random(skill)
    with_it = without_it = 0
    for skills, topic in _combinations(rule_catalog.catalog, "train", 3, 200, rng):
        text = write_text(world, skills, topic, rng)
        if skill in skills:
            with_it += 1
            assert feature(text), text
        else:
            without_it += 1
            assert not feature(text), (skills, text)
    assert with_it and without_it


def test_teacher_output_varies_and_is_reproducible(world):
    skills, topic = ["lantern word", "comma use", "colour word"], "bakery"
    texts = [write_text(world, skills, topic, random.Random(seed)) for seed in range(60)]
    assert len(set(texts)) >= 55
    assert {count_sentences(text) for text in texts} == {1, 2}
    openings = {words(text)[0] for text in texts}
    assert len(openings) >= 10
    colour_words = {word for text in texts for word in words(text)} & set(world.check("colour word").words)
    assert len(colour_words) >= 4
    assert write_text(world, skills, topic, random.Random(3)) == texts[3]


def test_teacher_rejects_skills_outside_the_catalog(world):
    with pytest.raises(HarnessError, match="not in the rule catalog"):
        write_text(world, ["metaphor"], "bakery", random.Random(0))
