import joblib
import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline

from skcrosstune import BlackBoxEmbedder, DecTClassifier
from skcrosstune.dect import calibrate

from ._checks import parametrize_with_checks

POSITIVE = ["a great film", "good acting and a fine story", "fun , really funny", "the best scene", "love it"]
NEGATIVE = ["a boring , long film", "awful plot", "the worst acting", "dull and too long", "bad , really bad"]
TEXTS = POSITIVE + NEGATIVE
LABELS = np.array(["pos"] * 5 + ["neg"] * 5, dtype=object)
DESCRIPTIONS = {"pos": "great good fun best", "neg": "awful bad dull worst"}
WORDS = {"pos": "great", "neg": ["bad", "awful"]}
TEMPLATE = "{text} it was {mask} ."


@pytest.fixture
def embedder(tiny_bert):
    return BlackBoxEmbedder(str(tiny_bert))


@pytest.fixture
def masked_lm(tiny_bert):
    return BlackBoxEmbedder(str(tiny_bert), pooling="mask", template=TEMPLATE)


@parametrize_with_checks([DecTClassifier(zero_shot_weight=0, random_state=0)])
def test_sklearn_common_checks_on_numeric_representations(estimator, check):
    # The checks feed random numeric features, which no description can be
    # compared with: the plain prototype network (zero_shot_weight=0) is checked.
    check(estimator)


# ---------------------------------------------------------------- calibration
def test_calibration_is_dects_division_renormalised():
    p = np.array([[0.7, 0.2, 0.1], [0.1, 0.3, 0.6]])
    content_free = np.array([0.5, 0.3, 0.2])
    divided = p / (content_free / content_free.mean())
    expected = divided / divided.sum(1, keepdims=True)
    np.testing.assert_allclose(calibrate(np.log(p), np.log(content_free)), expected)


def test_calibration_is_finite_for_negative_zero_and_extreme_scores():
    scores = np.array([[-5.0, 0.0, 1e-12], [-800.0, 800.0, 0.0], [0.0, 0.0, 0.0]])
    q = calibrate(scores, np.array([0.0, -1e-9, 900.0]))
    assert np.isfinite(q).all()
    np.testing.assert_allclose(q.sum(1), 1.0)
    # a class the reference disfavours is raised
    assert q[2].argmax() in (0, 1) and q[2, 2] < 1e-300 + 1e-12


def test_a_uniform_reference_changes_nothing():
    scores = np.array([[2.0, -1.0, 0.5]])
    np.testing.assert_allclose(calibrate(scores, np.zeros(3)), np.exp(scores) / np.exp(scores).sum())


# ------------------------------------------------------ masked LM, label words
@pytest.mark.parametrize("model", ["tiny_bert", "tiny_roberta"])
def test_label_word_path_end_to_end_with_one_query_per_text(model, request, sent):
    """The mask state and the label-word scores come from one query per text, plus the content-free one."""
    masked_lm = BlackBoxEmbedder(str(request.getfixturevalue(model)), pooling="mask", template=TEMPLATE)
    clf = DecTClassifier(masked_lm, label_words=WORDS, random_state=0).fit(TEXTS, LABELS)
    assert sorted(sent) == sorted(TEXTS + [""])
    assert clf.zero_shot_source_ == "label_words" and clf.calibration_ == "content_free"
    clf.predict_proba(TEXTS)
    clf.predict(TEXTS[:3])
    assert len(sent) == 11, "prediction on texts already seen queried the black box again"

    # the zero-shot term is the calibrated label-word score at the mask, computed independently
    words = [WORDS["neg"], [WORDS["pos"]]]
    direct = clone(masked_lm).fit(TEXTS)
    expected = np.log(calibrate(direct.label_word_scores(TEXTS, words), direct.label_word_scores([""], words)[0]))
    heavy = DecTClassifier(masked_lm, label_words=WORDS, zero_shot_weight=1e6, max_epochs=0).fit(TEXTS, LABELS)
    np.testing.assert_allclose(heavy.decision_function(TEXTS) / 1e6, expected[:, 1] - expected[:, 0], atol=1e-4)


def test_without_a_cache_the_state_and_the_label_word_scores_still_cost_one_query(tiny_bert, sent):
    masked_lm = BlackBoxEmbedder(str(tiny_bert), pooling="mask", template=TEMPLATE, store=None)
    clf = DecTClassifier(masked_lm, label_words=WORDS, calibration="train_mean", random_state=0).fit(TEXTS, LABELS)
    assert sorted(sent) == sorted(TEXTS)
    clf.predict_proba(TEXTS)
    assert len(sent) == 2 * len(TEXTS)  # nothing cached: prediction pays once more, once


