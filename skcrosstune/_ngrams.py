"""Prompt candidates mined from texts by pointwise mutual information, and the simplex projection.

Both serve :mod:`skcrosstune.bdpl`: the candidates are the vocabulary a
discrete prompt is drawn from, the projection keeps each prompt slot a
probability distribution after a gradient step.
"""

from __future__ import annotations

import math
import re
from collections import Counter

import numpy as np

__all__ = ["mine_ngrams", "project_onto_simplex"]

# Words (with inner apostrophes, "'s" and "n't" kept whole) or runs of punctuation.
_TOKEN = re.compile(r"[^\W_]+(?:'[^\W_]+)*|'[^\W_]+|[^\w\s]+|_+")


def _segments(text: str) -> list[list[str]]:
    """Lower-cased runs of words; punctuation ends a run and is never part of a candidate."""
    runs, run = [], []
    for token in _TOKEN.findall(text.lower()):
        if any(ch.isalnum() for ch in token):
            run.append(token)
        elif run:
            runs.append(run)
            run = []
    if run:
        runs.append(run)
    return runs


def mine_ngrams(texts, *, max_length: int = 5, min_pmi: float = 1.0, min_count: int = 1) -> list[str]:
    """N-grams of ``texts`` whose adjacent words are strongly associated, most frequent first.

    1. Count words and adjacent word pairs (within runs of words, never across punctuation).
    2. A pair is *strong* when it occurs at least twice (once says nothing about
       association: every pair seen once in a small corpus has a high PMI) and its
       pointwise mutual information ``log(n_pairs * count(a, b) / (count(a) * count(b)))``
       is at least ``min_pmi``.
    3. Each run is cut between words that do not form a strong pair; the pieces of at most
       ``max_length`` words are the n-grams.
    4. Every n-gram is counted wherever it occurs in the texts, kept when seen at least
       ``min_count`` times, and ranked by that count (ties alphabetically).

    Parameters
    ----------
    texts : iterable of str
    max_length : int, default=5
        The longest n-gram, in words.
    min_pmi : float, default=1.0
        The association (natural log) that merges two adjacent words.
    min_count : int, default=1
        The fewest occurrences of a kept n-gram.

    Returns
    -------
    ngrams : list of str
        Words joined by single spaces.
    """
    runs = [run for text in texts for run in _segments(text)]
    words = Counter(word for run in runs for word in run)
    pairs = Counter(pair for run in runs for pair in zip(run[:-1], run[1:], strict=True))
    n_pairs = sum(pairs.values())
    strong = {
        pair
        for pair, count in pairs.items()
        if count >= 2 and math.log(n_pairs * count / (words[pair[0]] * words[pair[1]])) >= min_pmi
    }

    ngrams = set()
    for run in runs:
        piece = [run[0]]
        for left, right in zip(run[:-1], run[1:], strict=True):
            if (left, right) in strong:
                piece.append(right)
            else:
                ngrams.add(tuple(piece))
                piece = [right]
        ngrams.add(tuple(piece))
    ngrams = {gram for gram in ngrams if len(gram) <= max_length}

    counts = Counter()
    for run in runs:
        for start in range(len(run)):
            for length in range(1, min(max_length, len(run) - start) + 1):
                gram = tuple(run[start : start + length])
                if gram in ngrams:
                    counts[gram] += 1
    ranked = sorted((gram for gram, c in counts.items() if c >= min_count), key=lambda g: (-counts[g], g))
    return [" ".join(gram) for gram in ranked]


def project_onto_simplex(V: np.ndarray) -> np.ndarray:
    """The Euclidean projection of each row of ``V`` onto the probability simplex, exactly.

    The closest ``p`` with ``p >= 0`` and ``sum(p) = 1`` is ``max(v - theta, 0)``
    for the one threshold ``theta`` that makes it sum to one, found from the
    sorted values (Duchi et al., ICML 2008), not by bisection.

    Parameters
    ----------
    V : ndarray of shape (n_rows, n_values)

    Returns
    -------
    P : ndarray of the same shape
        Each row non-negative and summing to one.
    """
    V = np.asarray(V, dtype=np.float64)
    descending = -np.sort(-V, axis=1)
    excess = np.cumsum(descending, axis=1) - 1.0
    ranks = np.arange(1, V.shape[1] + 1)
    # the number of entries left positive: the last rank whose value exceeds its share of the excess
    support = (descending - excess / ranks > 0).sum(axis=1)
    theta = excess[np.arange(len(V)), support - 1] / support
    return np.maximum(V - theta[:, None], 0.0)
