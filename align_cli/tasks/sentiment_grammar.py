"""A tiny grammar of English movie reviews: SFT corpus, prompts, a fluency guard and the VADER gold reward.

One small, non-recursive context-free grammar (`GRAMMAR` plus the word classes below) is the single source
of truth. Both the random generator (`sample_review`, `make_reviews`, `make_prompts`) and the exact
recognizer (`is_grammatical`, a compiled regular expression) are derived from it, so they cannot disagree.

Notation of a grammar alternative (a string of space-separated symbols, optionally `(weight, string)`):
  <NAME>   a nonterminal            @NAME   a word class (entries may be several tokens)
  word     a literal token          ""      the empty alternative (makes the parent optional)
A trailing "~" on a symbol flips the polarity for that symbol (see below).

Polarity. Every symbol is expanded under a polarity: +1 (positive), -1 (negative) or 0 (neutral).
A polar word class (e.g. @OPINION_ADJECTIVE) takes its words from the side of the current polarity, and
has no words at all under polarity 0. Negation is written as a flip ("was not @OPINION_ADJECTIVE~" is
"was not boring" in a positive sentence) and so is contrast ("<OPINION_CLAUSE>~ but <OPINION_CLAUSE>":
VADER weighs the clause after "but" more, so the sentence keeps the polarity of its second clause).
A side may be empty (@RECOMMEND has no negative word), which makes the alternatives that need it unusable
under that polarity. The recognizer is compiled from the same polarity-indexed expansion, so e.g.
"the acting was great but the plot was good ." is rejected because it can never be generated.
"""

from __future__ import annotations

import bisect
import math
import random
import re
from dataclasses import dataclass
from functools import cache

from vaderSentiment.vaderSentiment import BOOSTER_DICT, SentimentIntensityAnalyzer

# One analyzer for the whole process: building it parses the lexicon file (slow-ish).
_ANALYZER = SentimentIntensityAnalyzer()
_LEXICON: dict[str, float] = _ANALYZER.lexicon

POSITIVE, NEGATIVE, NEUTRAL = 1, -1, 0
TERMINATORS = (".", "!")
# Sentiment words must carry at least this much VADER valence, with the sign of their list.
_MIN_ABS_VALENCE = 0.5


# --------------------------------------------------------------------------------------------------------
# Word lists. Sentiment candidates are filtered against the VADER lexicon at import time (words VADER does
# not know, or scores with the other sign, e.g. "joke" is +1.2, are dropped); neutral entries are filtered
# the other way, so that the tone of a review comes only from the words meant to carry it.
# --------------------------------------------------------------------------------------------------------

_POSITIVE_ADJECTIVES = """great good brilliant excellent amazing wonderful fantastic superb beautiful funny
charming delightful enjoyable fun lovely perfect impressive clever gorgeous hilarious awesome entertaining
inspiring magnificent outstanding remarkable smart sweet thrilling exciting fascinating terrific
touching witty memorable""".split()
_NEGATIVE_ADJECTIVES = """awful boring bad terrible horrible dull stupid dumb weak poor lame ugly annoying
disappointing pathetic ridiculous painful messy confusing worthless depressing dreadful horrendous lousy
crappy irritating miserable idiotic frustrating dismal unpleasant embarrassing
tedious bland mediocre predictable""".split()
_POSITIVE_VERBS_PAST = "loved enjoyed liked adored admired appreciated".split()
_NEGATIVE_VERBS_PAST = "hated disliked despised loathed regretted detested".split()
_POSITIVE_VERBS_BASE = "love enjoy like appreciate".split()
_NEGATIVE_VERBS_BASE = "hate dislike despise".split()
_POSITIVE_NOUNS = "masterpiece triumph delight joy pleasure success winner treat marvel gift gem".split()
_NEGATIVE_NOUNS = """mess disaster failure bore waste catastrophe disappointment embarrassment flop fiasco
insult travesty joke letdown""".split()
_POSITIVE_SUPERLATIVES = ["best", "greatest"]
_NEGATIVE_SUPERLATIVES = ["worst"]