def test_a_label_word_split_into_pieces_is_scored_by_its_first_piece_with_a_warning(masked_lm):
    with pytest.warns(UserWarning, match="first"):
        DecTClassifier(masked_lm, label_words={"pos": "greatxyzq", "neg": "bad"}, max_epochs=2).fit(TEXTS, LABELS)


def test_label_words_on_sentence_pairs(tiny_bert, sent):
    pairs = [(t, "it was good") for t in POSITIVE] + [(t, "it was awful") for t in NEGATIVE]
    masked_lm = BlackBoxEmbedder(str(tiny_bert), pooling="mask", template="{text} ? {mask} , {text_pair}")
    clf = DecTClassifier(masked_lm, label_words={"pos": "yes", "neg": "no"}, random_state=0).fit(pairs, LABELS)
    assert clf.input_kind_ == "pairs" and clf.predict(pairs).shape == (10,)
    assert len(sent) == 11  # one joint query per pair and the content-free pair


# ---------------------------------------------------- embeddings, descriptions
def test_description_path_calibrates_by_the_training_mean_without_an_extra_query(embedder, sent):
    clf = DecTClassifier(embedder, label_descriptions=DESCRIPTIONS, random_state=0).fit(TEXTS, LABELS)
    assert clf.zero_shot_source_ == "descriptions" and clf.calibration_ == "train_mean"
    assert sorted(sent) == sorted(TEXTS + list(DESCRIPTIONS.values()))
    H = clone(embedder).fit_transform(TEXTS)
    E = clone(embedder).fit_transform([DESCRIPTIONS["neg"], DESCRIPTIONS["pos"]])
    log_p = H @ E.T / 0.05
    log_p -= np.logaddexp.reduce(log_p, axis=1, keepdims=True)
    np.testing.assert_allclose(clf.reference_scores_, log_p.mean(0), rtol=1e-4)


def test_content_free_calibration_costs_one_query(embedder, sent):
    clf = DecTClassifier(embedder, label_descriptions=DESCRIPTIONS, calibration="content_free", max_epochs=1).fit(
        TEXTS, LABELS
    )
    assert sorted(sent) == sorted(TEXTS + list(DESCRIPTIONS.values()) + [""])
    assert clf.reference_scores_.shape == (2,)


def test_descriptions_from_label_names_when_nothing_is_given(embedder):
    clf = DecTClassifier(embedder, max_epochs=0).fit(TEXTS, ["not_good"] * 5 + ["science/technology"] * 5)
    assert clf.descriptions_ == [["not good"], ["science / technology"]]


def test_the_embedded_default_model_end_to_end():
    clf = DecTClassifier(
        label_descriptions={"positive": "a glowing, enthusiastic review", "negative": "a scathing, hostile review"},
        random_state=0,
    ).fit(
        ["a joyful, moving film", "loved every minute", "dull and lifeless", "a tedious mess"],
        ["positive", "positive", "negative", "negative"],
    )
    assert list(clf.predict(["an absolute delight", "painfully boring"])) == ["positive", "negative"]


def test_after_an_embedder_step_in_a_pipeline(embedder):
    pipe = make_pipeline(
        clone(embedder), DecTClassifier(clone(embedder), label_descriptions=DESCRIPTIONS, random_state=0)
    )
    pipe.fit(TEXTS, LABELS)
    direct = DecTClassifier(clone(embedder), label_descriptions=DESCRIPTIONS, random_state=0).fit(TEXTS, LABELS)
    np.testing.assert_allclose(pipe.decision_function(TEXTS), direct.decision_function(TEXTS), rtol=1e-5)
    assert pipe[-1].input_kind_ == "numeric" and pipe[-1].n_features_in_ == 32


# --------------------------------------------------------------- the decoder
def test_zero_weight_is_a_plain_prototype_network_that_needs_nothing_else(embedder, sent):
    clf = DecTClassifier(embedder, zero_shot_weight=0, random_state=0, max_epochs=100).fit(TEXTS, LABELS)
    assert clf.zero_shot_source_ is None and clf.descriptions_ is None
    assert sorted(sent) == sorted(TEXTS)
    assert clf.score(TEXTS, LABELS) == 1.0


