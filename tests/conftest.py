"""Shared fixtures: a private cache folder, tiny local models, and the services some tests need.

Services (the OpenAI-compatible test server, ``redis-server``, a Dask
``LocalCluster``) are started on 127.0.0.1 by the tests and stopped after.
Offline mode is set in ../conftest.py.
"""

from __future__ import annotations

import pytest

from ._tiny_models import make_tiny_causal_lm, make_tiny_masked_lm


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    """Every test gets its own default cache folder; nothing touches ~/.cache."""
    monkeypatch.setenv("SKCROSSTUNE_CACHE_DIR", str(tmp_path / "skcrosstune-cache"))
    monkeypatch.delenv("SKCROSSTUNE_DATA", raising=False)


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory):
    """A randomly initialised BERT masked LM with a WordPiece tokenizer, saved to disk."""
    return make_tiny_masked_lm("bert", tmp_path_factory.mktemp("tiny-bert"))


@pytest.fixture(scope="session")
def tiny_roberta(tmp_path_factory):
    """A randomly initialised RoBERTa masked LM with a byte-level BPE tokenizer, saved to disk."""
    return make_tiny_masked_lm("roberta", tmp_path_factory.mktemp("tiny-roberta"))


@pytest.fixture(scope="session")
def tiny_gpt2(tmp_path_factory):
    """A randomly initialised 2-layer GPT-2 (a chat generator) with a small byte-level BPE tokenizer."""
    return make_tiny_causal_lm(tmp_path_factory.mktemp("tiny-gpt2"))


@pytest.fixture
def sent(monkeypatch):
    """Every input a local model is asked about, across all clones: the queries actually paid for."""
    from skcrosstune.backends.local import LocalBackend

    items = []
    original = LocalBackend.query
    monkeypatch.setattr(LocalBackend, "query", lambda self, batch: items.extend(batch) or original(self, batch))
    return items


@pytest.fixture
def openai_server():
    """A running OpenAI-compatible server on 127.0.0.1 (tests/_openai_server.py), stopped after the test."""
    from ._openai_server import OpenAIServer

    with OpenAIServer() as server:
        yield server


# ----------------------------------------------------------------- services
@pytest.fixture(scope="session")
def redis_server():
    """The URL ``redis://127.0.0.1:<port>/0`` of a private ``redis-server``, stopped after the session.

    The server keeps nothing on disk and listens on 127.0.0.1 only (see
    tests/_redis.py). Tests sharing it must use their own keys (a store
    scopes its keys by the black box's fingerprint) or their own database
    number. Skips when ``redis-server`` is not installed.
    """
    from ._redis import RedisServer, find_redis_server

    if find_redis_server() is None:
        pytest.skip("redis-server is not installed (Debian: apt-get install redis-server); Redis store tests skipped")
    with RedisServer() as server:
        yield server.url


@pytest.fixture(scope="module")
def dask_cluster(tmp_path_factory):
    """A ``distributed`` client on a LocalCluster of two single-threaded worker processes, closed after the module.

    The workers' default store folder is a private temporary one, so that
    nothing run on them touches ``~/.cache``.
    """
    distributed = pytest.importorskip(
        "distributed", reason="dask.distributed is not installed (pip install 'dask[distributed]')"
    )
    cache = tmp_path_factory.mktemp("dask-workers-cache")
    env = {"SKCROSSTUNE_CACHE_DIR": str(cache), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    with (
        distributed.LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
            host="127.0.0.1",
            env=env,
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        yield client
