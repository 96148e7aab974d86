"""Small estimators the benchmark compares skcrosstune against.

Each is a plain scikit-learn classifier, so the benchmark loop treats it like
any other method: ``fit(X_train, y_train)``, then ``predict(X_test)``.
"""

from __future__ import annotations

import tempfile

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.model_selection import ParameterGrid
from sklearn.utils.validation import check_is_fitted

from skcrosstune import BlackBoxEmbedder

__all__ = ["DevSelectedClassifier", "SetFitClassifier", "ZeroShotClassifier"]


def _unit_rows(X: np.ndarray) -> np.ndarray:
    X = np.asarray(X, dtype=np.float32)
    return X / np.maximum(np.linalg.norm(X, axis=1, keepdims=True), 1e-12)


class ZeroShotClassifier(ClassifierMixin, BaseEstimator):
    """The label whose description embeds closest to the text (cosine), no training.

    Parameters
    ----------
    embedder : transformer, default=None
        Maps texts to vectors; None uses ``BlackBoxEmbedder()``. It embeds the
        inputs and the label descriptions alike, so for sentence pairs it must
        encode both sides together (``pair_encoding="joint"``).

    label_descriptions : dict of str to str
        One short natural description per class, e.g.
        ``{"negative": "a negative, critical review"}``.

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
        The keys of ``label_descriptions``, sorted.

    embedder_ : transformer
        The fitted clone of ``embedder`` that embeds the inputs.

    description_embedder_ : transformer
        The fitted clone of ``embedder`` that embedded the descriptions.

    label_embeddings_ : ndarray of shape (n_classes, n_features)
        Unit-length embeddings of the descriptions, in the order of ``classes_``.
    """

    def __init__(self, embedder=None, label_descriptions=None):
        self.embedder = embedder
        self.label_descriptions = label_descriptions

    def fit(self, X, y=None):
        """Embed the label descriptions; the training texts are not used.

        Parameters
        ----------
        X : texts or sentence pairs
            Only tells the embedder which kind of input to expect.
        y : array-like of shape (n_samples,), default=None
            Checked against the described labels, otherwise ignored.

        Returns
        -------
        self : ZeroShotClassifier
        """
        if not isinstance(self.label_descriptions, dict) or not self.label_descriptions:
            raise ValueError(
                f"label_descriptions must be a non-empty dict label -> description, got {self.label_descriptions!r}."
            )
        self.classes_ = np.asarray(sorted(self.label_descriptions), dtype=object)
        if y is not None:
            undescribed = sorted(set(np.asarray(y, dtype=object)) - set(self.classes_))
            if undescribed:
                raise ValueError(f"The labels {undescribed} have no description in label_descriptions.")
        embedder = BlackBoxEmbedder() if self.embedder is None else self.embedder
        self.embedder_ = clone(embedder).fit(X)
        if getattr(self.embedder_, "is_pair_", False) and self.embedder_.pair_encoding_ != "joint":
            raise ValueError(
                "Sentence pairs must be embedded jointly to compare them with a description: "
                "give an embedder with pair_encoding='joint'."
            )
        descriptions = [self.label_descriptions[label] for label in self.classes_]
        self.description_embedder_ = clone(embedder).fit(descriptions)
        self.label_embeddings_ = _unit_rows(self.description_embedder_.transform(descriptions))
        return self

    def decision_function(self, X):
        """Cosine similarity of each input to each label description.

        Returns
        -------
        scores : ndarray of shape (n_samples, n_classes)
        """
        check_is_fitted(self)
        return _unit_rows(self.embedder_.transform(X)) @ self.label_embeddings_.T

    def predict(self, X):
        """The label with the most similar description.

        Returns
        -------
        y_pred : ndarray of shape (n_samples,)
        """
        return self.classes_[np.argmax(self.decision_function(X), axis=1)]