def test_auto_weight_is_one_for_log_probs_and_one_over_the_shots_for_dects_fusion(embedder):
    assert DecTClassifier(embedder, zero_shot_weight="auto", max_epochs=0).fit(TEXTS, LABELS).zero_shot_weight_ == 1.0
    dect = DecTClassifier(embedder, zero_shot_weight="auto", fusion="probs", max_epochs=0)
    assert dect.fit(TEXTS, LABELS).zero_shot_weight_ == pytest.approx(0.2)
    assert dect.fit(TEXTS[4:6], LABELS[4:6]).zero_shot_weight_ == 1.0
    assert DecTClassifier(embedder, zero_shot_weight=3.0, max_epochs=0).fit(TEXTS, LABELS).zero_shot_weight_ == 3.0


@pytest.mark.parametrize("prototypes", ["random", "class_mean"])
def test_prototypes_random_and_frozen_or_class_means_and_trained(embedder, prototypes):
    start = DecTClassifier(embedder, prototypes=prototypes, max_epochs=0, random_state=1).fit(TEXTS, LABELS)
    trained = DecTClassifier(embedder, prototypes=prototypes, max_epochs=30, random_state=1).fit(TEXTS, LABELS)
    names = {name for name, _ in trained.module_.named_parameters()}
    before, after = start.module_.prototypes, trained.module_.prototypes
    if prototypes == "random":
        assert "prototypes" not in names
        torch.testing.assert_close(before, after)
        torch.testing.assert_close(after.norm(dim=-1), torch.ones(1, 2, dtype=after.dtype))
    else:
        assert "prototypes" in names and not torch.equal(before, after)
    # the radius starts at the mean distance of the class's examples to its prototype
    assert (start.module_.radius > 0).all()


def test_training_fits_the_training_data_and_probabilities_sum_to_one(embedder):
    clf = DecTClassifier(embedder, label_descriptions=DESCRIPTIONS, max_epochs=200, random_state=0).fit(TEXTS, LABELS)
    assert clf.score(TEXTS, LABELS) == 1.0
    np.testing.assert_allclose(clf.predict_proba(TEXTS).sum(1), 1.0, rtol=1e-6)
    assert clf.decision_function(TEXTS).shape == (10,)


def test_internal_cross_validation_chooses_the_epochs(embedder):
    clf = DecTClassifier(embedder, label_descriptions=DESCRIPTIONS, cv=2, max_epochs=50, random_state=0).fit(
        TEXTS, LABELS
    )
    assert 0 <= clf.n_epochs_ <= 50
    assert DecTClassifier(embedder, label_descriptions=DESCRIPTIONS, max_epochs=7).fit(TEXTS, LABELS).n_epochs_ == 7


def test_the_same_random_state_gives_identical_predictions(embedder):
    a = DecTClassifier(embedder, label_descriptions=DESCRIPTIONS, random_state=3).fit(TEXTS, LABELS)
    b = DecTClassifier(embedder, label_descriptions=DESCRIPTIONS, random_state=3).fit(TEXTS, LABELS)
    np.testing.assert_array_equal(a.decision_function(TEXTS), b.decision_function(TEXTS))
    c = DecTClassifier(embedder, label_descriptions=DESCRIPTIONS, random_state=4).fit(TEXTS, LABELS)
    assert not np.array_equal(a.decision_function(TEXTS), c.decision_function(TEXTS))


@pytest.mark.parametrize(
    "labels", [np.array([1] * 5 + [0] * 5), np.array([True] * 5 + [False] * 5), [3.0] * 5 + [-1.0] * 5]
)
def test_labels_of_any_type(embedder, labels):
    clf = DecTClassifier(embedder, random_state=0).fit(TEXTS, labels)
    assert clf.predict(TEXTS).dtype == np.asarray(labels).dtype
    assert set(clf.predict(TEXTS)) <= set(np.asarray(labels).tolist())


def test_three_classes_and_several_descriptions_per_class(embedder):
    labels = ["pos"] * 5 + ["neg"] * 3 + ["meh"] * 2
    descriptions = {"pos": ["great", "good fun"], "neg": ["awful", "bad", "worst"], "meh": "fine"}
    clf = DecTClassifier(embedder, label_descriptions=descriptions, random_state=0).fit(TEXTS, labels)
    assert clf.decision_function(TEXTS).shape == (10, 3) and list(clf.classes_) == ["meh", "neg", "pos"]
    assert clf.description_embeddings_.shape == (6, 32)


