"""Scale-out: worker processes and threads sharing a black box and its store."""

from __future__ import annotations

import pickle
from concurrent.futures import ThreadPoolExecutor

import pytest

from skcrosstune import BlackBoxEmbedder
from skcrosstune.backends import local


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
    pd = pytest.importorskip("pandas")
    dd = pytest.importorskip("dask.dataframe", reason="dask[dataframe] is not installed")
    embedder = BlackBoxEmbedder().fit(["a text"])
    series = dd.from_pandas(pd.Series(["one text", "another"]), npartitions=2)
    with pytest.raises(TypeError, match=r"X is a lazy Dask Series: .*ParallelPostFit"):
        embedder.transform(series)
    with pytest.raises(TypeError, match="lazy Dask DataFrame"):
        embedder.transform(series.to_frame())
    assert embedder.n_queries_ == 0
