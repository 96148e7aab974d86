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

__all__ = ["Backend", "BlackBoxError"]


class BlackBoxError(RuntimeError):
    """The black box refused a request, or could not be reached after retries."""


class Backend(ABC):
    """Base class of black-box backends."""

    #: Whether :meth:`label_word_scores` is available.
    supports_label_words = False

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
