"""Scale-out: worker processes and threads sharing a black box and its store.

One LocalCluster of two single-threaded worker processes serves the whole
module (fixture ``dask_cluster`` in conftest). What the black box was asked
is counted where it cannot be faked: at the OpenAI-compatible test server,
which sees every text sent by every worker.
"""

from __future__ import annotations

import os
import pickle
from concurrent.futures import ThreadPoolExecutor

import joblib
import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline

from skcrosstune import BlackBoxEmbedder
from skcrosstune.backends import local

pd = pytest.importorskip("pandas")
dd = pytest.importorskip("dask.dataframe", reason="dask[dataframe] is not installed")
wrappers = pytest.importorskip("dask_ml.wrappers", reason="dask-ml is not installed")


def _texts(n_unique, n, prefix):
    """``n`` texts with ``n_unique`` distinct ones, repeated so that partitions overlap."""
    return [f"{prefix} review number {i % n_unique}: {'good' if i % n_unique % 2 else 'bad'} film" for i in range(n)]


def _api_embedder(server, store):
    return BlackBoxEmbedder("openai:test-embed", base_url=server.url, api_key_env=None, store=store, batch_size=8)


def test_grid_search_on_dask_queries_each_text_once(dask_cluster, openai_server, redis_server):
    X = _texts(48, 48, "grid")
    y = np.arange(48) % 2
    search = GridSearchCV(
        make_pipeline(_api_embedder(openai_server, redis_server), LogisticRegression()),
        {"logisticregression__C": [0.1, 1.0, 10.0]},
        cv=3,
        n_jobs=-1,
    )
    with joblib.parallel_config(backend="dask"):
        search.fit(X, y)

    sent = openai_server.embedded_texts()
    assert sorted(sent) == sorted(set(X))  # every text once, across both workers and the refit
    assert search.best_estimator_[0].store_counts()["sent"] == len(set(X))  # the store's total agrees
    assert search.predict(X[:4]).shape == (4,)


def test_corpus_predicted_partition_by_partition(dask_cluster, openai_server, redis_server):
    X_train = _texts(20, 20, "train")
    y_train = np.arange(20) % 2
    model = make_pipeline(_api_embedder(openai_server, redis_server), LogisticRegression())
    model.fit(pd.DataFrame({"text": X_train}), y_train)
    openai_server.reset()

    corpus = _texts(150, 600, "corpus")
    frame = dd.from_pandas(pd.DataFrame({"text": corpus}), npartitions=8)
    wrapped = wrappers.ParallelPostFit(model, predict_meta=np.array([], dtype=y_train.dtype))
    predictions = wrapped.predict(frame).compute()

    assert predictions.shape == (600,)
    np.testing.assert_array_equal(predictions, model.predict(pd.DataFrame({"text": corpus})))  # from the store
    sent = openai_server.embedded_texts()
    assert sorted(sent) == sorted(set(corpus))


def test_corpus_embedded_on_workers_with_their_own_auto_store(dask_cluster, openai_server, monkeypatch):
    # "auto" is resolved on the worker: its $SKCROSSTUNE_CACHE_DIR, not the folder of the fitting process.
    embedder = _api_embedder(openai_server, "auto").fit(pd.DataFrame({"text": ["a first text"]}))
    corpus = _texts(60, 240, "auto")
    frame = dd.from_pandas(pd.DataFrame({"text": corpus}), npartitions=6)
    wrapped = wrappers.ParallelPostFit(embedder, transform_meta=np.zeros((0, 24), dtype=np.float32))
    openai_server.reset()
    embeddings = wrapped.transform(frame).compute()

    assert embeddings.shape == (240, 24)
    assert sorted(openai_server.embedded_texts()) == sorted(set(corpus))
    worker_folders = set(dask_cluster.run(lambda: os.environ["SKCROSSTUNE_CACHE_DIR"]).values())
    monkeypatch.setenv("SKCROSSTUNE_CACHE_DIR", worker_folders.pop())
    openai_server.reset()
    np.testing.assert_allclose(embedder.transform(pd.DataFrame({"text": corpus})), embeddings, rtol=1e-6)
    assert openai_server.embedded_texts() == []  # what the workers paid for is in their store


def _loads_per_worker(client):
    return client.run(lambda: local._load_once.cache_info().misses)


