"""
CrossTune: label descriptions first, examples as they come
==========================================================

:class:`~skcrosstune.CrossTuneClassifier` scores a text by how its black-box
representation relates to natural-language descriptions of the classes. The
training examples enhance those descriptions: each class's key is its
description averaged with the class's training representations, the
description counting as ``description_weight`` examples. With one example per
class the description dominates; with many, the examples do.

This example compares, on the SST-2 splits bundled with skcrosstune and the
embedded default model (all-MiniLM-L6-v2, nothing downloaded):

* the zero-shot classifier (``max_epochs=0``: descriptions only);
* CrossTune with its default ``description_weight=8``;
* CrossTune with ``description_weight=32`` (trusting the descriptions more);
* CrossTune with ``description_weight=0`` (the examples alone);
* a linear probe on the same vectors.
"""

# %%
# Descriptions and data
# ---------------------
# Descriptions are plain sentences, one or several per class. Every text goes
# through the query cache: each is embedded once, whatever the model or the
# number of shots.
import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline

from skcrosstune import BlackBoxEmbedder, CrossTuneClassifier
from skcrosstune.datasets import FEWSHOT_SEEDS, load_fewshot

descriptions = {
    "negative": ["a negative, critical review", "the film disappointed"],
    "positive": ["a positive, enthusiastic review", "the film delighted"],
}
test = load_fewshot("sst2", shots=16, seed=13)
X_test, y_test = test.X_test, test.y_test
embedder = BlackBoxEmbedder()

models = {
    "zero-shot (descriptions only)": lambda seed: CrossTuneClassifier(embedder, descriptions, max_epochs=0),
    "CrossTune, description_weight=8": lambda seed: CrossTuneClassifier(embedder, descriptions, random_state=seed),
    "CrossTune, description_weight=32": lambda seed: CrossTuneClassifier(
        embedder, descriptions, description_weight=32, random_state=seed
    ),
    "CrossTune, description_weight=0": lambda seed: CrossTuneClassifier(
        embedder, descriptions, description_weight=0, random_state=seed
    ),
    "linear probe": lambda seed: make_pipeline(embedder, LogisticRegression(max_iter=1000)),
}

# %%
# From one to sixteen examples per class, five seeds
# --------------------------------------------------
# ``load_fewshot`` draws ``shots`` examples per class from each published
# 16-shot split.
shots = [1, 2, 4, 8, 16]
accuracy = {name: np.zeros((len(shots), len(FEWSHOT_SEEDS))) for name in models}
for j, seed in enumerate(FEWSHOT_SEEDS):
    for i, k in enumerate(shots):
        split = load_fewshot("sst2", shots=k, seed=seed)
        for name, make in models.items():
            accuracy[name][i, j] = make(seed).fit(split.X_train, split.y_train).score(X_test, y_test)
for name, table in accuracy.items():
    cells = "  ".join(f"{m:.3f}" for m in table.mean(axis=1))
    print(f"{name:34s} {cells}")

# %%
# The descriptions are worth many examples: the examples alone
# (``description_weight=0``) or a linear probe need 16 per class to come near
# the zero-shot accuracy, which CrossTune has from the first example and
# raises by about two points at 8 and 16. Trusting the descriptions more
# (``description_weight=32``) changes little here; it is a parameter
# ``GridSearchCV`` can tune.
#
# With two examples per class CrossTune dips: its internal cross-validation
# has four held-out examples to judge by, and on two of the five seeds it
# trusts a training run that then overfits. One example per class leaves
# nothing to validate, so the label-enhanced prior is kept; from four per
# class on, the held-out evidence is steadier.
import matplotlib.pyplot as plt

fig, ax = plt.subplots(figsize=(6, 3.6))
styles = ["k--", "C0-o", "C3-d", "C1-s", "C2-^"]
for (name, table), style in zip(accuracy.items(), styles, strict=True):
    ax.plot(shots, 100 * table.mean(axis=1), style, label=name)
ax.set_xscale("log", base=2)
ax.set_xticks(shots, [str(k) for k in shots])
ax.set_xlabel("training examples per class")
ax.set_ylabel("test accuracy (%)")
ax.set_title("SST-2, all-MiniLM-L6-v2, mean over 5 seeds")
ax.legend(fontsize=8)
fig.tight_layout()
plt.show()