class DevSelectedClassifier(ClassifierMixin, BaseEstimator):
    """Choose hyper-parameters by accuracy on a dev split, training on the training split only.

    Every candidate of ``param_grid`` is fitted on the training data and
    scored on ``(X_dev, y_dev)``; the best one (the first in grid order on
    ties) is kept as it is. The dev examples select, they never train.

    Parameters
    ----------
    estimator : classifier
        The estimator whose parameters are chosen.

    param_grid : dict or list of dict
        Candidates, as for :class:`~sklearn.model_selection.ParameterGrid`.

    X_dev : texts or sentence pairs
        The dev inputs.

    y_dev : array-like of shape (n_dev,)
        The dev labels.

    Attributes
    ----------
    candidates_ : list of estimators
        Every candidate, fitted on the training split, in grid order.

    dev_scores_ : ndarray of shape (n_candidates,)
        Dev accuracy of each candidate.

    best_params_ : dict
        Parameters of the kept candidate.

    best_estimator_ : estimator
        The kept candidate.

    classes_ : ndarray of shape (n_classes,)
        The labels seen in training.
    """

    def __init__(self, estimator, param_grid, X_dev, y_dev):
        self.estimator = estimator
        self.param_grid = param_grid
        self.X_dev = X_dev
        self.y_dev = y_dev

    def fit(self, X, y):
        """Fit each candidate on ``(X, y)`` and keep the best on dev.

        Returns
        -------
        self : DevSelectedClassifier
        """
        grid = list(ParameterGrid(self.param_grid))
        self.candidates_ = [clone(self.estimator).set_params(**params).fit(X, y) for params in grid]
        self.dev_scores_ = np.asarray([c.score(self.X_dev, self.y_dev) for c in self.candidates_])
        best = int(np.argmax(self.dev_scores_))
        self.best_params_ = grid[best]
        self.best_estimator_ = self.candidates_[best]
        self.classes_ = self.best_estimator_.classes_
        return self

    def predict(self, X):
        """Predict with the kept candidate.

        Returns
        -------
        y_pred : ndarray of shape (n_samples,)
        """
        check_is_fitted(self)
        return self.best_estimator_.predict(X)


class SetFitClassifier(ClassifierMixin, BaseEstimator):
    """SetFit (Tunstall et al., 2022): contrastive fine-tuning of a sentence encoder, then a logistic head.

    A white-box peer: it changes the encoder's weights, which a black box
    never allows, so every test text is encoded afresh (no query cache).
    Sentence pairs are joined into one text with the tokenizer's separator.
    Needs the optional ``setfit`` package.

    Parameters
    ----------
    model : str, default="all-MiniLM-L6-v2"
        A local sentence-transformers model, as for ``BlackBoxEmbedder``.

    batch_size : int, default=16
        Pairs per contrastive step, and texts per encoding batch.

    num_epochs : int, default=1
        Epochs over the generated contrastive pairs.

    random_state : int, default=0
        Seeds the pair sampling, the training and the head.

    Attributes
    ----------
    model_ : setfit.SetFitModel
        The fine-tuned encoder and its head.

    classes_ : ndarray of shape (n_classes,)
        The labels seen in training.
    """

    def __init__(self, model="all-MiniLM-L6-v2", *, batch_size=16, num_epochs=1, random_state=0):
        self.model = model
        self.batch_size = batch_size
        self.num_epochs = num_epochs
        self.random_state = random_state

    def fit(self, X, y):
        """Fine-tune the encoder on pairs of training texts, then fit the head.

        Returns
        -------
        self : SetFitClassifier
        """
        from datasets import Dataset
        from setfit import SetFitModel, Trainer, TrainingArguments

        from skcrosstune.backends.local import resolve_model_path

        self.model_ = SetFitModel.from_pretrained(str(resolve_model_path(self.model)))
        labels = np.asarray(y, dtype=object)
        self.classes_ = np.unique(labels)
        train = Dataset.from_dict({"text": self._texts(X), "label": list(labels)})
        with tempfile.TemporaryDirectory() as scratch:
            args = TrainingArguments(
                output_dir=scratch,
                batch_size=self.batch_size,
                num_epochs=self.num_epochs,
                seed=self.random_state,
                save_strategy="no",
                report_to="none",
                show_progress_bar=False,
            )
            Trainer(model=self.model_, args=args, train_dataset=train).train()
        return self

    def predict(self, X):
        """Encode the texts with the fine-tuned encoder and apply the head.

        Returns
        -------
        y_pred : ndarray of shape (n_samples,)
        """
        check_is_fitted(self)
        predictions = self.model_.predict(self._texts(X), batch_size=64, as_numpy=True, show_progress_bar=False)
        return np.asarray(predictions, dtype=object)

    def _texts(self, X) -> list[str]:
        if isinstance(X[0], str):
            return list(X)
        separator = f" {self.model_.model_body.tokenizer.sep_token} "
        return [separator.join(pair) for pair in X]
