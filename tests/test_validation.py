import numpy as np
import pandas as pd
import pytest

from skcrosstune._validation import check_texts


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
