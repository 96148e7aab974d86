"""BlackBoxEmbedder on an OpenAI-compatible API, against a real local HTTP server.

Every test talks to ``tests/_openai_server.py`` on 127.0.0.1 through the real
``openai`` client; retry back-off sleeps are recorded instead of slept.
"""

from __future__ import annotations

import email.utils
import logging
import pickle
import time
import traceback
import warnings

import numpy as np
import openai
import pytest
from sklearn.base import clone
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline

from skcrosstune import BlackBoxEmbedder, BlackBoxError, BlackBoxPromptClassifier, DecTClassifier, LLMAugmenter
from skcrosstune.backends import _retry
from skcrosstune.backends.chat import OpenAIChatGenerator
from skcrosstune.backends.openai import OpenAIEmbeddingBackend
from skcrosstune.backends.openai_logprobs import OpenAILogProbBackend

from ._openai_server import (
    DEFAULT_WIDTH,
    UNUSABLE_ANSWERS,
    Fault,
    OpenAIServer,
    embedding_for,
    html_page,
    malformed_json,
    non_finite_value,
    rate_limited,
    server_error,
    slow,
    unauthorized,
)

KEY_ENV = "SKCROSSTUNE_TEST_API_KEY"
KEY = "sk-test-Zq8vN3rT6yW1kP4m"
MODEL = "test-embed"
TEXTS = ["a gripping, funny film", "dull and far too long", "the cast shines", "I walked out"]


@pytest.fixture(autouse=True)
def api_key(monkeypatch):
    """The key lives in an environment variable only; no other OpenAI settings leak in."""
    monkeypatch.setenv(KEY_ENV, KEY)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    return KEY


@pytest.fixture(autouse=True)
def sleeps(monkeypatch):
    """Back-off delays asked for by the retry loop, recorded instead of slept."""
    delays: list[float] = []
    monkeypatch.setattr(_retry.time, "sleep", delays.append)
    return delays


def make_embedder(server, tmp_path, **params):
    settings = dict(
        model=f"openai:{MODEL}",
        base_url=server.url,
        api_key_env=KEY_ENV,
        store=tmp_path / "cache",
        timeout=5.0,
        max_retries=2,
    )
    settings.update(params)
    return BlackBoxEmbedder(**settings)


def expected(texts, width=DEFAULT_WIDTH):
    return np.asarray([embedding_for(t, width) for t in texts], dtype=np.float32)


# ------------------------------------------------------------------ embeddings
def test_embeddings_are_the_servers_vectors_in_input_order(openai_server, tmp_path):
    texts = TEXTS + [TEXTS[0]]
    embedder = make_embedder(openai_server, tmp_path, normalize=False)

    X = embedder.fit_transform(texts)

    assert X.shape == (len(texts), DEFAULT_WIDTH)
    assert X.dtype == np.float32
    np.testing.assert_array_equal(X, expected(texts))
    np.testing.assert_array_equal(X[0], X[-1])
    for request in openai_server.requests:
        assert request.path == "/v1/embeddings"
        assert request.body["model"] == MODEL
        assert request.body["encoding_format"] == "float"
        assert "dimensions" not in request.body


def test_rows_are_ordered_by_index_not_by_response_order(tmp_path):
    with OpenAIServer(reverse_data=True) as server:
        X = make_embedder(server, tmp_path, normalize=False, store=None).fit_transform(TEXTS)
    np.testing.assert_array_equal(X, expected(TEXTS))


def test_normalized_output_has_unit_rows(openai_server, tmp_path):
    X = make_embedder(openai_server, tmp_path).fit_transform(TEXTS)
    np.testing.assert_allclose(np.linalg.norm(X, axis=1), 1.0, rtol=1e-5)


def test_fit_probes_the_width_with_one_text(openai_server, tmp_path):
    embedder = make_embedder(openai_server, tmp_path).fit(TEXTS)

    assert [r.body["input"] for r in openai_server.requests] == [[TEXTS[0]]]
    assert embedder.n_features_out_ == DEFAULT_WIDTH
    names = embedder.get_feature_names_out()
    assert list(names) == [f"embedding{i}" for i in range(DEFAULT_WIDTH)]
    assert embedder.transform(TEXTS).shape[1] == len(names)


def test_dimensions_is_sent_and_honoured_without_a_probe(openai_server, tmp_path):
    embedder = make_embedder(openai_server, tmp_path, dimensions=8, normalize=False).fit(TEXTS)
    assert openai_server.request_count == 0  # the width is known: nothing to probe
    assert len(embedder.get_feature_names_out()) == 8

    X = embedder.transform(TEXTS)

    assert X.shape == (len(TEXTS), 8)
    np.testing.assert_array_equal(X, expected(TEXTS, width=8))
    assert openai_server.request_count >= 1
    assert all(r.body["dimensions"] == 8 for r in openai_server.requests)


def test_joint_sentence_pairs_are_sent_as_one_text(openai_server, tmp_path):
    pairs = [("a man eats", "someone is eating"), ("it rains", "the sun shines")]
    embedder = make_embedder(openai_server, tmp_path, pair_encoding="joint", normalize=False)

    X = embedder.fit_transform(pairs)

    np.testing.assert_array_equal(X, expected([f"{a}\n{b}" for a, b in pairs]))


