import pickle

import joblib
import numpy as np
import pytest
from sklearn.base import clone
from sklearn.model_selection import GridSearchCV
from sklearn.utils.estimator_checks import check_get_params_invariance

from skcrosstune import BlackBoxEmbedder, BlackBoxPromptClassifier
from skcrosstune._ngrams import mine_ngrams, project_onto_simplex
from skcrosstune.backends.openai_logprobs import OpenAILogProbBackend
from skcrosstune.bdpl import _score_function_gradient

from ._checks import parametrize_with_checks

FILLER = (
    "apple bread chair door eagle fence grape house igloo jacket kite lemon mango night ocean piano queen "
    "river stone table umbrella violin window yacht zipper anchor bottle candle desert engine forest garden "
    "harbor island jungle kettle ladder mirror needle orange pencil rocket saddle tunnel valley wagon"
).split()
KEY = "lantern"
LABEL_WORDS = {"a": "yes", "b": "no"}


class KeyWordBox:
    """A synthetic log-probability black box: it knows the class (the last cue word, "alpha" or "beta")
    but says so only when the key word is in the input; without it, both label words are equally likely."""

    def __init__(self, key=KEY, strength=3.0):
        self.key = key
        self.strength = strength
        self.n_inputs = 0

    def fingerprint(self):
        return {"backend": "key-word", "key": self.key, "strength": self.strength}

    def label_word_log_probs(self, items, label_words):
        self.n_inputs += len(items)
        rows = []
        for item in items:
            words = item.split()
            cue = [w for w in words if w in ("alpha", "beta")][-1]
            logits = np.zeros(len(label_words))
            if self.key in words:
                logits[label_words.index("yes" if cue == "alpha" else "no")] = self.strength
            rows.append(logits - np.log(np.exp(logits).sum()))
        return np.asarray(rows)


def key_word_data(seed, n=20):
    """Texts of random filler words ending in their class cue; the key word is in two of them."""
    rng = np.random.default_rng(seed)
    texts, labels = [], []
    for i in range(n):
        words = list(rng.choice(FILLER, 6)) + ["alpha" if i % 2 == 0 else "beta"]
        if i in (3, 8):
            words.insert(2, KEY)
        texts.append(" ".join(words))
        labels.append("ab"[i % 2])
    return texts, np.asarray(labels)


def key_word_classifier(box=None, **params):
    defaults = dict(
        label_words=LABEL_WORDS, prompt_length=1, sample_size=10, batch_size=16, max_steps=1000, max_queries=3000
    )
    return BlackBoxPromptClassifier(box or KeyWordBox(), **{**defaults, **params})


# ------------------------------------------------------------- the optimiser
@pytest.mark.parametrize("seed", [0, 1, 2, 3, 4])
def test_the_search_finds_the_one_useful_candidate_within_3000_queries(seed):
    """One slot, ~50 candidates: a random prompt holds the key with probability ~2%."""
    X, y = key_word_data(seed)
    box = KeyWordBox()
    clf = key_word_classifier(box, random_state=seed).fit(X, y)
    assert len(clf.candidates_) >= 40 and KEY in clf.candidates_
    assert clf.prompt_ == KEY
    assert clf.best_score_ == 1.0
    assert clf.n_requested_ <= 3000
    assert box.n_inputs == 0  # the estimator queried its own copy
    assert clf.log_prob_backend_.n_inputs == clf.n_queries_ > 0


def test_the_kept_distribution_is_a_copy_taken_when_the_chosen_prompt_was_evaluated():
    X, y = key_word_data(0)
    clf = key_word_classifier(prompt_length=3, random_state=0, max_steps=40, max_queries=None).fit(X, y)
    chosen = [h for h in clf.history_ if h["prompt"] == clf.prompt_]
    assert chosen and len(clf.history_) > 2 and clf.n_steps_ == 40
    np.testing.assert_array_equal(clf.distribution_.argmax(axis=1), clf.prompt_indices_)
    np.testing.assert_allclose(clf.distribution_.sum(axis=1), 1.0)


