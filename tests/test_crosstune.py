import pickle
import warnings

import joblib
import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline

from skcrosstune import BlackBoxEmbedder, CrossTuneClassifier
from skcrosstune.backends.local import LocalBackend

from ._checks import parametrize_with_checks

POSITIVE = ["a great film", "good acting and a fine story", "fun , really funny", "the best scene", "love it"]
NEGATIVE = ["a boring , long film", "awful plot", "the worst acting", "dull and too long", "bad , really bad"]
TEXTS = POSITIVE + NEGATIVE
LABELS = np.array(["pos"] * 5 + ["neg"] * 5, dtype=object)
DESCRIPTIONS = {"pos": "great good fun best", "neg": "awful bad dull worst"}


@pytest.fixture
def embedder(tiny_bert):
    return BlackBoxEmbedder(str(tiny_bert))


def fast(**params):
    """A small configuration, so the tests stay quick."""
    return dict(dict(max_epochs=40, cv=0, random_state=0), **params)


@parametrize_with_checks(
    [CrossTuneClassifier(embedder=BlackBoxEmbedder(store=None), max_epochs=5, cv=0, random_state=0)]
)
def test_sklearn_common_checks_on_numeric_representations(estimator, check):
    # The checks feed random numeric features: there is no zero-shot prior for
    # them (widths differ from the description embeddings), which is warned about.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*without the zero-shot prior", category=UserWarning)
        check(estimator)


def test_with_no_training_it_is_the_zero_shot_classifier(embedder):
    clf = CrossTuneClassifier(embedder, DESCRIPTIONS, max_epochs=0).fit(TEXTS, LABELS)
    H = BlackBoxEmbedder(embedder.model).fit_transform(TEXTS)
    E = BlackBoxEmbedder(embedder.model).fit_transform([DESCRIPTIONS["neg"], DESCRIPTIONS["pos"]])
    cosine = H @ E.T
    np.testing.assert_array_equal(clf.predict(TEXTS), np.array(["neg", "pos"])[cosine.argmax(1)])
    np.testing.assert_allclose(clf.decision_function(TEXTS), (cosine[:, 1] - cosine[:, 0]) / 0.05, atol=1e-4)
    assert clf.n_epochs_ == 0


def test_training_fits_the_training_data(embedder):
    clf = CrossTuneClassifier(embedder, DESCRIPTIONS, **fast(max_epochs=300)).fit(TEXTS, LABELS)
    assert clf.score(TEXTS, LABELS) == 1.0
    proba = clf.predict_proba(TEXTS)
    np.testing.assert_allclose(proba.sum(1), 1.0)
    assert list(clf.classes_) == ["neg", "pos"] and proba.shape == (10, 2)


@pytest.mark.parametrize("weight", [0.0, 2.0, 50.0])
def test_keys_are_the_descriptions_enhanced_by_their_class_examples(embedder, weight):
    # one step at a negligible learning rate: the network as it starts, from the label-enhanced keys
    start = dict(max_epochs=1, cv=0, learning_rate=1e-12, random_state=0)
    clf = CrossTuneClassifier(embedder, DESCRIPTIONS, description_weight=weight, **start).fit(TEXTS, LABELS)
    H = BlackBoxEmbedder(embedder.model).fit_transform(TEXTS)
    E = BlackBoxEmbedder(embedder.model).fit_transform([DESCRIPTIONS["neg"], DESCRIPTIONS["pos"]])
    sums = np.stack([H[LABELS == label].sum(0) for label in clf.classes_])
    keys = (weight * E + sums) / (weight + 5)
    keys /= np.linalg.norm(keys, axis=1, keepdims=True)
    # the prototype scores start with a zero weight: the keys alone score
    expected = (H @ keys.T) / 0.05
    np.testing.assert_allclose(clf.decision_function(TEXTS), expected[:, 1] - expected[:, 0], atol=1e-4)