def test_worker_loads_a_local_model_once(dask_cluster, tiny_bert, redis_server):
    X_train = ["a fine film", "a dull film", "great acting", "awful plot"]
    model = make_pipeline(BlackBoxEmbedder(str(tiny_bert), store=redis_server, batch_size=4), LogisticRegression())
    model.fit(pd.DataFrame({"text": X_train}), [1, 0, 1, 0])
    weights = sum(f.stat().st_size for f in tiny_bert.iterdir() if f.suffix in {".safetensors", ".bin"})
    assert len(pickle.dumps(model)) < weights / 4  # the pickle names the model; it does not carry it

    before = _loads_per_worker(dask_cluster)
    paid_before = model[0].store_counts()["sent"]
    corpus = [f"local text {i % 90}" for i in range(360)]
    frame = dd.from_pandas(pd.DataFrame({"text": corpus}), npartitions=6)
    wrapped = wrappers.ParallelPostFit(model, predict_meta=np.array([], dtype=int))
    predictions = wrapped.predict(frame).compute()
    after = _loads_per_worker(dask_cluster)

    assert model[0].store_counts()["sent"] - paid_before == 90  # each unique text once, counted by the store
    np.testing.assert_array_equal(predictions, model.predict(pd.DataFrame({"text": corpus})))
    loads = {worker: after[worker] - before[worker] for worker in after}
    assert set(loads.values()) <= {0, 1} and sum(loads.values()) >= 1, loads  # 6 partitions, at most 1 load each


def test_threads_of_one_worker_load_a_local_model_once(tiny_roberta):
    # A Dask worker with several threads runs several tasks at once, each on its own unpickled
    # copy of the estimator: they share one load of the model.
    embedder = BlackBoxEmbedder(str(tiny_roberta)).fit(["a text"])
    copies = [pickle.loads(pickle.dumps(embedder)) for _ in range(8)]
    local._load_once.cache_clear()
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda i: copies[i].transform([f"thread {i} text"]), range(8)))
    assert local._load_once.cache_info().misses == 1
    assert all(r.shape == (1, embedder.n_features_out_) for r in results)


def test_a_lazy_dask_collection_is_refused_not_gathered():
    embedder = BlackBoxEmbedder().fit(["a text"])
    series = dd.from_pandas(pd.Series(["one text", "another"]), npartitions=2)
    with pytest.raises(TypeError, match=r"X is a lazy Dask Series: .*ParallelPostFit"):
        embedder.transform(series)
    with pytest.raises(TypeError, match="lazy Dask DataFrame"):
        embedder.transform(series.to_frame())
    assert embedder.n_queries_ == 0


def test_a_grid_search_survives_a_killed_worker_paying_at_most_its_batch_again(redis_server, tmp_path):
    """SIGKILL one of two worker processes mid-search: the nanny restarts it, its tasks run again elsewhere."""
    import signal
    import threading
    import time

    from distributed import Client, LocalCluster

    from ._openai_server import OpenAIServer

    X = _texts(96, 96, "killed")
    y = np.arange(96) % 2
    env = {"SKCROSSTUNE_CACHE_DIR": str(tmp_path), "HF_HUB_OFFLINE": "1"}
    with (
        OpenAIServer(latency=0.2) as server,
        LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0", env=env) as cluster,
        Client(cluster),
    ):
        embedder = BlackBoxEmbedder(
            "openai:test-embed", base_url=server.url, api_key_env=None, store=redis_server, batch_size=4
        ).set_params(n_concurrent=1)
        grid = {"logisticregression__C": [0.1, 1.0]}
        search = GridSearchCV(make_pipeline(embedder, LogisticRegression()), grid, cv=3)
        killed = []

        def kill_a_worker():
            deadline = time.monotonic() + 60
            while len(server.embedded_texts()) < 20 and time.monotonic() < deadline:
                time.sleep(0.05)
            pid = next(w.process.pid for w in cluster.workers.values() if w.process is not None and w.process.pid)
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)

        killer = threading.Thread(target=kill_a_worker, daemon=True)
        killer.start()
        with joblib.parallel_config(backend="dask"):
            search.set_params(n_jobs=-1).fit(X, y)
        killer.join(5)
        assert killed, "a worker was killed during the search"
        sent = server.embedded_texts()
        assert set(sent) == set(X) and len(sent) <= len(X) + 4  # at most the dead worker's batch in flight again
        # the store counts the answers that came back: the dead worker's batch never did
        assert search.best_estimator_[0].store_counts()["sent"] == len(X)