# ----------------------------------------------------------------------- cache
def test_a_second_embedder_on_the_same_cache_sends_nothing(openai_server, tmp_path):
    first = make_embedder(openai_server, tmp_path)
    X1 = first.fit_transform(TEXTS)
    paid = openai_server.request_count
    assert sorted(openai_server.embedded_texts()) == sorted(TEXTS)

    second = make_embedder(openai_server, tmp_path).fit(TEXTS)
    X2 = second.transform(TEXTS)

    assert openai_server.request_count == paid
    np.testing.assert_array_equal(X1, X2)
    assert second.n_queries_ == 0
    assert second.n_cache_hits_ == 1 + len(TEXTS)  # the width probe, then every text


def test_another_model_does_not_share_cache_entries(openai_server, tmp_path):
    make_embedder(openai_server, tmp_path, dimensions=8).fit_transform(TEXTS)
    paid = len(openai_server.embedded_texts())

    make_embedder(openai_server, tmp_path, model="openai:other-model", dimensions=8).fit_transform(TEXTS)

    assert len(openai_server.embedded_texts()) == paid + len(TEXTS)


@pytest.mark.parametrize("cached", [True, False], ids=["cache", "no-cache"])
def test_duplicates_in_one_call_are_sent_once(openai_server, tmp_path, cached):
    texts = ["same", "other", "same", "same", "other"]
    embedder = make_embedder(openai_server, tmp_path, dimensions=8, store=tmp_path / "c" if cached else None)

    X = embedder.fit(texts).transform(texts)

    assert sorted(openai_server.embedded_texts()) == ["other", "same"]
    assert embedder.n_queries_ == 2
    assert embedder.n_cache_hits_ == 0
    np.testing.assert_array_equal(X[0], X[2])
    np.testing.assert_array_equal(X[1], X[4])


def test_query_and_cache_hit_counters(openai_server, tmp_path):
    embedder = make_embedder(openai_server, tmp_path, dimensions=8).fit(["a"])
    assert (embedder.n_queries_, embedder.n_cache_hits_) == (0, 0)

    embedder.transform(["a", "b"])
    assert (embedder.n_queries_, embedder.n_cache_hits_) == (2, 0)

    embedder.transform(["b", "c", "c", "a"])
    assert (embedder.n_queries_, embedder.n_cache_hits_) == (3, 2)

    embedder.fit(["a"])  # counters restart at fit
    assert (embedder.n_queries_, embedder.n_cache_hits_) == (0, 0)
    assert sorted(openai_server.embedded_texts()) == ["a", "b", "c"]


def test_grid_search_pays_for_each_text_once(openai_server, tmp_path):
    texts = [f"review number {i} is {'good' if i % 2 else 'bad'}" for i in range(8)]
    y = [i % 2 for i in range(8)]
    pipe = make_pipeline(make_embedder(openai_server, tmp_path), LogisticRegression())
    search = GridSearchCV(pipe, {"logisticregression__C": [0.1, 10.0]}, cv=2)

    search.fit(texts, y)
    sent = openai_server.embedded_texts()
    clone(search).fit(texts, y)

    assert sorted(sent) == sorted(texts)  # 5 fits, 4 scorings: each text paid once
    assert openai_server.embedded_texts() == sent  # a second search pays nothing


# --------------------------------------------------------------------- retries
def test_rate_limit_waits_as_long_as_retry_after(openai_server, tmp_path, sleeps):
    openai_server.push(rate_limited(retry_after=7))
    embedder = make_embedder(openai_server, tmp_path, dimensions=8, normalize=False, max_retries=3)

    X = embedder.fit(TEXTS).transform(TEXTS)

    np.testing.assert_array_equal(X, expected(TEXTS, width=8))
    assert sleeps == [pytest.approx(7.0)]  # the back-off alone would wait at most 1 s
    assert openai_server.request_count == 2
    first, second = openai_server.requests
    assert first.body["input"] == second.body["input"]


def test_retry_after_as_an_http_date_is_honoured(openai_server, tmp_path, sleeps):
    openai_server.push(rate_limited(retry_after=email.utils.formatdate(time.time() + 30, usegmt=True)))
    embedder = make_embedder(openai_server, tmp_path, dimensions=8)

    embedder.fit(TEXTS).transform(TEXTS)

    assert len(sleeps) == 1 and 25 <= sleeps[0] <= 30
    assert openai_server.request_count == 2


def test_retry_after_ms_is_honoured(openai_server, tmp_path, sleeps):
    openai_server.push(Fault(status=429, headers={"retry-after-ms": "4500"}))
    make_embedder(openai_server, tmp_path, dimensions=8).fit(TEXTS).transform(TEXTS)
    assert sleeps == [pytest.approx(4.5)]


