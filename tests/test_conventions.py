"""Conventions every estimator shares: device validation, and scikit-learn's private helpers kept in one place."""

import ast
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import skcrosstune
from skcrosstune import (
    BlackBoxEmbedder,
    BlackBoxPromptClassifier,
    CrossTuneClassifier,
    DecTClassifier,
    LLMAugmenter,
)
from skcrosstune._training import check_device, resolve_device
from skcrosstune.backends.local import LocalBackend

from ._checks import parametrize_with_checks

TEXTS = ["a fine film", "a dull film", "great acting", "awful plot"]
LABELS = ["pos", "neg", "pos", "neg"]
VALID_FORMS = "'auto', 'cpu', 'cuda', 'cuda:N'"


@pytest.fixture
def no_query(monkeypatch):
    """Fail the test if anything reaches a local model."""

    def refuse(self, items):
        raise AssertionError("a black box was queried before the settings were validated")

    monkeypatch.setattr(LocalBackend, "query", refuse)


# ------------------------------------------------------------------ devices
@pytest.mark.parametrize("device", ["tpu", "gpu", "cuda:", "cuda:x", "CPU", "cuda:0 ", ""])
@pytest.mark.parametrize(
    "fit",
    [
        pytest.param(lambda device: BlackBoxEmbedder(device=device).fit(TEXTS), id="BlackBoxEmbedder"),
        pytest.param(lambda device: CrossTuneClassifier(device=device).fit(TEXTS, LABELS), id="CrossTuneClassifier"),
        pytest.param(lambda device: DecTClassifier(device=device).fit(TEXTS, LABELS), id="DecTClassifier"),
        pytest.param(
            lambda device: BlackBoxPromptClassifier(BlackBoxEmbedder(device=device)).fit(TEXTS, LABELS),
            id="BlackBoxPromptClassifier(embedder)",
        ),
        pytest.param(
            lambda device: CrossTuneClassifier(BlackBoxEmbedder(device=device)).fit(TEXTS, LABELS),
            id="CrossTuneClassifier(embedder)",
        ),
        pytest.param(
            lambda device: LLMAugmenter("openai:any", api_key_env=None, device=device).fit_resample(TEXTS, LABELS),
            id="LLMAugmenter",
        ),
    ],
)
def test_an_unknown_device_is_refused_in_fit_naming_the_valid_forms(fit, device, no_query):
    with pytest.raises(ValueError, match=r"'device' parameter of \w+ must be a device: " + VALID_FORMS):
        fit(device)


@pytest.mark.parametrize("device", ["auto", "cpu", "cuda", "cuda:0", "cuda:12", "mps"])
def test_every_documented_device_form_is_accepted(device):
    assert check_device(device) == device
    assert BlackBoxEmbedder(device=device, store=None).fit(TEXTS[:1]).device == device


@pytest.mark.parametrize("device", ["tpu", None, 0])
def test_resolve_device_refuses_what_it_cannot_run_on(device):
    with pytest.raises(ValueError, match="device must be 'auto', 'cpu', 'cuda', 'cuda:N'"):
        resolve_device(device)


def test_a_gpu_device_falls_back_to_the_cpu_with_a_warning_where_there_is_none():
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA: the fallback is for machines without it")
    with pytest.warns(RuntimeWarning, match="CUDA is not available"):
        assert resolve_device("cuda:1") == "cpu"


# ------------------------------------------------------------ feature names
def _frame(texts, column="review"):
    return pd.DataFrame({column: texts})


def test_the_embedder_checks_column_names_at_transform_as_scikit_learn_does():
    embedder = BlackBoxEmbedder(store=None).fit(_frame(TEXTS))
    np.testing.assert_array_equal(embedder.feature_names_in_, ["review"])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        embedder.transform(_frame(TEXTS[:2]))  # the same column: no warning
    with pytest.raises(ValueError, match="(?s)feature names should match.*unseen at fit time:\n- text"):
        embedder.transform(_frame(TEXTS, column="text"))
    with pytest.warns(UserWarning, match="X does not have valid feature names, but BlackBoxEmbedder was fitted with"):
        embedder.transform(TEXTS)

    unnamed = BlackBoxEmbedder(store=None).fit(TEXTS)
    assert not hasattr(unnamed, "feature_names_in_")
    with pytest.warns(UserWarning, match="X has feature names, but BlackBoxEmbedder was fitted without"):
        unnamed.transform(_frame(TEXTS))


def test_label_word_scores_check_column_names_too(tiny_bert):
    embedder = BlackBoxEmbedder(str(tiny_bert), pooling="mask", store=None).fit(_frame(TEXTS))
    assert embedder.label_word_scores(_frame(TEXTS), ["good", "bad"]).shape == (4, 2)
    with pytest.raises(ValueError, match="feature names should match"):
        embedder.label_word_scores(_frame(TEXTS, column="text"), ["good", "bad"])


def test_swapped_columns_of_sentence_pairs_are_refused():
    pairs = pd.DataFrame({"premise": ["a man plays", "it rains"], "hypothesis": ["music", "it is dry"]})
    embedder = BlackBoxEmbedder(store=None).fit(pairs)
    with pytest.raises(ValueError, match="same order as they were in fit"):
        embedder.transform(pairs[["hypothesis", "premise"]])