def test_the_gradient_lowers_the_probability_of_costly_candidates():
    probs = np.full((2, 4), 0.25)
    samples = np.array([[0, 1], [2, 3], [0, 3]])
    losses = np.array([1.0, 3.0, 2.0])
    gradient = _score_function_gradient(samples, losses, probs)
    # sample 0 had the lowest loss: its candidates get a negative gradient (AdamW raises them)
    assert gradient[0, 0] < 0 and gradient[1, 1] < 0
    assert gradient[0, 2] > 0
    np.testing.assert_allclose(gradient[0, 0], ((1 - 2) + (2 - 2)) / 2 / 0.25)
    assert gradient[1, 0] == 0  # never drawn


def test_projection_onto_the_simplex_is_exact():
    rng = np.random.default_rng(0)
    V = rng.normal(size=(50, 7))
    P = project_onto_simplex(V)
    np.testing.assert_allclose(P.sum(axis=1), 1.0)
    assert (P >= 0).all()
    # optimality: no random point of the simplex is closer
    for v, p in zip(V[:5], P[:5], strict=True):
        others = rng.dirichlet(np.ones(7), size=2000)
        assert np.linalg.norm(v - p) <= np.linalg.norm(v - others, axis=1).min() + 1e-12
    on_simplex = rng.dirichlet(np.ones(7), size=3)
    np.testing.assert_allclose(project_onto_simplex(on_simplex), on_simplex)
    np.testing.assert_allclose(project_onto_simplex(np.array([[1.0, 1.0, 1.0]])), [[1 / 3] * 3])


def test_mining_merges_associated_words_and_ranks_by_frequency():
    texts = ["new york is big", "i love new york", "new york , again", "the cat sat", "the dog sat", "the end"]
    ngrams = mine_ngrams(texts)
    assert ngrams[:2] == ["new york", "the"]
    assert "new" not in ngrams and "," not in ngrams
    assert mine_ngrams(texts, min_count=2) == ["new york", "the", "sat"]
    assert all(len(g.split()) <= 1 for g in mine_ngrams(texts, max_length=1))


# ------------------------------------------------------ budget, cache, seeds
def test_the_budget_counts_cache_answers_too_so_a_warm_cache_changes_nothing():
    X, y = key_word_data(1)
    cold = key_word_classifier(random_state=7, prompt_length=3, max_queries=1500).fit(X, y)
    warm = key_word_classifier(random_state=7, prompt_length=3, max_queries=1500).fit(X, y)
    assert cold.n_requested_ <= 1500 and cold.n_queries_ > 0
    assert warm.n_queries_ == 0 and warm.n_cache_hits_ > 0
    assert warm.prompt_ == cold.prompt_ and warm.n_steps_ == cold.n_steps_
    np.testing.assert_array_equal(warm.distribution_, cold.distribution_)
    other = key_word_classifier(random_state=8, prompt_length=3, max_queries=1500).fit(X, y)
    assert other.history_ != cold.history_


def test_label_words_in_another_order_are_not_answered_by_the_store(tmp_path):
    """A stored answer's columns follow the order of the label words asked for."""
    X, y = key_word_data(5)
    store = tmp_path / "store"
    key_word_classifier(random_state=0, store=store, max_queries=1000).fit(X, y)
    swapped = {"a": "no", "b": "yes"}  # the same words, in the other order
    shared = key_word_classifier(label_words=swapped, random_state=0, store=store, max_queries=1000).fit(X, y)
    alone = key_word_classifier(label_words=swapped, random_state=0, store=tmp_path / "new", max_queries=1000).fit(X, y)
    assert shared.n_queries_ == alone.n_queries_ > 0
    assert shared.history_ == alone.history_


def test_every_prompted_test_text_is_a_new_query():
    X, y = key_word_data(2)
    clf = key_word_classifier(random_state=0).fit(X, y)
    fitted = clf.n_queries_
    X_new, _ = key_word_data(99)
    clf.predict(X_new)
    assert clf.n_queries_ == fitted + len(X_new)
    clf.predict_proba(X_new)
    assert clf.n_queries_ == fitted + len(X_new)  # the second time the cache answers


def test_no_prompt_is_kept_when_no_prompt_helps():
    X, y = key_word_data(3)
    clf = key_word_classifier(KeyWordBox(key="absent"), random_state=0, max_queries=1000).fit(X, y)
    assert clf.prompt_ == "" and len(clf.prompt_indices_) == 0
    before = clf.n_queries_
    clf.predict(X)  # the 4 held-out texts (2 per class) were asked without a prompt during the search
    assert clf.n_queries_ == before + len(X) - 4


