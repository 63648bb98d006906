"""Tests of the synthetic movie-review grammar (generator, recognizer, metrics and VADER gold reward)."""

import math
import random
import statistics

import pytest
from vaderSentiment.vaderSentiment import BOOSTER_DICT, SentimentIntensityAnalyzer

from align_cli.tasks import sentiment_grammar as grammar

VADER = SentimentIntensityAnalyzer()


def compound(text: str) -> float:
    return VADER.polarity_scores(text)["compound"]


@pytest.fixture(scope="module")
def corpus() -> list[str]:
    return grammar.make_reviews(5000, seed=0)


# ---------------------------------------------------------------------------------------------- recognizer


def test_every_sampled_sentence_is_grammatical(corpus):
    for review in corpus:
        sentences = grammar.split_sentences(review)
        assert 1 <= len(sentences) <= 3, review
        assert sentences[-1].split()[-1] in (".", "!"), review
        for sentence in sentences:
            assert grammar.is_grammatical(sentence), sentence


def test_reviews_are_single_spaced_lowercase_tokens(corpus):
    for review in corpus:
        assert review == " ".join(review.split()), review
        assert review == review.lower(), review


@pytest.mark.parametrize(
    "sentence",
    [
        "i loved the acting .",
        "the ending was not very good .",
        "this movie is a masterpiece .",
        "it was an embarrassment .",
        "the acting was great but the plot was dull .",
        "i would not recommend it .",
        "i would highly recommend it to anyone !",
        "the plot was never boring .",
        "my wife did not like the ending .",
        "it was the worst movie i have ever seen .",
        "we watched the film last night .",
        "the film is about a detective .",
    ],
)
def test_accepts_handwritten_grammatical_sentences(sentence):
    assert grammar.is_grammatical(sentence)


@pytest.mark.parametrize(
    "sentence",
    [
        "movie the great plot was .",  # word salad
        "the movie was great",  # missing terminator
        "the movie was great . .",  # two terminators
        "the movie was loved .",  # a known verb in the adjective slot
        "i great the movie .",  # a known adjective in the verb slot
        "this movie is a great .",  # adjective where the noun goes
        "the movie was spectacular .",  # unknown word
        "the characters was great .",  # number agreement
        "this movie is an masterpiece .",  # wrong article
        "the acting was great but the plot was good .",  # "but" needs a contrast of polarities
        "i would recommend it . i loved it .",  # two sentences are not one sentence
        "the movie was  great .",  # double space
        " the movie was great .",  # leading space
        "The movie was great .",  # uppercase
        "the movie was great.",  # terminator glued to the word
        "",
    ],
)
def test_rejects_ungrammatical_strings(sentence):
    assert not grammar.is_grammatical(sentence)


# ---------------------------------------------------------------------------------------------- vocabulary


def test_vocabulary_is_sorted_unique_and_sized():
    assert grammar.VOCABULARY == sorted(set(grammar.VOCABULARY))
    assert 200 <= len(grammar.VOCABULARY) <= 400
    assert "." in grammar.VOCABULARY and "!" in grammar.VOCABULARY
    assert sum(word in VADER.lexicon for word in grammar.VOCABULARY) >= 90


def test_vocabulary_is_exactly_what_the_generator_emits():
    emitted = {token for review in grammar.make_reviews(20000, seed=1) for token in review.split()}
    assert emitted == set(grammar.VOCABULARY)


def test_sentiment_words_are_balanced():
    positive = [w for w in grammar.VOCABULARY if VADER.lexicon.get(w, 0) > 0]
    negative = [w for w in grammar.VOCABULARY if VADER.lexicon.get(w, 0) < 0]
    assert len(positive) >= 40 and len(negative) >= 40
    assert abs(len(positive) - len(negative)) <= 15


# ------------------------------------------------------------------------------------------------- reward


@pytest.mark.parametrize(
    ("prompt", "response"),
    [("the movie was", "great ."), ("i hated", " the plot . "), ("", "i would not recommend it ."), ("it", "")],
)
def test_gold_reward_is_vader_compound(prompt, response):
    expected = compound(prompt + " " + response.strip())
    assert grammar.gold_reward([prompt], [response]) == [expected]


