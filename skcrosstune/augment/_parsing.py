"""Reading a generator's reply: the examples in it, and why one is dropped before the switch."""

from __future__ import annotations

import json
import re

import numpy as np

__all__ = ["DROP_REASONS", "NearCopies", "clean_reason", "normalise", "parse_examples"]

#: Why a generated example was left out, in the order the checks run.
DROP_REASONS = (
    "malformed",
    "empty",
    "too_long",
    "gold_copy",
    "near_copy",
    "duplicate",
    "surplus",
    "off_task",
    "below_threshold",
)

#: Share of words (Jaccard index of the word sets) above which an example is a near-copy of a gold one.
NEAR_COPY_OVERLAP = 0.8

_FENCE = re.compile(r"```[A-Za-z]*\s*(.*?)```", re.S)


def parse_examples(reply: str, *, pairs: bool = False) -> list | None:
    r"""The examples in a generator's reply, or None when it holds no JSON.

    Accepts a JSON list anywhere in the reply (inside a code fence, after or
    before other text), an object holding such a list (``{"examples": [...]}``)
    or a single example object. Each entry becomes a str (single texts: a
    string, or an object with ``"text"``) or a ``(text, text_pair)`` tuple
    (pairs: an object with ``"text"`` and ``"text_pair"``, or a 2-element
    list); an entry of any other shape becomes None.

    Parameters
    ----------
    reply : str
        The reply's text.
    pairs : bool, default=False
        Whether sentence pairs were asked for.

    Returns
    -------
    examples : list or None

    Examples
    --------
    >>> parse_examples('Sure! ```json\n["a fine film", "loved it"]\n``` Enjoy.')
    ['a fine film', 'loved it']
    >>> parse_examples('[{"text": "a", "text_pair": "b"}]', pairs=True)
    [('a', 'b')]
    >>> parse_examples("I cannot help with that.") is None
    True

    A list cut short (the reply ran out of tokens) gives its complete
    strings:

    >>> parse_examples('```json\n["a fine film", "loved it", "an unfinis')
    ['a fine film', 'loved it']
    """
    fenced = _FENCE.search(reply)
    value = _first_json(fenced.group(1)) if fenced else None
    if value is None:
        value = _first_json(reply)
    if value is None or (isinstance(value, dict) and not any(isinstance(v, list) for v in value.values())):
        # no list decodes: a list cut short, whose first entries may decode one by one, is more than its first
        partial = _truncated_list(fenced.group(0) if fenced else reply)
        if partial is not None and (value is None or len(partial) > 1):
            value = partial
    if value is None:
        return None
    if isinstance(value, dict):
        lists = [v for v in value.values() if isinstance(v, list)]
        value = lists[0] if lists else [value]
    if not isinstance(value, list):
        return None
    return [_entry(entry, pairs) for entry in value]


def _first_json(text: str):
    """The first JSON list or object in ``text`` that decodes, ignoring what follows it."""
    decoder = json.JSONDecoder()
    for match in re.finditer(r"[\[{]", text):
        try:
            return decoder.raw_decode(text, match.start())[0]
        except ValueError:
            continue
    return None


def _truncated_list(text: str) -> list | None:
    """The complete entries of a JSON list that was cut short (the reply ran out of tokens), or None."""
    start = text.find("[")
    if start < 0:
        return None
    decoder, items, at = json.JSONDecoder(), [], start + 1
    while True:
        while at < len(text) and text[at] in " \t\r\n,":
            at += 1
        try:
            item, at = decoder.raw_decode(text, at)
        except ValueError:
            break
        if not isinstance(item, (str, dict, list)):
            break  # "[1. a text": a numbered line, not JSON
        items.append(item)
    return items or None


def _entry(entry, pairs: bool):
    if pairs:
        if isinstance(entry, dict):
            entry = (entry.get("text"), entry.get("text_pair"))
        if isinstance(entry, (list, tuple)) and len(entry) == 2 and all(isinstance(s, str) for s in entry):
            return (entry[0].strip(), entry[1].strip())
        return None
    if isinstance(entry, dict):
        entry = entry.get("text")
    return entry.strip() if isinstance(entry, str) else None


def normalise(item):
    """Texts compare without case and spacing differences."""
    if isinstance(item, tuple):
        return tuple(normalise(side) for side in item)
    return " ".join(item.casefold().split())


def clean_reason(example, limit: int, gold_keys: set, seen: set, near_copy: bool = False) -> str | None:
    """Why a parsed example is dropped before the switch, or None when it is clean."""
    if example is None:
        return "malformed"
    sides = example if isinstance(example, tuple) else (example,)
    if any(not side for side in sides):
        return "empty"
    if any(len(side) > limit for side in sides):
        return "too_long"
    key = normalise(example)
    if key in gold_keys:
        return "gold_copy"
    if near_copy:
        return "near_copy"
    if key in seen:
        return "duplicate"
    return None


class NearCopies:
    """Which examples share most of their words with a gold example (a demonstration barely reworded).

    Word sets are compared by their Jaccard index, all examples against all
    gold ones at once through a sparse product of hashed word indicators.

    Parameters
    ----------
    gold : list of str or (str, str)
        The gold examples (a pair counts as the words of both sides).
    overlap : float, default=NEAR_COPY_OVERLAP
    """

    def __init__(self, gold: list, overlap: float = NEAR_COPY_OVERLAP):
        from sklearn.feature_extraction.text import HashingVectorizer

        self.overlap = overlap
        self._vectorizer = HashingVectorizer(binary=True, norm=None, alternate_sign=False, lowercase=True)
        self._gold = self._words(gold)
        self._gold_sizes = np.asarray(self._gold.sum(axis=1)).ravel()

    def _words(self, items: list):
        return self._vectorizer.transform([" ".join(item) if isinstance(item, tuple) else item for item in items])

    def flags(self, examples: list) -> np.ndarray:
        """Whether each example (None for a malformed one) is a near-copy of some gold example."""
        flags = np.zeros(len(examples), dtype=bool)
        rows = [i for i, example in enumerate(examples) if example is not None]
        if not rows or self._gold.shape[0] == 0:
            return flags
        words = self._words([examples[i] for i in rows])
        sizes = np.asarray(words.sum(axis=1)).ravel()
        shared = (words @ self._gold.T).tocoo()
        union = sizes[shared.row] + self._gold_sizes[shared.col] - shared.data
        near = shared.data >= self.overlap * np.maximum(union, 1)
        flags[np.asarray(rows)[np.unique(shared.row[near])]] = True
        return flags