_RELATIVES = """wife husband kids brother sister parents family roommate dad mom son daughter girlfriend
boyfriend cousin friends""".split()
_ASPECTS_SINGULAR = [
    *"""movie film plot acting story ending cast script director soundtrack dialogue pacing cinematography
    music writing editing premise setting sequel screenplay direction lighting climax finale twist
    performance trailer animation villain hero""".split(),
    "camera work", "lead actor", "main character", "final act", "first half", "sound design",
]
_ASPECTS_PLURAL = [
    *"characters visuals actors performances effects songs scenes costumes sets twists flashbacks jokes".split(),
    "action scenes", "supporting actors",
]
_FILM_KINDS = "movie film sequel comedy thriller drama documentary cartoon remake musical western".split()
_NEUTRAL_ADJECTIVES = """long short slow loud dark quiet simple familiar unusual realistic old recent animated
silent colorful complicated different modern typical fast strange violent""".split()
_WATCH_VERBS = "watched saw rented streamed caught".split()
_WHEN_PHRASES = [
    "last night", "last week", "yesterday", "on friday", "on saturday", "on sunday", "at home",
    "at the cinema", "in the theater", "twice", "on a plane", "with my family",
]
_TOPICS = [
    "a family", "a soldier", "a detective", "a young girl", "an old man", "a small town", "two brothers",
    "a robot", "a teacher", "a band", "a boxer", "a dog", "a spy", "a lawyer", "a doctor", "a chef",
    "a pilot", "a painter", "a king", "an astronaut", "a farmer", "a journalist", "a nurse", "three sisters",
    "a war",
]
_NUMBERS = ["two", "three", "four"]
# Intensifiers VADER treats as boosters (and dampeners: "somewhat", "slightly").
_ADJECTIVE_BOOSTERS = """very really extremely so quite totally absolutely incredibly utterly remarkably
particularly unbelievably somewhat slightly""".split()
_VERB_BOOSTERS = "really absolutely totally thoroughly completely".split()
_RECOMMEND_BOOSTERS = "highly really absolutely".split()
_NOUN_BOOSTERS = "total major tremendous".split()  # "a total mess": all start with a consonant


def _sentiment_words(candidates: list[str], sign: int) -> list[str]:
    return [word for word in candidates if sign * _LEXICON.get(word, 0.0) >= _MIN_ABS_VALENCE]


def _neutral_entries(candidates: list[str]) -> list[str]:
    return [entry for entry in candidates if not any(token in _LEXICON for token in entry.split())]


def _boosters(candidates: list[str]) -> list[str]:
    return [word for word in _neutral_entries(candidates) if word in BOOSTER_DICT]


def _with_article(noun: str) -> str:
    return ("an " if noun[0] in "aeiou" else "a ") + noun


_OPINION_NOUNS = {
    POSITIVE: _sentiment_words(_POSITIVE_NOUNS, POSITIVE),
    NEGATIVE: _sentiment_words(_NEGATIVE_NOUNS, NEGATIVE),
}

# A polar class maps polarity -> entries; a neutral class is a plain list of entries.
WORD_CLASSES: dict[str, list[str] | dict[int, list[str]]] = {
    "OPINION_ADJECTIVE": {
        POSITIVE: _sentiment_words(_POSITIVE_ADJECTIVES, POSITIVE),
        NEGATIVE: _sentiment_words(_NEGATIVE_ADJECTIVES, NEGATIVE),
    },
    "OPINION_VERB_PAST": {
        POSITIVE: _sentiment_words(_POSITIVE_VERBS_PAST, POSITIVE),
        NEGATIVE: _sentiment_words(_NEGATIVE_VERBS_PAST, NEGATIVE),
    },
    "OPINION_VERB_BASE": {
        POSITIVE: _sentiment_words(_POSITIVE_VERBS_BASE, POSITIVE),
        NEGATIVE: _sentiment_words(_NEGATIVE_VERBS_BASE, NEGATIVE),
    },
    "OPINION_NOUN": _OPINION_NOUNS,
    "A_OPINION_NOUN": {sign: [_with_article(noun) for noun in nouns] for sign, nouns in _OPINION_NOUNS.items()},
    "SUPERLATIVE": {
        POSITIVE: _sentiment_words(_POSITIVE_SUPERLATIVES, POSITIVE),
        NEGATIVE: _sentiment_words(_NEGATIVE_SUPERLATIVES, NEGATIVE),
    },
    # Only a positive side: "i would recommend it" exists, its negative is written with a negation.
    "RECOMMEND": {POSITIVE: _sentiment_words(["recommend"], POSITIVE), NEGATIVE: []},
    "RELATIVE": _neutral_entries(_RELATIVES),
    "ASPECT_SINGULAR": _neutral_entries(_ASPECTS_SINGULAR),
    "ASPECT_PLURAL": _neutral_entries(_ASPECTS_PLURAL),
    "FILM_KIND": _neutral_entries(_FILM_KINDS),
    "NEUTRAL_ADJECTIVE": _neutral_entries(_NEUTRAL_ADJECTIVES),
    "WATCH_VERB": _neutral_entries(_WATCH_VERBS),
    "WHEN": _neutral_entries(_WHEN_PHRASES),
    "TOPIC": _neutral_entries(_TOPICS),
    "NUMBER": _neutral_entries(_NUMBERS),
    "BOOSTER": _boosters(_ADJECTIVE_BOOSTERS),
    "VERB_BOOSTER": _boosters(_VERB_BOOSTERS),
    "RECOMMEND_BOOSTER": _boosters(_RECOMMEND_BOOSTERS),
    "NOUN_BOOSTER": _boosters(_NOUN_BOOSTERS),
}