def test_gold_reward_orders_obvious_cases():
    great, not_great, awful = grammar.gold_reward(
        ["the movie was", "the movie was", "the movie was"], ["great .", "not great .", "awful ."]
    )
    assert great > 0
    assert not_great < great
    assert awful < 0


# ------------------------------------------------------------------------------------ reviews and prompts


def test_make_reviews_is_deterministic_per_seed():
    assert grammar.make_reviews(200, seed=3) == grammar.make_reviews(200, seed=3)
    assert grammar.make_reviews(200, seed=3) != grammar.make_reviews(200, seed=4)


def test_sample_review_uses_the_given_rng():
    assert grammar.sample_review(random.Random(7)) == grammar.sample_review(random.Random(7))


def test_make_prompts_is_deterministic_and_within_bounds():
    prompts = grammar.make_prompts(500, seed=5, min_tokens=2, max_tokens=8)
    assert len(prompts) == 500
    assert prompts == grammar.make_prompts(500, seed=5, min_tokens=2, max_tokens=8)
    assert prompts != grammar.make_prompts(500, seed=6, min_tokens=2, max_tokens=8)
    lengths = [len(prompt.split(" ")) for prompt in prompts]
    assert min(lengths) == 2 and max(lengths) == 8
    assert all(prompt == " ".join(prompt.split()) for prompt in prompts)


def test_prompts_are_strict_prefixes_of_their_reviews(monkeypatch):
    # Replace the review sampler by a fixed cycle so each prompt's source review is known.
    reviews = ["i loved it .", "it was bad .", "the plot was really boring . i hated it .", "it runs"]
    drawn: list[str] = []

    def fake_sample_review(rng):
        review = reviews[len(drawn) % len(reviews)]
        drawn.append(review)
        return review

    monkeypatch.setattr(grammar, "sample_review", fake_sample_review)
    prompts = grammar.make_prompts(30, seed=0, min_tokens=2, max_tokens=8)
    # "it runs" has no token left after 2, so it is skipped and never yields a prompt.
    sources = [review for review in drawn if review != "it runs"]
    assert len(prompts) == len(sources) == 30
    for prompt, review in zip(prompts, sources, strict=True):
        prompt_tokens, review_tokens = prompt.split(" "), review.split(" ")
        assert 2 <= len(prompt_tokens) < len(review_tokens)
        assert review_tokens[: len(prompt_tokens)] == prompt_tokens


def test_corpus_sentiment_is_centred_and_spread(corpus):
    scores = [compound(review) for review in corpus]
    assert abs(statistics.mean(scores)) < 0.1
    assert statistics.pstdev(scores) > 0.4
    # Both clearly positive and clearly negative reviews are common.
    assert sum(score > 0.5 for score in scores) > 0.25 * len(scores)
    assert sum(score < -0.5 for score in scores) > 0.25 * len(scores)


def test_corpus_uses_negation_contrast_and_boosters(corpus):
    token_sets = [set(review.split()) for review in corpus]
    assert sum(bool(tokens & {"not", "never"}) for tokens in token_sets) > 0.1 * len(corpus)
    assert sum("but" in tokens for tokens in token_sets) > 0.1 * len(corpus)
    boosters = {word for tokens in token_sets for word in tokens if word in BOOSTER_DICT}
    assert len(boosters) >= 5
    exclaiming = sum("!" in tokens for tokens in token_sets) / len(corpus)
    assert 0.02 < exclaiming < 0.2


def test_sentence_tone_follows_review_tone():
    # Sentences drawn under a polarity should score with that sign under VADER (negation and "but" included).
    rng = random.Random(0)
    for polarity in (grammar.POSITIVE, grammar.NEGATIVE):
        sentences = [" ".join(grammar._sample_sentence(rng, polarity)) for _ in range(1000)]
        agreeing = sum(compound(sentence) * polarity > 0 for sentence in sentences)
        assert agreeing > 0.95 * len(sentences)


