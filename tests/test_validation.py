import numpy as np
import pandas as pd
import pytest

from skcrosstune import (
    BlackBoxEmbedder,
    BlackBoxPromptClassifier,
    CrossTuneClassifier,
    DecTClassifier,
    LLMAugmenter,
)
from skcrosstune._validation import (
    check_label_descriptions,
    check_label_word_groups,
    check_labels,
    check_texts,
    count_inputs,
    is_numeric_input,
)
from skcrosstune.backends.local import LocalBackend


@pytest.mark.parametrize(
    "X",
    [
        ["a", "b"],
        ("a", "b"),
        np.array(["a", "b"]),
        np.array(["a", "b"], dtype=object),
        pd.Series(["a", "b"]),
        pd.DataFrame({"review": ["a", "b"]}),
    ],
    ids=["list", "tuple", "str-array", "object-array", "series", "one-column-frame"],
)
def test_single_texts_from_every_container(X):
    batch = check_texts(X)
    assert batch.texts == ["a", "b"]
    assert not batch.is_pair
    assert batch.items() == ["a", "b"]


@pytest.mark.parametrize(
    "X",
    [
        [("p", "h"), ("q", "i")],
        [["p", "h"], ["q", "i"]],
        np.array([["p", "h"], ["q", "i"]], dtype=object),
        pd.DataFrame({"premise": ["p", "q"], "hypothesis": ["h", "i"]}),
    ],
    ids=["tuples", "lists", "2-column-array", "2-column-frame"],
)
def test_sentence_pairs_from_every_container(X):
    batch = check_texts(X)
    assert batch.is_pair
    assert batch.items() == [("p", "h"), ("q", "i")]


def test_dataframe_column_names_are_kept():
    batch = check_texts(pd.DataFrame({"premise": ["p"], "hypothesis": ["h"]}))
    assert list(batch.feature_names) == ["premise", "hypothesis"]


@pytest.mark.parametrize(
    "X, error, match",
    [
        (None, TypeError, "got None"),
        ("just one text", TypeError, "not a single str"),
        ([], ValueError, "empty"),
        (np.array([], dtype=object), ValueError, "empty"),
        (["ok", None], ValueError, r"missing value \(None\) at position 1"),
        (["ok", float("nan")], ValueError, "missing value .* at position 1"),
        (pd.Series(["ok", None]), ValueError, "missing value"),
        (["ok", 3], TypeError, "only strings.*int 3 at position 1"),
        ([b"bytes"], TypeError, "only strings.*bytes"),
        ([("a", "b"), ("c",)], ValueError, "row 1 has 1 elements"),
        ([("a", "b"), "c"], ValueError, "row 1 has a single text"),
        ([("a", "b", "c")], ValueError, "row 0 has 3 elements"),
        ([("a", None)], ValueError, "missing value .* row 0, column 1"),
        (np.zeros((3, 4)), TypeError, "numeric array of shape \\(3, 4\\)"),
        (np.arange(3), TypeError, "numeric array"),
        (np.array([["a", "b", "c"]], dtype=object), ValueError, "3 columns"),
        (np.empty((2, 2, 2), dtype=object), ValueError, "shape"),
        (pd.DataFrame({"a": ["x"], "b": ["y"], "c": ["z"]}), ValueError, "3 columns"),
    ],
)
def test_bad_input_gets_a_clear_error(X, error, match):
    with pytest.raises(error, match=match):
        check_texts(X)


def test_pairs_can_be_refused():
    with pytest.raises(ValueError, match="sentence pairs are not supported"):
        check_texts([("a", "b")], allow_pairs=False)


def test_unusual_but_valid_texts_pass_unchanged():
    texts = ["", "  ", "🙂 emoji", "日本語の文", "مرحبا", "x" * 100_000]
    assert check_texts(texts).texts == texts


# ------------------------------------------------ containers, surrogates, labels
def _texts():
    yield from ["a", "b"]


