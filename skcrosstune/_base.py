"""What every classifier on black-box representations shares.

Each such classifier takes raw texts (or sentence pairs), which its nested
``embedder`` turns into representations through the query cache, or numeric
representations from a :class:`~skcrosstune.BlackBoxEmbedder` step earlier
in a Pipeline. Label descriptions are embedded by the same embedder. A
subclass supplies the method itself: ``_fit_head`` and ``_logits``.
"""

from __future__ import annotations

import numpy as np
from scipy.special import expit
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.utils.extmath import softmax
from sklearn.utils.validation import check_is_fitted, validate_data

from ._compat import _check_feature_names
from ._training import predict_logits
from ._validation import TextBatch, check_targets, check_texts, count_inputs
from ._validation import is_numeric_input as _is_numeric
from .cache import QueryEstimate, estimate_queries
from .embedder import BlackBoxEmbedder

__all__ = ["EmbeddingHeadClassifier", "choose_thresholds"]

_TINY = np.finfo(np.float64).tiny

_X_PARAMETER = """Parameters
        ----------
        X : texts, sentence pairs, or numeric representations
            The same kind of input as seen in ``fit``."""


_FIT_PARAMETERS = """Parameters
        ----------
        X : texts, sentence pairs, or ndarray of shape (n_samples, n_features)
            Raw texts or pairs (embedded by ``embedder``), or representations
            from an earlier BlackBoxEmbedder step.
        y : array-like of shape (n_samples,) or (n_samples, n_labels)
            Class labels of any type, or a label-indicator matrix (0/1, one
            column per label; dense, sparse or a DataFrame) for multi-label
            classification."""


def _with_x_parameter(method):
    """Fill the shared description of ``X`` (and of ``y`` for ``fit``) into a method's docstring."""
    method.__doc__ = method.__doc__.replace("{X}", _X_PARAMETER).replace("{X, y}", _FIT_PARAMETERS)
    return method


def _without_column_names(X):
    """A DataFrame's values, once the classifier has checked its column names itself.

    The nested embedder then neither holds the names nor checks them again, so
    a renamed column is reported once, in the name of the estimator called.
    """
    return X.to_numpy(dtype=object) if hasattr(X, "columns") and hasattr(X, "iloc") else X