@pytest.mark.parametrize("status", [500, 503])
def test_server_error_is_retried_with_backoff(openai_server, tmp_path, sleeps, status):
    openai_server.push(server_error(status))
    embedder = make_embedder(openai_server, tmp_path, dimensions=8, normalize=False)

    X = embedder.fit(TEXTS).transform(TEXTS)

    np.testing.assert_array_equal(X, expected(TEXTS, width=8))
    assert openai_server.request_count == 2
    assert len(sleeps) == 1 and 0.5 <= sleeps[0] <= 1.0  # first back-off: 1 s with jitter


def test_a_response_slower_than_timeout_is_abandoned_and_retried(openai_server, tmp_path, sleeps):
    openai_server.push(slow(30.0))  # the server wakes it when the test ends
    embedder = make_embedder(openai_server, tmp_path, dimensions=8, normalize=False, timeout=0.3)

    start = time.perf_counter()
    X = embedder.fit(TEXTS).transform(TEXTS)
    elapsed = time.perf_counter() - start

    np.testing.assert_array_equal(X, expected(TEXTS, width=8))
    assert openai_server.request_count == 2
    assert len(sleeps) == 1
    assert elapsed < 10  # the client gave up after 0.3 s instead of waiting 30 s (margin for a busy machine)


def test_malformed_json_is_retried(openai_server, tmp_path, sleeps):
    openai_server.push(malformed_json())
    embedder = make_embedder(openai_server, tmp_path, dimensions=8, normalize=False)

    X = embedder.fit(TEXTS).transform(TEXTS)

    np.testing.assert_array_equal(X, expected(TEXTS, width=8))
    assert openai_server.request_count == 2


def test_malformed_json_every_time_raises_blackboxerror(openai_server, tmp_path):
    openai_server.push(*[malformed_json()] * 3)
    embedder = make_embedder(openai_server, tmp_path, dimensions=8, max_retries=2).fit(TEXTS)

    with pytest.raises(BlackBoxError, match="not valid JSON"):
        embedder.transform(TEXTS)
    assert openai_server.request_count == 3


def test_exhausting_retries_raises_blackboxerror(openai_server, tmp_path, sleeps):
    openai_server.push(*[server_error(503)] * 3)
    embedder = make_embedder(openai_server, tmp_path, dimensions=8, max_retries=2).fit(TEXTS)

    with pytest.raises(BlackBoxError, match="after 3 attempts") as info:
        embedder.transform(TEXTS)

    assert openai_server.request_count == 3
    assert len(sleeps) == 2 and 0.5 <= sleeps[0] <= 1.0 and 1.0 <= sleeps[1] <= 2.0
    assert openai_server.url in str(info.value) and MODEL in str(info.value)
    assert openai_server.pending_faults == 0


def test_max_retries_zero_sends_one_request(openai_server, tmp_path, sleeps):
    openai_server.push(server_error(500))
    embedder = make_embedder(openai_server, tmp_path, dimensions=8, max_retries=0).fit(TEXTS)
    with pytest.raises(BlackBoxError):
        embedder.transform(TEXTS)
    assert openai_server.request_count == 1
    assert sleeps == []


def test_unauthorized_raises_at_once_naming_endpoint_and_model_not_key(openai_server, tmp_path, sleeps):
    openai_server.push(unauthorized(echo_key=True))  # a server that quotes the key back
    embedder = make_embedder(openai_server, tmp_path, dimensions=8, max_retries=5).fit(TEXTS)

    with pytest.raises(BlackBoxError) as info:
        embedder.transform(TEXTS)

    assert openai_server.request_count == 1
    assert sleeps == []
    message = str(info.value)
    assert "401" in message and openai_server.url in message and repr(MODEL) in message
    assert "Incorrect API key" in message  # the server's reason is kept...
    assert KEY not in message  # ...but the key is scrubbed
    assert KEY not in "".join(traceback.format_exception(info.value))


@pytest.mark.parametrize("status", [400, 403, 404, 422])
def test_client_errors_are_not_retried(openai_server, tmp_path, sleeps, status):
    openai_server.push(Fault(status=status))
    embedder = make_embedder(openai_server, tmp_path, dimensions=8, max_retries=5).fit(TEXTS)
    with pytest.raises(BlackBoxError, match=f"HTTP {status}"):
        embedder.transform(TEXTS)
    assert openai_server.request_count == 1
    assert sleeps == []


def test_exhausted_quota_is_not_retried(openai_server, tmp_path, sleeps):
    quota = {
        "error": {
            "message": "You exceeded your current quota.",
            "type": "insufficient_quota",
            "param": None,
            "code": "insufficient_quota",
        }
    }
    openai_server.push(Fault(status=429, body=quota))
    embedder = make_embedder(openai_server, tmp_path, dimensions=8, max_retries=5).fit(TEXTS)
    with pytest.raises(BlackBoxError, match="quota"):
        embedder.transform(TEXTS)
    assert openai_server.request_count == 1
    assert sleeps == []


