"""Multi-label classification: tags described in words, one model for every label, thresholds per label."""

from __future__ import annotations

import pickle

import numpy as np
import pandas as pd
import pytest
from scipy import sparse
from sklearn.base import clone
from sklearn.metrics import f1_score
from sklearn.model_selection import GridSearchCV
from sklearn.multioutput import ClassifierChain, MultiOutputClassifier

from skcrosstune import BlackBoxEmbedder, BlackBoxPromptClassifier, CrossTuneClassifier, DecTClassifier
from skcrosstune._base import choose_thresholds

BILLING = ["I was charged twice this month", "refund my payment please", "the invoice amount is wrong"]
BUG = ["the app crashes when I log in", "error 500 on the settings page", "the button does nothing"]
BOTH = ["the checkout page crashes and I was still charged", "payment screen freezes, card billed anyway"]
NEITHER = ["thanks, have a nice day", "what are your opening hours?"]
TEXTS = BILLING + BUG + BOTH + NEITHER
LABELS = ["billing", "bug"]
Y = np.array([[1, 0]] * 3 + [[0, 1]] * 3 + [[1, 1]] * 2 + [[0, 0]] * 2)
DESCRIPTIONS = {"billing": "payments, charges, invoices and refunds", "bug": "software errors and broken pages"}


def fast(**params):
    return dict(dict(max_epochs=20, random_state=0), **params)


@pytest.fixture(params=["crosstune", "dect"])
def make(request, tiny_bert):
    def build(embedder="tiny", **params):
        embedder = BlackBoxEmbedder(str(tiny_bert)) if embedder == "tiny" else embedder
        if request.param == "crosstune":
            return CrossTuneClassifier(embedder, **fast(**params))
        return DecTClassifier(embedder, **fast(**params))

    return build


def _keyed(keys) -> dict:
    """The descriptions, keyed by column index (an indicator matrix without names)."""
    return {"label_descriptions": dict(zip(keys, DESCRIPTIONS.values(), strict=True))}


def test_an_indicator_matrix_gives_indicator_predictions_and_per_label_probabilities(make):
    clf = make(**_keyed([0, 1])).fit(TEXTS, Y)
    np.testing.assert_array_equal(clf.classes_, [0, 1])
    assert clf.thresholds_.shape == (2,) and ((clf.thresholds_ > 0) & (clf.thresholds_ < 1)).all()
    predicted = clf.predict(TEXTS)
    assert predicted.shape == Y.shape and set(np.unique(predicted)) <= {0, 1}
    proba = clf.predict_proba(TEXTS)
    assert proba.shape == Y.shape and ((proba > 0) & (proba < 1)).all()
    np.testing.assert_array_equal(predicted, (proba >= clf.thresholds_).astype(int))
    assert clf.decision_function(TEXTS).shape == Y.shape
    assert not np.allclose(proba.sum(1), 1.0), "each label has its own probability"


def test_a_dataframe_of_tags_names_the_classes_and_keys_the_descriptions(make):
    frame = pd.DataFrame(Y, columns=LABELS)
    clf = make(label_descriptions=DESCRIPTIONS).fit(TEXTS, frame)
    assert list(clf.classes_) == LABELS
    assert clf.predict(TEXTS[:3]).shape == (3, 2)
    sparse_fit = clone(clf).set_params(label_descriptions=_keyed([0, 1])["label_descriptions"])
    np.testing.assert_array_equal(sparse_fit.fit(TEXTS, sparse.csr_matrix(Y)).classes_, [0, 1])


def test_every_label_is_scored_by_its_description_in_one_model():
    """Zero-shot (no training): each label's score follows its own description, with the embedded model."""
    clf = CrossTuneClassifier(label_descriptions=DESCRIPTIONS, max_epochs=0, random_state=0)
    clf.fit(TEXTS, pd.DataFrame(Y, columns=LABELS))
    scores = clf.decision_function(["my card was billed the wrong amount", "the page throws an error and crashes"])
    assert scores[0, 0] - scores[0, 1] > 0 and scores[1, 1] - scores[1, 0] > 0
    assert clf.module_.linear.shape[1] == 2, "one network holds every label"


