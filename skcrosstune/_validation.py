"""Checks of texts, sentence pairs and labels, shared by every estimator.

Every public entry point that receives raw text calls :func:`check_texts`
first, so a user gets one clear error at the boundary instead of a stack
trace from inside a tokenizer, and nothing is ever dropped silently. An
estimator checks its texts, labels, descriptions and label words *before*
its first query, so bad input never costs a paid request.

Containers without a fixed order (sets, dicts) and iterators that can be
read only once (generators) are refused with a ``TypeError``: texts and
labels are matched by position, and an estimator reads its input more than
once.
"""

from __future__ import annotations

import numbers
import string
from collections.abc import Iterator, Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = [
    "TextBatch",
    "check_label_descriptions",
    "check_label_word_groups",
    "check_labels",
    "check_memory",
    "check_targets",
    "check_texts",
    "count_inputs",
    "is_numeric_input",
    "template_fields",
]


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


def check_text(value: str, where: str, name: str) -> str:
    """``value`` when it can be encoded as UTF-8; a lone surrogate (a code point U+D800 to U+DFFF) is refused."""
    if value.isascii():
        return value
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        position, character = exc.start, value[exc.start]
    else:
        return value
    raise ValueError(
        f"{name} holds a lone surrogate {character!r} at {where}, character {position}: it is not valid "
        "Unicode text and cannot be sent to a model (decode the bytes it came from with errors='replace')."
    )


def _check_cell(value: Any, where: str, name: str) -> str:
    if isinstance(value, str):
        return check_text(value, where, name)
    if _is_missing(value):
        raise ValueError(
            f"{name} contains a missing value ({value!r}) at {where}; fill or drop missing texts before embedding them."
        )
    raise TypeError(f"{name} must contain only strings, but found {type(value).__name__} {value!r} at {where}.")


def _refuse_unordered(X: Any, name: str, what: str) -> None:
    """A set, a dict or an iterator cannot be matched position by position; say what to pass instead."""
    kind = type(X).__name__
    if isinstance(X, AbstractSet):
        raise TypeError(
            f"{name} is a {kind}, whose order is arbitrary, so it cannot be matched to labels or outputs "
            f"position by position: pass a list of {what} (e.g. sorted({name}))."
        )
    if isinstance(X, Mapping):
        raise TypeError(f"{name} is a {kind}: pass a list of {what} (e.g. list({name}.values())).")
    if isinstance(X, Iterator):
        raise TypeError(f"{name} is a {kind}, which can be read only once: pass a list of {what} (e.g. list({name})).")


def _rows_from_container(X: Any, name: str, estimator: str = "this estimator"):
    """Turn any accepted container into (rows, feature_names, two_d)."""
    feature_names = None
    if X is None:
        raise TypeError(f"{name} must be a collection of texts (list, array, Series or DataFrame of str), got None.")
    if isinstance(X, (str, bytes)):
        raise TypeError(
            f"{name} must be a collection of texts, not a single {type(X).__name__}; wrap it in a list: [{X!r:.40}]."
        )
    _refuse_unordered(X, name, "texts")
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
                f"{name} is a numeric array of shape {X.shape}, but {estimator} takes raw texts. "
                f"If these are representations already, pass them to a classifier directly instead of to {estimator}."
            )
        return X.astype(object, copy=False), None, X.ndim == 2
    if not isinstance(X, Sequence) and not hasattr(X, "__iter__"):
        raise TypeError(f"{name} must be a collection of texts, got {type(X).__name__}.")
    rows = list(X)
    two_d = any(isinstance(row, (tuple, list, np.ndarray)) for row in rows)
    return rows, None, two_d


