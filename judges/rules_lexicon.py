"""The base vocabulary of the verifiable SKILL-MIX world, by word class.

The rule judge's "makes sense" point accepts only words from the world's
lexicon: the words below plus every word the rule catalog itself names (check
words, list words and topics; see ``judges.rules.RuleWorld``). The rule teacher
builds its sentences from the same classes, so everything it writes is inside
the lexicon by construction.

Nothing here may be a catalog word: no topic, no check word, no list word.
Otherwise a filler word would satisfy a skill or the topic by accident, and a
held-out word would leak into training texts. ``tests/test_rules.py`` checks it.
Only ``LONG_ADVERBS`` and ``LONG_ADJECTIVES`` have ten or more letters (the
long-word skill's words), and
none is written with an apostrophe or in capitals (except the pronoun "I").
"""

from __future__ import annotations

# Subjects that begin a clause. "I" is the only capitalised word in the base lexicon.
PRONOUN_SUBJECTS = ("I", "we", "she", "he", "they", "you")
NOUN_SUBJECTS = (
    "my sister",
    "my brother",
    "our neighbour",
    "the old man",
    "the children",
    "my friend",
    "the guide",
    "her uncle",
    "his aunt",
    "the twins",
    "the stranger",
    "the cook",
)

# Transitive verbs: (past tense, base form). The base form follows "did" in questions and negations.
VERBS = (
    ("found", "find"),
    ("carried", "carry"),
    ("painted", "paint"),
    ("cleaned", "clean"),
    ("watched", "watch"),
    ("moved", "move"),
    ("fixed", "fix"),
    ("bought", "buy"),
    ("opened", "open"),
    ("shared", "share"),
    ("noticed", "notice"),
    ("held", "hold"),
    ("lost", "lose"),
    ("kept", "keep"),
    ("wanted", "want"),
    ("liked", "like"),
    ("brought", "bring"),
    ("saw", "see"),
    ("left", "leave"),
    ("checked", "check"),
    ("needed", "need"),
    ("sold", "sell"),
    ("borrowed", "borrow"),
    ("hid", "hide"),
)

DETERMINERS = ("the", "my", "our", "this", "that", "her", "his", "their", "a")
ADJECTIVES = (
    "old",
    "small",
    "big",
    "warm",
    "quiet",
    "bright",
    "heavy",
    "tiny",
    "little",
    "new",
    "broken",
    "clean",
    "soft",
    "tall",
    "dusty",
    "shiny",
    "wooden",
    "empty",
    "lovely",
    "strange",
    "plain",
    "spare",
)
NOUNS = (
    "rope",
    "box",
    "cup",
    "door",
    "window",
    "table",
    "chair",
    "road",
    "path",
    "stone",
    "wall",
    "bag",
    "coat",
    "hat",
    "book",
    "key",
    "song",
    "story",
    "plan",
    "gift",
    "note",
    "cake",
    "tea",
    "milk",
    "bell",
    "card",
    "shoe",
    "bowl",
    "plate",
    "spoon",
    "jar",
    "bench",
    "fence",
    "gate",
    "roof",
    "shelf",
    "drawer",
    "sack",
    "crate",
    "barrel",
    "cart",
    "tent",
    "flag",
    "scarf",
    "glove",
    "ring",
    "coin",
    "letter",
)
PREPOSITIONS = ("near", "beside", "under", "behind", "inside", "by", "with", "on", "past", "in", "over", "from")
TIME_PHRASES = (
    "yesterday",
    "at dawn",
    "at noon",
    "at night",
    "in the morning",
    "in the evening",
    "last week",
    "before sunset",
    "later",
    "soon",
    "after supper",
    "by evening",
)
# The only words of ten or more letters in the world; the teacher uses them for the long-word skill.
LONG_ADVERBS = ("everywhere", "wonderfully", "beautifully", "afterwards", "altogether")
LONG_ADJECTIVES = ("remarkable", "comfortable", "delightful", "marvellous")
MANNER_ADVERBS = ("slowly", "quietly", "gently", "quickly", "happily", "carefully", "proudly", "calmly")
# Openers followed by a comma; used only when a comma is asked for.
COMMA_OPENERS = ("Well", "Sadly", "Luckily", "Later", "Still", "Then", "Of course", "At last", "Oh", "So")
# Verbs that introduce quoted words: (past tense, base form).
QUOTE_VERBS = (("said", "say"), ("whispered", "whisper"), ("shouted", "shout"), ("called", "call"), ("wrote", "write"))
QUOTE_PHRASES = (
    "yes",
    "come here",
    "look",
    "thank you",
    "good morning",
    "hello",
    "wait for me",
    "over here",
    "how lovely",
    "all done",
)
PAREN_PHRASES = ("the old one", "of course", "again", "just once", "as usual", "we think", "the small one", "at last")
COLON_LEADS = ("one thing", "just one thing", "a single thing", "it all", "both", "only this")
QUESTION_WORDS = ("where", "why", "when", "who")
# Glue words the grammar writes between the classes above.
GLUE = (
    "did",
    "and",
    "is",
    "was",
    "it",
    "to",
    "of",
    "an",
    "for",
    "hours",
    "days",
    "ago",
    "minutes",
    "at",
    "through",
)

BASE_WORDS: frozenset[str] = frozenset(
    word.lower()
    for group in (
        PRONOUN_SUBJECTS,
        NOUN_SUBJECTS,
        [verb for pair in VERBS for verb in pair],
        DETERMINERS,
        ADJECTIVES,
        NOUNS,
        PREPOSITIONS,
        TIME_PHRASES,
        MANNER_ADVERBS,
        LONG_ADVERBS,
        LONG_ADJECTIVES,
        COMMA_OPENERS,
        [verb for pair in QUOTE_VERBS for verb in pair],
        QUOTE_PHRASES,
        PAREN_PHRASES,
        COLON_LEADS,
        QUESTION_WORDS,
        GLUE,
    )
    for phrase in group
    for word in phrase.split()
)