@pytest.mark.parametrize(
    "X, match",
    [
        ({"a", "b"}, "X is a set, whose order is arbitrary"),
        (frozenset({"a", "b"}), "X is a frozenset"),
        ({"a": 1, "b": 2}, r"X is a dict: pass a list of texts \(e.g. list\(X.values\(\)\)\)"),
        ({"a": 1}.keys(), "X is a dict_keys, whose order is arbitrary"),
        (_texts(), r"X is a generator, which can be read only once: pass a list of texts \(e.g. list\(X\)\)"),
        (iter(["a", "b"]), "X is a list_iterator, which can be read only once"),
    ],
    ids=["set", "frozenset", "dict", "dict-keys", "generator", "iterator"],
)
def test_containers_without_a_fixed_order_or_read_once_are_refused(X, match):
    with pytest.raises(TypeError, match=match):
        check_texts(X)


@pytest.mark.parametrize(
    "X, match",
    [
        (["fine", "a \ud800 b"], r"X holds a lone surrogate '\\ud800' at position 1, character 2"),
        (["\udfff"], r"lone surrogate '\\udfff' at position 0, character 0"),
        ([("fine", "ok"), ("ok", "x\udc80")], r"lone surrogate '\\udc80' at row 1, column 1, character 1"),
    ],
)
def test_lone_surrogates_are_refused_naming_the_position(X, match):
    with pytest.raises(ValueError, match=match):
        check_texts(X)


def test_valid_surrogate_pairs_and_astral_characters_pass():
    assert check_texts(["\U0001f600 ok", "\ud83d\ude00".encode("utf-16", "surrogatepass").decode("utf-16")]).texts


@pytest.mark.parametrize(
    "y, error, match",
    [
        (
            [1, 1, "neg", "neg"],
            TypeError,
            r"y mixes strings and numbers \(int 1 at position 0, str 'neg' at position 2\)",
        ),
        (np.array(["pos", 2.5, "pos", 2.5], dtype=object), TypeError, "float 2.5 at position 1"),
        (pd.Series([True, "yes", True, "yes"]), TypeError, "bool True at position 0"),
        ({"a", "b", "c", "d"}, TypeError, "y is a set"),
        ((label for label in "abab"), TypeError, "y is a generator"),
        ([None, "a", "b", "a"], ValueError, r"missing labels \(None/NaN\) at positions \[0\]"),
        (["a", "b", float("nan"), "a"], ValueError, r"missing labels \(None/NaN\) at positions \[2\]"),
        (pd.Series(["a", None, "b", "a"]), ValueError, r"missing labels \(None/NaN\) at positions \[1\]"),
        (["a", "b", "a"], ValueError, "3 labels for 4 inputs"),
        (["a", "a", "a", "a"], ValueError, "only one class \\('a'\\)"),
        (["a", "b", "a", "b\ud800"], ValueError, "lone surrogate"),
    ],
)
def test_bad_labels_get_a_clear_error(y, error, match):
    with pytest.raises(error, match=match):
        check_labels(y, 4)


@pytest.mark.parametrize(
    "y", [[1, 2, 1, 2], ["a", "b", "a", "b"], np.array([0.0, 1.0, 0.0, 1.0]), pd.Series(["x", "y", "x", "y"])]
)
def test_labels_of_one_type_pass(y):
    classes, index = check_labels(y, 4)
    assert len(classes) == 2 and list(index) == [0, 1, 0, 1]