GRAMMAR: dict[str, list[str | tuple[float, str]]] = {
    # Top level (see _TOP_LEVEL): polar sentences under +1 / -1, neutral sentences under 0.
    "<POLAR_SENTENCE>": [
        (5, "<OPINION_CLAUSE> <END>"),
        (2, "<OPINION_CLAUSE>~ but <OPINION_CLAUSE> <END>"),
        (1, "<RECOMMENDATION> <END>"),
        (1, "<SUPERLATIVE_CLAUSE> <END>"),
    ],
    "<NEUTRAL_SENTENCE>": [
        (3, "<SUBJECT> @WATCH_VERB <FILM_OBJECT> <OPT_WHEN> <END>"),
        (2, "<SINGULAR_NP> <SINGULAR_COPULA> <OPT_BOOSTER> @NEUTRAL_ADJECTIVE <END>"),
        (1, "<PLURAL_NP> <PLURAL_COPULA> <OPT_BOOSTER> @NEUTRAL_ADJECTIVE <END>"),
        (2, "the @FILM_KIND is about @TOPIC <END>"),
        (1, "it runs about @NUMBER hours <END>"),
    ],
    "<OPINION_CLAUSE>": [
        (3, "<SUBJECT> <OPT_VERB_BOOSTER> @OPINION_VERB_PAST <OBJECT>"),
        (1, "<SUBJECT> did not @OPINION_VERB_BASE~ <OBJECT>"),
        (4, "<SINGULAR_NP> <SINGULAR_COPULA> <ADJECTIVE_PHRASE>"),
        (2, "<PLURAL_NP> <PLURAL_COPULA> <ADJECTIVE_PHRASE>"),
        (2, "<SINGULAR_NP> <SINGULAR_COPULA> <NOUN_PREDICATE>"),
    ],
    "<ADJECTIVE_PHRASE>": [
        (5, "<OPT_BOOSTER> @OPINION_ADJECTIVE"),
        (1, "@OPINION_ADJECTIVE and <OPT_BOOSTER> @OPINION_ADJECTIVE"),
        (2, "<NEGATION> <OPT_BOOSTER> @OPINION_ADJECTIVE~"),
    ],
    "<NOUN_PREDICATE>": [
        (3, "@A_OPINION_NOUN"),
        (2, "a @NOUN_BOOSTER @OPINION_NOUN"),
        (1, "not @A_OPINION_NOUN~"),
    ],
    "<RECOMMENDATION>": [
        "<SUBJECT> would <OPT_RECOMMEND_BOOSTER> @RECOMMEND <RECOMMEND_OBJECT>",  # positive only
        "<SUBJECT> would <NEGATION> @RECOMMEND~ <RECOMMEND_OBJECT>",  # negative only
    ],
    "<SUPERLATIVE_CLAUSE>": ["<SUPERLATIVE_SUBJECT> was the @SUPERLATIVE @FILM_KIND <SUPERLATIVE_SCOPE>"],
    "<SUPERLATIVE_SUBJECT>": ["it", "this", "that"],
    "<SUPERLATIVE_SCOPE>": [
        (2, ""), "of the year", "of the decade", "of all time", "i have ever seen", "i have seen in years",
    ],
    "<SUBJECT>": [(4, "i"), (2, "we"), (2, "my @RELATIVE"), "everyone", "the audience"],
    "<SINGULAR_NP>": [(4, "<DETERMINER> @ASPECT_SINGULAR"), "it"],
    "<PLURAL_NP>": [(4, "the @ASPECT_PLURAL"), "some of the @ASPECT_PLURAL", "most of the @ASPECT_PLURAL"],
    "<DETERMINER>": [(4, "the"), "this", "that"],
    "<OBJECT>": [(4, "<SINGULAR_NP>"), (2, "<PLURAL_NP>"), "every minute of it", "every scene"],
    "<FILM_OBJECT>": ["it", "<DETERMINER> @FILM_KIND"],
    "<SINGULAR_COPULA>": ["is", (2, "was")],
    "<PLURAL_COPULA>": ["are", (2, "were")],
    "<NEGATION>": [(3, "not"), "never"],
    "<OPT_BOOSTER>": [(3, ""), (2, "@BOOSTER")],
    "<OPT_VERB_BOOSTER>": [(3, ""), "@VERB_BOOSTER"],
    "<OPT_RECOMMEND_BOOSTER>": ["", "@RECOMMEND_BOOSTER"],
    "<RECOMMEND_OBJECT>": [(3, "it"), "this @FILM_KIND", "it to anyone", "it to everyone", "it to my @RELATIVE"],
    "<OPT_WHEN>": [(2, ""), "@WHEN"],
    "<END>": [(19, "."), (1, "!")],  # about 5% of sentences end with "!"
}

