"""
Tagging with label descriptions: multi-label classification
===========================================================

A support ticket can be about billing *and* urgent, or about nothing we tag
at all. ``CrossTuneClassifier`` and ``DecTClassifier`` take the tags as a
label-indicator matrix (one 0/1 column per tag, as
:class:`~sklearn.preprocessing.MultiLabelBinarizer` gives), read a
description of every tag in one model, and give each tag its own yes/no
decision with a threshold of its own, chosen by internal cross-validation on
the training rows.
"""

# %%
# A few tagged tickets
# --------------------
# Tags are lists of names; ``MultiLabelBinarizer`` turns them into columns.
# A ticket may carry several tags, or none.
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from sklearn.metrics import f1_score
from sklearn.preprocessing import MultiLabelBinarizer

from skcrosstune import BlackBoxEmbedder, CrossTuneClassifier

tickets = [
    ("I was charged twice this month", ["billing"]),
    ("please refund the payment for my cancelled order", ["billing"]),
    ("the invoice shows the wrong amount", ["billing"]),
    ("why is my card billed before the trial ends?", ["billing"]),
    ("the app crashes every time I open settings", ["bug"]),
    ("error 500 when I upload a photo", ["bug"]),
    ("the save button does nothing", ["bug"]),
    ("search returns an empty page", ["bug"]),
    ("checkout crashes and I was charged anyway, fix this now!", ["billing", "bug", "urgent"]),
    ("our whole team is locked out, we need help immediately", ["urgent"]),
    ("production is down since this morning, please hurry", ["bug", "urgent"]),
    ("payment failed and the deadline is today, urgent", ["billing", "urgent"]),
    ("thanks for the quick answer yesterday", []),
    ("what are your opening hours?", []),
    ("can I change the language of the newsletter?", []),
    ("great product, keep it up", []),
]
texts = [text for text, _ in tickets]
binarizer = MultiLabelBinarizer()
Y = pd.DataFrame(binarizer.fit_transform([tags for _, tags in tickets]), columns=binarizer.classes_)
print(Y.sum().to_dict())

# %%
# One model for every tag
# -----------------------
# With a DataFrame of tags, ``classes_`` are its column names and the
# descriptions are keyed by them (with a plain 0/1 array, by column index).
descriptions = {
    "billing": "payments, charges, invoices and refunds",
    "bug": "software errors, crashes and broken features",
    "urgent": "an urgent request that needs help immediately",
}
clf = CrossTuneClassifier(BlackBoxEmbedder(store=None), descriptions, random_state=0)
clf.fit(texts, Y)
print(list(clf.classes_))

# %%
# Reading the per-tag thresholds
# ------------------------------
# ``predict_proba`` gives each tag its own probability (a row need not sum
# to one); ``predict`` switches a tag on where its probability reaches its
# threshold in ``thresholds_``. A tag the model finds hard to tell apart
# gets a low threshold (it is switched on readily, to keep recall); a tag
# it separates well, a higher one.
new = [
    "I was billed twice and need this fixed today!",
    "the export button throws an error",
    "do you ship to Canada?",
]
proba = clf.predict_proba(new)
print(pd.DataFrame(proba.round(2), index=new, columns=clf.classes_))
print(pd.DataFrame(clf.predict(new), index=new, columns=clf.classes_))

fig, ax = plt.subplots(figsize=(8, 3))
positions = np.arange(len(clf.classes_))
for i, text in enumerate(new):
    ax.scatter(positions + (i - 1) * 0.15, proba[i], label=text[:32], zorder=3)
ax.bar(positions, clf.thresholds_, width=0.6, color="0.85", label="threshold")
ax.set_xticks(positions, clf.classes_)
ax.set_ylim(0, 1)
ax.set_ylabel("probability")
ax.set_title("Each tag's probability against its own threshold")
ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
fig.tight_layout()

# %%
# Scoring tags
# ------------
# Multi-label results read as F1 over the tags: micro-F1 counts every
# decision, macro-F1 averages the tags (a rare tag counts as much as a common
# one). ``GridSearchCV(scoring="f1_macro")`` tunes for it the same way.
print("training micro-F1:", round(f1_score(Y, clf.predict(texts), average="micro"), 3))