def test_get_feature_names_out_checks_input_features_as_scikit_learn_does():
    named = BlackBoxEmbedder(store=None).fit(_frame(TEXTS))
    expected = named.get_feature_names_out()
    np.testing.assert_array_equal(named.get_feature_names_out(["review"]), expected)
    with pytest.raises(ValueError, match="input_features is not equal to feature_names_in_"):
        named.get_feature_names_out(["text"])

    unnamed = BlackBoxEmbedder(store=None).fit(TEXTS)
    np.testing.assert_array_equal(unnamed.get_feature_names_out(["anything"]), expected)
    with pytest.raises(ValueError, match=r"input_features should have length equal to number of features \(1\)"):
        unnamed.get_feature_names_out(["text", "text_pair"])


@pytest.mark.parametrize(
    "classifier",
    [
        pytest.param(lambda: CrossTuneClassifier(max_epochs=0), id="CrossTuneClassifier"),
        pytest.param(lambda: DecTClassifier(max_epochs=2, cv=0, random_state=0), id="DecTClassifier"),
        pytest.param(
            lambda: BlackBoxPromptClassifier(prompt_length=1, sample_size=2, max_steps=1, random_state=0),
            id="BlackBoxPromptClassifier",
        ),
    ],
)
def test_classifiers_of_texts_check_column_names_as_scikit_learn_does(classifier):
    clf = classifier().fit(_frame(TEXTS), LABELS)
    assert clf.n_features_in_ == 1
    np.testing.assert_array_equal(clf.feature_names_in_, ["review"])
    assert clf.predict(_frame(TEXTS)).shape == (4,)
    name = type(clf).__name__
    with pytest.raises(ValueError, match="feature names should match"):
        clf.predict(_frame(TEXTS, column="text"))
    with pytest.warns(UserWarning, match="X does not have valid feature names") as caught:
        clf.predict(TEXTS)
    assert [str(w.message).split(", but ")[1] for w in caught] == [f"{name} was fitted with feature names"]


# ----------------------------------------------- scikit-learn private helpers
def _private_sklearn_imports(path: Path):
    """``(module, name)`` of every private scikit-learn name imported by a source file."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "sklearn":
            private_module = any(part.startswith("_") for part in node.module.split("."))
            for alias in node.names:
                if private_module or alias.name.startswith("_"):
                    found.append((node.module, alias.name))
        elif isinstance(node, ast.Import):
            found += [(a.name, "") for a in node.names if a.name.startswith("sklearn._") or "._" in a.name]
    return found


def test_scikit_learns_private_helpers_are_imported_in_one_module_only():
    package = Path(skcrosstune.__file__).parent
    offenders = {
        str(path.relative_to(package)): names
        for path in sorted(package.rglob("*.py"))
        if path.name != "_compat.py" and (names := _private_sklearn_imports(path))
    }
    assert offenders == {}, "import these through skcrosstune/_compat.py"
    assert _private_sklearn_imports(package / "_compat.py"), "the guard above checks nothing"


# ------------------------------------------ scikit-learn's checks on the augmenter
class _NumericTaggedAugmenter(LLMAugmenter):
    """The augmenter with its tags claiming 2-D array input, so that scikit-learn's checks run at all.

    imbalanced-learn's sampler checks are in tests/test_augment.py; these are
    scikit-learn's own. The endpoint is a closed local port: no check gets
    as far as a request, since the checks that fit feed numbers.
    """

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.two_d_array = True
        return tags


_AUGMENTER_TEXT_ONLY = "feeds numeric arrays; the augmenter takes raw texts and refuses numbers by design"
AUGMENTER_EXPECTED_FAILED_CHECKS = {
    name: _AUGMENTER_TEXT_ONLY
    for name in [
        "check_fit_score_takes_y",
        "check_estimators_overwrite_params",
        "check_dont_overwrite_parameters",
        "check_estimators_fit_returns_self",
        "check_readonly_memmap_input",
        "check_n_features_in_after_fitting",
        "check_positive_only_tag_during_fit",
        "check_estimators_dtypes",
        "check_dtype_object",
        "check_estimators_empty_data_messages",
        "check_pipeline_consistency",
        "check_estimators_nan_inf",
        "check_estimators_pickle",
        "check_estimators_pickle(readonly_memmap=True)",
        "check_f_contiguous_array_estimator",
        "check_fit2d_1sample",
        "check_fit2d_1feature",
        "check_dict_unchanged",
        "check_fit_idempotent",
        "check_fit_check_is_fitted",
        "check_n_features_in",
        "check_fit1d",
        "check_fit2d_predict1d",
        "check_methods_sample_order_invariance",
        "check_methods_subset_invariance",
    ]
} | {
    "check_estimator_sparse_array": "no sparse input: texts only, and the refusal names texts, not sparsity",
    "check_estimator_sparse_matrix": "no sparse input: texts only, and the refusal names texts, not sparsity",
}


@parametrize_with_checks(
    [_NumericTaggedAugmenter("openai:m", base_url="http://127.0.0.1:9/v1", api_key_env=None, random_state=0)],
    expected_failed_checks=lambda estimator: AUGMENTER_EXPECTED_FAILED_CHECKS,
)
def test_sklearn_common_checks_on_the_augmenter(estimator, check):
    check(estimator)