def check_texts(X: Any, *, name: str = "X", allow_pairs: bool = True, estimator: str = "this estimator") -> TextBatch:
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
    estimator : str, default="this estimator"
        The object the user called, named in error messages.

    Returns
    -------
    batch : TextBatch

    Raises
    ------
    TypeError
        For None, a lone string, numeric arrays, non-string cells, lazy Dask
        collections (which would be gathered whole), and containers without a
        fixed order or that can be read only once (sets, dicts, generators).
    ValueError
        For an empty collection, missing values, lone surrogates, ragged
        pairs or a wrong number of columns.
    """
    if hasattr(X, "__dask_graph__"):  # gathering a lazy collection here would defeat its partitions
        raise TypeError(
            f"{name} is a lazy Dask {type(X).__name__}: it would be gathered into this process whole. Run the "
            "model on its partitions with dask_ml.wrappers.ParallelPostFit on a dask DataFrame (series.to_frame() "
            "for a Series), or call .compute() first if it fits in memory."
        )
    rows, feature_names, two_d = _rows_from_container(X, name, estimator)
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
    TypeError
        For a set, dict or generator, and for labels mixing strings and
        numbers (numpy would silently turn the numbers into strings).
    ValueError
        For a length that does not match the inputs, missing values, or a
        single class.
    """
    from sklearn.utils.multiclass import check_classification_targets
    from sklearn.utils.validation import column_or_1d

    if y is None:
        raise ValueError(f"This classifier requires y to be passed, but the target {name} is None.")
    _refuse_unordered(y, name, "labels")
    if is_multilabel_target(y):
        raise ValueError(
            f"{name} is a label-indicator matrix (several labels per input, shape {np.shape(y)}); this estimator "
            "takes one label per input: give 1-d labels, or use CrossTuneClassifier or DecTClassifier for tags."
        )
    if hasattr(y, "to_numpy"):
        values = y.to_numpy(dtype=object)
    else:
        values = y if isinstance(y, (list, tuple)) else np.asarray(y)
    if not isinstance(values, np.ndarray) or values.dtype == object:
        _check_one_label_type(values, name)
    # missing labels are found before numpy can turn a NaN beside strings into the string "nan"
    missing = [i for i, v in enumerate(values) if _is_missing(v)] if np.ndim(values) == 1 else []
    y = column_or_1d(np.asarray(y), warn=True)
    if len(y) != n_samples:
        raise ValueError(f"{name} has {len(y)} labels for {n_samples} inputs; they must match one to one.")
    missing = missing or [i for i, v in enumerate(y) if _is_missing(v)]
    if missing:
        raise ValueError(f"{name} has missing labels (None/NaN) at positions {_preview(missing, limit=10)}.")
    check_classification_targets(y)
    classes, y_index = np.unique(y, return_inverse=True)
    if len(classes) < 2:
        raise ValueError(f"{name} has only one class ({_label_key(classes[0])!r}); at least two are needed.")
    for label in classes:  # a label may become the text of its description
        if isinstance(label, str):
            check_text(label, f"the label {label!r:.40}", name)
    return classes, y_index


def is_multilabel_target(y: Any) -> bool:
    """Whether ``y`` is 2-d with several columns: a label-indicator matrix (one column per label)."""
    if hasattr(y, "columns") and hasattr(y, "iloc"):
        return len(y.columns) > 1
    if hasattr(y, "toarray") and hasattr(y, "shape"):  # a scipy sparse matrix
        return len(y.shape) == 2 and y.shape[1] > 1
    if isinstance(y, (str, bytes, AbstractSet, Mapping, Iterator)):
        return False
    try:
        shape = np.asarray(y).shape
    except (ValueError, TypeError):  # ragged nesting: not a matrix
        return False
    return len(shape) == 2 and shape[1] > 1


def check_targets(y: Any, n_samples: int, *, name: str = "y") -> tuple[np.ndarray, np.ndarray, bool]:
    """Class labels (1-d) or a label-indicator matrix (2-d); return ``(classes, target, multilabel)``.

    For 1-d labels, as :func:`check_labels`: ``target`` holds class indices.
    For a label-indicator matrix (as ``MultiLabelBinarizer`` gives, dense,
    sparse or a DataFrame of 0/1 columns): ``target`` is the float32 matrix,
    and ``classes`` the column indices ``0 .. n_labels - 1`` (scikit-learn's
    convention), or a DataFrame's column names. A row may have no label;
    every label must be on in some row and off in another, or nothing can be
    learned about it.
    """
    if not is_multilabel_target(y):
        classes, y_index = check_labels(y, n_samples, name=name)
        return classes, y_index, False
    if hasattr(y, "columns") and hasattr(y, "iloc"):
        classes = np.asarray(list(y.columns), dtype=object)
        _check_one_label_type(classes, f"the columns of {name}")
        values = y.to_numpy()
    else:
        values = y.toarray() if hasattr(y, "toarray") else np.asarray(y)
        classes = np.arange(values.shape[1])
    if len(values) != n_samples:
        raise ValueError(f"{name} has {len(values)} rows of labels for {n_samples} inputs; they must match one to one.")
    if values.dtype == object or values.dtype.kind not in "biuf":
        raise ValueError(
            f"{name} is a label-indicator matrix, which holds 0 and 1 only; it holds values of type {values.dtype}."
        )
    bad = np.argwhere(~np.isin(values, (0, 1)))
    if len(bad):
        row, column = (int(v) for v in bad[0])
        raise ValueError(
            f"{name} is a label-indicator matrix, which holds 0 and 1 only; {name}[{row}, {column}] is "
            f"{values[row, column].item()!r} ({len(bad)} such values). Give 1-d labels for one class per input, or "
            "binarize tags with sklearn.preprocessing.MultiLabelBinarizer."
        )
    on = values.sum(axis=0)
    never = [_label_key(c) for c, n in zip(classes, on, strict=True) if n == 0]
    always = [_label_key(c) for c, n in zip(classes, on, strict=True) if n == n_samples]
    if never or always:
        what = f"never on: {_preview(never)}" if never else f"on in every row: {_preview(always)}"
        raise ValueError(
            f"{name} has labels {what}; each label needs rows with it and rows without it to be learned. "
            "Drop those columns, or give more examples."
        )
    for label in classes:
        if isinstance(label, str):
            check_text(label, f"the label {label!r:.40}", name)
    return classes, values.astype(np.float32), True