def test_batches_received_before_a_failure_are_kept(openai_server, tmp_path):
    texts = [f"text number {i}" for i in range(6)]
    embedder = make_embedder(openai_server, tmp_path, dimensions=8, batch_size=2, max_retries=0, n_concurrent=1)
    embedder.fit(texts)
    openai_server.push(None, server_error(500))  # one request at a time: first batch answered, second fails

    with pytest.raises(BlackBoxError):
        embedder.transform(texts)
    received = openai_server.requests[0].body["input"]
    assert len(received) == 2
    openai_server.reset()

    X = embedder.transform(texts)

    assert sorted(openai_server.embedded_texts()) == sorted(set(texts) - set(received))
    assert embedder.n_cache_hits_ == 2
    np.testing.assert_allclose(np.linalg.norm(X, axis=1), 1.0, rtol=1e-5)


# --------------------------------------------------------------------- secrets
def test_key_is_sent_but_never_exposed(openai_server, tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    embedder = make_embedder(openai_server, tmp_path, verbose=True).fit(TEXTS)
    openai_server.push(rate_limited(retry_after=0))
    embedder.transform(TEXTS)
    openai_server.push(unauthorized(echo_key=True))  # a server that quotes the key back
    with pytest.raises(BlackBoxError) as info:
        embedder.transform(["one more text"])

    assert {r.authorization for r in openai_server.requests} == {f"Bearer {KEY}"}
    assert KEY not in repr(embedder)
    assert KEY not in repr(embedder.get_params(deep=True))
    assert KEY.encode() not in pickle.dumps(embedder)
    assert KEY not in str(info.value) and "Incorrect API key" in str(info.value)
    assert caplog.records, "nothing was logged: the log check would prove nothing"
    assert any("retry" in r.getMessage() for r in caplog.records)
    assert all(KEY not in r.getMessage() for r in caplog.records)
    assert KEY not in caplog.text


def test_a_server_that_checks_the_key_accepts_it(tmp_path, monkeypatch):
    with OpenAIServer(api_key=KEY) as server:
        X = make_embedder(server, tmp_path, normalize=False).fit_transform(TEXTS)
        np.testing.assert_array_equal(X, expected(TEXTS))

        monkeypatch.setenv(KEY_ENV, "sk-wrong-key")
        with pytest.raises(BlackBoxError, match="HTTP 401"):
            make_embedder(server, tmp_path, store=None).fit(TEXTS)


@pytest.mark.parametrize("dimensions", [None, 8])
def test_missing_key_variable_is_a_clear_error(openai_server, tmp_path, monkeypatch, dimensions):
    monkeypatch.delenv(KEY_ENV)
    embedder = make_embedder(openai_server, tmp_path, dimensions=dimensions)

    with pytest.raises(ValueError, match=KEY_ENV):
        embedder.fit_transform(TEXTS)
    assert openai_server.request_count == 0


def test_no_key_variable_for_keyless_servers(openai_server, tmp_path, monkeypatch):
    monkeypatch.delenv(KEY_ENV)
    embedder = make_embedder(openai_server, tmp_path, api_key_env=None, normalize=False)

    X = embedder.fit_transform(TEXTS)

    np.testing.assert_array_equal(X, expected(TEXTS))
    assert openai_server.request_count >= 1


def test_unpickled_embedder_rebuilds_its_client(openai_server, tmp_path):
    embedder = make_embedder(openai_server, tmp_path, normalize=False)
    X = embedder.fit_transform(TEXTS)
    restored = pickle.loads(pickle.dumps(embedder))
    paid = openai_server.request_count

    np.testing.assert_array_equal(restored.transform(TEXTS), X)
    assert openai_server.request_count == paid  # answered from the shared cache
    Y = restored.transform(["a brand new text"])

    np.testing.assert_array_equal(Y, expected(["a brand new text"]))
    assert openai_server.request_count == paid + 1
    assert openai_server.requests[-1].authorization == f"Bearer {KEY}"


# ----------------------------------------------------------------- empty text
def test_empty_string_is_sent_as_a_space_and_cached_as_empty(openai_server, tmp_path):
    embedder = make_embedder(openai_server, tmp_path, dimensions=8, normalize=False).fit(["", "x"])

    X = embedder.transform(["", "x", ""])

    assert sorted(openai_server.embedded_texts()) == [" ", "x"]
    np.testing.assert_array_equal(X[0], expected([" "], width=8)[0])
    np.testing.assert_array_equal(X[0], X[2])
    store = embedder._open_store()
    assert store.get_many([store.key("")])[0]
    paid = openai_server.request_count

    again = make_embedder(openai_server, tmp_path, dimensions=8, normalize=False).fit([""]).transform([""])

    assert openai_server.request_count == paid
    np.testing.assert_array_equal(again[0], X[0])


# --------------------------------------------------------------------- server
def test_server_chat_completions_and_loopback_binding(openai_server):
    assert openai_server.url.startswith("http://127.0.0.1:")
    openai_server.chat_reply = lambda body: f"label: {body['messages'][-1]['content'].upper()}"
    client = openai.OpenAI(base_url=openai_server.url, api_key="k", max_retries=0, timeout=5)

    reply = client.chat.completions.create(model="test-chat", messages=[{"role": "user", "content": "great film"}], n=2)

    assert [c.message.content for c in reply.choices] == ["label: GREAT FILM"] * 2
    assert reply.choices[0].finish_reason == "stop" and reply.model == "test-chat"
    assert reply.usage.total_tokens == reply.usage.prompt_tokens + reply.usage.completion_tokens
    assert openai_server.requests[-1].path == "/v1/chat/completions"
    assert openai_server.requests[-1].authorization == "Bearer k"


def test_server_rejects_empty_strings_like_real_endpoints(openai_server):
    client = openai.OpenAI(base_url=openai_server.url, api_key="k", max_retries=0, timeout=5)
    with pytest.raises(openai.BadRequestError):
        client.embeddings.create(model=MODEL, input=["fine", ""])


# ---------------------------------------------------------- unusable answers
@pytest.mark.parametrize("kind", sorted(UNUSABLE_ANSWERS))
def test_an_unusable_answer_is_retried_and_never_returned(openai_server, tmp_path, sleeps, kind):
    openai_server.push(UNUSABLE_ANSWERS[kind]())
    embedder = make_embedder(openai_server, tmp_path, dimensions=8, normalize=False).fit(TEXTS)

    X = embedder.transform(TEXTS)

    np.testing.assert_array_equal(X, expected(TEXTS, width=8))
    assert openai_server.request_count == 2
    assert openai_server.requests[0].body["input"] == openai_server.requests[1].body["input"]
    assert len(sleeps) == 1 and 0.5 <= sleeps[0] <= 1.0  # backed off like a malformed answer


@pytest.mark.parametrize("kind", sorted(UNUSABLE_ANSWERS))
def test_an_answer_unusable_every_time_raises_a_clear_error_and_nothing_is_stored(openai_server, tmp_path, kind):
    openai_server.push(*[UNUSABLE_ANSWERS[kind]() for _ in range(3)])
    embedder = make_embedder(openai_server, tmp_path, dimensions=8, normalize=False, max_retries=2).fit(TEXTS)

    with pytest.raises(BlackBoxError, match="still failed after 3 attempts: its answer could not be used") as info:
        embedder.transform(TEXTS)

    message = str(info.value)
    assert f"embeddings endpoint {openai_server.url} (model {MODEL!r})" in message
    assert info.value.__cause__ is None and info.value.__context__ is None
    assert openai_server.request_count == 3
    openai_server.reset()
    X = make_embedder(openai_server, tmp_path, dimensions=8, normalize=False).fit(TEXTS).transform(TEXTS)
    assert sorted(openai_server.embedded_texts()) == sorted(TEXTS)  # nothing unusable was stored: all asked again
    np.testing.assert_array_equal(X, expected(TEXTS, width=8))


@pytest.mark.parametrize(
    "fault, reason",
    [
        (lambda: non_finite_value(float("nan"), row=1), "vector 1 holds a non-finite value"),
        (lambda: UNUSABLE_ANSWERS["null-data"](), "its data is not a list of vectors"),
        (lambda: UNUSABLE_ANSWERS["rows-without-index"](), "index fields of its rows are not 0 to 3"),
        (lambda: UNUSABLE_ANSWERS["short-row"](), r"vectors have different widths \[7, 8\]"),
        (lambda: UNUSABLE_ANSWERS["string-embedding"](), "vector 0 is a str, not a list of numbers"),
        (lambda: UNUSABLE_ANSWERS["too-few-rows"](), "3 vectors for 4 texts"),
        (html_page, "it is a text, not an embeddings list: '<!DOCTYPE html>"),
    ],
)
def test_the_error_says_what_was_wrong_with_the_answer(openai_server, tmp_path, fault, reason):
    openai_server.push(fault())
    embedder = make_embedder(openai_server, tmp_path, dimensions=8, max_retries=0).fit(TEXTS)
    with pytest.raises(BlackBoxError, match=reason):
        embedder.transform(TEXTS)


def test_a_model_that_changes_width_behind_the_same_name_is_refused(openai_server, tmp_path, sleeps):
    embedder = make_embedder(openai_server, tmp_path, normalize=False).fit(TEXTS)
    old = embedder.transform(TEXTS)
    assert embedder.embedding_dim_ == DEFAULT_WIDTH
    openai_server.width = 12
    openai_server.reset()

    with pytest.raises(BlackBoxError, match="12 wide, not the 24 learned when the embedder was fitted") as info:
        embedder.transform(["a new text"])

    assert "has changed" in str(info.value) and openai_server.url in str(info.value)
    assert openai_server.request_count == 1 and sleeps == []  # asking again cannot fix it
    np.testing.assert_array_equal(embedder.transform(TEXTS), old)  # what was stored still serves
    assert openai_server.request_count == 1
    pickle.loads(pickle.dumps(embedder))  # the learned width survives a pickle
    with pytest.raises(BlackBoxError, match="12 wide"):
        pickle.loads(pickle.dumps(embedder)).transform(["another new text"])


def test_old_width_entries_in_the_store_never_crash_a_refitted_embedder(openai_server, tmp_path):
    old = make_embedder(openai_server, tmp_path).fit(TEXTS)
    old.transform(TEXTS)  # stored 24 wide
    openai_server.width = 12  # a new model behind the same name
    openai_server.reset()

    refitted = make_embedder(openai_server, tmp_path, normalize=False).fit(["a text nobody embedded"])
    X = refitted.transform(TEXTS + ["a text nobody embedded"])  # old entries mixed with new ones

    assert refitted.embedding_dim_ == 12 and X.shape == (len(TEXTS) + 1, 12)
    np.testing.assert_array_equal(X[: len(TEXTS)], expected(TEXTS, width=12))  # stale entries fetched again
    assert sorted(openai_server.embedded_texts()) == sorted(TEXTS + ["a text nobody embedded"])
    again = make_embedder(openai_server, tmp_path, normalize=False).fit(TEXTS).transform(TEXTS)
    np.testing.assert_array_equal(again, X[: len(TEXTS)])  # and stored at the new width
    assert len(openai_server.embedded_texts()) == len(TEXTS) + 1
    with pytest.raises(BlackBoxError, match="12 wide, not the 24 learned"):
        old.transform(TEXTS)  # the embedder fitted on the old model says so, rather than mixing widths


def test_dimensions_not_honoured_by_the_server_is_refused(openai_server, tmp_path):
    embedder = make_embedder(openai_server, tmp_path, dimensions=8, max_retries=3).fit(TEXTS)
    openai_server.push(Fault(status=200, answer_normally=True, mutate=_widen))
    with pytest.raises(BlackBoxError, match="9 wide, not the 8 asked for with dimensions"):
        embedder.transform(TEXTS)
    assert openai_server.request_count == 1


def _widen(answer):
    for row in answer["data"]:
        row["embedding"].append(0.0)
    return answer


def test_dect_on_an_api_never_sees_a_nan(openai_server, tmp_path):
    texts = [f"review {i}: {'great' if i % 2 else 'awful'}" for i in range(8)]
    y = ["pos" if i % 2 else "neg" for i in range(8)]
    openai_server.push(None, non_finite_value(row=3))  # the width probe, then a NaN in the texts' answer
    clf = DecTClassifier(embedder=make_embedder(openai_server, tmp_path), max_epochs=5, random_state=0)

    proba = clf.fit(texts, y).predict_proba(texts)

    assert openai_server.pending_faults == 0  # the NaN answer arrived...
    assert np.isfinite(clf.embedder_.transform(texts)).all()  # ...and was asked for again, not stored
    assert np.isfinite(proba).all()
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)


