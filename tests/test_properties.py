"""Property-based checks of every estimator's input boundary, with hypothesis.

Texts, sentence pairs, labels, descriptions and label words are generated
valid, then (usually) spoiled in one known way: a bad item at a known
position (None, NaN, a number, bytes, a bool, a lone surrogate), a container
without a fixed order or read only once, labels mixing strings and numbers,
a wrong length, one class only, a description or label word of the wrong
type. Each of the five estimators must then either give a correct result
(valid input) or raise a ``ValueError``/``TypeError`` from skcrosstune itself
that names the argument, and the position or class of a bad item: never a
traceback ending inside torch, numpy, tokenizers or openai, and never silent
acceptance of spoiled input.

Runs are small and derandomized (the same examples on every machine), on a
tiny random model with no store, so the whole module takes well under a
minute.
"""

from __future__ import annotations

import traceback

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from skcrosstune import (
    BlackBoxEmbedder,
    BlackBoxPromptClassifier,
    CrossTuneClassifier,
    DecTClassifier,
    LLMAugmenter,
)

from ._openai_server import OpenAIServer
from .test_augment import word_teacher, writer

KEY_ENV = "SKCROSSTUNE_TEST_API_KEY"
SETTINGS = settings(
    max_examples=10,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

WORDS = ["good", "bad", "film", "plot", "great", "awful", "fun", "dull", "acting", "story", "long", "best"]
#: Valid but awkward endings: emoji, CJK, right-to-left, combining accents, zero-width, control and long runs.
ENDINGS = ["", " \U0001f642", " 日本語の文", " مرحبا", " e\u0301", "\u200b", "\t\n", "   ", " x" * 150, " \x00"]
LABEL_SETS = [["neg", "pos"], [0, 1], ["a", "b", "c"], [-1, 7], ["not_entailment", "entailment"]]
BAD_ITEMS = [None, float("nan"), 3, 2.5, b"bytes", True, "lone \ud800 surrogate", "\udfff"]
BAD_ENTRIES = [None, 3, 2.5, "", "   ", [], ["fine", 4], "x \udc80", b"word"]


@pytest.fixture(scope="module")
def chat_server():
    with OpenAIServer(chat_reply=writer) as server:
        yield server


@pytest.fixture(autouse=True)
def api_key(monkeypatch):
    monkeypatch.setenv(KEY_ENV, "sk-properties")


# ----------------------------------------------------------------- strategies
texts = st.builds(
    lambda words, ending: " ".join(words) + ending,
    st.lists(st.sampled_from(WORDS), min_size=1, max_size=6),
    st.sampled_from(ENDINGS),
)


@st.composite
def cases(draw, *, pairs_allowed=True, labelled=True, entries=None):
    """``(X, y, entries, expected)``: ``expected`` is None for valid input, else ``(argument, detail)``.

    ``entries`` names the dict parameter of per-class texts that may be spoiled
    (``"label_descriptions"`` or ``"label_words"``), or None.
    """
    pool = draw(st.sampled_from(LABEL_SETS))
    n = draw(st.integers(len(pool), 3 * len(pool)))
    y = [pool[i % len(pool)] for i in range(n)]
    pairs = pairs_allowed and draw(st.booleans())
    X = [(draw(texts), draw(texts)) if pairs else draw(texts) for _ in range(n)]
    entry = texts if entries == "label_descriptions" else st.sampled_from(WORDS)
    per_class = {label: draw(entry) for label in pool} if entries else None
    kinds = ["none", "none", "X-item", "X-container"]
    kinds += ["y-item", "y-mixed", "y-length", "y-container", "y-one-class"] if labelled else []
    kinds += ["entry-value", "entry-keys"] if entries else []
    kind = draw(st.sampled_from(kinds))
    expected = None
    if kind == "X-item":
        i, bad = draw(st.integers(0, n - 1)), draw(st.sampled_from(BAD_ITEMS))
        if pairs:
            side = draw(st.integers(0, 1))
            X[i] = (bad, X[i][1]) if side == 0 else (X[i][0], bad)
            expected = ("X", f"row {i}, column {side}")
        else:
            X[i] = bad
            expected = ("X", f"position {i}")
    elif kind == "X-container":
        container = draw(st.sampled_from(["set", "dict", "generator", "str", "none"]))
        X = {
            "set": lambda: set(X),
            "dict": lambda: dict.fromkeys(X),
            "generator": lambda: (x for x in X),
            "str": lambda: "one text only",
            "none": lambda: None,
        }[container]()
        expected = ("X", "")
    elif kind == "y-item":
        i = draw(st.integers(0, n - 1))
        y[i] = draw(st.sampled_from([None, float("nan")]))
        expected = ("y", f"[{i}]")
    elif kind == "y-mixed":
        i = draw(st.integers(0, n - 1))
        y[i] = "other" if isinstance(pool[0], int) else 5
        expected = ("y", f"position {i}")
    elif kind == "y-length":
        y = y[: -draw(st.integers(1, n - 1))]
        expected = ("y", f"{len(y)} labels for {n} inputs")
    elif kind == "y-container":
        y = set(y) if draw(st.booleans()) else (label for label in y)
        expected = ("y", "")
    elif kind == "y-one-class":
        y = [pool[0]] * n
        expected = ("y", "one class")
    elif kind == "entry-value":
        label = draw(st.sampled_from(pool))
        per_class[label] = draw(st.sampled_from(BAD_ENTRIES))
        expected = (entries, f"class {label!r}")
    elif kind == "entry-keys":
        if draw(st.booleans()):
            per_class.pop(pool[-1])
        else:
            per_class["no such label"] = "words"
        expected = (entries, "")
    return X, y, per_class, expected


# ------------------------------------------------------------------ assertions
def assert_clear_error(error, expected):
    """A ValueError/TypeError raised by skcrosstune's own code, naming the argument and the detail."""
    assert expected is not None, f"valid input was refused: {type(error).__name__}: {error}"
    assert isinstance(error, (ValueError, TypeError)), f"{type(error).__name__}: {error}"
    innermost = traceback.extract_tb(error.__traceback__)[-1].filename
    assert "/skcrosstune/" in innermost.replace("\\", "/"), f"raised in {innermost}: {error}"
    argument, detail = expected
    assert argument in str(error) and detail in str(error), f"{error!r} should name {argument!r} and {detail!r}"


def check(run, X, y, expected, *, refusals=()):
    """``run(X, y)`` on valid input must succeed; on spoiled input it must raise a clear error.

    ``refusals`` are messages with which an estimator may refuse valid input it cannot learn from.
    """
    event("valid input" if expected is None else f"spoiled {expected[0]}")
    try:
        result = run(X, y)
    except Exception as error:  # noqa: BLE001 - the property is about which errors escape
        if expected is None and any(refusal in str(error) for refusal in refusals):
            expected = ("X", "")
        assert_clear_error(error, expected)
        return None
    assert expected is None, f"spoiled input was accepted silently (expected an error naming {expected})"
    return result


def assert_classifier_result(clf, X, y):
    assert list(clf.classes_) == sorted(set(y))
    proba = clf.predict_proba(X)
    assert proba.shape == (len(y), len(clf.classes_)) and np.isfinite(proba).all()
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-5)
    assert set(clf.predict(X)) <= set(y)