# What a sentence can be: (start symbol, polarity). Sampling uses exactly these, and so does the recognizer.
_TOP_LEVEL = (("<POLAR_SENTENCE>", POSITIVE), ("<POLAR_SENTENCE>", NEGATIVE), ("<NEUTRAL_SENTENCE>", NEUTRAL))

# Review-level mix. Positive sentences score a little higher under VADER than negative ones, so slightly
# more negative reviews keep the corpus mean compound close to 0 (measured: about -0.003 on 20k reviews).
REVIEW_POLARITY_WEIGHTS = {"positive": 0.38, "negative": 0.42, "mixed": 0.20}
SENTENCE_COUNT_WEIGHTS = {1: 0.3, 2: 0.4, 3: 0.3}
NEUTRAL_SENTENCE_PROBABILITY = 0.15


# --------------------------------------------------------------------------------------------------------
# Compiling the grammar
# --------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Symbol:
    kind: str  # "nonterminal", "class" or "word"
    name: str
    flip: bool


def _parse_symbol(text: str) -> _Symbol:
    flip = text.endswith("~")
    name = text[:-1] if flip else text
    if name.startswith("<") and name.endswith(">"):
        if name not in GRAMMAR:
            raise KeyError(f"undefined nonterminal {name}")
        return _Symbol("nonterminal", name, flip)
    if name.startswith("@"):
        if name[1:] not in WORD_CLASSES:
            raise KeyError(f"undefined word class {name}")
        return _Symbol("class", name[1:], flip)
    return _Symbol("word", name, flip)


def _parse_rules() -> dict[str, list[tuple[float, tuple[_Symbol, ...]]]]:
    rules = {}
    for nonterminal, alternatives in GRAMMAR.items():
        parsed = []
        for alternative in alternatives:
            weight, body = alternative if isinstance(alternative, tuple) else (1.0, alternative)
            parsed.append((float(weight), tuple(_parse_symbol(text) for text in body.split())))
        rules[nonterminal] = parsed
    return rules


_RULES = _parse_rules()


def _check_no_recursion() -> None:
    """The grammar must be finite (no nonterminal may reach itself), which also bounds sentence length."""
    done: set[str] = set()

    def visit(nonterminal: str, path: tuple[str, ...]) -> None:
        if nonterminal in path:
            raise ValueError(f"recursive grammar: {' -> '.join((*path, nonterminal))}")
        if nonterminal in done:
            return
        for _, body in _RULES[nonterminal]:
            for symbol in body:
                if symbol.kind == "nonterminal":
                    visit(symbol.name, (*path, nonterminal))
        done.add(nonterminal)

    for nonterminal in _RULES:
        visit(nonterminal, ())


_check_no_recursion()


@cache
def _class_entries(name: str, polarity: int) -> tuple[tuple[str, ...], ...]:
    entries = WORD_CLASSES[name]
    if isinstance(entries, dict):  # polar class: no words under neutral polarity
        entries = entries.get(polarity, [])
    return tuple(tuple(entry.split()) for entry in entries)


def _is_possible(symbol: _Symbol, polarity: int) -> bool:
    """Whether the symbol can produce anything under this polarity."""
    polarity = -polarity if symbol.flip else polarity
    if symbol.kind == "word":
        return True
    if symbol.kind == "class":
        return bool(_class_entries(symbol.name, polarity))
    return bool(_options(symbol.name, polarity)[2])