def test_unusable_chat_answers_are_retried(openai_server, sleeps):
    generator = OpenAIChatGenerator("test-chat", base_url=openai_server.url, api_key_env=KEY_ENV, max_retries=2)
    openai_server.push(html_page())
    assert generator.complete([{"role": "user", "content": "hello"}], seed=0) == "hello"
    assert openai_server.request_count == 2 and len(sleeps) == 1


def test_log_prob_answers_are_checked(openai_server, sleeps):
    backend = OpenAILogProbBackend("test-chat", base_url=openai_server.url, api_key_env=KEY_ENV, max_retries=1)
    openai_server.chat_logprobs = lambda body: {"good": -0.1, "bad": float("nan")}
    with pytest.raises(BlackBoxError, match="log-probability nan of 'bad' is not a finite number"):
        backend.label_word_log_probs(["a film"], ["good", "bad"])
    assert openai_server.request_count == 2
    openai_server.chat_logprobs = lambda body: {"good": -0.1, "bad": -2.5}
    np.testing.assert_allclose(backend.label_word_log_probs(["a film"], ["good", "bad"]), [[-0.1, -2.5]], rtol=1e-6)


# ------------------------------------------------- secrets in raised errors
USER, PASSWORD = "alice-Us3r", "hunter2-Pw9x"