def test_a_budget_too_small_for_one_step_is_a_clear_error():
    X, y = key_word_data(0)
    with pytest.raises(ValueError, match="max_queries=100 cannot pay for one step"):
        key_word_classifier(max_queries=100).fit(X, y)


@pytest.mark.parametrize(
    "params, match",
    [
        ({"label_words": None}, r"give label_words.* e\.g\. \{'a': 'word'"),
        ({"label_words": ["yes"]}, r"1 entries for 2 classes \['a', 'b'\]"),
        ({"label_words": {"a": "yes", "z": "no"}}, "not in y"),
        ({"template": "{text}"}, "template must hold"),
        ({"template": "{prompt} {text} {mask}"}, "template must hold"),
        ({"template": "{prompt {text}"}, "not a valid format string"),
        ({"loss": "hinge"}, "loss"),
        ({"label_descriptions": {"pos": "praise", "neg": "blame"}}, "label_descriptions is for embedding"),
    ],
)
def test_bad_settings_get_clear_errors(params, match):
    X, y = key_word_data(0)
    with pytest.raises(ValueError, match=match):
        key_word_classifier(**params).fit(X, y)


def test_sentence_pairs_and_unfitted_use_are_refused():
    X, y = key_word_data(0)
    with pytest.raises(ValueError, match="sentence pairs are not supported"):
        key_word_classifier().fit([(t, t) for t in X], y)
    with pytest.raises(Exception, match="not fitted"):
        key_word_classifier().predict(X)


def test_label_words_as_a_list_follow_classes_and_margin_loss_works():
    X, y = key_word_data(4)
    clf = key_word_classifier(label_words=["yes", "no"], loss="margin", random_state=4).fit(X, y)
    assert clf.label_words_ == [["yes"], ["no"]] and clf.prompt_ == KEY


# -------------------------------------------------------- real black boxes
@pytest.mark.parametrize("model", ["tiny_bert", "tiny_roberta"])
def test_the_mask_path_end_to_end(model, request):
    folder = str(request.getfixturevalue(model))
    texts = ["a great fun film", "good acting , fine story", "the best film", "love it , really good"]
    texts += ["a boring , long film", "awful plot", "the worst acting", "dull and too long"]
    y = ["pos"] * 4 + ["neg"] * 4
    embedder = BlackBoxEmbedder(folder, pooling="mask", template="{text} It was {mask}.")
    clf = BlackBoxPromptClassifier(
        embedder,
        label_words={"pos": "good", "neg": "bad"},
        prompt_length=2,
        sample_size=4,
        batch_size=6,
        max_steps=3,
        random_state=0,
    ).fit(texts, y)
    assert clf.black_box_ == "mask" and clf.n_steps_ == 3
    assert all(word in " ".join(clf.candidates_) for word in clf.prompt_.split())
    proba = clf.predict_proba(texts)
    assert proba.shape == (8, 2)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    assert clf.decision_function(texts).shape == (8,)
    assert set(clf.predict(texts)) <= {"pos", "neg"}
    assert clf.embedder_.n_queries_ == clf.n_queries_ > 0


def test_the_similarity_path_describes_labels_by_their_names(tiny_bert):
    texts = ["a great fun film", "the best film", "good acting", "awful plot", "the worst acting", "dull and long"]
    y = ["good", "good", "good", "bad", "bad", "bad"]
    clf = BlackBoxPromptClassifier(
        BlackBoxEmbedder(str(tiny_bert)), prompt_length=2, sample_size=3, max_steps=2, random_state=0
    ).fit(texts, y)
    assert clf.black_box_ == "similarity" and clf.temperature_ == 0.05
    assert clf.description_embeddings_.shape == (2, 32)
    np.testing.assert_allclose(np.linalg.norm(clf.description_embeddings_, axis=1), 1.0, rtol=1e-5)
    assert clf.predict_proba(texts).shape == (6, 2)
    assert clf.n_queries_ == clf.embedder_.n_queries_ + clf.description_embedder_.n_queries_ > 0