def test_make_reviews_is_fast():
    import time

    start = time.perf_counter()
    grammar.make_reviews(20000, seed=2)
    assert time.perf_counter() - start < 2.0


# ------------------------------------------------------------------------------------------------ metrics


def test_split_sentences():
    assert grammar.split_sentences("i loved it . the plot was dull ! it was") == [
        "i loved it .",
        "the plot was dull !",
        "it was",
    ]
    assert grammar.split_sentences("i loved it .") == ["i loved it ."]
    assert grammar.split_sentences("") == []


def test_grammatical_share_half():
    # "the movie was great ." (grammatical, finished by the response) and "plot movie the ." (not).
    assert grammar.grammatical_share(["the movie"], ["was great . plot movie the ."]) == 0.5


def test_grammatical_share_counts_only_sentences_with_response_tokens():
    prompts = ["i loved it .", "the movie was great . it", "the plot", "i hated it ."]
    responses = [
        "the plot was dull .",  # 1 counted, grammatical (the prompt's own sentence is not counted)
        "was boring . the",  # 2 counted: "it was boring ." yes, fragment "the" no
        "",  # nothing counted
        "   ",  # whitespace only: nothing counted
    ]
    assert grammar.grammatical_share(prompts, responses) == pytest.approx(2 / 3)


def test_grammatical_share_without_response_tokens_is_nan():
    assert math.isnan(grammar.grammatical_share(["i loved it ."], [""]))
    assert math.isnan(grammar.grammatical_share([], []))


def test_metrics_reject_mismatched_lengths():
    with pytest.raises(ValueError):
        grammar.grammatical_share(["a", "b"], ["c"])
    with pytest.raises(ValueError):
        grammar.gold_reward(["a"], [])


# ------------------------------------------------------------------------------------------------ grammar


def test_recursive_grammar_is_refused(monkeypatch):
    monkeypatch.setitem(grammar.GRAMMAR, "<LOOP>", ["<LOOP> again", "once"])
    monkeypatch.setattr(grammar, "_RULES", grammar._parse_rules())
    with pytest.raises(ValueError, match="recursive"):
        grammar._check_no_recursion()


def test_undefined_symbols_are_refused(monkeypatch):
    monkeypatch.setitem(grammar.GRAMMAR, "<BROKEN>", ["@NO_SUCH_CLASS"])
    with pytest.raises(KeyError):
        grammar._parse_rules()


# ---------------------------------------------------------------------------------------------- word prior


def test_word_prior_puts_vader_valence_over_3_in_embedding_dimension_0():
    import torch
    from omegaconf import OmegaConf

    from align_cli.config import ModelConfig, SentimentTaskConfig
    from align_cli.models import build_tiny_model, build_word_tokenizer
    from align_cli.tasks.sentiment import SentimentTask

    prior = SentimentTask(OmegaConf.structured(SentimentTaskConfig())).word_prior()
    assert prior["great"] == pytest.approx(VADER.lexicon["great"] / 3) and prior["awful"] < 0 < prior["superb"]
    assert set(prior) == set(grammar.SENTIMENT_WORDS) and "movie" not in prior
    tok = build_word_tokenizer(["the movie was great", "the movie was awful"], ["superb"])
    cfg = OmegaConf.structured(ModelConfig(name="tiny", hidden_size=16, num_layers=1, num_heads=2,
                                           intermediate_size=32))
    words = {w: prior[w] for w in ("great", "awful", "superb")}
    model = build_tiny_model(cfg, tok, seed=0, word_prior=words)
    plain = build_tiny_model(cfg, tok, seed=0)
    for embedding, reference in ((model.get_input_embeddings(), plain.get_input_embeddings()),
                                 (model.get_output_embeddings(), plain.get_output_embeddings())):
        column = embedding.weight[:, 0]
        for word, value in words.items():
            assert float(column[tok.convert_tokens_to_ids(word)]) == pytest.approx(value)
        assert float(column[tok.convert_tokens_to_ids("movie")]) == 0.0  # no prior: 0
        assert torch.equal(embedding.weight[:, 1:], reference.weight[:, 1:])  # the other dimensions as drawn