def _chain(error):
    """The error and every exception reachable from it through __cause__ and __context__."""
    seen, todo = [], [error]
    while todo:
        current = todo.pop()
        if current is None or any(current is s for s in seen):
            continue
        seen.append(current)
        todo += [current.__cause__, current.__context__]
    return seen


def assert_no_secret_reachable(error, *secrets):
    """Neither the message, the chain, nor any frame local of the traceback holds a secret."""
    chain = _chain(error)
    assert len(chain) == 1, f"the error chains to {chain[1:]}"
    assert error.__cause__ is None and error.__context__ is None
    # the frames below the test's own (whose parameters may hold the secret on purpose)
    below = error.__traceback__.tb_next
    with_locals = "".join(traceback.StackSummary.extract(traceback.walk_tb(below), capture_locals=True).format())
    assert "call_with_retries" in with_locals  # the frames down to the request were rendered
    frames = []
    tb = below
    while tb is not None:
        frames.append(tb.tb_frame)
        tb = tb.tb_next
    for secret in secrets:
        assert secret not in str(error) and secret not in repr(error)
        assert secret not in with_locals
        for frame in frames:
            for name, value in frame.f_locals.items():
                assert secret not in repr(value), f"frame {frame.f_code.co_name} local {name} holds a secret"


@pytest.mark.parametrize(
    "faults",
    [
        [unauthorized(echo_key=True)],
        [Fault(status=400, body={"error": {"message": f"bad key Bearer {KEY}", "type": "x", "code": None}})],
        [server_error(503)] * 3,
        [UNUSABLE_ANSWERS["nan"]()] * 3,
        [html_page()] * 3,
    ],
    ids=["401-echoing-the-key", "400-quoting-the-key", "5xx", "nan", "html"],
)
def test_no_secret_is_reachable_from_a_raised_error(openai_server, tmp_path, faults):
    embedder = make_embedder(openai_server, tmp_path, dimensions=8, max_retries=2).fit(TEXTS)
    openai_server.push(*faults)
    with pytest.raises(BlackBoxError) as info:
        embedder.transform(TEXTS)
    assert openai_server.requests[-1].authorization == f"Bearer {KEY}"  # the key was sent...
    assert_no_secret_reachable(info.value, KEY)  # ...and cannot be read back from the error