def embedder(model, **params):
    return BlackBoxEmbedder(model, store=None, **params)


# ------------------------------------------------------------------ properties
@SETTINGS
@given(case=cases(labelled=False))
def test_embedder(tiny_bert, case):
    X, _, _, expected = case
    model = embedder(str(tiny_bert))
    out = check(lambda X, y: model.fit(X).transform(X), X, None, expected)
    if out is not None:
        assert out.shape == (len(X), model.n_features_out_) and np.isfinite(out).all()


@pytest.mark.parametrize("head", [CrossTuneClassifier, DecTClassifier])
@SETTINGS
@given(case=cases(entries="label_descriptions"))
def test_head_with_descriptions(tiny_bert, head, case):
    X, y, descriptions, expected = case
    clf = head(embedder(str(tiny_bert)), label_descriptions=descriptions, max_epochs=2, random_state=0)
    if check(clf.fit, X, y, expected) is not None:
        assert_classifier_result(clf, X, y)


@SETTINGS
@given(case=cases(entries="label_words"))
def test_dect_with_label_words(tiny_bert, case):
    X, y, words, expected = case
    clf = DecTClassifier(embedder(str(tiny_bert), pooling="mask"), label_words=words, max_epochs=2, random_state=0)
    if check(clf.fit, X, y, expected) is not None:
        assert_classifier_result(clf, X, y)


@SETTINGS
@given(case=cases(pairs_allowed=False, entries="label_words"))
def test_prompt_classifier(tiny_bert, case):
    X, y, words, expected = case
    clf = BlackBoxPromptClassifier(
        embedder(str(tiny_bert), pooling="mask"),
        label_words=words,
        prompt_length=2,
        max_steps=1,
        sample_size=2,
        batch_size=4,
        max_queries=None,
        random_state=0,
    )
    too_few_ngrams = "prompt candidate(s) could be mined from the training texts X"
    if check(clf.fit, X, y, expected, refusals=[too_few_ngrams]) is not None:
        assert_classifier_result(clf, X, y)


@SETTINGS
@given(case=cases(entries="label_descriptions"))
def test_augmenter(chat_server, case):
    X, y, descriptions, expected = case
    augmenter = LLMAugmenter(
        "openai:test-chat",
        base_url=chat_server.url,
        api_key_env=KEY_ENV,
        label_descriptions=descriptions,
        n_per_class=1,
        n_per_request=1,
        n_demonstrations=1,
        teacher=word_teacher(),
        threshold=0,
        store=None,
        max_retries=0,
        random_state=0,
    )
    result = check(augmenter.fit_resample, X, y, expected)
    if result is not None:
        X_new, y_new = result
        assert len(X_new) == len(y_new) >= len(y)
        assert set(y_new) <= set(y)
        head = [tuple(row) if np.ndim(row) else row for row in X_new[: len(y)]]
        assert head == list(X)  # the gold examples come first, unchanged