# --------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    "params, labels, match",
    [
        (dict(label_words={"pos": "good", "neg": "bad", "meh": "fine"}), LABELS, r"label_words names .*\['meh'\]"),
        (dict(label_words={"pos": "good"}), LABELS, r"label_words has no entry for the classes \['neg'\]"),
        (dict(label_descriptions={"pos": "a", "other": "b"}), LABELS, r"not in y: \['other'\]"),
        (dict(label_words=WORDS, label_descriptions=DESCRIPTIONS), LABELS, "not both"),
        ({}, ["pos"] * 10, "only one class"),
        ({}, LABELS[:9], "9 labels for 10 inputs"),
        ({}, [1.0] * 5 + [np.nan] * 5, "missing labels"),
    ],
)
def test_bad_input_is_named(masked_lm, params, labels, match):
    with pytest.raises(ValueError, match=match):
        DecTClassifier(masked_lm, max_epochs=0, **params).fit(TEXTS, labels)


def test_label_words_need_texts(masked_lm):
    with pytest.raises(ValueError, match="label_words need texts"):
        DecTClassifier(masked_lm, label_words=WORDS).fit(np.zeros((10, 32)), LABELS)


def test_incomparable_features_warn_with_auto_weight_and_fail_with_an_explicit_one(embedder):
    features = np.random.default_rng(0).normal(size=(10, 7))
    with pytest.warns(UserWarning, match="plain prototype network"):
        clf = DecTClassifier(embedder, label_descriptions=DESCRIPTIONS).fit(features, LABELS)
    assert clf.zero_shot_weight_ == 0.0
    with pytest.raises(ValueError, match="zero_shot_weight=0.5 cannot be used"):
        DecTClassifier(embedder, label_descriptions=DESCRIPTIONS, zero_shot_weight=0.5).fit(features, LABELS)


def test_a_mask_template_is_needed_for_label_words(embedder):
    with pytest.raises(ValueError, match="pooling='mask'"):
        DecTClassifier(embedder, label_words=WORDS).fit(TEXTS, LABELS)


# ------------------------------------------------- clone, search, persistence
def test_clone_gridsearch_and_joblib(masked_lm, tmp_path, sent):
    clf = DecTClassifier(masked_lm, label_words=WORDS, random_state=0)
    grid = {"zero_shot_weight": [0.0, 0.5, "auto", "cv"], "prototypes": ["random", "class_mean"]}
    search = GridSearchCV(clf, grid, cv=2).fit(TEXTS, LABELS)
    assert set(search.best_params_) == set(grid)
    assert sorted(set(sent)) == sorted(TEXTS + [""]), "a new setting re-queried texts already paid for"
    path = tmp_path / "dect.joblib"
    joblib.dump(search.best_estimator_, path)
    restored = joblib.load(path)
    np.testing.assert_array_equal(restored.predict_proba(TEXTS), search.best_estimator_.predict_proba(TEXTS))


# ---------------------------------------------- the zero-shot weight, chosen on the training data
def _features_with_a_zero_shot_prior(embedder, prior, n_per_class=30, seed=0):
    """Numeric features in the descriptions' space, 30 per class: the classes lie apart along a direction
    the descriptions do not see, and the similarity to the descriptions (the zero-shot prior) follows
    the class (``prior="class"``) or is noise (``prior="noise"``)."""
    rng = np.random.default_rng(seed)
    descriptions = embedder.fit(list(DESCRIPTIONS.values())).transform(list(DESCRIPTIONS.values()))
    to_pos = descriptions[0] - descriptions[1]
    basis = np.linalg.qr(np.vstack([to_pos, rng.normal(size=(1, len(to_pos)))]).T)[0]
    prior_axis, class_axis = basis[:, 0] * np.sign(basis[:, 0] @ to_pos), basis[:, 1]
    y = np.array(["pos"] * n_per_class + ["neg"] * n_per_class, dtype=object)
    sign = np.where(y == "pos", 1.0, -1.0)
    prior_value = rng.normal(size=len(y)) if prior == "noise" else sign + 0.3 * rng.normal(size=len(y))
    X = np.outer(sign + rng.normal(size=len(y)), class_axis) + 2.0 * np.outer(prior_value, prior_axis)
    return X + 0.05 * rng.normal(size=X.shape), y


def test_cv_keeps_a_zero_shot_prior_that_follows_the_labels_and_halves_a_noisy_one(embedder):
    X_follows, y = _features_with_a_zero_shot_prior(embedder, "class")
    X_noisy, _ = _features_with_a_zero_shot_prior(embedder, "noise")
    follows = DecTClassifier(embedder, label_descriptions=DESCRIPTIONS, random_state=0).fit(X_follows, y)
    noisy = DecTClassifier(embedder, label_descriptions=DESCRIPTIONS, random_state=0).fit(X_noisy, y)
    assert follows.zero_shot_weight_ == 1.0
    assert noisy.zero_shot_weight_ == 0.5
    # the held-out accuracies behind the choice, one per candidate
    assert set(noisy.zero_shot_cv_scores_) == {1.0, 0.5}
    assert noisy.zero_shot_cv_scores_[0.5] > noisy.zero_shot_cv_scores_[1.0]