@pytest.mark.parametrize(
    "descriptions, error, match",
    [
        ({"a": None, "b": "x"}, TypeError, "The label_descriptions of class 'a' must be a non-empty str or a list"),
        ({"a": 3, "b": "x"}, TypeError, "class 'a' must be a non-empty str or a list of them, got int 3"),
        (
            {"a": ["ok", 3], "b": "x"},
            TypeError,
            "class 'a' must be a non-empty str or a list of them, got int 3 at item 1",
        ),
        ({"a": [], "b": "x"}, ValueError, "class 'a' must be a non-empty str or a list of them, got an empty list"),
        ({"a": "  ", "b": "x"}, ValueError, "class 'a' must be a non-empty str or a list of them, got a blank text"),
        ({"a": "x", "b": "bad \ud800"}, ValueError, "class 'b' holds a lone surrogate"),
        (["x", "y"], TypeError, "must be a dict"),
    ],
)
def test_bad_descriptions_name_the_argument_and_class(descriptions, error, match):
    with pytest.raises(error, match=match):
        check_label_descriptions(descriptions, np.array(["a", "b"]))


def test_many_unknown_or_missing_classes_are_listed_briefly_as_plain_values():
    classes = np.arange(150)
    names = {f"intent {i}": "x" for i in range(150)}
    with pytest.raises(ValueError) as caught:
        check_label_descriptions(names, classes)
    message = str(caught.value)
    assert "['intent 0', 'intent 1'," in message and "... (150 in all)]" in message
    assert "[0, 1, 2," in message and "np.int64" not in message and len(message) < 800
    assert "key label_descriptions by those integers" in message  # a meta-estimator encoded y
    with pytest.raises(ValueError, match=r"no entry for the classes \[2, 3, 4, .*, \.\.\. \(148 in all\)\]"):
        check_label_descriptions({0: "x", 1: "y"}, classes)
    with pytest.raises(ValueError) as caught:  # integer keys that miss: no hint about encoding
        check_label_descriptions({0: "x", 1: "y", 7: "z"}, np.arange(2))
    assert "encoded the labels" not in str(caught.value)


def test_label_words_are_named_as_such():
    with pytest.raises(TypeError, match="The label_words of class 'b'"):
        check_label_descriptions({"a": "good", "b": None}, np.array(["a", "b"]), name="label_words")
    with pytest.raises(TypeError, match=r"The label_words\[1\] must be a non-empty str"):
        check_label_word_groups(["good", 3])
    with pytest.raises(TypeError, match="label_words is a set"):
        check_label_word_groups({"good", "bad"})
    assert check_label_word_groups(["good", ["bad", "awful"]]) == [["good"], ["bad", "awful"]]


@pytest.mark.parametrize(
    "X, numeric",
    [
        ([float("nan"), "a text"], False),
        ([1.5, "a text"], False),
        ([b"bytes", "a text"], False),
        ([[0.1, 0.2], [0.3, 0.4]], True),
        ([[float("nan"), "a"], ["b", "c"]], False),
        ([[float("nan"), float("nan")], ["b", "c"]], False),
        ([(float("nan"), 1.0), ("b", "c")], False),
        (np.zeros((2, 3)), True),
        (np.array(["a", "b"]), False),
        (pd.DataFrame({"a": [0.1], "b": [0.2]}), True),
        ({"a", "b"}, False),
    ],
)
def test_numeric_input_is_told_from_texts_by_more_than_the_first_item(X, numeric):
    assert is_numeric_input(X) is numeric


def test_count_inputs_checks_texts_and_counts_representations():
    assert count_inputs(["a", "b", "c"]) == 3
    assert count_inputs(np.zeros((5, 2))) == 5
    with pytest.raises(ValueError, match="position 1"):
        count_inputs(["a", None])


# ------------------------------------ every estimator, before its first query
POSITIVE = ["a great film", "good acting and a fine story", "fun , really funny", "the best scene"]
NEGATIVE = ["a boring , long film", "awful plot", "the worst acting", "dull and too long"]
TEXTS = POSITIVE + NEGATIVE
LABELS = ["pos"] * 4 + ["neg"] * 4
DESCRIPTIONS = {"pos": "great good fun", "neg": "awful bad dull"}
WORDS = {"pos": "great", "neg": "bad"}
KEY_ENV = "SKCROSSTUNE_TEST_API_KEY"