def test_no_secret_is_reachable_when_the_server_is_gone(tmp_path):
    with OpenAIServer() as server:
        embedder = make_embedder(server, tmp_path, dimensions=8, max_retries=1).fit(TEXTS)
    with pytest.raises(BlackBoxError, match="still failed after 2 attempts") as info:
        embedder.transform(TEXTS)
    assert_no_secret_reachable(info.value, KEY)


def _frames_rendered(error, *names):
    text = "".join(traceback.format_exception(error))
    return all(name in text for name in names)


def test_no_secret_is_reachable_from_the_chat_generator_or_the_augmenter(openai_server):
    generator = OpenAIChatGenerator("test-chat", base_url=openai_server.url, api_key_env=KEY_ENV, max_retries=0)
    openai_server.push(unauthorized(echo_key=True))
    with pytest.raises(BlackBoxError, match="HTTP 401") as info:
        generator.complete([{"role": "user", "content": "hi"}], seed=0)
    assert_no_secret_reachable(info.value, KEY)

    augmenter = LLMAugmenter(
        "openai:test-chat", base_url=openai_server.url, api_key_env=KEY_ENV, n_per_class=2, store=None, max_retries=0
    )
    openai_server.push(*[unauthorized(echo_key=True)] * 8)
    with pytest.raises(BlackBoxError, match="HTTP 401") as info:
        augmenter.fit_resample(TEXTS, ["pos", "neg", "pos", "neg"])
    assert _frames_rendered(info.value, "fit_resample")
    for error in _chain(info.value):
        assert KEY not in str(error) and KEY not in repr(error)
    text = "".join(traceback.TracebackException.from_exception(info.value, capture_locals=True).format())
    assert KEY not in text


def test_no_secret_is_reachable_from_the_log_prob_black_box(openai_server):
    clf = BlackBoxPromptClassifier(
        OpenAILogProbBackend("test-chat", base_url=openai_server.url, api_key_env=KEY_ENV, max_retries=0),
        label_words={"pos": "good", "neg": "bad"},
        max_steps=1,
        sample_size=2,
        max_queries=None,
        store=None,
    )
    openai_server.push(unauthorized(echo_key=True))
    with pytest.raises(BlackBoxError, match="HTTP 401") as info:
        clf.fit(["a good film indeed", "a bad film indeed", "good acting here", "bad acting here"], ["pos", "neg"] * 2)
    assert_no_secret_reachable(info.value, KEY)


def test_no_secret_is_reachable_when_the_client_cannot_encode_the_request(openai_server, tmp_path):
    backend = OpenAIEmbeddingBackend(MODEL, base_url=openai_server.url, api_key_env=KEY_ENV, max_retries=3)
    with pytest.raises(BlackBoxError, match="refused the request: the request failed: UnicodeEncodeError") as info:
        backend.encode(["fine", "lone \ud800 surrogate"])  # check_texts refuses it earlier; the backend holds too
    assert openai_server.request_count == 0
    assert_no_secret_reachable(info.value, KEY)


@pytest.fixture
def credentials_url(openai_server):
    return openai_server.url.replace("http://", f"http://{USER}:{PASSWORD}@")


def test_credentials_in_the_base_url_variable_are_used_but_shown_nowhere(
    openai_server, tmp_path, credentials_url, caplog, monkeypatch
):
    monkeypatch.setenv("OPENAI_BASE_URL", credentials_url)
    caplog.set_level(logging.DEBUG)  # the HTTP library's own request log included
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        embedder = make_embedder(openai_server, tmp_path, base_url=None, api_key_env=None, verbose=True)
        X = embedder.fit_transform(TEXTS)
        openai_server.push(rate_limited(retry_after=0), *[server_error(500)] * 3)
        with pytest.raises(BlackBoxError) as info:
            embedder.transform(["one more text"])
    np.testing.assert_array_equal(X, make_embedder(openai_server, tmp_path).fit_transform(TEXTS))
    assert openai_server.requests[0].authorization.startswith("Basic ")  # the URL's credentials were used

    backend = embedder.backend_
    assert backend.endpoint == openai_server.url
    assert openai_server.url in str(info.value)
    assert_no_secret_reachable(info.value, PASSWORD, USER, KEY)
    assert caplog.records
    for text in (str(backend.fingerprint()), repr(embedder), repr(backend), caplog.text, *map(str, caught)):
        assert PASSWORD not in text and USER not in text
    assert PASSWORD.encode() not in pickle.dumps(embedder)
    stored = b"".join(path.read_bytes() for path in (tmp_path / "cache").rglob("*") if path.is_file())
    assert stored and PASSWORD.encode() not in stored and USER.encode() not in stored


