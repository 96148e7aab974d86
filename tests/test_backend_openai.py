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

import numpy as np
import openai
import pytest
from sklearn.base import clone
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline

from skcrosstune import BlackBoxEmbedder, BlackBoxError
from skcrosstune.backends import _retry

from ._openai_server import (
    DEFAULT_WIDTH,
    Fault,
    OpenAIServer,
    embedding_for,
    malformed_json,
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
        cache_dir=tmp_path / "cache",
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
        X = make_embedder(server, tmp_path, normalize=False, cache_dir=None).fit_transform(TEXTS)
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
    embedder = make_embedder(openai_server, tmp_path, dimensions=8, cache_dir=tmp_path / "c" if cached else None)

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
    embedder = make_embedder(openai_server, tmp_path, dimensions=8, batch_size=2, max_retries=0).fit(texts)
    openai_server.push(None, server_error(500))  # first batch answered, second fails

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
            make_embedder(server, tmp_path, cache_dir=None).fit(TEXTS)


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
    assert embedder.cache_.get_many([embedder.cache_.key("")])[0]
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
