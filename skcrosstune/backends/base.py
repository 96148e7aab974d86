"""The small protocol every black box meets.

A backend turns items (texts, or ``(text, text_pair)`` tuples encoded jointly)
into raw representations, one row per item, and names itself with a
fingerprint: a JSON-able dict of everything that changes its answers. It
knows nothing about scikit-learn or the cache; :mod:`skcrosstune.cache`
decides what is actually sent to it.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Hashable, Sequence

import numpy as np

__all__ = ["Backend", "BlackBoxError", "UnusableAnswer", "check_vectors"]


class BlackBoxError(RuntimeError):
    """The black box refused a request, could not be reached, or gave no usable answer after retries."""


class UnusableAnswer(Exception):
    """An answer that arrived but cannot be used (wrong count, width, type or a non-finite value).

    An API backend retries it like a malformed answer; ``retry=False`` marks
    one that asking again cannot fix (the model behind the name changed).
    """

    def __init__(self, reason: str, *, retry: bool = True):
        super().__init__(reason)
        self.retry = retry


def check_vectors(vectors: Sequence, n_items: int, *, width: int | None = None) -> np.ndarray:
    """One float32 row per item, or :class:`UnusableAnswer` saying what is wrong.

    Parameters
    ----------
    vectors : sequence
        The answer's vectors, in the order of the items.
    n_items : int
        How many items were asked about.
    width : int or None
        The width every vector must have; None only requires one width for all.

    Returns
    -------
    rows : ndarray of shape (n_items, width), dtype float32
        Finite values only.
    """
    if len(vectors) != n_items:
        raise UnusableAnswer(f"it holds {len(vectors)} vectors for {n_items} inputs")
    rows = []
    for i, vector in enumerate(vectors):
        if isinstance(vector, (str, bytes)) or not isinstance(vector, (Sequence, np.ndarray)):
            raise UnusableAnswer(f"vector {i} is a {type(vector).__name__}, not a list of numbers")
        row = np.asarray(vector)
        if row.ndim != 1 or row.size == 0 or row.dtype.kind not in "fiu":
            raise UnusableAnswer(f"vector {i} is not a flat, non-empty list of numbers")
        rows.append(row)
    widths = sorted({len(row) for row in rows})
    if len(widths) > 1:
        raise UnusableAnswer(f"its vectors have different widths {widths}")
    if width is not None and widths and widths[0] != width:
        raise UnusableAnswer(f"its vectors are {widths[0]} wide, not {width}")
    with np.errstate(over="ignore"):  # a value beyond float32's range becomes inf, refused below
        array = np.stack(rows).astype(np.float32) if rows else np.zeros((0, width or 0), dtype=np.float32)
    finite = np.isfinite(array).all(axis=1)
    if not finite.all():
        raise UnusableAnswer(f"vector {int(np.argmin(finite))} holds a non-finite value (NaN or infinity)")
    return array


class Backend(ABC):
    """Base class of black-box backends."""

    #: Whether :meth:`label_word_scores` is available.
    supports_label_words = False

    #: The width every answer must have, once known (an embedder sets the width it learned at fit).
    expected_width: int | None = None

    @abstractmethod
    def fingerprint(self) -> dict:
        """Everything that changes the answers: model identity and settings."""

    @abstractmethod
    def encode(self, items: Sequence[Hashable]) -> np.ndarray:
        """Query the black box: raw float32 representations, one row per item."""

    @property
    @abstractmethod
    def dimension(self) -> int | None:
        """Width of one representation, or None when only a query can tell."""

    def item_lengths(self, items: Sequence[Hashable]) -> list[int]:
        """Sizes used to batch similar inputs together (characters by default)."""
        return [len(item) if isinstance(item, str) else sum(map(len, item)) for item in items]

    def label_word_scores(self, states: np.ndarray, label_word_ids, *, log_softmax: bool = False) -> np.ndarray:
        """Scores of vocabulary entries at the mask, computed from cached states."""
        raise NotImplementedError(f"{type(self).__name__} gives no label-word scores.")