def test_each_label_gets_its_own_threshold_from_held_out_predictions():
    Y_true = np.array([[1, 0], [1, 0], [0, 1], [0, 0], [0, 1]])
    proba = np.array([[0.9, 0.2], [0.6, 0.1], [0.4, 0.95], [0.1, 0.3], [0.5, 0.35]])
    thresholds = choose_thresholds(Y_true, proba)
    # each label's cut falls between its lowest positive and the highest negative below it
    np.testing.assert_allclose(thresholds, [0.55, 0.325])
    assert f1_score(Y_true, (proba >= thresholds).astype(int), average="macro") == 1.0
    overlapping = np.array([[0.9], [0.3], [0.6], [0.2]])  # a negative above a positive: F1 2/3 at 0.25, 1/2 at 0.75
    assert choose_thresholds(np.array([[1], [1], [0], [0]]), overlapping)[0] == pytest.approx(0.25)
    assert choose_thresholds(np.zeros((3, 1)), np.full((3, 1), 0.2))[0] == 0.5  # no positive held out


def test_rows_without_any_label_are_learned_from(make):
    clf = make(**_keyed([0, 1])).fit(TEXTS, Y)
    assert (Y.sum(1) == 0).any() and clf.predict(NEITHER).shape == (2, 2)


@pytest.mark.parametrize(
    ("y", "match"),
    [
        (np.where(Y == 1, 2, 0), r"y\[0, 0\] is 2"),
        (np.c_[Y, np.zeros(len(Y), dtype=int)], r"never on: \[2\]"),
        (np.c_[Y, np.ones(len(Y), dtype=int)], r"on in every row: \[2\]"),
        (Y[:-1], "9 rows of labels for 10 inputs"),
        (np.where(Y == 1, 1.0, np.nan), r"y\[0, 1\] is nan"),
    ],
)
def test_a_bad_indicator_matrix_is_refused_before_any_query(make, sent, y, match):
    with pytest.raises(ValueError, match=match):
        make().fit(TEXTS, y)
    assert sent == []


def test_the_prompt_search_refuses_tags_saying_which_classifiers_take_them(tiny_bert, sent):
    with pytest.raises(ValueError, match="label-indicator matrix.*CrossTuneClassifier or DecTClassifier"):
        BlackBoxPromptClassifier(BlackBoxEmbedder(str(tiny_bert))).fit(TEXTS, Y)
    assert sent == []


def test_grid_search_scores_tags_by_f1_and_a_model_survives_pickling(make):
    clf = make(**_keyed([0, 1]))
    search = GridSearchCV(clf, {"max_epochs": [0, 5]}, scoring="f1_micro", cv=2).fit(TEXTS, Y)
    assert search.best_estimator_.predict(TEXTS).shape == Y.shape
    fitted = clone(clf).fit(TEXTS, Y)
    loaded = pickle.loads(pickle.dumps(fitted))
    np.testing.assert_array_equal(loaded.predict(TEXTS), fitted.predict(TEXTS))
    np.testing.assert_allclose(loaded.thresholds_, fitted.thresholds_)


def test_the_meta_estimators_for_several_outputs_work_as_before(make):
    assert MultiOutputClassifier(make()).fit(TEXTS, Y).predict(TEXTS).shape == Y.shape
    # a chain appends predictions to the features: numeric representations, from the embedder
    embedder = make().embedder
    X = embedder.fit_transform(TEXTS)
    with pytest.warns(UserWarning, match="cannot be compared|without the zero-shot prior"):  # one more column
        chain = ClassifierChain(make(embedder=embedder)).fit(X, Y)
    assert chain.predict(X).shape == Y.shape


def test_the_estimate_of_a_multi_label_fit_is_what_it_sends(make, sent):
    clf = make(**_keyed([0, 1]))
    estimate = clf.estimate_queries(TEXTS, Y)
    clf.fit(TEXTS, Y)
    assert estimate.n_to_send == len(sent) == len(TEXTS) + 2