def test_the_similarity_path_on_an_embeddings_api(openai_server, tmp_path):
    texts = ["a great fun film", "the best film", "good acting", "awful plot", "the worst acting", "dull and long"]
    y = ["good", "good", "good", "bad", "bad", "bad"]
    api = BlackBoxEmbedder("openai:emb", base_url=openai_server.url, api_key_env=None, store=tmp_path / "c")
    clf = BlackBoxPromptClassifier(api, prompt_length=2, sample_size=3, max_steps=2, random_state=0).fit(texts, y)
    assert clf.black_box_ == "similarity"
    embedded = openai_server.embedded_texts()
    assert len(embedded) == len(set(embedded)) == clf.n_queries_ > 0  # each input sent once, all counted
    assert {"good", "bad"} <= set(embedded)  # the label names, as descriptions
    assert clf.predict(texts).shape == (6,)


@pytest.mark.parametrize(
    "params, match",
    [
        ({"max_queries": 10}, "cannot pay for one step"),
        ({"label_descriptions": {"good": "praise"}}, "no entry for the classes"),
        ({"min_ngram_count": 50}, "prompt candidate"),
        ({"label_words": {"good": "yes", "bad": "no"}}, "label_words is for label-word black boxes"),
    ],
)
def test_bad_settings_cost_no_query_of_an_embeddings_api(openai_server, tmp_path, params, match):
    texts = ["a great fun film", "the best film", "good acting", "awful plot", "the worst acting", "dull and long"]
    y = ["good", "good", "good", "bad", "bad", "bad"]
    api = BlackBoxEmbedder("openai:emb", base_url=openai_server.url, api_key_env=None, store=tmp_path / "c")
    with pytest.raises(ValueError, match=match):
        BlackBoxPromptClassifier(api, prompt_length=2, sample_size=3, **params).fit(texts, y)
    assert openai_server.request_count == 0


def test_the_log_prob_endpoint(openai_server):
    def first_token(body):
        text = body["messages"][-1]["content"]
        if KEY in text.split():
            return {"yes": -0.05, "no": -3.0} if text.split()[-1] == "alpha" else {"yes": -3.0, "no": -0.05}
        return {"maybe": -0.1, "yes": -2.5}  # "no" is not listed: it gets the smallest listed log-prob

    openai_server.chat_logprobs = first_token
    X, y = key_word_data(0)
    backend = OpenAILogProbBackend("m", base_url=openai_server.url, api_key_env=None)
    clf = key_word_classifier(backend, random_state=0, max_queries=700).fit(X, y)
    requests = openai_server.requests_to("/chat/completions")
    assert len(requests) == clf.n_queries_ > 0
    body = requests[0].body
    assert body["logprobs"] is True and body["max_tokens"] == 1 and body["top_logprobs"] == 20
    assert clf.prompt_ == KEY
    assert (clf.predict(X) == y).all()
    sent = openai_server.request_count
    refit = clone(clf).fit(X, y)
    assert refit.n_queries_ == 0 and openai_server.request_count == sent  # all answered by the cache


# ----------------------------------------------------- scikit-learn contract
class _NumericTaggedPromptClassifier(BlackBoxPromptClassifier):
    """The classifier with its tags claiming 2-D array input.

    scikit-learn skips every common check of an estimator that does not
    accept 2-D arrays, which a classifier of raw texts cannot. Claiming it
    here makes the API checks run; those that feed numeric data fail by
    design and are listed below, with the tests of the same promise on texts.
    """

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.two_d_array = True
        return tags