def test_a_key_is_sent_even_when_the_base_url_variable_holds_credentials(tmp_path, monkeypatch):
    """A request carries one Authorization header: the API's key takes it, and one warning says the URL's did not."""
    with OpenAIServer(api_key=KEY) as server:  # answers 401 to anything but "Bearer <KEY>"
        monkeypatch.setenv("OPENAI_BASE_URL", server.url.replace("http://", f"http://{USER}:{PASSWORD}@"))
        with pytest.warns(UserWarning, match="the key is sent") as caught:
            X = make_embedder(server, tmp_path, base_url=None).fit_transform(TEXTS)
        np.testing.assert_array_equal(X, make_embedder(server, tmp_path / "again").fit_transform(TEXTS))
        assert {request.authorization for request in server.requests} == {f"Bearer {KEY}"}
    for warning in caught:
        assert PASSWORD not in str(warning.message) and USER not in str(warning.message)


@pytest.mark.parametrize(
    "make",
    [
        lambda url: make_embedder_at(url).fit(TEXTS),
        lambda url: OpenAIEmbeddingBackend(MODEL, base_url=url),
        lambda url: OpenAIChatGenerator("m", base_url=url),
        lambda url: OpenAILogProbBackend("m", base_url=url),
    ],
    ids=["embedder", "embedding-backend", "chat", "log-probs"],
)
def test_credentials_in_a_base_url_parameter_are_refused_without_being_shown(openai_server, credentials_url, make):
    with pytest.raises(ValueError, match=r"holds credentials.*\$OPENAI_BASE_URL") as info:
        make(credentials_url)
    assert PASSWORD not in str(info.value) and USER not in str(info.value)
    assert openai_server.url in str(info.value)
    assert openai_server.request_count == 0


def make_embedder_at(url):
    return BlackBoxEmbedder(f"openai:{MODEL}", base_url=url, api_key_env=KEY_ENV, store=None)


def test_the_key_is_in_no_repr_pickle_log_warning_or_store_file(openai_server, tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        embedder = make_embedder(openai_server, tmp_path, verbose=True).fit(TEXTS)
        openai_server.push(rate_limited(retry_after=0), html_page())
        embedder.transform(TEXTS)
        backend = embedder.backend_
    assert backend._client is not None and backend._client.api_key == KEY  # the client holds it...
    for text in (repr(embedder), repr(backend), repr(vars(backend)), caplog.text, *(str(w.message) for w in caught)):
        assert KEY not in text  # ...and nothing else shows it
    assert KEY.encode() not in pickle.dumps(embedder) and KEY.encode() not in pickle.dumps(backend)
    assert any("retry" in r.getMessage() for r in caplog.records)
    stored = b"".join(path.read_bytes() for path in (tmp_path / "cache").rglob("*") if path.is_file())
    assert stored and KEY.encode() not in stored


# ------------------------------------------------------------ concurrent requests
def test_requests_run_concurrently_up_to_n_concurrent_and_each_text_is_sent_once(tmp_path):
    texts = [f"review number {i}" for i in range(40)]
    with OpenAIServer(latency=0.1) as server:
        embedder = make_embedder(server, tmp_path, batch_size=4, n_concurrent=3, normalize=False)
        X = embedder.fit_transform(texts)
        assert server.most_in_flight == 3, "three requests waited on the latency together, never more"
        assert sorted(server.embedded_texts()) == sorted(texts)  # the fit's probe text is one of them
        np.testing.assert_array_equal(X, expected(texts))
        assert embedder.n_queries_ == len(texts) and embedder.store_counts()["sent"] == len(texts)

        one_at_a_time = make_embedder(server, tmp_path / "other", batch_size=4, n_concurrent=1)
        server.reset()
        server.most_in_flight = 0
        one_at_a_time.fit_transform(texts)
        assert server.most_in_flight == 1


def test_a_failed_request_stops_new_ones_and_the_answers_in_flight_are_stored(tmp_path):
    texts = [f"review number {i}" for i in range(24)]
    with OpenAIServer(latency=0.05) as server:
        embedder = make_embedder(server, tmp_path, batch_size=4, n_concurrent=3, max_retries=0, dimensions=8)
        embedder.fit(texts[:1])
        server.reset()
        server.push(None, Fault(status=400, body=b'{"error": {"message": "bad request"}}'), None)
        with pytest.raises(BlackBoxError, match="400"):
            embedder.transform(texts)
        sent = server.embedded_texts()
        assert len(sent) < len(texts), "no new request after the failure"
        stored = embedder.store_counts()["sent"]
        assert stored == len(sent) - 4, "every answered batch was stored (the failed one was not)"
        server.reset()
        embedder.transform(texts)  # the rerun pays for what was not stored, each text once
        rerun = server.embedded_texts()
        assert len(rerun) == len(set(rerun)) == len(texts) - stored