def _estimator(name, model, server, **params):
    """Each of the five estimators, on a tiny local model (the augmenter on the test chat server), no store."""
    plain = BlackBoxEmbedder(model, store=None)
    masked = BlackBoxEmbedder(model, pooling="mask", store=None)
    if name == "embedder":
        return plain
    if name == "crosstune":
        return CrossTuneClassifier(**{"embedder": plain, "label_descriptions": DESCRIPTIONS, "max_epochs": 1, **params})
    if name == "dect":
        return DecTClassifier(**{"embedder": plain, "label_descriptions": DESCRIPTIONS, "max_epochs": 1, **params})
    if name == "dect-label-words":
        return DecTClassifier(**{"embedder": masked, "label_words": WORDS, "max_epochs": 1, **params})
    if name == "bdpl":
        settings = {"embedder": masked, "label_words": WORDS, "max_steps": 1, "sample_size": 2, "max_queries": None}
        return BlackBoxPromptClassifier(**{**settings, **params})
    settings = {
        "model": "openai:test-chat",
        "base_url": server.url,
        "api_key_env": KEY_ENV,
        "label_descriptions": DESCRIPTIONS,
        "n_per_class": 2,
        "store": None,
        "max_retries": 0,
    }
    return LLMAugmenter(**{**settings, **params})


def _fit(estimator, X, y):
    if isinstance(estimator, LLMAugmenter):
        return estimator.fit_resample(X, y)
    if isinstance(estimator, BlackBoxEmbedder):
        return estimator.fit(X).transform(X)
    return estimator.fit(X, y)


EVERY = ["embedder", "crosstune", "dect", "bdpl", "augmenter"]
CLASSIFIERS = ["crosstune", "dect", "bdpl", "augmenter"]
NAN_FIRST = [float("nan")] + TEXTS[1:]
BAD_FITS = [
    # (case, estimators, parameters, X, y, error, message)
    ("X-set", EVERY, {}, set(TEXTS), LABELS, TypeError, "X is a set"),
    ("X-dict", EVERY, {}, dict.fromkeys(TEXTS), LABELS, TypeError, "X is a dict"),
    ("X-generator", EVERY, {}, "generator", LABELS, TypeError, "X is a generator"),
    ("X-surrogate", EVERY, {}, TEXTS[:2] + ["x \ud800"] + TEXTS[3:], LABELS, ValueError, "surrogate .* position 2"),
    ("X-first-nan", EVERY, {}, NAN_FIRST, LABELS, ValueError, r"missing value \(nan\) at position 0"),
    ("X-first-float", EVERY, {}, [1.5] + TEXTS[1:], LABELS, TypeError, "float 1.5 at position 0"),
    ("X-first-bytes", EVERY, {}, [b"x"] + TEXTS[1:], LABELS, TypeError, "bytes b'x' at position 0"),
    ("y-mixed", CLASSIFIERS, {}, TEXTS, [1] * 4 + ["neg"] * 4, TypeError, "y mixes strings and numbers"),
    ("y-none", CLASSIFIERS, {}, TEXTS, [None] + LABELS[1:], ValueError, r"y has missing labels .* \[0\]"),
    ("y-length", CLASSIFIERS, {}, TEXTS, LABELS[:-1], ValueError, "y has 7 labels for 8 inputs"),
    ("y-set", CLASSIFIERS, {}, TEXTS, set(LABELS), TypeError, "y is a set"),
    *[
        (
            f"descriptions-{kind}",
            ["crosstune", "dect", "augmenter"],
            {"label_descriptions": {"pos": bad, "neg": "x"}},
            TEXTS,
            LABELS,
            TypeError,
            "The label_descriptions of class 'pos'",
        )
        for kind, bad in [("none", None), ("int", 3)]
    ],
    *[
        (
            f"label-words-{kind}",
            ["dect-label-words", "bdpl"],
            {"label_words": {"pos": bad, "neg": "bad"}},
            TEXTS,
            LABELS,
            TypeError,
            "The label_words of class 'pos'",
        )
        for kind, bad in [("none", None), ("int", 3)]
    ],
    ("label-words-list", ["bdpl"], {"label_words": ["great", 3]}, TEXTS, LABELS, TypeError, r"label_words\[1\]"),
]