class EmbeddingHeadClassifier(ClassifierMixin, BaseEstimator):
    """Base class: an embedder in front, a small trained head behind."""

    def _default_embedder(self, pairs: bool) -> BlackBoxEmbedder:
        return BlackBoxEmbedder()

    def _embedder_template(self, pairs: bool):
        return self._default_embedder(pairs) if self.embedder is None else self.embedder

    def _fit_representations(self, X) -> np.ndarray:
        """Representations of the training inputs; sets ``embedder_`` and the input kind."""
        if _is_numeric(X):
            self.input_kind_ = "numeric"
            self.embedder_ = None
            return validate_data(self, X, dtype=np.float32, reset=True)
        batch = check_texts(X)
        self.n_features_in_ = batch.n_columns
        _check_feature_names(self, X, reset=True)
        self.input_kind_ = "pairs" if batch.is_pair else "texts"
        X = _without_column_names(X)
        self.embedder_ = clone(self._embedder_template(batch.is_pair)).fit(X)
        return self._embed(X)

    def _representations(self, X) -> np.ndarray:
        check_is_fitted(self)
        if self.input_kind_ == "numeric":
            return validate_data(self, X, dtype=np.float32, reset=False)
        if _is_numeric(X):
            raise TypeError("This classifier was fitted on texts; give it texts, not numeric features.")
        _check_feature_names(self, X, reset=False)
        return self._embed(_without_column_names(X))

    def _embed(self, X) -> np.ndarray:
        """What the fitted embedder's one pass over the cache gives for texts ``X``."""
        return self.embedder_.transform(X)

    def _embed_descriptions(self, texts: list[str]) -> np.ndarray:
        """Embed label descriptions as single texts with the black box of the inputs."""
        template = self._embedder_template(False)
        self.description_embedder_ = clone(template).fit(texts)
        return self.description_embedder_.transform(texts)

    def _description_projection(self, width: int, dim: int) -> np.ndarray | None:
        """The fixed linear map from input features into the description space, or None.

        The identity for single texts (and numeric input of the descriptions'
        width); the mean of the two sides for separately embedded sentence
        pairs whose features hold ``u`` and ``v``. None when the input cannot
        be compared with the descriptions (pair features without the sides,
        or features from another black box).
        """
        if self._separate_pairs():
            features = list(self.embedder_.pair_features)
            if "u" not in features or "v" not in features:
                return None
            projection = np.zeros((width, dim), dtype=np.float32)
            offsets = np.cumsum([0] + [1 if f == "cosine" else dim for f in features])
            for side in ("u", "v"):
                start = offsets[features.index(side)]
                projection[start : start + dim] = 0.5 * np.eye(dim, dtype=np.float32)
            return projection
        return np.eye(dim, dtype=np.float32) if width == dim else None

    def _projects_as_identity(self, width: int, dim: int) -> bool:
        """Whether :meth:`_description_projection` is the identity: nothing to build, store or multiply."""
        return width == dim and not self._separate_pairs()

    def _separate_pairs(self) -> bool:
        """Whether the input is sentence pairs embedded side by side (features of ``u`` and ``v``)."""
        return self.input_kind_ == "pairs" and self.embedder_.pair_encoding_ == "separate"

    def _logits(self, features: np.ndarray) -> np.ndarray:
        """Class logits (float64) of the head for its input features."""
        return predict_logits(self.module_, features)

    # ------------------------------------------------------------- estimates
    def estimate_queries(self, X, y=None, *, tokenizer=None, price_per_1k_tokens=None) -> QueryEstimate:
        """What ``fit(X, y)`` (``y`` given) or a prediction on ``X`` (``y=None``) would send, before anything is paid.

        Counts the inputs (and label descriptions) the black box would be
        asked for that the store does not hold yet; nothing is queried and no
        counter moves. With no one else paying in between, ``n_to_send`` is
        exactly what the call then sends: 0 on a warm store.

        Parameters
        ----------
        X : texts, sentence pairs, or numeric representations
            As given to ``fit`` or ``predict``.
        y : array-like of shape (n_samples,), default=None
            The labels of a ``fit`` to estimate; None estimates a prediction,
            which needs a fitted classifier.
        tokenizer : callable, default=None
            ``tokenizer(text)`` giving a text's tokens (a list or their
            number), for an API model; a local model counts its own. Without
            either, ``tokens`` is None.
        price_per_1k_tokens : float, default=None
            Turns the tokens into ``cost``.

        Returns
        -------
        estimate : QueryEstimate
            ``n_inputs``, ``n_unique``, ``n_stored``, ``n_to_send``,
            ``tokens`` and ``cost``.
        """
        if y is None:
            check_is_fitted(self)
            plans = [] if self.input_kind_ == "numeric" else [self.embedder_._plan(_without_column_names(X))]
        else:
            plans = self._fit_plans(X, y)
        return estimate_queries(plans, tokenizer=tokenizer, price_per_1k_tokens=price_per_1k_tokens)

    def _fit_plans(self, X, y) -> list:
        """The look-ups ``fit(X, y)`` makes, checked as ``fit`` checks its input (nothing is queried)."""
        classes, _, _ = check_targets(y, count_inputs(X))
        plans, inputs, input_kind = [], None, "numeric"
        if not _is_numeric(X):
            batch = check_texts(X)
            input_kind = "pairs" if batch.is_pair else "texts"
            X = _without_column_names(X)
            inputs = clone(self._embedder_template(batch.is_pair))._planner(batch, X)
            plans.append(inputs._plan(X))
        for embedder, texts in self._fit_extra_inputs(classes, input_kind):
            if embedder == "inputs" and inputs is not None:
                plans.append(inputs._plan(texts))
            else:  # the label descriptions' embedder, fitted on single texts
                planner = clone(self._embedder_template(False))._planner(TextBatch(texts=list(texts)), texts)
                plans.append(planner._plan(texts))
        return plans

    def _fit_extra_inputs(self, classes, input_kind: str) -> list[tuple[str, list]]:
        """What ``fit`` embeds besides ``X`` (of ``input_kind`` "texts", "pairs" or "numeric").

        ``("inputs", items)``: through the inputs' embedder; ``("descriptions",
        texts)``: through the label descriptions' embedder.
        """
        return []

    def _is_multilabel(self) -> bool:
        """Whether the classifier was fitted on a label-indicator matrix (it then has per-label thresholds)."""
        return getattr(self, "thresholds_", None) is not None

    @_with_x_parameter
    def decision_function(self, X):
        """Class scores (logits) of each input.

        {X}

        Returns
        -------
        scores : ndarray of shape (n_samples,) or (n_samples, n_classes)
            Class logits, whose softmax is ``predict_proba``; for two classes,
            the logit difference of ``classes_[1]`` over ``classes_[0]``.
            Multi-label: each label's logit, whose sigmoid is its probability.
        """
        logits = self._logits(self._representations(X))
        if self._is_multilabel():
            return logits
        return logits[:, 1] - logits[:, 0] if len(self.classes_) == 2 else logits

    @_with_x_parameter
    def predict_proba(self, X):
        """Class probabilities of each input.

        {X}

        Returns
        -------
        proba : ndarray of shape (n_samples, n_classes)
            Columns in the order of ``classes_``. Multi-label: each label's
            own probability (a row need not sum to one).
        """
        logits = self._logits(self._representations(X))
        if not self._is_multilabel():
            return softmax(logits)
        # a saturated sigmoid reads 0 or 1 exactly in float64, which no label's probability should be
        return np.clip(expit(logits), _TINY, 1.0 - np.finfo(np.float64).epsneg)

    @_with_x_parameter
    def predict(self, X):
        """The most likely class of each input (multi-label: the labels that clear their threshold).

        {X}

        Returns
        -------
        y_pred : ndarray of shape (n_samples,) or (n_samples, n_labels)
            Labels from ``classes_``; multi-label: a 0/1 indicator matrix,
            a label on where its probability reaches ``thresholds_``.
        """
        scores = self._logits(self._representations(X))
        if self._is_multilabel():
            return (expit(scores) >= self.thresholds_).astype(np.int64)
        return self.classes_[np.argmax(scores, axis=1)]

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.string = True
        tags.input_tags.two_d_array = True
        tags.classifier_tags.multi_label = True
        return tags