@cache
def _options(nonterminal: str, polarity: int) -> tuple[list[float], float, list[tuple[_Symbol, ...]]]:
    """The usable alternatives of a nonterminal under a polarity, as (cumulative weights, total, bodies)."""
    cumulative, bodies, total = [], [], 0.0
    for weight, body in _RULES[nonterminal]:
        if all(_is_possible(symbol, polarity) for symbol in body):
            total += weight
            cumulative.append(total)
            bodies.append(body)
    return cumulative, total, bodies


# --------------------------------------------------------------------------------------------------------
# Generator
# --------------------------------------------------------------------------------------------------------


def _expand(symbol: _Symbol, polarity: int, rng: random.Random, out: list[str]) -> None:
    if symbol.flip:
        polarity = -polarity
    if symbol.kind == "word":
        out.append(symbol.name)
    elif symbol.kind == "class":
        entries = _class_entries(symbol.name, polarity)
        out.extend(entries[int(rng.random() * len(entries))])
    else:
        cumulative, total, bodies = _options(symbol.name, polarity)
        index = min(bisect.bisect_right(cumulative, rng.random() * total), len(bodies) - 1)
        for child in bodies[index]:
            _expand(child, polarity, rng, out)


def _sample_sentence(rng: random.Random, polarity: int) -> list[str]:
    start = "<NEUTRAL_SENTENCE>" if polarity == NEUTRAL else "<POLAR_SENTENCE>"
    tokens: list[str] = []
    _expand(_Symbol("nonterminal", start, False), polarity, rng, tokens)
    return tokens


def _weighted_choice(rng: random.Random, weights: dict):
    return rng.choices(list(weights), weights=list(weights.values()))[0]


def sample_review(rng: random.Random) -> str:
    """One review of 1-3 sentences whose sentences mostly follow a review-level polarity."""
    review_polarity = _weighted_choice(rng, REVIEW_POLARITY_WEIGHTS)
    tokens: list[str] = []
    for _ in range(_weighted_choice(rng, SENTENCE_COUNT_WEIGHTS)):
        if rng.random() < NEUTRAL_SENTENCE_PROBABILITY:
            polarity = NEUTRAL
        elif review_polarity == "mixed":
            polarity = rng.choice((POSITIVE, NEGATIVE))
        else:
            polarity = POSITIVE if review_polarity == "positive" else NEGATIVE
        tokens.extend(_sample_sentence(rng, polarity))
    return " ".join(tokens)


def make_reviews(n: int, seed: int) -> list[str]:
    """`n` reviews, deterministic given `seed` (the SFT corpus)."""
    rng = random.Random(f"reviews:{seed}")  # a string seed hashes stably across processes
    return [sample_review(rng) for _ in range(n)]


def make_prompts(n: int, seed: int, min_tokens: int = 2, max_tokens: int = 8) -> list[str]:
    """The first k tokens (k uniform in [min_tokens, max_tokens], always fewer than the review has) of `n`
    fresh reviews; deterministic given `seed`. Reviews too short to leave a continuation are skipped."""
    if not 1 <= min_tokens <= max_tokens:
        raise ValueError(f"need 1 <= min_tokens <= max_tokens, got {min_tokens}, {max_tokens}")
    rng = random.Random(f"prompts:{seed}")  # a different stream from make_reviews with the same seed
    prompts = []
    while len(prompts) < n:
        tokens = sample_review(rng).split(" ")
        if len(tokens) <= min_tokens:
            continue
        length = min(rng.randint(min_tokens, max_tokens), len(tokens) - 1)
        prompts.append(" ".join(tokens[:length]))
    return prompts


# --------------------------------------------------------------------------------------------------------
# Recognizer: a regular expression compiled from the same rules. Every token in the pattern is followed by
# one space and the sentence is matched with a space appended, so concatenation and empty alternatives need
# no special cases and any other spacing is rejected.
# --------------------------------------------------------------------------------------------------------


def _alternation(patterns: list[str]) -> str:
    return "(?:" + "|".join(patterns) + ")"


def _pattern(symbol: _Symbol, polarity: int) -> str | None:
    """Regex for what the symbol produces under this polarity, or None if it produces nothing."""
    polarity = -polarity if symbol.flip else polarity
    if symbol.kind == "word":
        return re.escape(symbol.name) + " "
    if symbol.kind == "class":
        entries = _class_entries(symbol.name, polarity)
        return _alternation([re.escape(" ".join(entry)) + " " for entry in entries]) if entries else None
    return _nonterminal_pattern(symbol.name, polarity)


