"""
A linear probe on a black box
=============================

The simplest few-shot classifier: ask the black box for one vector per text,
then fit a logistic regression on those vectors. The black box here is the
embedded default model (all-MiniLM-L6-v2), so nothing is downloaded; the data
are the 16-shot SST-2 splits bundled with skcrosstune.
"""

# %%
# Load a few-shot split
# ---------------------
# ``load_fewshot`` returns the published 16-shot split of a seed: 16 training
# sentences per class, another 16 per class for model selection, and the
# full evaluation set. To keep this example fast we score on the first 200
# test sentences only.
from skcrosstune.datasets import load_fewshot

data = load_fewshot("sst2", shots=16, seed=13)
X_test, y_test = data.X_test[:200], data.y_test[:200]
print(f"{len(data.X_train)} training sentences, classes {data.labels}")
print(data.X_train[0], "->", data.y_train[0])

# %%
# Embed and fit, in one pipeline
# ------------------------------
# :class:`~skcrosstune.BlackBoxEmbedder` is a scikit-learn transformer: texts
# in, a float32 array out. Its answers go to the query cache, so running this
# script a second time costs no query at all.
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline

from skcrosstune import BlackBoxEmbedder

probe = make_pipeline(BlackBoxEmbedder(), LogisticRegression(max_iter=1000))
probe.fit(data.X_train, data.y_train)
print(f"Test accuracy: {probe.score(X_test, y_test):.3f}")

embedder = probe.named_steps["blackboxembedder"]
print(f"Texts sent to the black box: {embedder.n_queries_}, answered by the cache: {embedder.n_cache_hits_}")

# %%
# Fewer shots, five seeds
# -----------------------
# Few-shot results swing from one draw of examples to the next, so the
# literature reports the mean and standard deviation over the five published
# seeds. With ``shots`` below 16, ``load_fewshot`` draws that many examples
# per class from the seed's 16-shot split. The test sentences are in the cache
# already, so only the new training sentences are queried.
import matplotlib.pyplot as plt
import numpy as np

from skcrosstune.datasets import FEWSHOT_SEEDS

shots = [1, 2, 4, 8, 16]
accuracy = np.zeros((len(shots), len(FEWSHOT_SEEDS)))
for j, seed in enumerate(FEWSHOT_SEEDS):
    for i, k in enumerate(shots):
        split = load_fewshot("sst2", shots=k, seed=seed)
        accuracy[i, j] = probe.fit(split.X_train, split.y_train).score(X_test, y_test)
for k, row in zip(shots, accuracy, strict=True):
    print(f"{k:2d} shots per class: accuracy {row.mean():.3f} ± {row.std():.3f}")

fig, ax = plt.subplots(figsize=(5, 3))
ax.errorbar(shots, accuracy.mean(axis=1), yerr=accuracy.std(axis=1), marker="o", capsize=3)
ax.set_xscale("log", base=2)
ax.set_xticks(shots, [str(k) for k in shots])
ax.set_xlabel("training examples per class")
ax.set_ylabel("accuracy on 200 test sentences")
ax.set_title("Linear probe on all-MiniLM-L6-v2, SST-2, 5 seeds")
fig.tight_layout()
plt.show()
