"""The switch's judges: how probable each generated example's intended label is.

Three judges answer the same question, "how probable is the label this
example was written for?":

* **out of fold** (``cv`` an int, the default): the generations are split
  into ``cv`` folds; for each fold a clone of the teacher is fitted on the
  gold examples (each repeated ``gold_weight`` times) and the generations of
  the other folds, and scores the held-out fold. Every example is judged by
  a teacher that never saw it but saw almost everything else, which is
  confident learning's recipe (Northcutt et al., 2021) with the gold
  examples as a trusted core.
  The default teacher is a CrossTune classifier with the label
  descriptions, whose prior the few gold examples alone do not give.
* **gold only** (``cv=None``): one teacher fitted on the gold examples only.
* **the generator itself** (``teacher="generator"``): the generating chat
  model reads each example and the label words are scored from the
  log-probabilities of its first answer token.

A fourth judge asks whether an example is about the task at all:

* **off task** (``off_task_quantile``): the cosine similarity of each
  example's vector to the centroid of the gold examples' vectors, compared
  with the gold examples' own similarities to the centroid of the others.
  Relabelling is a label problem, but a text of another task is an
  out-of-distribution one: a teacher must still give it some label, and the
  generations of other classes may hold its kind, so it is judged against
  the gold examples alone.

The kept rule (in :mod:`._augmenter`) compares each probability with its
class's threshold, the mean probability of the class's own generations
(confident learning's per-class threshold), times the ``threshold`` knob.

Scores depend on the training set only, never on the knob, so they are
memoised per process, keyed by a hash of everything that determines them:
a grid search over the knob fits no teacher twice for the same data.
"""

from __future__ import annotations

import json
import re
from collections import OrderedDict

import joblib
import numpy as np
from sklearn.base import clone
from sklearn.model_selection import StratifiedKFold

from ..embedder import _row_norms

__all__ = [
    "answer_words",
    "class_thresholds",
    "generator_proba",
    "gold_proba",
    "judge_instruction",
    "memoised",
    "out_of_fold_proba",
    "task_similarity",
]

#: Score arrays kept per process (one per distinct training set and judge).
_MEMO_SIZE = 64
_memo: OrderedDict = OrderedDict()


def memoised(key_parts, compute):
    """``compute()``, or the array it returned before for the same ``key_parts``."""
    key = joblib.hash(key_parts)
    if key in _memo:
        _memo.move_to_end(key)
        return _memo[key]
    value = compute()
    _memo[key] = value
    while len(_memo) > _MEMO_SIZE:
        _memo.popitem(last=False)
    return value


def _intended(proba: np.ndarray, classes, labels) -> np.ndarray:
    column = {label: j for j, label in enumerate(np.asarray(classes).tolist())}
    return np.asarray([proba[i, column[label]] for i, label in enumerate(labels)], dtype=float)


def gold_proba(teacher, gold: list, y, candidates: list, labels: list) -> np.ndarray:
    """The probability of each candidate's label from one teacher fitted on the gold examples."""
    fitted = clone(teacher).fit(gold, y)
    return _intended(np.asarray(fitted.predict_proba(candidates)), fitted.classes_, labels)


def out_of_fold_proba(
    teacher, gold: list, y, candidates: list, labels: list, *, cv: int, gold_weight: int, random_state
) -> np.ndarray:
    """The probability of each candidate's label from teachers that never saw it.

    Each of the ``cv`` teachers is fitted on the gold examples, repeated
    ``gold_weight`` times, and on the candidates outside its fold (with the
    labels they were written for).
    """
    labels_arr = np.asarray(labels, dtype=object)
    counts = np.unique(labels_arr.astype(str), return_counts=True)[1]
    n_splits = min(cv, int(counts.min()))
    if n_splits < 2:  # too few generations of some class to hold any out: judge by gold only
        return gold_proba(teacher, gold, y, candidates, labels)
    folds = StratifiedKFold(n_splits, shuffle=True, random_state=_seed(random_state))
    out = np.empty(len(candidates))
    gold_rows = [item for item in gold for _ in range(gold_weight)]
    gold_labels = list(np.repeat(np.asarray(y, dtype=object), gold_weight))
    for train, held_out in folds.split(np.zeros(len(candidates)), labels_arr.astype(str)):
        X_fit = gold_rows + [candidates[i] for i in train]
        y_fit = np.asarray(gold_labels + [labels[i] for i in train], dtype=np.asarray(y).dtype)
        fitted = clone(teacher).fit(X_fit, y_fit)
        proba = np.asarray(fitted.predict_proba([candidates[i] for i in held_out]))
        out[held_out] = _intended(proba, fitted.classes_, [labels[i] for i in held_out])
    return out