def test_without_a_description_prior_training_starts_from_the_nearest_centroid_rule(embedder):
    """A pair's cosine feature alone cannot be compared with descriptions: gamma starts at 1."""
    pairs = [("a great film", "a good movie"), ("the plot", "a cat sat"), ("fun story", "funny tale"), ("red", "tax")]
    y = ["same", "other", "same", "other"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing to warn about: descriptions never fit a pair's cosine
        clf = CrossTuneClassifier(embedder, max_epochs=0).fit(pairs, y)
    cosine = BlackBoxEmbedder(embedder.model).fit_transform(pairs).ravel()
    same, other = cosine[[0, 2]].mean(), cosine[[1, 3]].mean()
    nearest = np.where(np.abs(cosine - same) < np.abs(cosine - other), "same", "other")
    np.testing.assert_array_equal(clf.predict(pairs), nearest)


def test_cross_validation_keeps_the_prior_when_training_does_not_help(embedder):
    """Random labels: held-out loss never improves on the prior, so zero epochs are chosen."""
    rng = np.random.default_rng(0)
    texts = [f"{a} {b}" for a in ["great", "awful", "fine", "dull", "fun", "bad"] for b in ["film", "plot", "story"]]
    noise = rng.permutation(["x", "y"] * 9)
    clf = CrossTuneClassifier(embedder, {"x": "great", "y": "awful"}, cv=3, random_state=0).fit(texts, noise)
    zero_shot = CrossTuneClassifier(embedder, {"x": "great", "y": "awful"}, max_epochs=0).fit(texts, noise)
    assert clf.n_epochs_ <= 5
    assert np.mean(clf.predict(texts) == zero_shot.predict(texts)) >= 0.8


def test_the_same_random_state_gives_identical_predictions(embedder):
    a = CrossTuneClassifier(embedder, DESCRIPTIONS, **fast(cv=2, random_state=3)).fit(TEXTS, LABELS)
    b = CrossTuneClassifier(embedder, DESCRIPTIONS, **fast(cv=2, random_state=3)).fit(TEXTS, LABELS)
    np.testing.assert_array_equal(a.decision_function(TEXTS), b.decision_function(TEXTS))
    c = CrossTuneClassifier(embedder, DESCRIPTIONS, **fast(random_state=4)).fit(TEXTS, LABELS)
    d = CrossTuneClassifier(embedder, DESCRIPTIONS, **fast(random_state=5)).fit(TEXTS, LABELS)
    assert not np.array_equal(c.decision_function(TEXTS), d.decision_function(TEXTS))


@pytest.mark.parametrize(
    "labels", [np.array([1] * 5 + [0] * 5), np.array([True] * 5 + [False] * 5), [3.0] * 5 + [-1.0] * 5]
)
def test_labels_of_any_type(embedder, labels):
    clf = CrossTuneClassifier(embedder, **fast()).fit(TEXTS, labels)
    assert set(clf.predict(TEXTS)) <= set(np.asarray(labels).tolist())
    assert clf.predict(TEXTS).dtype == np.asarray(labels).dtype


def test_three_classes_and_several_descriptions_per_class(embedder):
    labels = ["pos"] * 5 + ["neg"] * 3 + ["meh"] * 2
    descriptions = {"pos": ["great", "good fun"], "neg": ["awful", "bad", "worst"], "meh": "fine"}
    clf = CrossTuneClassifier(embedder, descriptions, **fast()).fit(TEXTS, labels)
    assert clf.decision_function(TEXTS).shape == (10, 3)
    assert clf.description_embeddings_.shape == (6, 32)
    assert list(clf.classes_) == ["meh", "neg", "pos"]
    assert clf.descriptions_ == [["fine"], ["awful", "bad", "worst"], ["great", "good fun"]]


def test_descriptions_from_label_names_when_none_are_given(embedder):
    clf = CrossTuneClassifier(embedder, max_epochs=0).fit(TEXTS, ["not_good"] * 5 + ["science/technology"] * 5)
    assert clf.descriptions_ == [["not good"], ["science / technology"]]


def test_each_description_is_one_cached_query(tiny_bert, monkeypatch):
    sent = []
    original = LocalBackend.query
    monkeypatch.setattr(LocalBackend, "query", lambda self, items: sent.extend(items) or original(self, items))
    clf = CrossTuneClassifier(BlackBoxEmbedder(str(tiny_bert)), DESCRIPTIONS, **fast())
    search = GridSearchCV(clf, {"learning_rate": [1e-3, 1e-2]}, cv=2).fit(TEXTS, LABELS)
    search.predict(TEXTS)
    assert sorted(sent) == sorted(TEXTS + list(DESCRIPTIONS.values()))


@pytest.mark.parametrize(
    "descriptions, labels, error, match",
    [
        ({"pos": "a", "neg": "b", "other": "c"}, LABELS, ValueError, r"not in y: \['other'\]"),
        ({"pos": "a"}, LABELS, ValueError, r"no entry for the classes \['neg'\]"),
        ({"pos": "a", "neg": ""}, LABELS, ValueError, "class 'neg' must be a non-empty"),
        (None, ["pos"] * 10, ValueError, "only one class"),
        (None, LABELS[:9], ValueError, "9 labels for 10 inputs"),
        (None, [1.0] * 5 + [np.nan] * 5, ValueError, "missing labels"),
        (None, ["pos"] * 5 + [None] * 5, ValueError, "missing labels"),
    ],
)
def test_bad_input_is_named(embedder, descriptions, labels, error, match):
    with pytest.raises(error, match=match):
        CrossTuneClassifier(embedder, descriptions, max_epochs=0).fit(TEXTS, labels)


def test_bad_texts_are_named(embedder):
    with pytest.raises(ValueError, match="missing value"):
        CrossTuneClassifier(embedder, max_epochs=0).fit(TEXTS[:-1] + [None], LABELS)


def test_sentence_pairs(embedder):
    pairs = [(t, "it was good") for t in POSITIVE] + [(t, "it was awful") for t in NEGATIVE]
    clf = CrossTuneClassifier(None, DESCRIPTIONS, **fast()).set_params(
        embedder=BlackBoxEmbedder(embedder.model, pair_features=("u", "v", "cosine"))
    )
    clf.fit(pairs, LABELS)
    assert clf.input_kind_ == "pairs" and clf.predict(pairs).shape == (10,)
    # the prior reads the mean of the two sides
    zero = clone(clf).set_params(max_epochs=0).fit(pairs, LABELS)
    u_v = BlackBoxEmbedder(embedder.model, pair_features=("u", "v")).fit_transform(pairs)
    E = BlackBoxEmbedder(embedder.model).fit_transform([DESCRIPTIONS["neg"], DESCRIPTIONS["pos"]])
    mean_side = 0.5 * (u_v[:, :32] + u_v[:, 32:])
    expected = (mean_side @ E.T) / 0.05
    np.testing.assert_allclose(zero.decision_function(pairs), expected[:, 1] - expected[:, 0], atol=1e-4)


def test_after_an_embedder_step_in_a_pipeline(embedder):
    """Numeric input: the embedder parameter embeds the descriptions only; same model, same result."""
    pipe = make_pipeline(clone(embedder), CrossTuneClassifier(clone(embedder), DESCRIPTIONS, **fast()))
    pipe.fit(TEXTS, LABELS)
    direct = CrossTuneClassifier(clone(embedder), DESCRIPTIONS, **fast()).fit(TEXTS, LABELS)
    np.testing.assert_allclose(pipe.decision_function(TEXTS), direct.decision_function(TEXTS), rtol=1e-5)
    assert pipe[-1].n_features_in_ == 32 and pipe[-1].input_kind_ == "numeric"
    with pytest.raises(TypeError, match="fitted on texts"):
        direct.predict(np.zeros((2, 32)))


def test_a_different_black_box_for_the_descriptions_is_warned_about(embedder):
    with pytest.warns(UserWarning, match="without the zero-shot prior"):
        CrossTuneClassifier(embedder, DESCRIPTIONS, **fast()).fit(np.random.default_rng(0).normal(size=(10, 7)), LABELS)


def test_clone_gridsearch_over_nested_embedder_parameters_and_joblib(embedder, tmp_path):
    clf = CrossTuneClassifier(embedder, DESCRIPTIONS, **fast())
    assert clone(clf).get_params()["embedder__model"] == embedder.model
    search = GridSearchCV(clf, {"embedder__pooling": ["mean", "cls"], "n_heads": [1, 2]}, cv=2).fit(TEXTS, LABELS)
    assert set(search.best_params_) == {"embedder__pooling", "n_heads"}
    path = tmp_path / "model.joblib"
    joblib.dump(search.best_estimator_, path)
    restored = joblib.load(path)
    np.testing.assert_array_equal(restored.predict_proba(TEXTS), search.best_estimator_.predict_proba(TEXTS))


def test_the_embedded_default_model_end_to_end():
    clf = CrossTuneClassifier(
        label_descriptions={"positive": "a glowing, enthusiastic review", "negative": "a scathing, hostile review"},
        random_state=0,
        cv=2,
    ).fit(
        ["a joyful, moving film", "loved every minute", "dull and lifeless", "a tedious mess"],
        ["positive", "positive", "negative", "negative"],
    )
    assert list(clf.predict(["an absolute delight", "painfully boring"])) == ["positive", "negative"]


def test_one_example_per_class_trains_nothing_and_only_enhances_the_keys(embedder):
    """Nothing can be validated with one shot: no gradient step, the closed-form keys stand."""
    one_shot = CrossTuneClassifier(embedder, DESCRIPTIONS, random_state=0).fit(TEXTS[4:6], LABELS[4:6])
    assert one_shot.n_epochs_ == 0
    H = BlackBoxEmbedder(embedder.model).fit_transform(TEXTS)
    E = BlackBoxEmbedder(embedder.model).fit_transform([DESCRIPTIONS["neg"], DESCRIPTIONS["pos"]])
    keys = 8.0 * E + H[[5, 4]]  # "neg" is TEXTS[5], "pos" TEXTS[4]; each description weighs 8 examples
    keys /= np.linalg.norm(keys, axis=1, keepdims=True)
    cosine = H @ keys.T
    np.testing.assert_allclose(one_shot.decision_function(TEXTS), (cosine[:, 1] - cosine[:, 0]) / 0.05, atol=1e-4)
    # an infinite description weight keeps the bare descriptions: the zero-shot classifier
    bare = CrossTuneClassifier(embedder, DESCRIPTIONS, description_weight=np.inf).fit(TEXTS[4:6], LABELS[4:6])
    zero_shot = CrossTuneClassifier(embedder, DESCRIPTIONS, max_epochs=0).fit(TEXTS[4:6], LABELS[4:6])
    np.testing.assert_array_equal(bare.decision_function(TEXTS), zero_shot.decision_function(TEXTS))


def test_the_fewest_epochs_the_held_out_examples_cannot_tell_from_the_best_are_chosen():
    from skcrosstune._training import _simplest_within_one_standard_error

    epochs = np.arange(30)
    # steep progress for 10 epochs, then a slow drift down to the minimum at epoch 29
    curve = np.where(epochs <= 10, 1.0 - 0.05 * epochs, 0.5 - 0.002 * (epochs - 10))
    # four validation examples, one loss each per epoch: standard error 0.041 at every epoch
    losses = np.stack([curve + noise for noise in (-0.1, 0.0, 0.1, 0.0)], axis=1)
    assert losses.shape == (30, 4) and np.argmin(losses.mean(1)) == 29
    assert _simplest_within_one_standard_error(losses) == 10  # 0.5 is within 0.041 of 0.462; epoch 9 (0.55) is not
    assert _simplest_within_one_standard_error(np.stack([curve, curve], axis=1)) == 29  # no spread: the minimum


def test_paired_errors_see_an_improvement_every_held_out_example_shares():
    """Examples of very different difficulty, each improving by the same 0.01 an epoch for 20 epochs."""
    from skcrosstune._training import _simplest_within_one_standard_error

    rng = np.random.default_rng(0)
    difficulty = rng.uniform(0.0, 3.0, size=200)  # a spread of losses that dwarfs the improvement
    epochs = np.minimum(np.arange(31), 20)[:, None]
    losses = difficulty + 1.0 - 0.01 * epochs + rng.normal(scale=0.005, size=(31, 200))
    # unpaired, the best epoch's spread (about 0.06 of standard error) swallows the whole 0.2 gain
    assert _simplest_within_one_standard_error(losses) <= 15
    # paired, each example's own improvement is measured: the training that helped them all is kept
    assert _simplest_within_one_standard_error(losses, paired=True) >= 19


def _cross_attention_by_the_formula(network, h):
    """The network's logits computed head by head, as the module docstring writes them (float64 numpy)."""
    p = {name: t.detach().double().numpy() for name, t in network.state_dict().items() if t is not None}
    n_heads = p["query_in"].shape[0]
    scale = np.exp(p["log_scale"])
    projected = h if "prior" not in p else h @ p["prior"]
    scores = []
    for k in range(n_heads):
        query = projected + h @ p["query_in"][k] @ p["query_out"][k]  # q_k = P h + A_k h
        keys = p["keys"] + p["keys"] @ p["key_in"][k] @ p["key_out"][k]  # key_k = e + B_k e
        s = np.einsum("nd,cmd->ncm", query, keys)
        w = np.where(p["key_mask"], np.exp(scale * s), 0.0)  # attention over a class's descriptions
        scores.append((w / w.sum(-1, keepdims=True) * s).sum(-1))
    means = p["prototypes"]
    nearest = h @ means.T - 0.5 * (means**2).sum(1)
    return scale * (np.mean(scores, axis=0) + p["gamma"] * nearest) + h @ p["linear"] + p["bias"]


@pytest.mark.parametrize("prior", ["identity", "matrix", "zeros"])
@pytest.mark.parametrize("per_class", [[1, 1, 1], [2, 1, 3]])
def test_the_network_trained_and_folded_computes_the_cross_attention_formula(prior, per_class):
    """Training and the fitted model use the scores multiplied out; the function is the per-head formula."""
    from skcrosstune.crosstune import _CrossAttentionNetwork

    rng = np.random.default_rng(0)
    width, dim = (6, 6) if prior == "identity" else (9, 6)
    P = {"identity": None, "matrix": rng.normal(size=(width, dim)), "zeros": np.zeros((width, dim))}[prior]
    owner = rng.permutation(np.repeat(np.arange(3), per_class))  # descriptions in any order
    descriptions = rng.normal(size=(len(owner), dim)).astype(np.float32)
    prototypes = torch.as_tensor(rng.normal(size=(3, width)), dtype=torch.float32)
    P = None if P is None else P.astype(np.float32)
    torch.manual_seed(0)
    network = _CrossAttentionNetwork(P, descriptions, owner, prototypes, prior != "zeros", 2, 3, 0.1, 0.0)
    with torch.no_grad():  # a trained state: every parameter away from its start
        for parameter in network.parameters():
            parameter.add_(0.3 * torch.randn_like(parameter))
    # each class's descriptions are its keys
    for c in range(3):
        keys = network.keys[c][network.key_mask[c]].numpy()
        np.testing.assert_array_equal(keys, descriptions[owner == c])
    h = rng.normal(size=(7, width))
    expected = _cross_attention_by_the_formula(network, h)
    with torch.no_grad():
        trained = network.eval()(torch.as_tensor(h, dtype=torch.float32)).double().numpy()
    np.testing.assert_allclose(trained, expected, rtol=1e-4, atol=1e-4)
    folded = network.folded()
    np.testing.assert_allclose(folded(torch.as_tensor(h)).numpy(), expected, rtol=1e-9, atol=1e-9)
    assert (folded.vectors is None) == (per_class == [1, 1, 1])
    assert all(t.dtype == torch.float64 for t in folded.state_dict().values() if t.is_floating_point())


def test_on_texts_the_model_stores_no_projection_and_pickles_small(tmp_path):
    """SST-2, 16 shots, the embedded default model: the identity projection is neither stored nor pickled."""
    from skcrosstune.datasets import load_fewshot

    data = load_fewshot("sst2", 16, 13)  # the splits bundled with the package
    clf = CrossTuneClassifier(BlackBoxEmbedder(store=str(tmp_path)), random_state=0).fit(data.X_train, data.y_train)
    width = clf.description_embeddings_.shape[1]
    assert all(t.numel() < width * width for t in clf.module_.state_dict().values())
    assert len(pickle.dumps(clf)) < 100_000


def test_patience_is_thirty_epochs_for_few_shots_and_shorter_for_long_epochs():
    from skcrosstune._training import _patience_runs_out

    # one or two mini-batches an epoch (every few-shot set up to 128 texts): thirty epochs
    assert [_patience_runs_out(e, steps, 30) for e, steps in [(29, 1), (30, 1), (29, 2), (30, 2)]] == [
        False,
        True,
        False,
        True,
    ]
    # 29 mini-batches an epoch (2,400 texts): three epochs, never fewer
    assert not _patience_runs_out(2, 29, 30) and _patience_runs_out(3, 29, 30)
    assert not _patience_runs_out(2, 100, 30) and not _patience_runs_out(19, 3, 30) and _patience_runs_out(20, 3, 30)


def _two_groups_per_class(n_per_group, rng):
    """XOR: class "a" holds two groups of points, around (1, 1) and (-1, -1); class "b" around (-1, 1) and (1, -1)."""
    centres = {"a": [(1, 1), (-1, -1)], "b": [(-1, 1), (1, -1)]}
    X = np.vstack([rng.normal(c, 0.15, size=(n_per_group, 2)) for label in "ab" for c in centres[label]])
    return X.astype(np.float32), np.repeat(["a", "b"], 2 * n_per_group)


def test_sub_centroids_tell_apart_classes_of_several_groups_that_no_linear_map_can(embedder):
    """No linear map separates XOR; the soft nearest sub-centroid scores do, with a weight chosen on held-out rows."""
    rng = np.random.default_rng(0)
    X, y = _two_groups_per_class(16, rng)
    X_test, y_test = _two_groups_per_class(50, rng)
    params = dict(cv=2, max_epochs=50, random_state=0)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*without the zero-shot prior", category=UserWarning)
        clf = CrossTuneClassifier(embedder, **params).fit(X, y)
        linear = CrossTuneClassifier(embedder, n_subcentroids=0, **params).fit(X, y)
    assert clf.subcentroid_weight_ > 0 and clf.score(X_test, y_test) >= 0.95
    assert linear.subcentroid_weight_ == 0 and linear.subcentroid_cv_scores_ is None
    assert linear.score(X_test, y_test) <= 0.8
    # the weight chosen: the smallest whose held-out accuracy is within one standard error of the best
    scores = clf.subcentroid_cv_scores_
    assert list(scores) == [0.0, 2.5, 5.0, 10.0, 20.0, 40.0] and scores[0.0] <= 0.8
    assert scores[clf.subcentroid_weight_] >= max(scores.values()) - 0.1
    assert all(s < scores[clf.subcentroid_weight_] for w, s in scores.items() if w < clf.subcentroid_weight_)
    # a row's prediction does not depend on the rows predicted with it
    np.testing.assert_array_equal(clf.decision_function(X_test[:1]), clf.decision_function(X_test)[:1])


def test_a_sub_centroid_weight_the_held_out_rows_cannot_tell_from_zero_is_not_taken(embedder):
    """One more right row of 100 is noise: the weight stays 0. Thirty more are not: the smallest such weight."""
    X, y = _two_groups_per_class(16, np.random.default_rng(0))
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*without the zero-shot prior", category=UserWarning)
        clf = CrossTuneClassifier(embedder, cv=2, max_epochs=5, random_state=0).fit(X, y)
    rows, targets = torch.as_tensor(X), torch.as_tensor((y == "b").astype(np.int64))
    baseline = np.arange(100) < 60  # weight 0 gets 60 of 100 held-out rows right
    marginal = np.stack([baseline] + [baseline | (np.arange(100) == 99)] * 5)
    clf._add_subcentroids(rows, targets, [marginal[:, :50], marginal[:, 50:]])
    assert clf.subcentroid_weight_ == 0 and clf.subcentroid_cv_scores_[2.5] == 0.61
    clear = np.stack([baseline, baseline, baseline | (np.arange(100) >= 70)] + [np.arange(100) < 91] * 3)
    clf._add_subcentroids(rows, targets, [clear[:, :50], clear[:, 50:]])
    assert clf.subcentroid_weight_ == 5.0 and clf.module_.subcentroid_weight == 5.0


def test_without_cross_validation_the_sub_centroids_are_not_used(embedder):
    for params in ({"cv": 0, "max_epochs": 20}, {"max_epochs": 0}):
        clf = CrossTuneClassifier(embedder, DESCRIPTIONS, random_state=0, **params).fit(TEXTS, LABELS)
        assert clf.subcentroid_weight_ == 0 and clf.subcentroid_cv_scores_ is None and clf.module_.centres is None
    one_shot = CrossTuneClassifier(embedder, DESCRIPTIONS, random_state=0).fit(TEXTS[4:6], LABELS[4:6])
    assert one_shot.subcentroid_weight_ == 0 and one_shot.subcentroid_cv_scores_ is None


def test_sub_centroids_are_each_class_s_k_means_centres():
    from skcrosstune.crosstune import _subcentroid_scores, _subcentroids

    rng = np.random.default_rng(0)
    groups = np.array([[0.0, 5.0], [5.0, 0.0], [-5.0, -5.0]])
    # class 0: 4 rows around each of the three groups; class 1: 2 rows only, fewer than k = 3
    X = np.vstack([g + rng.normal(0, 0.1, size=(4, 2)) for g in groups] + [rng.normal(0, 0.1, size=(2, 2))])
    y = np.array([0] * 12 + [1] * 2)
    order = rng.permutation(len(y))  # rows in any order
    centres, mask = _subcentroids(torch.as_tensor(X[order]), torch.as_tensor(y[order]), 2, 3)
    assert mask.tolist() == [[True, True, True], [True, True, False]]
    found = sorted(centres[0].numpy().tolist())
    expected = sorted(X[:12].reshape(3, 4, 2).mean(1).tolist())
    np.testing.assert_allclose(found, expected, atol=1e-12)
    np.testing.assert_allclose(sorted(centres[1, :2].numpy().tolist()), sorted(X[12:].tolist()), atol=1e-12)
    # the score of a class is the soft maximum over its own (real) centres of h . mu - |mu|^2 / 2
    h = torch.as_tensor(rng.normal(size=(5, 2)))
    s = h @ centres.reshape(-1, 2).T - 0.5 * (centres.reshape(-1, 2) ** 2).sum(1)
    expected = torch.stack([0.1 * torch.logsumexp(s[:, :3] / 0.1, 1), 0.1 * torch.logsumexp(s[:, 3:5] / 0.1, 1)], 1)
    torch.testing.assert_close(_subcentroid_scores(h, centres, mask, 0.1), expected)


def test_the_folds_keep_a_summary_of_each_epochs_held_out_logits_not_the_logits(embedder, monkeypatch):
    """The choice of the sub-centroid weight keeps, per fold and epoch, only which held-out rows each weight gets
    right (a few booleans a row), never the logits of every epoch (rows x classes floats)."""
    from skcrosstune._training import train_classifier

    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 5)).astype(np.float32)
    y = np.repeat([0, 1, 2], 20)
    X[np.arange(60), y] += 2.0
    calls, shapes = [], []

    def summarizer(train_idx, valid_idx):
        calls.append((train_idx, valid_idx))
        return lambda logits: shapes.append(logits.shape) or logits.argmax(1)

    held_out = {"summarizer": summarizer}
    _, n_epochs = train_classifier(
        lambda X_train, y_train: torch.nn.Linear(5, 3),
        X,
        y,
        max_epochs=15,
        learning_rate=0.05,
        weight_decay=0.0,
        batch_size=None,
        cv=2,
        n_iter_no_change=5,
        device="cpu",
        seed=0,
        out_of_fold=held_out,
    )
    assert [tuple(map(len, fold)) for fold in calls] == [(30, 30), (30, 30)]  # once per fold, at its start
    assert set(shapes) == {(30, 3)} and len(shapes) >= 2 * 2  # every epoch's held-out logits, epoch 0 included
    assert held_out["folds"] == calls and "logits" not in held_out
    assert [s.shape for s in held_out["summaries"]] == [(30,), (30,)] and 0 <= n_epochs <= 15

    # CrossTune: booleans, one row per candidate weight, one column per held-out row
    kept = []
    original = CrossTuneClassifier._add_subcentroids
    monkeypatch.setattr(
        CrossTuneClassifier,
        "_add_subcentroids",
        lambda self, H, y, hits: kept.extend(hits) or original(self, H, y, hits),
    )
    X, y = _two_groups_per_class(16, rng)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*without the zero-shot prior", category=UserWarning)
        clf = CrossTuneClassifier(embedder, cv=2, max_epochs=20, random_state=0).fit(X, y)
    assert [(h.dtype, h.shape) for h in kept] == [(np.bool_, (6, 32)), (np.bool_, (6, 32))]
    accuracy = np.concatenate(kept, axis=1).mean(1)
    np.testing.assert_allclose(list(clf.subcentroid_cv_scores_.values()), accuracy)
