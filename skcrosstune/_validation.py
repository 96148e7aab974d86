"""Checks of texts, sentence pairs and labels, shared by every estimator.

Every public entry point that receives raw text calls :func:`check_texts`
first, so a user gets one clear error at the boundary instead of a stack
trace from inside a tokenizer, and nothing is ever dropped silently.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["TextBatch", "check_texts"]


@dataclass(frozen=True)
class TextBatch:
    """Validated text input: single texts, or sentence pairs.

    Attributes
    ----------
    texts : list of str
        The texts, or the first side of each pair.
    text_pairs : list of str or None
        The second side of each pair, or None for single texts.
    feature_names : ndarray of str or None
        Column names when the input was a DataFrame with string column
        names, else None.
    """

    texts: list
    text_pairs: list | None = None
    feature_names: np.ndarray | None = None

    @property
    def is_pair(self) -> bool:
        return self.text_pairs is not None

    @property
    def n_columns(self) -> int:
        return 2 if self.is_pair else 1

    def __len__(self) -> int:
        return len(self.texts)

    def items(self) -> list:
        """Each input as a hashable item: a str, or a ``(text, text_pair)`` tuple."""
        if self.text_pairs is None:
            return list(self.texts)
        return list(zip(self.texts, self.text_pairs, strict=True))


def _is_missing(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        return bool(np.isnan(value))
    try:  # pandas.NA / NaT and friends
        import pandas as pd

        return value is pd.NA or value is pd.NaT
    except ImportError:  # pragma: no cover - pandas is a dependency of sklearn users
        return False


def _check_cell(value: Any, where: str, name: str) -> str:
    if isinstance(value, str):
        return value
    if _is_missing(value):
        raise ValueError(
            f"{name} contains a missing value ({value!r}) at {where}; fill or drop missing texts before embedding them."
        )
    raise TypeError(f"{name} must contain only strings, but found {type(value).__name__} {value!r} at {where}.")


def _rows_from_container(X: Any, name: str):
    """Turn any accepted container into (rows, feature_names, two_d)."""
    feature_names = None
    if X is None:
        raise TypeError(f"{name} must be a collection of texts (list, array, Series or DataFrame of str), got None.")
    if isinstance(X, (str, bytes)):
        raise TypeError(
            f"{name} must be a collection of texts, not a single {type(X).__name__}; wrap it in a list: [{X!r:.40}]."
        )
    if hasattr(X, "columns") and hasattr(X, "iloc"):  # pandas DataFrame
        columns = list(X.columns)
        if all(isinstance(c, str) for c in columns):
            feature_names = np.asarray(columns, dtype=object)
        return X.to_numpy(dtype=object), feature_names, True
    if hasattr(X, "to_numpy") and hasattr(X, "iloc"):  # pandas Series
        return X.to_numpy(dtype=object), None, False
    if isinstance(X, np.ndarray):
        if X.ndim == 0:
            raise TypeError(f"{name} must be a collection of texts, got a 0-d array.")
        if X.ndim > 2:
            raise ValueError(
                f"{name} must be 1-D (texts) or 2-D with 2 columns (sentence pairs), got an array of shape {X.shape}."
            )
        if X.dtype.kind in "biufc":
            raise TypeError(
                f"{name} is a numeric array of shape {X.shape}, but raw texts "
                "are expected. If these are representations already, pass them "
                "to a classifier directly instead of to the embedder."
            )
        return X.astype(object, copy=False), None, X.ndim == 2
    if not isinstance(X, Sequence) and not hasattr(X, "__iter__"):
        raise TypeError(f"{name} must be a collection of texts, got {type(X).__name__}.")
    rows = list(X)
    two_d = any(isinstance(row, (tuple, list, np.ndarray)) for row in rows)
    return rows, None, two_d


def check_texts(X: Any, *, name: str = "X", allow_pairs: bool = True) -> TextBatch:
    """Validate raw text input and return it as a :class:`TextBatch`.

    Parameters
    ----------
    X : list, tuple, ndarray, Series or DataFrame
        Single texts as a 1-D collection of str, or sentence pairs as a
        2-column array / DataFrame or a sequence of 2-tuples.
    name : str, default="X"
        The argument name used in error messages.
    allow_pairs : bool, default=True
        Whether sentence pairs are accepted.

    Returns
    -------
    batch : TextBatch

    Raises
    ------
    TypeError
        For None, a lone string, numeric arrays, non-string cells and lazy
        Dask collections (which would be gathered whole).
    ValueError
        For an empty collection, missing values, ragged pairs or a wrong
        number of columns.
    """
    if hasattr(X, "__dask_graph__"):  # gathering a lazy collection here would defeat its partitions
        raise TypeError(
            f"{name} is a lazy Dask {type(X).__name__}: it would be gathered into this process whole. Run the "
            "model on its partitions with dask_ml.wrappers.ParallelPostFit on a dask DataFrame (series.to_frame() "
            "for a Series), or call .compute() first if it fits in memory."
        )
    rows, feature_names, two_d = _rows_from_container(X, name)
    n = len(rows)
    if n == 0:
        raise ValueError(f"{name} is empty: at least one text is required.")

    if not two_d:
        texts = [_check_cell(v, f"position {i}", name) for i, v in enumerate(rows)]
        return TextBatch(texts=texts)

    if isinstance(rows, np.ndarray):
        width = rows.shape[1]
        if width == 1:
            texts = [_check_cell(v, f"row {i}", name) for i, v in enumerate(rows[:, 0])]
            return TextBatch(texts=texts, feature_names=feature_names)
        if width != 2:
            raise ValueError(f"{name} has {width} columns; expected 1 (texts) or 2 (sentence pairs: text, text_pair).")
        pairs = rows
    else:
        for i, row in enumerate(rows):
            if isinstance(row, str) or not hasattr(row, "__len__") or len(row) != 2:
                got = (
                    "a single text"
                    if isinstance(row, str)
                    else f"{len(row)} elements"
                    if hasattr(row, "__len__")
                    else type(row).__name__
                )
                raise ValueError(
                    f"{name} looks like sentence pairs, but row {i} has {got}; "
                    "every pair needs exactly 2 texts (text, text_pair)."
                )
        pairs = rows
    if not allow_pairs:
        raise ValueError(f"{name} must hold single texts; sentence pairs are not supported here.")
    texts, text_pairs = [], []
    for i, (a, b) in enumerate(pairs):
        texts.append(_check_cell(a, f"row {i}, column 0", name))
        text_pairs.append(_check_cell(b, f"row {i}, column 1", name))
    return TextBatch(texts=texts, text_pairs=text_pairs, feature_names=feature_names)


def check_labels(y: Any, n_samples: int, *, name: str = "y") -> tuple[np.ndarray, np.ndarray]:
    """Validate class labels of any type; return ``(classes, y_index)``.

    Raises
    ------
    ValueError
        For a length that does not match the inputs, missing values, or a
        single class.
    """
    from sklearn.utils.multiclass import check_classification_targets
    from sklearn.utils.validation import column_or_1d

    if y is None:
        raise ValueError(f"This classifier requires y to be passed, but the target {name} is None.")
    y = column_or_1d(np.asarray(y), warn=True)
    if len(y) != n_samples:
        raise ValueError(f"{name} has {len(y)} labels for {n_samples} inputs; they must match one to one.")
    missing = [i for i, v in enumerate(y) if _is_missing(v)]
    if missing:
        raise ValueError(f"{name} has missing labels (None/NaN) at positions {missing[:10]}.")
    check_classification_targets(y)
    classes, y_index = np.unique(y, return_inverse=True)
    if len(classes) < 2:
        raise ValueError(f"{name} has only one class ({classes[0]!r}); at least two are needed.")
    return classes, y_index


def check_label_descriptions(
    descriptions: Any, classes: np.ndarray, *, name: str = "label_descriptions"
) -> list[list[str]]:
    """One or more texts per class, in the order of ``classes``.

    ``None`` builds a description from each label name (``"not_entailment"``
    reads ``"not entailment"``). Otherwise a dict label -> str or list of str
    that covers every class and names no unknown label. ``name`` is the
    parameter named in error messages (label words are checked the same way).
    """
    if descriptions is None:
        return [[str(label).replace("_", " ").replace("/", " / ")] for label in classes]
    if not isinstance(descriptions, dict):
        raise TypeError(f"{name} must be a dict label -> str or list of str, got {type(descriptions).__name__}.")
    known = {_label_key(c): c for c in classes}
    unknown = [label for label in descriptions if _label_key(label) not in known]
    if unknown:
        raise ValueError(f"{name} names labels that are not in y: {unknown}; the classes are {list(classes)}.")
    given = {_label_key(label): value for label, value in descriptions.items()}
    missing = [c for c in classes if _label_key(c) not in given]
    if missing:
        raise ValueError(f"{name} has no entry for the classes {missing}; every class needs one.")
    out = []
    for c in classes:
        value = given[_label_key(c)]
        texts = [value] if isinstance(value, str) else list(value)
        if not texts or not all(isinstance(t, str) and t.strip() for t in texts):
            raise ValueError(f"The {name} of class {c!r} must be a non-empty str or list of str, got {value!r}.")
        out.append(texts)
    return out


def _label_key(label: Any):
    """Labels compare by value across numpy and Python types (np.int64(1) == 1)."""
    return label.item() if isinstance(label, np.generic) else label