def test_cv_trains_the_final_decoder_as_a_fixed_weight_would(embedder):
    X, y = _features_with_a_zero_shot_prior(embedder, "noise")
    chosen = DecTClassifier(embedder, label_descriptions=DESCRIPTIONS, random_state=0).fit(X, y)
    fixed = DecTClassifier(
        embedder, label_descriptions=DESCRIPTIONS, zero_shot_weight=chosen.zero_shot_weight_, random_state=0
    ).fit(X, y)
    np.testing.assert_array_equal(chosen.decision_function(X), fixed.decision_function(X))
    assert fixed.zero_shot_cv_scores_ is None


def test_cv_keeps_the_auto_weight_of_dects_fusion_with_too_few_examples_to_hold_out(embedder):
    # one example per class: nothing can be held out
    clf = DecTClassifier(embedder, label_descriptions=DESCRIPTIONS, fusion="probs", random_state=0)
    clf.fit(TEXTS[4:6], LABELS[4:6])
    assert clf.zero_shot_weight_ == 1.0 and clf.zero_shot_cv_scores_ is None
    # with DecT's fusion the candidates are 1 / shots and half of it
    assert set(clf.fit(TEXTS, LABELS).zero_shot_cv_scores_) == {0.2, 0.1}


@pytest.mark.parametrize("weight", [0.0, 0.3, "auto"])
def test_a_fixed_weight_is_honoured_without_cross_validation(embedder, weight):
    clf = DecTClassifier(embedder, label_descriptions=DESCRIPTIONS, zero_shot_weight=weight, random_state=0)
    clf.fit(TEXTS, LABELS)
    assert clf.zero_shot_weight_ == (1.0 if weight == "auto" else weight)
    assert clf.zero_shot_cv_scores_ is None


def test_cv_choice_is_reproducible_and_survives_clone(embedder):
    X, y = _features_with_a_zero_shot_prior(embedder, "noise")
    clf = DecTClassifier(embedder, label_descriptions=DESCRIPTIONS, zero_shot_cv=3, random_state=5)
    assert clone(clf).get_params()["zero_shot_weight"] == "cv" and clone(clf).zero_shot_cv == 3
    a, b = clone(clf).fit(X, y), clone(clf).fit(X, y)
    assert a.zero_shot_cv_scores_ == b.zero_shot_cv_scores_
    np.testing.assert_array_equal(a.decision_function(X), b.decision_function(X))


@pytest.mark.parametrize("params", [{"zero_shot_weight": "best"}, {"zero_shot_weight": -1.0}, {"zero_shot_cv": 1}])
def test_bad_zero_shot_settings_are_refused(embedder, params):
    with pytest.raises(ValueError, match=next(iter(params))):
        DecTClassifier(embedder, **params).fit(TEXTS, LABELS)


@pytest.mark.parametrize(
    ("batch_size", "steps", "fold_epochs"), [(None, 50, 30), (60, 50, 30), (None, 10, 10), (8, 10, 3), (4, 10, 2)]
)
def test_the_fold_decoders_of_the_weight_choice_take_at_most_zero_shot_cv_steps(
    embedder, monkeypatch, batch_size, steps, fold_epochs
):
    # 60 rows, 2 folds of 30. One batch an epoch: the default 50 steps leave all 30 epochs, 10 steps 10
    # epochs; batches of 8 are 4 steps an epoch, so 10 steps are 3 whole epochs, batches of 4 (8 steps) 2
    import skcrosstune.dect as dect_module

    epochs = []
    original = dect_module.train_classifier
    monkeypatch.setattr(
        dect_module, "train_classifier", lambda *a, **kw: epochs.append(kw["max_epochs"]) or original(*a, **kw)
    )
    X, y = _features_with_a_zero_shot_prior(embedder, "noise")
    clf = DecTClassifier(
        embedder, label_descriptions=DESCRIPTIONS, batch_size=batch_size, zero_shot_cv_steps=steps, random_state=0
    ).fit(X, y)
    assert epochs == [fold_epochs, fold_epochs, 30], "the final decoder trains max_epochs whatever the folds did"
    assert clf.n_epochs_ == 30 and set(clf.zero_shot_cv_scores_) == {1.0, 0.5}