def _check_one_label_type(values, name: str) -> None:
    """Refuse labels that mix strings and numbers, naming one of each."""
    first: dict[str, tuple[int, Any]] = {}
    for i, value in enumerate(values.ravel() if isinstance(values, np.ndarray) else values):
        if isinstance(value, str):
            first.setdefault("str", (i, value))
        elif isinstance(value, numbers.Number) and not _is_missing(value):
            first.setdefault("number", (i, value))
        if len(first) == 2:
            (i, a), (j, b) = sorted(first.values(), key=lambda entry: entry[0])
            raise TypeError(
                f"{name} mixes strings and numbers ({type(a).__name__} {a!r} at position {i}, "
                f"{type(b).__name__} {b!r} at position {j}), which would silently become strings: "
                "give every label the same type."
            )


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
        raise ValueError(
            f"{name} names labels that are not in y: {_preview(unknown)}; the classes are "
            f"{_preview(list(classes))}.{_encoded_labels_hint(unknown, classes, name)}"
        )
    given = {_label_key(label): value for label, value in descriptions.items()}
    missing = [c for c in classes if _label_key(c) not in given]
    if missing:
        raise ValueError(f"{name} has no entry for the classes {_preview(missing)}; every class needs one.")
    return [_texts_of_entry(given[_label_key(c)], f"{name} of class {_label_key(c)!r}") for c in classes]


def _preview(values: list, limit: int = 8) -> str:
    """A list for an error message: plain Python values, the first ``limit`` of a longer one and the count."""
    shown = [v.item() if isinstance(v, np.generic) else v for v in values[:limit]]
    if len(values) <= limit:
        return repr(shown)
    return f"{repr(shown)[:-1]}, ... ({len(values)} in all)]"


def _encoded_labels_hint(unknown: list, classes: np.ndarray, name: str) -> str:
    """Why descriptions keyed by label names can meet classes 0..n-1: a meta-estimator encoded ``y``."""
    encoded = classes.dtype.kind in "iu" and np.array_equal(classes, np.arange(len(classes)))
    if not encoded or any(isinstance(label, numbers.Integral) for label in unknown):
        return ""
    return (
        " y holds the integers 0 to n_classes - 1: if a meta-estimator such as scikit-learn's VotingClassifier "
        f"or StackingClassifier encoded the labels before fitting this one, key {name} by those integers "
        "(label i is the i-th of the sorted original labels)."
    )


def _texts_of_entry(value: Any, what: str) -> list[str]:
    """One description or label word, or a list of them, as a non-empty list of non-blank texts.

    ``what`` names the entry in messages, e.g. ``"label_words of class 'pos'"``: a wrong type is a
    ``TypeError``, an empty list or a blank text a ``ValueError``.
    """
    expected = f"The {what} must be a non-empty str or a list of them"
    texts = [value] if isinstance(value, str) else value
    if not isinstance(texts, (list, tuple)):
        raise TypeError(f"{expected}, got {type(value).__name__} {value!r:.60}.")
    if not texts:
        raise ValueError(f"{expected}, got an empty list.")
    for i, text in enumerate(texts):
        where = "its text" if isinstance(value, str) else f"item {i}"
        if not isinstance(text, str):
            raise TypeError(f"{expected}, got {type(text).__name__} {text!r:.60} at {where}.")
        if not text.strip():
            raise ValueError(f"{expected}, got a blank text at {where}.")
        check_text(text, where, f"The {what}")
    return list(texts)