_TEXT_ONLY = "feeds numeric arrays; the classifier takes raw texts and refuses numbers by design"
_COUNTERPARTS = {
    "check_fit_score_takes_y": "none: fit(X, y) always takes y",
    "check_estimators_overwrite_params": "test_clone_pickle_and_joblib_keep_the_prompt_and_predictions",
    "check_dont_overwrite_parameters": "test_clone_pickle_and_joblib_keep_the_prompt_and_predictions",
    "check_estimators_fit_returns_self": "test_the_mask_path_end_to_end",
    "check_readonly_memmap_input": "none: texts are never memory-mapped",
    "check_n_features_in_after_fitting": "tests/test_conventions.py (feature names)",
    "check_positive_only_tag_during_fit": "none: no numeric input",
    "check_estimators_dtypes": "none: no numeric input",
    "check_complex_data": "tests/test_validation.py",
    "check_dtype_object": "tests/test_validation.py",
    "check_estimators_empty_data_messages": "tests/test_validation.py",
    "check_pipeline_consistency": "test_grid_search_over_prompt_length",
    "check_estimators_nan_inf": "tests/test_validation.py (missing values)",
    "check_estimator_sparse_array": "none: no sparse input",
    "check_estimator_sparse_matrix": "none: no sparse input",
    "check_estimators_pickle": "test_clone_pickle_and_joblib_keep_the_prompt_and_predictions",
    "check_estimators_pickle(readonly_memmap=True)": "test_clone_pickle_and_joblib_keep_the_prompt_and_predictions",
    "check_f_contiguous_array_estimator": "none: no numeric input",
    "check_classifier_data_not_an_array": "tests/test_validation.py (containers of texts)",
    "check_classifiers_one_label": "tests/test_validation.py (labels)",
    "check_classifiers_classes": "test_label_words_as_a_list_follow_classes_and_margin_loss_works",
    "check_classifiers_train": "test_the_search_finds_the_one_useful_candidate_within_3000_queries",
    "check_classifiers_train(readonly_memmap=True)": "none: texts are never memory-mapped",
    "check_classifiers_train(readonly_memmap=True,X_dtype=float32)": "none: no numeric input",
    "check_classifiers_regression_target": "tests/test_validation.py (labels)",
    "check_supervised_y_no_nan": "tests/test_validation.py (labels)",
    "check_supervised_y_2d": "tests/test_validation.py (labels)",
    "check_decision_proba_consistency": "none: no numeric input",
    "check_methods_sample_order_invariance": "none: no numeric input",
    "check_methods_subset_invariance": "none: no numeric input",
    "check_fit2d_1sample": "none: no numeric input",
    "check_fit2d_1feature": "none: no numeric input",
    "check_dict_unchanged": "test_clone_pickle_and_joblib_keep_the_prompt_and_predictions",
    "check_fit_idempotent": "test_the_budget_counts_cache_answers_too_so_a_warm_cache_changes_nothing",
    "check_fit_check_is_fitted": "test_sentence_pairs_and_unfitted_use_are_refused",
    "check_n_features_in": "tests/test_conventions.py (feature names)",
    "check_fit1d": "none: no numeric input",
    "check_fit2d_predict1d": "none: no numeric input",
    "check_requires_y_none": "none: no numeric input",
}
EXPECTED_FAILED_CHECKS = {name: f"{_TEXT_ONLY} (on texts: {where})" for name, where in _COUNTERPARTS.items()}


@parametrize_with_checks(
    [_NumericTaggedPromptClassifier(prompt_length=1, sample_size=2, max_steps=1, random_state=0)],
    expected_failed_checks=lambda estimator: EXPECTED_FAILED_CHECKS,
)
def test_sklearn_common_checks(estimator, check):
    check(estimator)


def test_get_params_invariance_and_string_tags():
    check_get_params_invariance("BlackBoxPromptClassifier", BlackBoxPromptClassifier())
    tags = BlackBoxPromptClassifier().__sklearn_tags__()
    assert tags.input_tags.string and not tags.input_tags.two_d_array


def test_clone_pickle_and_joblib_keep_the_prompt_and_predictions(tmp_path):
    X, y = key_word_data(0)
    clf = key_word_classifier(random_state=0).fit(X, y)
    expected = clf.predict_proba(X)
    assert clf.n_queries_ + clf.n_cache_hits_ > 0
    for restored in (pickle.loads(pickle.dumps(clf)), _joblib_roundtrip(clf, tmp_path)):
        assert restored.prompt_ == clf.prompt_
        # the query counters are this process's: a loaded model has sent nothing here yet
        assert restored.n_queries_ == restored.n_cache_hits_ == 0 and restored.n_requested_ == clf.n_requested_
        np.testing.assert_allclose(restored.predict_proba(X), expected)
    fresh = clone(clf)
    assert fresh.get_params()["label_words"] == LABEL_WORDS and not hasattr(fresh, "prompt_")


def _joblib_roundtrip(estimator, tmp_path):
    path = tmp_path / "bdpl.joblib"
    joblib.dump(estimator, path)
    return joblib.load(path)


def test_grid_search_over_prompt_length():
    X, y = key_word_data(0, n=24)
    search = GridSearchCV(key_word_classifier(random_state=0, max_queries=1500), {"prompt_length": [1, 2]}, cv=2)
    search.fit(X, y)
    assert search.best_params_["prompt_length"] in (1, 2)
    assert search.predict(X).shape == (24,)