def generator_proba(backend, store, candidates: list, labels: list, classes: list, *, batch_size: int = 16):
    """The probability the generating model gives each candidate's label, from its first answer token.

    ``backend`` is an :class:`~skcrosstune.backends.openai_logprobs.OpenAILogProbBackend`
    whose instruction lists the labels with their :func:`answer_words`; each
    answer is stored in ``store`` as it arrives. The answer words'
    log-probabilities are normalised over the classes.
    """
    from ..cache import query_through_store

    words = answer_words(classes)
    log_probs, report = query_through_store(
        candidates,
        lambda batch: backend.query_label_words(batch, words),
        store=store,
        batch_size=batch_size,
    )
    log_probs = np.asarray(log_probs, dtype=float)
    log_probs -= log_probs.max(axis=1, keepdims=True)
    proba = np.exp(log_probs)
    proba /= proba.sum(axis=1, keepdims=True)
    return _intended(proba, classes, labels), report


_ONE_WORD = re.compile(r"[^\W\d_]+")


def answer_words(classes) -> list[str]:
    """The word that answers for each class: its name, or its number when names cannot be told by one token.

    Only the first answer token is scored, so each class needs an answer
    that is one short word and whose first token is its own: a name of
    several words (``"very negative"`` and ``"very positive"`` both start with
    ``"very"``) or with punctuation (``"science/technology"``) cannot serve.
    Then the labels are numbered 1 to 9 (one token each in the tokenizers of
    common chat models) and the number answers; with more than nine classes
    the names are kept.

    Examples
    --------
    >>> answer_words(["negative", "positive"])
    ['negative', 'positive']
    >>> answer_words(["very negative", "negative", "neutral", "positive", "very positive"])
    ['1', '2', '3', '4', '5']
    """
    names = [str(label).strip() for label in classes]
    folded = [name.lower() for name in names]
    one_word = all(_ONE_WORD.fullmatch(name) for name in names) and len(set(folded)) == len(folded)
    if one_word or len(names) > 9:
        return names
    return [str(i) for i in range(1, len(names) + 1)]


def judge_instruction(task: str, classes: list, descriptions: list[str]) -> str:
    """The system message asking the generator to label a text with one answer word (see :func:`answer_words`)."""
    words = answer_words(classes)
    numbered = words != [str(c).strip() for c in classes]
    lines = [f"Task: {task}", "", "Labels:"]
    for word, c, d in zip(words, classes, descriptions, strict=True):
        lines.append(f"{word}. {json.dumps(str(c))}: {d}" if numbered else f"- {json.dumps(str(c))}: {d}")
    answer = "the number of its label" if numbered else "its label, exactly as written above,"
    lines += ["", f"Read the user's text and answer with {answer} and nothing else."]
    return "\n".join(lines)


def task_similarity(embedder, gold: list, candidates: list) -> tuple[np.ndarray, np.ndarray]:
    """How much like the gold examples each text is: cosine similarity to their centroid.

    Returns the gold examples' similarities, each to the centroid of the
    *other* gold examples (so that a gold example does not vote for itself),
    and the candidates' similarities to the centroid of all of them.
    """
    fitted = clone(embedder).fit(gold)
    gold_vectors = _unit_rows(fitted.transform(gold))
    vectors = _unit_rows(fitted.transform(candidates))
    total = gold_vectors.sum(axis=0)
    others = _unit_rows(total[None, :] - gold_vectors)
    gold_scores = np.einsum("ij,ij->i", gold_vectors, others)
    return gold_scores, vectors @ _unit_rows(total[None, :])[0]


def _unit_rows(vectors) -> np.ndarray:
    dense = np.asarray(vectors.toarray() if hasattr(vectors, "toarray") else vectors, dtype=float)
    return dense / _row_norms(dense)


def class_thresholds(proba: np.ndarray, labels: list) -> dict:
    """Confident learning's per-class threshold: the mean probability of each class's own examples."""
    labels_arr = np.asarray(labels, dtype=object)
    return {label: float(proba[labels_arr == label].mean()) for label in dict.fromkeys(labels)}


def _seed(random_state) -> int | None:
    if random_state is None or isinstance(random_state, (int, np.integer)):
        return random_state
    return int(random_state.randint(np.iinfo(np.int32).max))
