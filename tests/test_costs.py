"""Tokens and cost, before and after paying.

After: every paid request's tokens (an API's ``usage``, a local model's
tokenizer) are counted in the store with the inputs sent, so the totals read
the same from any process. Before: ``estimate_queries`` says what a fit or a
prediction would send, given what the store holds, without sending anything.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import pickle
import re

import numpy as np
import pytest
from sklearn.feature_extraction.text import CountVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline

from skcrosstune import BlackBoxEmbedder, BlackBoxPromptClassifier, CrossTuneClassifier, DecTClassifier, LLMAugmenter
from skcrosstune.backends.local import LocalBackend
from skcrosstune.cache import QueryEstimate
from skcrosstune.stores import query_counts

POSITIVE = ["a great film", "good acting and a fine story", "fun , really funny", "the best scene", "love it"]
NEGATIVE = ["a boring , long film", "awful plot", "the worst acting", "dull and too long", "bad , really bad"]
TEXTS = POSITIVE + NEGATIVE
LABELS = np.array(["pos"] * 5 + ["neg"] * 5, dtype=object)
DESCRIPTIONS = {"pos": "a glowing review", "neg": "a scathing review"}
PAIRS = [(t, t[::-1]) for t in TEXTS]
SPAWN = multiprocessing.get_context("spawn")


def api_embedder(server, store, **params) -> BlackBoxEmbedder:
    return BlackBoxEmbedder("openai:test-embed", base_url=server.url, api_key_env=None, store=store, **params)


def _counts_in_another_process(store, fingerprint, queue) -> None:
    queue.put(query_counts(store, fingerprint))


# ------------------------------------------------------------------- after
def test_api_tokens_add_up_to_what_the_server_billed_also_from_another_process(openai_server, tmp_path):
    store = str(tmp_path / "store")
    clf = CrossTuneClassifier(api_embedder(openai_server, store), DESCRIPTIONS, max_epochs=2, cv=0, random_state=0)
    clf.fit(TEXTS, LABELS)
    clf.predict(TEXTS[:3] + ["a film never seen before"])
    billed = openai_server.usage["prompt_tokens"]
    assert billed > 0
    counts = clf.embedder_.store_counts()
    assert counts["prompt_tokens"] == billed and counts["completion_tokens"] == 0
    assert counts["sent"] == len(set(TEXTS) | set(DESCRIPTIONS.values()) | {"a film never seen before"})
    assert clf.embedder_.n_tokens_ + clf.description_embedder_.n_tokens_ == billed

    queue = SPAWN.Queue()
    child = SPAWN.Process(target=_counts_in_another_process, args=(store, clf.embedder_.backend_.fingerprint(), queue))
    child.start()
    child.join(60)
    assert queue.get(timeout=5) == counts

    # a refit sends nothing, so nothing more is billed or counted
    clf.fit(TEXTS, LABELS)
    assert openai_server.usage["prompt_tokens"] == billed
    assert clf.embedder_.n_tokens_ == 0 and clf.embedder_.store_counts()["prompt_tokens"] == billed


def test_a_local_model_counts_the_tokens_it_read_with_its_tokenizer(tiny_bert, tmp_path):
    embedder = BlackBoxEmbedder(str(tiny_bert), store=str(tmp_path / "store")).fit(TEXTS)
    expected = sum(len(ids) for ids in LocalBackend(str(tiny_bert)).loaded[0](TEXTS)["input_ids"])
    embedder.transform(TEXTS + TEXTS[:2])  # repeats are not sent again
    assert embedder.n_tokens_ == expected
    assert embedder.store_counts()["prompt_tokens"] == expected
    assert embedder.store_counts(price_per_1k_tokens=2.0)["cost"] == pytest.approx(expected * 2.0 / 1000)


def test_a_loaded_model_starts_its_counters_at_zero(tiny_bert, tmp_path):
    clf = CrossTuneClassifier(BlackBoxEmbedder(str(tiny_bert), store=str(tmp_path / "s")), max_epochs=2, cv=0)
    clf.fit(TEXTS, LABELS)
    assert clf.embedder_.n_queries_ > 0 and clf.embedder_.n_tokens_ > 0
    loaded = pickle.loads(pickle.dumps(clf))
    assert (loaded.embedder_.n_queries_, loaded.embedder_.n_cache_hits_, loaded.embedder_.n_tokens_) == (0, 0, 0)
    loaded.predict(TEXTS[:2] + ["new text"])
    assert (loaded.embedder_.n_queries_, loaded.embedder_.n_cache_hits_) == (1, 2)


def test_chat_tokens_are_counted_apart_and_priced_apart(openai_server, tmp_path):
    augmenter = _augmenter(openai_server, tmp_path, n_per_class=3, n_per_request=3)
    augmenter.fit_resample(TEXTS, LABELS)
    billed = openai_server.usage
    assert billed["prompt_tokens"] > 0 and billed["completion_tokens"] > 0
    assert (augmenter.n_prompt_tokens_, augmenter.n_completion_tokens_) == (
        billed["prompt_tokens"],
        billed["completion_tokens"],
    )
    counts = augmenter.store_counts(price_per_1k_tokens=(1.0, 4.0))
    assert counts["sent"] == augmenter.n_requests_ == 2 and counts["hits"] == 0
    assert counts["prompt_tokens"] == billed["prompt_tokens"]
    assert counts["completion_tokens"] == billed["completion_tokens"]
    assert counts["cost"] == pytest.approx((billed["prompt_tokens"] + 4 * billed["completion_tokens"]) / 1000)

    augmenter.fit_resample(TEXTS, LABELS)  # answered by the store: free
    assert (augmenter.n_requests_, augmenter.n_prompt_tokens_, augmenter.n_completion_tokens_) == (0, 0, 0)
    assert augmenter.store_counts()["hits"] == 2 and openai_server.usage == billed


def test_a_server_without_usage_counts_no_tokens_and_still_stores_the_answers(openai_server, tmp_path):
    from ._openai_server import Fault

    def without_usage(answer):
        return {k: v for k, v in answer.items() if k != "usage"}

    openai_server.push(Fault(mutate=without_usage, answer_normally=True))
    embedder = api_embedder(openai_server, str(tmp_path / "store"), dimensions=8).fit(TEXTS[:2])
    embedder.transform(TEXTS[:2])
    counts = embedder.store_counts()
    assert (counts["sent"], counts["prompt_tokens"], embedder.n_tokens_) == (2, 0, 0)


@pytest.mark.parametrize("price", [-1.0, float("nan"), "1", (1.0, 2.0, 3.0), True])
def test_a_bad_price_is_refused_naming_the_argument(tiny_bert, tmp_path, price):
    embedder = BlackBoxEmbedder(str(tiny_bert), store=str(tmp_path / "store")).fit(TEXTS)
    with pytest.raises(ValueError, match="price_per_1k_tokens"):
        embedder.store_counts(price_per_1k_tokens=price)
    with pytest.raises(ValueError, match="price_per_1k_tokens"):
        embedder.estimate_queries(TEXTS, price_per_1k_tokens=price)


# ------------------------------------------------------------------ before
def _fit_configurations(tiny_bert, store):
    embedder = BlackBoxEmbedder(str(tiny_bert), store=store)
    masked_lm = BlackBoxEmbedder(str(tiny_bert), pooling="mask", template="{text} it was {mask} .", store=store)
    pair_lm = BlackBoxEmbedder(str(tiny_bert), pooling="mask", template="{text} ? {mask} , {text_pair}", store=store)
    words = {"pos": "great", "neg": ["bad", "awful"]}
    return {
        "crosstune-texts": (CrossTuneClassifier(embedder, DESCRIPTIONS, max_epochs=2, cv=0), TEXTS),
        "crosstune-pairs": (CrossTuneClassifier(embedder, max_epochs=2, cv=0), PAIRS),
        "crosstune-repeats": (CrossTuneClassifier(embedder, {"pos": TEXTS[0], "neg": "x"}, max_epochs=2, cv=0), TEXTS),
        "dect-descriptions": (DecTClassifier(embedder, label_descriptions=DESCRIPTIONS, max_epochs=2, cv=0), TEXTS),
        "dect-content-free": (
            DecTClassifier(embedder, label_descriptions=DESCRIPTIONS, calibration="content_free", max_epochs=2, cv=0),
            TEXTS,
        ),
        "dect-label-words": (DecTClassifier(masked_lm, label_words=words, max_epochs=2, cv=0), TEXTS),
        "dect-label-word-pairs": (
            DecTClassifier(pair_lm, label_words={"pos": "yes", "neg": "no"}, max_epochs=2, cv=0),
            PAIRS,
        ),
        "dect-no-zero-shot": (DecTClassifier(embedder, zero_shot_weight=0, max_epochs=2, cv=0), TEXTS),
    }


@pytest.mark.parametrize(
    "name",
    [
        "crosstune-texts",
        "crosstune-pairs",
        "crosstune-repeats",
        "dect-descriptions",
        "dect-content-free",
        "dect-label-words",
        "dect-label-word-pairs",
        "dect-no-zero-shot",
    ],
)
def test_the_estimate_before_a_fit_is_what_the_fit_sends(tiny_bert, tmp_path, sent, name):
    clf, X = _fit_configurations(tiny_bert, str(tmp_path / "store"))[name]
    clf.fit(X[:4], np.array(["pos", "pos", "neg", "neg"], dtype=object))
    sent.clear()  # a warm start: what the first fit paid for is in the store

    estimate = clf.estimate_queries(X, LABELS)
    assert sent == [], "an estimate sends nothing"
    clf.fit(X, LABELS)
    assert estimate.n_to_send == len(sent) > 0
    assert estimate.tokens == _tokens(clf, sent)

    again = clf.estimate_queries(X, LABELS)
    assert again.n_to_send == 0 and again.n_stored == again.n_unique and again.tokens == 0
    sent.clear()
    clf.fit(X, LABELS)
    assert sent == []


def _tokens(clf, items) -> int:
    """The tokens the black box read for ``items``, as its query tokenizes them."""
    backend = clf.embedder_.backend_
    return sum(int(backend._tokenize(backend.loaded[0], [item])["attention_mask"].sum()) for item in items)


def test_the_estimate_of_a_prediction_and_its_price(tiny_bert, tmp_path, sent):
    clf = CrossTuneClassifier(BlackBoxEmbedder(str(tiny_bert), store=str(tmp_path / "s")), max_epochs=2, cv=0)
    clf.fit(TEXTS, LABELS)
    new = ["an unseen review", "another one", "an unseen review"]
    sent.clear()
    paid_before = clf.embedder_.n_tokens_
    estimate = clf.estimate_queries(TEXTS[:3] + new, price_per_1k_tokens=0.5)
    assert isinstance(estimate, QueryEstimate)
    assert (estimate.n_inputs, estimate.n_unique, estimate.n_stored, estimate.n_to_send) == (6, 5, 3, 2)
    assert sent == []
    clf.predict(TEXTS[:3] + new)
    assert sorted(sent) == sorted(set(new))
    assert estimate.tokens == clf.embedder_.n_tokens_ - paid_before > 0
    assert estimate.cost == pytest.approx(estimate.tokens * 0.5 / 1000)


def test_an_api_estimate_counts_tokens_with_the_tokenizer_given(openai_server, tmp_path):
    embedder = api_embedder(openai_server, str(tmp_path / "store"))
    estimate = embedder.estimate_queries(TEXTS)
    assert openai_server.request_count == 0, "an estimate of an unfitted API embedder sends no probe"
    assert estimate.n_to_send == len(TEXTS) and estimate.tokens is None and estimate.cost is None

    words = embedder.estimate_queries(TEXTS, tokenizer=str.split, price_per_1k_tokens=1.0)
    embedder.fit_transform(TEXTS)  # the test server bills one token per word
    assert words.tokens == openai_server.usage["prompt_tokens"] == embedder.store_counts()["prompt_tokens"]
    assert words.cost == pytest.approx(words.tokens / 1000)
    assert embedder.estimate_queries(TEXTS, tokenizer=lambda text: len(text.split())).tokens == 0


def test_the_estimate_refuses_what_it_cannot_tell(tiny_bert, tmp_path):
    embedder = BlackBoxEmbedder(str(tiny_bert), store=str(tmp_path / "store"))
    with pytest.raises(TypeError, match="tokenizer"):
        embedder.estimate_queries(TEXTS, tokenizer="cl100k_base")
    with pytest.raises(ValueError, match="one price_per_1k_tokens"):
        embedder.estimate_queries(TEXTS, price_per_1k_tokens=(1.0, 2.0))
    clf = BlackBoxPromptClassifier(embedder, label_descriptions=DESCRIPTIONS)
    with pytest.raises(ValueError, match="max_queries"):
        clf.estimate_queries(TEXTS, LABELS)
    with pytest.raises(ValueError, match="label_descriptions has no entry"):
        CrossTuneClassifier(embedder, {"pos": "only one"}).estimate_queries(TEXTS, LABELS)


def _writer(body):
    """A well-behaved generator: as many examples as asked for, of the label asked for."""
    asked = re.search(r'Write (\d+) new, diverse examples of the label "(.*?)"', body["messages"][-1]["content"])
    n, label = asked.groups()
    tag = hashlib.blake2b(json.dumps(body, sort_keys=True).encode(), digest_size=4).hexdigest()
    return json.dumps([f"{label} review {tag} number {i}" for i in range(int(n))])


def test_the_augmenter_estimates_its_requests_and_their_prompt_tokens(openai_server, tmp_path):
    augmenter = _augmenter(openai_server, tmp_path, n_per_class=5, n_per_request=2, max_tokens=50)
    estimate = augmenter.estimate_queries(TEXTS, LABELS, tokenizer=str.split, price_per_1k_tokens=(1.0, 2.0))
    assert openai_server.request_count == 0 and not hasattr(augmenter, "generator_")
    assert (estimate.n_inputs, estimate.n_to_send) == (6, 6)  # ceil(5 / 2) requests per class
    augmenter.fit_resample(TEXTS, LABELS)
    assert augmenter.n_requests_ == estimate.n_to_send
    # the test server bills one prompt token per word of each message
    assert estimate.tokens == openai_server.usage["prompt_tokens"] == augmenter.n_prompt_tokens_
    assert estimate.cost == pytest.approx((estimate.tokens + 2 * 6 * 50) / 1000)  # replies at most max_tokens

    again = augmenter.estimate_queries(TEXTS, LABELS, tokenizer=str.split)
    assert (again.n_stored, again.n_to_send, again.tokens) == (6, 0, 0)
    bigger = augmenter.set_params(n_per_class=7, max_requests=1).estimate_queries(TEXTS, LABELS)
    assert (bigger.n_inputs, bigger.n_stored, bigger.n_to_send, bigger.tokens) == (8, 6, 1, None)
    assert augmenter.set_params(max_tokens=None).estimate_queries(TEXTS, LABELS, price_per_1k_tokens=1.0).cost is None


def test_a_local_generator_counts_prompt_tokens_as_it_reads_them(tiny_gpt2):
    from skcrosstune.backends.chat import LocalChatGenerator

    generator = LocalChatGenerator(str(tiny_gpt2), max_tokens=3, device="cpu")
    messages = [{"role": "system", "content": "Write reviews."}, {"role": "user", "content": "the film , again"}]
    paid = generator.respond(messages, seed=0)
    assert paid.usage.prompt_tokens == generator.count_prompt_tokens(messages) > 0
    assert 0 < paid.usage.completion_tokens <= 3


def _augmenter(server, tmp_path, **params) -> LLMAugmenter:
    """An augmenter against the test server's well-behaved writer, with a cheap teacher and no switch."""
    server.chat_reply = _writer
    settings = dict(
        base_url=server.url,
        api_key_env=None,
        label_descriptions=DESCRIPTIONS,
        teacher=make_pipeline(CountVectorizer(), LogisticRegression()),
        threshold=0,
        off_task_quantile=None,
        store=str(tmp_path / "store"),
        max_retries=0,
        random_state=0,
    )
    return LLMAugmenter("openai:test-chat", **{**settings, **params})
