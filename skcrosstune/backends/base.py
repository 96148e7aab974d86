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
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

__all__ = ["Backend", "BlackBoxError", "Paid", "UnusableAnswer", "Usage", "check_vectors", "read_usage"]


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


@dataclass(frozen=True)
class Usage:
    """The tokens one paid request used: those read (``prompt_tokens``) and those written (``completion_tokens``).

    An API reports them in its answer's ``usage``; a local model counts them
    with its tokenizer (padding left out). Embeddings have prompt tokens only.
    """

    prompt_tokens: int = 0
    completion_tokens: int = 0

    def __add__(self, other: Usage) -> Usage:
        return Usage(self.prompt_tokens + other.prompt_tokens, self.completion_tokens + other.completion_tokens)

    def counts(self) -> dict[str, int]:
        """The store counters this usage adds to."""
        return {"prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens}


class Paid(NamedTuple):
    """A black box's answer to one request and what the request used."""

    answer: Any
    usage: Usage


def read_usage(response) -> Usage:
    """The ``usage`` of an OpenAI-style response; zeros when the server reports none.

    A count that is not a whole number >= 0 is not believed: it counts as not
    reported (0), never as a reason to refuse an answer that was paid for.
    """
    usage = getattr(response, "usage", None)

    def count(name: str) -> int:
        value = getattr(usage, name, None)
        return value if type(value) is int and value >= 0 else 0

    return Usage(count("prompt_tokens"), count("completion_tokens"))


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

    #: Whether several :meth:`query` calls may run at once, from threads (a remote API: yes; a local model
    #: that uses every core for one batch: no).
    concurrent = False

    #: The width every answer must have, once known (an embedder sets the width it learned at fit).
    expected_width: int | None = None

    @abstractmethod
    def fingerprint(self) -> dict:
        """Everything that changes the answers: model identity and settings."""

    @abstractmethod
    def encode(self, items: Sequence[Hashable]) -> np.ndarray:
        """Query the black box: raw float32 representations, one row per item."""

    def query(self, items: Sequence[Hashable]) -> Paid:
        """:meth:`encode` with the tokens the request used (zeros for a backend that cannot tell)."""
        return Paid(self.encode(items), Usage())

    def count_tokens(self, items: Sequence[Hashable]) -> int | None:
        """The tokens a query of ``items`` would use, without querying; None when only the black box can tell."""
        return None

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