def check_label_word_groups(label_words: Any, *, name: str = "label_words") -> list[list[str]]:
    """Label words given as a sequence, one entry (a word or a list of words) per class, in order.

    Raises
    ------
    TypeError
        For None, a lone string, a set or dict, or an entry that is not a
        str or a list of str.
    ValueError
        For an empty sequence, or an empty or blank entry.
    """
    if isinstance(label_words, (str, bytes)) or label_words is None:
        raise TypeError(
            f"{name} must be a sequence with one entry per class (a word or a list of words), got {label_words!r}."
        )
    _refuse_unordered(label_words, name, "label words, one entry per class")
    if not isinstance(label_words, (Sequence, np.ndarray)):
        raise TypeError(f"{name} must be a list with one entry per class, got {type(label_words).__name__}.")
    groups = [_texts_of_entry(entry, f"{name}[{i}]") for i, entry in enumerate(label_words)]
    if not groups:
        raise ValueError(f"{name} is empty: give one entry per class.")
    return groups


def template_fields(template: str) -> list[str]:
    """The names of the ``{fields}`` of a prompt template, in order; a ``ValueError`` when it cannot be parsed.

    Examples
    --------
    >>> template_fields("{prompt} {text}")
    ['prompt', 'text']
    """
    try:
        return [field for _, field, _, _ in string.Formatter().parse(template) if field is not None]
    except ValueError as exc:
        raise ValueError(f"template {template!r} is not a valid format string: {exc}.") from None


def is_numeric_input(X: Any) -> bool:
    """Whether X holds numeric representations rather than texts.

    Arrays and DataFrames by their dtypes; a list by its rows, which must be
    lists of numbers (the first row checked whole, the others by their first
    cell): a flat list is texts, so a flat list whose first item is a number
    or NaN gets the texts' error naming that position, and so do sentence
    pairs whose first row is missing.
    """
    if hasattr(X, "dtypes") and hasattr(X, "columns"):
        return all(getattr(dtype, "kind", "O") in "biuf" for dtype in X.dtypes)
    if hasattr(X, "format") and hasattr(X, "nnz"):  # scipy sparse: numeric, refused later
        return True
    if isinstance(X, (str, bytes, AbstractSet, Mapping, Iterator)) or X is None:
        return False
    if not isinstance(X, np.ndarray) and hasattr(X, "__array__"):
        X = np.asarray(X)
    if isinstance(X, np.ndarray) and X.dtype.kind != "O":
        return X.dtype.kind not in "USa"
    try:
        first = X[0]
    except (TypeError, IndexError, KeyError):
        return False
    if not isinstance(first, (list, tuple, np.ndarray)) or len(first) == 0:
        return False
    if not all(isinstance(v, (numbers.Real, np.number)) and not isinstance(v, bool) for v in first):
        return False
    # a first row of NaN in sentence pairs is missing texts, not numbers: look at one cell of every row
    return not any(isinstance(row, (str, bytes)) or (_is_row(row) and isinstance(row[0], str)) for row in X)


def _is_row(row: Any) -> bool:
    return isinstance(row, (list, tuple, np.ndarray)) and len(row) > 0


def check_memory(n_samples: int, n_classes: int, estimator: str, *, copies: int = 4) -> None:
    """Refuse, before the first paid query, a fit whose (inputs x classes) matrices cannot fit in memory.

    The heads hold scores of every input for every class (float64, about
    ``copies`` such matrices at once while fitting); when they need more
    than this machine's physical memory, a ``MemoryError`` saying so is
    raised now, rather than after every text has been embedded and paid for.
    Machines that do not report their memory are not checked.
    """
    import os

    try:
        total = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        return
    needed = n_samples * n_classes * 8 * copies
    if total > 0 and needed > total:
        raise MemoryError(
            f"{estimator} would hold scores of {n_samples:,} inputs for {n_classes:,} classes: about "
            f"{needed / 2**30:,.1f} GiB while fitting, more than this machine's {total / 2**30:,.1f} GiB of memory. "
            "Nothing was sent to the black box. Fit on fewer classes (e.g. a hierarchy of smaller classifiers) "
            "or fewer inputs per class."
        )


def count_inputs(X: Any) -> int:
    """The number of inputs in X (texts, pairs or representations), after checking texts.

    What an estimator learns before its first paid query, to check ``y``
    against.
    """
    if not is_numeric_input(X):
        return len(check_texts(X))
    n_samples = X.shape[0] if hasattr(X, "shape") else len(X) if hasattr(X, "__len__") else len(np.asarray(X))
    if n_samples == 0:
        raise ValueError("X is empty: 0 samples, but at least one is required.")
    return n_samples


def _label_key(label: Any):
    """Labels compare by value across numpy and Python types (np.int64(1) == 1)."""
    return label.item() if isinstance(label, np.generic) else label