@cache
def _nonterminal_pattern(nonterminal: str, polarity: int) -> str | None:
    alternatives = []
    for _, body in _RULES[nonterminal]:
        parts = [_pattern(symbol, polarity) for symbol in body]
        if all(part is not None for part in parts):
            alternatives.append("".join(parts))
    return _alternation(alternatives) if alternatives else None


def _compile_recognizer() -> re.Pattern[str]:
    patterns = [_nonterminal_pattern(start, polarity) for start, polarity in _TOP_LEVEL]
    return re.compile(_alternation([pattern for pattern in patterns if pattern is not None]))


_SENTENCE_RE = _compile_recognizer()


def is_grammatical(sentence: str) -> bool:
    """True iff the grammar can produce exactly this sentence (tokens separated by single spaces, including
    its terminator)."""
    return _SENTENCE_RE.fullmatch(sentence + " ") is not None


# --------------------------------------------------------------------------------------------------------
# Vocabulary: every token some reachable, usable alternative can emit.
# --------------------------------------------------------------------------------------------------------


def _collect_tokens(symbol: _Symbol, polarity: int, seen: set[tuple[str, int]], tokens: set[str]) -> None:
    polarity = -polarity if symbol.flip else polarity
    if symbol.kind == "word":
        tokens.add(symbol.name)
    elif symbol.kind == "class":
        tokens.update(token for entry in _class_entries(symbol.name, polarity) for token in entry)
    elif (symbol.name, polarity) not in seen:
        seen.add((symbol.name, polarity))
        for body in _options(symbol.name, polarity)[2]:
            for child in body:
                _collect_tokens(child, polarity, seen, tokens)


def _vocabulary() -> list[str]:
    seen: set[tuple[str, int]] = set()
    tokens: set[str] = set()
    for start, polarity in _TOP_LEVEL:
        _collect_tokens(_Symbol("nonterminal", start, False), polarity, seen, tokens)
    return sorted(tokens)


VOCABULARY: list[str] = _vocabulary()
SENTIMENT_WORDS: list[str] = [token for token in VOCABULARY if token in _LEXICON]


def valence(word: str) -> float:
    """VADER's lexicon valence of a word (0 for words it does not know)."""
    return _LEXICON.get(word, 0.0)
assert len(SENTIMENT_WORDS) >= 90, f"only {len(SENTIMENT_WORDS)} sentiment words survived the lexicon filter"


# --------------------------------------------------------------------------------------------------------
# Metrics
# --------------------------------------------------------------------------------------------------------


def _sentence_spans(tokens: list[str]) -> list[tuple[int, int]]:
    """[start, end) token spans, each ending after a terminator; an unfinished tail is a span too."""
    spans, start = [], 0
    for index, token in enumerate(tokens):
        if token in TERMINATORS:
            spans.append((start, index + 1))
            start = index + 1
    if start < len(tokens):
        spans.append((start, len(tokens)))
    return spans


def split_sentences(text: str) -> list[str]:
    """Split token text after each "." or "!" token (kept with its sentence); a trailing unfinished fragment
    is returned as a sentence too. Runs of whitespace count as one separator."""
    tokens = text.split()
    return [" ".join(tokens[start:end]) for start, end in _sentence_spans(tokens)]


def grammatical_share(prompts: list[str], responses: list[str]) -> float:
    """Share of grammatical sentences among those that contain at least one response token (a sentence the
    prompt starts and the response finishes counts); NaN when no sentence was counted."""
    counted = grammatical = 0
    for prompt, response in zip(prompts, responses, strict=True):
        prompt_tokens, response_tokens = prompt.split(), response.split()
        if not response_tokens:
            continue
        tokens = prompt_tokens + response_tokens
        for start, end in _sentence_spans(tokens):
            if end > len(prompt_tokens):  # the sentence holds at least one response token
                counted += 1
                grammatical += is_grammatical(" ".join(tokens[start:end]))
    return grammatical / counted if counted else math.nan


def gold_reward(prompts: list[str], responses: list[str]) -> list[float]:
    """VADER compound score of prompt + " " + response.strip(), in [-1, 1]."""
    return [_ANALYZER.polarity_scores(prompt + " " + response.strip())["compound"]
            for prompt, response in zip(prompts, responses, strict=True)]