@pytest.mark.parametrize(
    "name, params, X, y, error, match",
    [pytest.param(name, *rest, id=f"{case}-{name}") for case, names, *rest in BAD_FITS for name in names],
)
def test_bad_input_is_refused_before_any_query(tiny_bert, openai_server, monkeypatch, name, params, X, y, error, match):
    sent = []
    original = LocalBackend.query
    monkeypatch.setattr(LocalBackend, "query", lambda self, batch: sent.extend(batch) or original(self, batch))
    monkeypatch.setenv(KEY_ENV, "k")
    estimator = _estimator(name, str(tiny_bert), openai_server, **params)
    X = (text for text in TEXTS) if isinstance(X, str) and X == "generator" else X

    with pytest.raises(error, match=match):
        _fit(estimator, X, y)

    assert sent == [] and openai_server.request_count == 0


@pytest.mark.parametrize("name", ["embedder", "crosstune", "dect", "bdpl"])
@pytest.mark.parametrize(
    "X, error, match",
    [
        (NAN_FIRST, ValueError, "missing value .* at position 0"),
        (["ok", "x \ud800"], ValueError, "surrogate .* position 1"),
        (set(TEXTS), TypeError, "X is a set"),
        ([b"x", "ok"], TypeError, "bytes b'x' at position 0"),
    ],
    ids=["nan-first", "surrogate", "set", "bytes-first"],
)
def test_bad_input_at_predict_is_refused_before_any_query(tiny_bert, monkeypatch, name, X, error, match):
    estimator = _estimator(name, str(tiny_bert), None)
    _fit(estimator, TEXTS, LABELS)
    sent = []
    monkeypatch.setattr(LocalBackend, "query", lambda self, batch: sent.extend(batch))
    with pytest.raises(error, match=match):
        estimator.transform(X) if name == "embedder" else estimator.predict(X)
    assert sent == []


@pytest.mark.parametrize("cls", [CrossTuneClassifier, DecTClassifier])
def test_heads_refuse_non_finite_numeric_representations(cls):
    H = np.random.default_rng(0).standard_normal((8, 4)).astype(np.float32)
    H[3, 1] = np.nan
    with pytest.raises(ValueError, match="Input X contains NaN"):
        cls(max_epochs=1).fit(H, LABELS)
    H[3, 1] = np.inf
    with pytest.raises(ValueError, match="Input X contains infinity"):
        cls(max_epochs=1).fit(H, LABELS)


@pytest.mark.filterwarnings("ignore:The number of unique classes")  # scikit-learn's, about one text per class
@pytest.mark.parametrize("name", ["crosstune", "dect"])
def test_a_fit_too_large_for_memory_is_refused_before_any_query(tiny_bert, monkeypatch, name):
    """100,000 classes of one text each: the score matrices alone would need hundreds of GiB."""
    from skcrosstune import CrossTuneClassifier, DecTClassifier

    sent = []
    monkeypatch.setattr(LocalBackend, "query", lambda self, batch: sent.extend(batch))
    texts = [f"text {i}" for i in range(100_000)]
    labels = np.arange(100_000)
    estimator = {"crosstune": CrossTuneClassifier, "dect": DecTClassifier}[name](BlackBoxEmbedder(str(tiny_bert)))
    with pytest.raises(MemoryError, match=r"100,000 inputs for 100,000 classes.*Nothing was sent"):
        estimator.fit(texts, labels)
    assert sent == []
