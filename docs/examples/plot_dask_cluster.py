"""
Running on a Dask cluster
=========================

A grid search whose fits run on the workers of a Dask cluster, then a
corpus predicted partition by partition on those workers, all sharing one
query store: each text is sent to the black box once, whichever worker
needs it first, and what the whole cluster paid is read from the store.

Here the cluster is a ``LocalCluster`` of two worker processes on this
machine, and the store is a folder they all see. On a cluster of several
machines, connect the ``Client`` to its scheduler instead and give the
estimators a store every worker can reach, such as
``store="redis://store-host:6379/0"``; nothing else changes.
"""

# %%
# A cluster and a store
# ---------------------
# Each worker is a separate process with one thread. The store is a
# temporary folder (SQLite); ``store="auto"`` would use each worker's own
# ``$SKCROSSTUNE_CACHE_DIR`` or user cache folder, resolved on the worker.
#
# A worker process starts by importing this script, so the work sits under
# ``if __name__ == "__main__":`` and only the main process runs it (in a
# notebook the test is always true).
import tempfile

import dask.dataframe as dd
import joblib
import numpy as np
import pandas as pd
from dask_ml.wrappers import ParallelPostFit
from distributed import Client, LocalCluster
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline

from skcrosstune import BlackBoxEmbedder
from skcrosstune.datasets import load_fewshot

if __name__ == "__main__":
    cluster = LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=None)
    client = Client(cluster)
    store = tempfile.mkdtemp(prefix="skcrosstune-store-")
    data = load_fewshot("sst2", shots=16, seed=13)

# %%
# A grid search on the workers
# ----------------------------
# ``joblib.parallel_config(backend="dask")`` sends the fits of
# ``GridSearchCV`` to the cluster. Every clone embeds through the store,
# so the 32 training sentences are sent once in all, not once per fold
# and per setting. ``store_counts`` totals what every process paid. The
# texts are a one-column DataFrame, as the corpus below will be.
if __name__ == "__main__":
    model = make_pipeline(BlackBoxEmbedder(store=store), LogisticRegression())
    search = GridSearchCV(model, {"logisticregression__C": [0.1, 1.0, 10.0]}, cv=4, n_jobs=-1)
    with joblib.parallel_config(backend="dask"):
        search.fit(pd.DataFrame({"text": data.X_train}), data.y_train)
    embedder = search.best_estimator_[0]
    after_search = embedder.store_counts()
    print(f"best C: {search.best_params_['logisticregression__C']}")
    print(f"unique training texts: {len(set(data.X_train))}, sent: {after_search['sent']}")

# %%
# A corpus, partition by partition
# --------------------------------
# A dask DataFrame of texts, here 200 of the test sentences; a corpus
# too large for one machine would come from ``dd.read_parquet`` or
# ``dd.read_csv``. dask-ml's ``ParallelPostFit`` sends the fitted pipeline
# to each partition: it is pickled without its model weights, each
# worker loads the model once, and each partition's answers go to the
# store as they come. ``predict_meta`` tells dask what comes back (an empty
# array of that type), which it cannot guess by itself.
if __name__ == "__main__":
    texts, labels = data.X_test[:200], np.asarray(data.y_test[:200])
    corpus = dd.from_pandas(pd.DataFrame({"text": texts}), npartitions=4)
    on_cluster = ParallelPostFit(search.best_estimator_, predict_meta=np.array([], dtype=object))
    predictions = on_cluster.predict(corpus).compute()
    after_corpus = embedder.store_counts()
    print(f"accuracy on {len(predictions)} test sentences: {np.mean(predictions == labels):.3f}")
    print(f"unique texts in the corpus: {len(set(texts))}, sent: {after_corpus['sent'] - after_search['sent']}")

# %%
# Predicting again costs nothing
# ------------------------------
# The answers are in the store: the same corpus, on the cluster or here,
# is answered without a query.
if __name__ == "__main__":
    on_cluster.predict(corpus).compute()
    search.predict(pd.DataFrame({"text": texts}))
    final = embedder.store_counts()
    print(f"sent by the two repeats: {final['sent'] - after_corpus['sent']}")

# %%
# What each stage paid
# --------------------
if __name__ == "__main__":
    import matplotlib.pyplot as plt

    stages = ["grid search", "corpus", "repeats"]
    sent = [after_search["sent"], after_corpus["sent"] - after_search["sent"], final["sent"] - after_corpus["sent"]]
    hits = [after_search["hits"], after_corpus["hits"] - after_search["hits"], final["hits"] - after_corpus["hits"]]
    x = np.arange(len(stages))
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.bar(x - 0.2, sent, 0.4, label="sent to the black box")
    ax.bar(x + 0.2, hits, 0.4, label="answered by the store")
    ax.set_xticks(x, stages)
    ax.set_ylabel("texts")
    ax.set_title("One store shared by a Dask cluster")
    ax.legend()
    fig.tight_layout()

    client.close()
    cluster.close()
