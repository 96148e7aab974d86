"""What every trained head on black-box representations promises: one test, each estimator."""

import pickle

import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.ensemble import VotingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline

from skcrosstune import BlackBoxEmbedder, CrossTuneClassifier, DecTClassifier
from skcrosstune.backends.local import LocalBackend

TEXTS = ["a great film", "fun , really funny", "love it", "awful plot", "the worst acting", "bad , really bad"]
LABELS = ["pos"] * 3 + ["neg"] * 3
DESCRIPTIONS = {"pos": "great good fun best", "neg": "awful bad dull worst"}
HEADS = {
    "crosstune": lambda embedder, **params: CrossTuneClassifier(
        embedder, DESCRIPTIONS, max_epochs=40, cv=0, random_state=0, **params
    ),
    "dect": lambda embedder, **params: DecTClassifier(
        embedder, label_descriptions=DESCRIPTIONS, random_state=0, **params
    ),
}


@pytest.fixture(params=sorted(HEADS))
def make_head(request, tiny_bert):
    embedder = BlackBoxEmbedder(str(tiny_bert))
    return lambda **params: HEADS[request.param](embedder, **params)


def test_the_fitted_network_lives_on_the_cpu_and_pickles_without_the_black_box(make_head):
    clf = make_head(device="cpu").fit(TEXTS, LABELS)
    assert all(t.device.type == "cpu" for t in clf.module_.state_dict().values())
    blob = pickle.dumps(clf)
    assert len(blob) < 500_000
    np.testing.assert_array_equal(pickle.loads(blob).predict(TEXTS), clf.predict(TEXTS))


@pytest.mark.skipif(torch.cuda.is_available(), reason="simulates a CPU-only machine; this one has CUDA")
def test_device_cuda_on_a_cpu_only_machine_trains_on_the_cpu_with_a_warning(make_head):
    with pytest.warns(RuntimeWarning, match="CUDA is not available"):
        clf = make_head(device="cuda").fit(TEXTS, LABELS)
    cpu = make_head(device="cpu").fit(TEXTS, LABELS)
    np.testing.assert_array_equal(clf.decision_function(TEXTS), cpu.decision_function(TEXTS))


def test_a_batch_is_predicted_exactly_as_its_rows_one_at_a_time(make_head, tiny_bert):
    """Predictions run in float64: a row's probabilities do not depend on the rows predicted with it."""
    clf = make_head(device="cpu").fit(TEXTS, LABELS)
    H = BlackBoxEmbedder(str(tiny_bert)).fit_transform(TEXTS + ["a film", "the plot", "funny", "bad acting"])
    numeric = clone(clf).fit(H[:6], LABELS)  # on numeric representations: no embedding in the way
    batch = numeric.predict_proba(H)
    assert batch.dtype == np.float64
    rows = np.vstack([numeric.predict_proba(H[i : i + 1]) for i in range(len(H))])
    halves = np.vstack([numeric.predict_proba(H[:5]), numeric.predict_proba(H[5:])])
    np.testing.assert_allclose(rows, batch, rtol=0, atol=1e-12)
    np.testing.assert_allclose(halves, batch, rtol=0, atol=1e-12)
    np.testing.assert_allclose(
        np.concatenate([numeric.decision_function(H[i : i + 1]) for i in range(len(H))]),
        numeric.decision_function(H),
        rtol=0,
        atol=1e-12,
    )


def test_the_heads_soft_vote_in_a_voting_classifier_and_the_store_answers_the_second(tiny_bert, tmp_path, monkeypatch):
    """VotingClassifier hands its members y encoded as 0..n-1, so descriptions are keyed by those integers."""
    sent = []
    original = LocalBackend.query
    monkeypatch.setattr(LocalBackend, "query", lambda self, items: sent.extend(items) or original(self, items))
    embedder = BlackBoxEmbedder(str(tiny_bert), store=str(tmp_path / "store"))
    encoded = {i: DESCRIPTIONS[label] for i, label in enumerate(sorted(DESCRIPTIONS))}  # "neg" is 0, "pos" 1

    def vote(descriptions):
        return VotingClassifier(
            [
                ("crosstune", CrossTuneClassifier(embedder, descriptions, max_epochs=40, cv=0, random_state=0)),
                ("dect", DecTClassifier(embedder, label_descriptions=descriptions, random_state=0)),
                ("probe", make_pipeline(embedder, LogisticRegression())),
            ],
            voting="soft",
        )

    with pytest.raises(ValueError, match="VotingClassifier or StackingClassifier encoded the labels"):
        vote(DESCRIPTIONS).fit(TEXTS, LABELS)
    ensemble = vote(encoded).fit(TEXTS, LABELS)
    assert set(ensemble.predict(TEXTS)) <= {"pos", "neg"}
    assert ensemble.predict_proba(TEXTS).shape == (6, 2)
    assert sorted(sent) == sorted(set(TEXTS) | set(DESCRIPTIONS.values()))