def choose_thresholds(Y: np.ndarray, proba: np.ndarray) -> np.ndarray:
    """Each label's probability threshold with the best F1 on held-out predictions.

    For each label, the held-out probabilities are sorted and every cut
    between two distinct values is tried; the threshold is the midpoint of
    the best cut (the highest such cut when several tie: the fewest labels
    switched on). A label without held-out positives keeps 0.5.

    Parameters
    ----------
    Y : ndarray of shape (n_samples, n_labels)
        The 0/1 labels of the held-out rows.
    proba : ndarray of shape (n_samples, n_labels)
        Their out-of-fold probabilities.

    Returns
    -------
    thresholds : ndarray of shape (n_labels,)

    Examples
    --------
    >>> import numpy as np
    >>> choose_thresholds(np.array([[1], [1], [0], [0]]), np.array([[0.9], [0.4], [0.3], [0.1]]))
    array([0.35])
    """
    Y, proba = np.asarray(Y) > 0, np.asarray(proba, dtype=np.float64)
    thresholds = np.full(Y.shape[1], 0.5)
    for c in range(Y.shape[1]):
        order = np.argsort(-proba[:, c], kind="stable")
        p, y = proba[order, c], Y[order, c]
        if not y.any():
            continue
        tp = np.cumsum(y)
        f1 = 2 * tp / (np.arange(1, len(y) + 1) + y.sum())
        cut = np.append(p[:-1] > p[1:], True)  # a threshold can fall after row i only between distinct values
        best = int(np.flatnonzero(cut)[np.argmax(f1[cut])])
        thresholds[c] = (p[best] + p[best + 1]) / 2 if best + 1 < len(p) else p[best] / 2
    return thresholds
