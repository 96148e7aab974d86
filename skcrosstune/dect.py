"""DecTClassifier: Decoder Tuning, a prototype network fused with calibrated zero-shot scores.

The method of DecT (Cui et al., ACL 2023, arXiv 2212.08408), as built here:

1. One black-box query per text gives its representation ``h`` and its
   zero-shot class scores ``s(x)``: for a masked LM under a prompt template,
   ``h`` is the hidden state at the mask and ``s_c`` the best logit of class
   ``c``'s label words there; for an embedding model, ``h`` is the embedding
   and ``s_c`` the best cosine similarity between the text and the
   descriptions of class ``c``, divided by ``similarity_temperature``.
2. Calibration by a reference input: DecT's content-free input (the
   template with an empty text, queried once), or the average training
   input. With ``z = log_softmax(s)`` over the classes,

       q(x) = softmax(z(x) - z(reference)).

   DecT divides the class probabilities by the content-free probabilities
   normalised by their mean; this is the same division carried out in log
   space and renormalised over the classes, so it is finite for any raw
   scores, negative or near zero, and ``q`` is a probability vector. For
   the average training input, ``z(reference)`` is the mean of the training
   inputs' ``z``: no extra query.
3. The decoder: ``v = W h`` with ``W`` a bias-free projection to
   ``proto_dim`` dimensions (scaled to unit length with ``normalize=True``,
   as DecT does), one prototype ``p_c`` and one learnable radius
   ``r_c`` per class (initialised to the mean distance of the class's
   projected training examples from its prototype), and the class scores

       S_c(x) = -||v - p_c|| + r_c + lambda log q_c(x),

   trained with cross-entropy (Adam, full batches up to 128 texts, a fixed
   number of epochs as published). DecT adds ``lambda q_c(x)`` with ``lambda = 1 / shots``
   (``fusion="probs"``), shots being the mean number of training examples
   per class: a bounded term that must shrink by hand as data grows. Adding
   the log-probability instead makes the class probabilities a product of
   the two experts, ``exp(-||v - p_c|| + r_c) q_c(x) ** lambda``, in which
   the prototype expert sharpens with more data by itself, so ``lambda``
   need not shrink by hand. On the benchmark's dev splits this was better
   at 1, 4 and 16 shots than DecT's rule, and ``lambda = 1`` better than
   ``1 / shots``.
4. How much to trust the zero-shot expert depends on the task: with 150
   intents known by their names only (CLINC150, 16 shots), ``lambda = 1/2``
   was the better weight on the dev split of all five seeds (92.5 % against
   91.5 % on average), while on the eleven smaller tasks the two were level.
   So ``zero_shot_weight="cv"`` chooses it per training set, by internal
   cross-validation: the two candidates are trained side by side on each
   fold (for at most 50 gradient steps: enough to rank two weights, not
   to converge), and half the weight replaces the whole only when its
   held-out accuracy is higher by more than one standard error.

DecT draws the prototypes at random and freezes them
(``prototypes="random"``); ``prototypes="class_mean"`` starts them at the
projected class means and trains them. On the benchmark's dev splits with the
embedded default model, unnormalised projections with class-mean prototypes
were the best of the four combinations at 1, 4 and 16 shots (the default);
unit-length projections also reduce a one-feature input, such as the cosine
of a sentence pair, to its sign.
"""

from __future__ import annotations

import math
import warnings
from numbers import Integral, Real

import numpy as np
import torch
from scipy.special import expit
from torch import nn

from ._base import EmbeddingHeadClassifier, _with_x_parameter, choose_thresholds
from ._compat import HasMethods, Interval, StrOptions, _fit_context
from ._training import (
    DeviceOptions,
    _multilabel_folds,
    _simplest_within_one_standard_error,
    _stratified_folds,
    predict_logits,
    resolve_device,
    steps_per_epoch,
    torch_seed,
    train_classifier,
)
from ._validation import _label_key, check_label_descriptions, check_memory, check_targets, count_inputs
from .embedder import _max_per_group

__all__ = ["DecTClassifier", "calibrate"]

# The candidates of zero_shot_weight="cv", as multiples of the "auto" weight, in order of preference: the
# one-standard-error rule keeps the first unless held-out accuracy clearly prefers another.
_CV_WEIGHT_FACTORS = (1.0, 0.5)


class DecTClassifier(EmbeddingHeadClassifier):
    """Few-shot classification by a prototype decoder fused with calibrated zero-shot scores.

    Parameters
    ----------
    embedder : BlackBoxEmbedder, default=None
        The black box, as a nested estimator. None uses ``BlackBoxEmbedder()``
        on the embedded default model. For label words, a masked LM with
        ``pooling="mask"`` and a prompt ``template`` holding ``{mask}``.
        When ``X`` is already numeric (after a BlackBoxEmbedder step in a
        Pipeline), ``embedder`` embeds only the label descriptions and the
        content-free input, and must be the same black box as that step.

    label_words : dict, default=None
        Label -> word, or list of words, for every class: the zero-shot
        scores are the masked LM's logits of these words at the mask (the
        best of a class's words). A word the tokenizer splits is scored by
        its first piece, with a warning. Needs text input.

    label_descriptions : dict, default=None
        Label -> description, or list of descriptions, for every class: the
        zero-shot scores are cosine similarities between the input and the
        descriptions. When neither ``label_words`` nor ``label_descriptions``
        is given, descriptions are built from the label names.

    proto_dim : int, default=128
        Width of the projected space holding the prototypes.

    zero_shot_weight : float, "auto" or "cv", default="cv"
        ``lambda``, the weight of the calibrated zero-shot term in the class
        scores. ``"auto"`` is 1 with ``fusion="log_probs"`` and ``1 / shots``
        with ``fusion="probs"`` (DecT's rule). ``"cv"`` chooses between the
        ``"auto"`` weight and half of it by an internal stratified
        cross-validation on the training data (``zero_shot_cv`` folds):
        the ``"auto"`` weight is kept unless the held-out accuracy of the
        other is higher by more than one standard error; with a single
        example in a class nothing can be held out, and it is kept too.
        0 gives a plain prototype network that needs no label words or
        descriptions and sends no query for them.

    zero_shot_cv : int, default=2
        Folds of the cross-validation that chooses ``zero_shot_weight="cv"``
        (fewer when a class has fewer examples). Each fold trains the
        candidates side by side for ``max_epochs`` epochs, or fewer when
        ``zero_shot_cv_steps`` gradient steps take fewer.

    zero_shot_cv_steps : int, default=50
        Gradient steps the fold decoders of ``zero_shot_weight="cv"`` take
        at most, in whole epochs (at least one, at most ``max_epochs``). The
        choice ranks two weights and needs no converged decoder; a few-shot
        fold of up to ``batch_size`` texts is one step an epoch and trains
        all ``max_epochs``. On CLINC150's 5 seeds, 150 classes, 5 epochs
        instead of 30 at 16 shots (1,200 texts a fold, 10 steps an epoch)
        and 17 instead of 30 at 4 shots chose the weight 30 epochs did, and
        at 16 shots the choice costs a sixth of what it did.

    prototypes : {"class_mean", "random"}, default="class_mean"
        ``"class_mean"``: the projected class means, trained;
        ``"random"``: drawn at random on the unit sphere and frozen, as
        DecT does.

    normalize : bool, default=False
        Scale the projected representation ``W h`` to unit length before
        measuring distances, as DecT does.

    calibration : {"auto", "content_free", "train_mean"} or None, default="auto"
        The reference that calibrates the zero-shot scores:
        ``"content_free"``, the template with an empty text (one extra
        query), as DecT does; ``"train_mean"``, the mean log-probabilities
        of the training inputs; None, no calibration. ``"auto"`` is
        ``"content_free"`` for label words and ``"train_mean"`` for
        descriptions (on the benchmark's dev splits, the empty text made
        the description scores of the default embedding model worse, the
        training mean better).

    fusion : {"log_probs", "probs"}, default="log_probs"
        What the zero-shot term adds to the prototype scores: ``lambda``
        times the calibrated log-probabilities (a product of experts), or
        times the calibrated probabilities, as DecT does.

    similarity_temperature : float, default=0.05
        Divides cosine similarities to descriptions before the softmax over
        classes (unused with label words, whose logits are used as they are).

    max_epochs : int, default=30
        Training epochs; 0 keeps the initial decoder.

    learning_rate : float, default=0.01
        Adam learning rate.

    weight_decay : float, default=0.0
        Decoupled weight decay (AdamW); 0 is plain Adam, as published.

    batch_size : int or None, default=128
        Mini-batch size; None trains on full batches. A few-shot training
        set of up to 128 texts is one batch, as published; a larger one
        takes more steps per epoch, so the schedule grows with the data (in
        full batches, 30 steps left a 150-class, 2,400-text decoder
        undertrained: 84.2 % on CLINC150's dev split against 92.0 % with the
        default, seed 13, label names).

    cv : int, default=0
        0 or 1 trains ``max_epochs`` epochs, as published. 2 or more chooses
        the number of epochs (up to ``max_epochs``) by an internal stratified
        cross-validation on the training data, then retrains on all of it.

    n_iter_no_change : int, default=10
        With ``cv >= 2``: epochs without a better held-out loss before a
        fold stops.

    device : str, default="auto"
        Where training runs: ``"auto"`` (CUDA when present), ``"cpu"``,
        ``"cuda"``... The fitted model always lives on the CPU.

    random_state : int, RandomState instance or None, default=None
        Seeds the projection, the prototypes and the data order; the same
        value gives identical predictions on the CPU.

    verbose : bool, default=False
        Progress bars while embedding and training.

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
        The labels seen in ``fit``.

    embedder_ : BlackBoxEmbedder or None
        The fitted clone of ``embedder`` for the inputs (None for numeric input).

    zero_shot_source_ : {"label_words", "descriptions", None}
        Where the zero-shot scores come from; None when ``zero_shot_weight_``
        is 0.

    zero_shot_weight_ : float
        The ``lambda`` used.

    zero_shot_cv_scores_ : dict or None
        With ``zero_shot_weight="cv"``: the held-out accuracy of each
        candidate weight in the internal cross-validation, keyed by the
        weight. None when the weight was not chosen that way.

    label_words_ : list of list of str or None
        The label words per class, in the order of ``classes_``.

    descriptions_ : list of list of str or None
        The descriptions per class, in the order of ``classes_``.

    description_embeddings_ : ndarray of shape (n_descriptions, dim) or None
        Their black-box embeddings.

    calibration_ : {"content_free", "train_mean"} or None
        The calibration used.

    reference_scores_ : ndarray of shape (n_classes,) or None
        The zero-shot scores of the reference (the content-free input, or
        the mean log-probabilities of the training inputs) that calibrate
        every input's scores.

    module_ : torch.nn.Module
        The trained decoder, in float64 on the CPU (so that predictions do
        not depend on the batch a row comes in).

    n_epochs_ : int
        Epochs of the final training.

    input_kind_ : {"texts", "pairs", "numeric"}
        What ``fit`` was given.

    n_features_in_ : int
        Width of numeric input; for texts, the input columns (1 for texts, 2
        for sentence pairs).

    feature_names_in_ : ndarray of shape (`n_features_in_`,)
        Column names, when fitted on a DataFrame with string column names.

    See Also
    --------
    CrossTuneClassifier : Cross-attention between inputs and label descriptions.
    BlackBoxEmbedder : The black box and its query cache.

    Notes
    -----
    The reference implementation ignores its seed argument, overrides the
    zero-shot weight and never selects its best epoch on held-out data. Here
    ``random_state`` and a given ``zero_shot_weight`` are honoured,
    ``zero_shot_weight="cv"`` chooses the weight and ``cv >= 2`` the number
    of epochs on held-out folds of the training data, never on a test set.

    References
    ----------
    .. [1] G. Cui, W. Li, N. Ding, L. Huang, Z. Liu and M. Sun, "Decoder
       Tuning: Efficient Language Understanding as Decoding", ACL 2023,
       arXiv:2212.08408.

    Examples
    --------
    >>> from skcrosstune import DecTClassifier
    >>> texts = ["a joyful, moving film", "loved every minute", "dull and lifeless", "a tedious mess"]
    >>> labels = ["positive", "positive", "negative", "negative"]
    >>> clf = DecTClassifier(
    ...     label_descriptions={"positive": "a glowing review", "negative": "a scathing review"},
    ...     random_state=0,
    ... ).fit(texts, labels)
    >>> clf.calibration_
    'train_mean'
    >>> clf.predict(["an absolute delight"])
    array(['positive'], dtype='<U8')
    """

    _parameter_constraints: dict = {
        "embedder": [HasMethods(["fit", "transform"]), None],
        "label_words": [dict, None],
        "label_descriptions": [dict, None],
        "proto_dim": [Interval(Integral, 1, None, closed="left")],
        "zero_shot_weight": [Interval(Real, 0, None, closed="left"), StrOptions({"auto", "cv"})],
        "zero_shot_cv": [Interval(Integral, 2, None, closed="left")],
        "zero_shot_cv_steps": [Interval(Integral, 1, None, closed="left")],
        "prototypes": [StrOptions({"random", "class_mean"})],
        "normalize": ["boolean"],
        "calibration": [StrOptions({"auto", "content_free", "train_mean"}), None],
        "fusion": [StrOptions({"log_probs", "probs"})],
        "similarity_temperature": [Interval(Real, 0, None, closed="neither")],
        "max_epochs": [Interval(Integral, 0, None, closed="left")],
        "learning_rate": [Interval(Real, 0, None, closed="neither")],
        "weight_decay": [Interval(Real, 0, None, closed="left")],
        "batch_size": [Interval(Integral, 1, None, closed="left"), None],
        "cv": [Interval(Integral, 0, None, closed="left")],
        "n_iter_no_change": [Interval(Integral, 1, None, closed="left")],
        "device": [DeviceOptions()],
        "random_state": ["random_state"],
        "verbose": ["verbose"],
    }

    def __init__(
        self,
        embedder=None,
        label_words=None,
        label_descriptions=None,
        *,
        proto_dim=128,
        zero_shot_weight="cv",
        zero_shot_cv=2,
        zero_shot_cv_steps=50,
        prototypes="class_mean",
        normalize=False,
        calibration="auto",
        fusion="log_probs",
        similarity_temperature=0.05,
        max_epochs=30,
        learning_rate=0.01,
        weight_decay=0.0,
        batch_size=128,
        cv=0,
        n_iter_no_change=10,
        device="auto",
        random_state=None,
        verbose=False,
    ):
        self.embedder = embedder
        self.label_words = label_words
        self.label_descriptions = label_descriptions
        self.proto_dim = proto_dim
        self.zero_shot_weight = zero_shot_weight
        self.zero_shot_cv = zero_shot_cv
        self.zero_shot_cv_steps = zero_shot_cv_steps
        self.prototypes = prototypes
        self.normalize = normalize
        self.calibration = calibration
        self.fusion = fusion
        self.similarity_temperature = similarity_temperature
        self.max_epochs = max_epochs
        self.learning_rate = learning_rate
        self.weight_decay = weight_decay
        self.batch_size = batch_size
        self.cv = cv
        self.n_iter_no_change = n_iter_no_change
        self.device = device
        self.random_state = random_state
        self.verbose = verbose

    @_with_x_parameter
    @_fit_context(prefer_skip_nested_validation=False)
    def fit(self, X, y):
        """Query the black box once per text, calibrate its zero-shot scores, train the decoder.

        {X, y}

        Returns
        -------
        self : DecTClassifier
            The fitted classifier.
        """
        if self.label_words is not None and self.label_descriptions is not None:
            raise ValueError("Give label_words (masked LM) or label_descriptions (embeddings), not both.")
        # everything is checked before the first paid query
        self.classes_, y_index, multilabel = check_targets(y, count_inputs(X))
        check_memory(len(y_index), len(self.classes_), type(self).__name__)
        self.thresholds_ = None
        if self.label_words is not None:
            label_texts = check_label_descriptions(self.label_words, self.classes_, name="label_words")
        else:
            label_texts = check_label_descriptions(self.label_descriptions, self.classes_)
        H = self._fit_representations(X)
        n_classes = len(self.classes_)
        shots = H.shape[0] / n_classes
        fixed = self.zero_shot_weight not in ("auto", "cv")
        self.zero_shot_weight_ = float(self.zero_shot_weight) if fixed else 1.0
        if not fixed and self.fusion == "probs":
            self.zero_shot_weight_ = 1.0 / shots

        self.zero_shot_source_ = self.label_words_ = self.descriptions_ = None
        self.description_embeddings_ = self.calibration_ = self.reference_scores_ = None
        if self._reads_label_words():
            self.label_words_ = label_texts
        H, word_scores = self._split(H)
        if self.zero_shot_weight_ > 0:
            self._prepare_zero_shot(H, label_texts)
        scores = self._zero_shot_scores(H, word_scores)
        if self.calibration_ == "train_mean":
            self.reference_scores_ = (scores if multilabel else _log_softmax(scores)).mean(axis=0)
        features = np.hstack([H, self._calibrated(scores, len(H), multilabel)])

        seed = torch_seed(self.random_state)
        self.zero_shot_cv_scores_ = None
        if self.zero_shot_weight == "cv" and self.zero_shot_source_ is not None:
            self._choose_zero_shot_weight(features, y_index, seed)
        decoder, self.n_epochs_ = self._train(
            features, y_index, [self.zero_shot_weight_], self.cv, self.max_epochs, seed
        )
        self.module_ = decoder.double()  # predictions in float64: the same for a row alone or in any batch
        if multilabel:
            self.thresholds_ = self._choose_thresholds(features, y_index, seed)
        return self

    def _choose_thresholds(self, features, Y, seed) -> np.ndarray:
        """Each label's threshold: the best F1 on out-of-fold predictions of decoders trained as the final one.

        ``zero_shot_cv`` folds, stratified by each row's rarest label (at
        least 4, for fold models close to the final one); 0.5 for every label
        when a label has too few rows to fold.
        """
        folds = _multilabel_folds(Y, max(self.zero_shot_cv, 4), seed)
        if folds is None:
            return np.full(Y.shape[1], 0.5)
        proba = np.zeros(Y.shape)
        for train_idx, valid_idx in folds:
            decoder, _ = self._train(
                features[train_idx], Y[train_idx], [self.zero_shot_weight_], 0, self.n_epochs_, seed
            )
            proba[valid_idx] = expit(predict_logits(decoder.double(), features[valid_idx]))
        return choose_thresholds(Y, proba)

    def _train(self, features, y_index, zero_shot_weights, cv, max_epochs, seed):
        """The trained decoder (on the CPU), one head per zero-shot weight, and its number of epochs.

        ``y_index``: class indices, or a label-indicator matrix (multi-label).
        """
        width = features.shape[1] - len(self.classes_)
        multilabel = y_index.ndim == 2
        targets = y_index
        if len(zero_shot_weights) > 1:
            targets = np.repeat(y_index[..., None], len(zero_shot_weights), -1)
        return train_classifier(
            lambda X_train, y_train: _PrototypeDecoder(
                X_train,
                y_train,
                width,
                len(self.classes_),
                self.proto_dim,
                self.prototypes,
                self.normalize,
                zero_shot_weights,
                multilabel,
            ),
            features,
            targets,
            max_epochs=max_epochs,
            learning_rate=self.learning_rate,
            weight_decay=self.weight_decay,
            batch_size=self.batch_size,
            cv=cv,
            n_iter_no_change=self.n_iter_no_change,
            device=resolve_device(self.device),
            seed=seed,
            no_decay=("radius",),
            multilabel=multilabel,
            verbose=self.verbose,
        )

    def _choose_zero_shot_weight(self, features, y_index, seed) -> None:
        """Choose ``zero_shot_weight_`` by cross-validation on the training data (``zero_shot_weight="cv"``).

        On each fold, one decoder per candidate weight is trained (heads of
        one module, trained side by side from the same start, for
        ``max_epochs`` or the fewer epochs that hold ``zero_shot_cv_steps``
        gradient steps) and scored on the held-out rows. The one-standard-error
        rule then keeps the ``"auto"`` weight unless a smaller one is more
        accurate by more than a standard error. With a class of a single
        example nothing can be held out, and the ``"auto"`` weight stays.
        """
        multilabel = y_index.ndim == 2
        if multilabel:
            folds = _multilabel_folds(y_index, self.zero_shot_cv, seed)
        else:
            folds = _stratified_folds(y_index, self.zero_shot_cv, seed)
        if folds is None:
            return
        candidates = [factor * self.zero_shot_weight_ for factor in _CV_WEIGHT_FACTORS]
        errors = np.zeros((len(candidates), len(y_index)))
        for train_idx, valid_idx in folds:
            steps = steps_per_epoch(len(train_idx), self.batch_size)
            epochs = min(self.max_epochs, math.ceil(self.zero_shot_cv_steps / steps))  # whole epochs to hold them
            decoder, _ = self._train(features[train_idx], y_index[train_idx], candidates, 0, epochs, seed)
            logits = predict_logits(decoder.double(), features[valid_idx])  # (n_valid, n_classes, n_candidates)
            if multilabel:  # a row's error: its labels' binary cross-entropy
                target = y_index[valid_idx, :, None]
                errors[:, valid_idx] = (np.logaddexp(0, logits) - target * logits).sum(1).T
            else:
                errors[:, valid_idx] = (logits.argmax(1) != y_index[valid_idx, None]).T
        self.zero_shot_cv_scores_ = {
            weight: 1.0 - error for weight, error in zip(candidates, errors.mean(1), strict=True)
        }
        self.zero_shot_weight_ = candidates[_simplest_within_one_standard_error(errors)]

    def _fit_extra_inputs(self, classes, input_kind: str) -> list[tuple[str, list]]:
        """What :meth:`_prepare_zero_shot` embeds: the descriptions, and the content-free input it calibrates on."""
        if self.zero_shot_weight == 0:
            return []
        extra = []
        if self.label_words is None:
            descriptions = check_label_descriptions(self.label_descriptions, classes)
            extra.append(("descriptions", [text for texts in descriptions for text in texts]))
        calibration = self.calibration
        if calibration == "auto":
            calibration = "content_free" if self.label_words is not None else "train_mean"
        if calibration == "content_free":
            empty = {"numeric": ("descriptions", [""]), "texts": ("inputs", [""]), "pairs": ("inputs", [("", "")])}
            extra.append(empty[input_kind])
        return extra

    # ------------------------------------------------------------ zero shot
    def _prepare_zero_shot(self, H: np.ndarray, label_texts: list[list[str]]) -> None:
        """Choose the zero-shot source and calibration, embed what they need (the content-free input).

        ``label_texts`` are the label words or descriptions ``fit`` checked, one list per class.
        """
        if self.label_words is not None:
            if self.input_kind_ == "numeric":
                raise ValueError(
                    "label_words need texts, so that the masked LM's head can score them at the mask; "
                    "pass texts, or use label_descriptions with numeric representations."
                )
            self.zero_shot_source_ = "label_words"
        else:
            self.descriptions_ = label_texts
            flat = [text for texts in self.descriptions_ for text in texts]
            self.description_embeddings_ = self._embed_descriptions(flat)
            if self._description_projection(H.shape[1], self.description_embeddings_.shape[1]) is None:
                message = (
                    f"The input features ({H.shape[1]} wide) cannot be compared with the label descriptions "
                    "(another black box, or pair features without the sides 'u' and 'v')"
                )
                if self.zero_shot_weight not in ("auto", "cv"):
                    raise ValueError(f"{message}, so zero_shot_weight={self.zero_shot_weight!r} cannot be used.")
                warnings.warn(f"{message}: training a plain prototype network.", UserWarning, stacklevel=3)
                self.zero_shot_weight_ = 0.0
                self.descriptions_ = self.description_embeddings_ = None
                return
            self.zero_shot_source_ = "descriptions"
        self.calibration_ = self.calibration
        if self.calibration == "auto":
            self.calibration_ = "content_free" if self.zero_shot_source_ == "label_words" else "train_mean"
        if self.calibration_ == "content_free":
            empty = [("", "")] if self.input_kind_ == "pairs" else [""]
            if self.input_kind_ == "numeric":
                H_empty, empty_scores = self.description_embedder_.transform(empty), None
            else:
                H_empty, empty_scores = self._split(self._embed(empty))
            self.reference_scores_ = self._zero_shot_scores(H_empty, empty_scores)[0]

    def _reads_label_words(self) -> bool:
        """Whether one query per text gives the label-word scores along with the representation."""
        return self.label_words is not None and self.zero_shot_weight != 0 and self.input_kind_ != "numeric"

    def _embed(self, X) -> np.ndarray:
        """The representation, followed by the label words' logits (one column per entry) when used."""
        if not self._reads_label_words():
            return super()._embed(X)
        H, scores = self.embedder_._transform_and_label_word_scores(X, list(self.label_words.values()))
        return np.hstack([H, scores])

    def _split(self, A: np.ndarray):
        """``(representation, label-word logits in the order of classes_ or None)`` of what ``_embed`` gave."""
        if not self._reads_label_words():
            return A, None
        position = {_label_key(label): i for i, label in enumerate(self.label_words)}
        columns = [A.shape[1] - len(position) + position[_label_key(c)] for c in self.classes_]
        return A[:, : A.shape[1] - len(position)], A[:, columns]

    def _zero_shot_scores(self, H: np.ndarray, word_scores) -> np.ndarray | None:
        """Raw class scores: label-word logits at the mask, scaled similarities to descriptions, or None."""
        if self.zero_shot_source_ is None:
            return None
        if self.zero_shot_source_ == "label_words":
            return word_scores
        width, dim = H.shape[1], self.description_embeddings_.shape[1]
        # in float64, so that a row's scores do not depend on the batch it comes in
        H = np.asarray(H, dtype=np.float64)
        if not self._projects_as_identity(width, dim):
            H = H @ self._description_projection(width, dim)
        similarities = H @ self.description_embeddings_.T.astype(np.float64)
        best = _max_per_group(similarities, [len(texts) for texts in self.descriptions_])
        return best / self.similarity_temperature

    def _calibrated(self, scores, n_samples: int, multilabel: bool = False) -> np.ndarray:
        """The decoder's zero-shot input from raw scores: calibrated log-probabilities (or probabilities).

        Multi-label: each label's score less its reference (the training
        rows' mean, or the content-free input's score), a log-odds offset of
        its own; the labels are not normalised against each other.
        """
        if scores is None:
            return np.zeros((n_samples, len(self.classes_)))
        reference = np.zeros(scores.shape[1]) if self.reference_scores_ is None else self.reference_scores_
        if multilabel:
            return np.asarray(scores, dtype=np.float64) - reference
        log_q = _calibrated_log_probs(scores, reference)
        return log_q if self.fusion == "log_probs" else np.exp(log_q)

    # ----------------------------------------------------------- prediction
    def _representations(self, X) -> np.ndarray:
        """The decoder's input: the representation and the calibrated zero-shot probabilities."""
        H, word_scores = self._split(super()._representations(X))
        scores = self._zero_shot_scores(H, word_scores)
        return np.hstack([H, self._calibrated(scores, len(H), self._is_multilabel())])


def calibrate(scores, content_free) -> np.ndarray:
    """Calibrate zero-shot class scores by those of the content-free input.

    DecT's rule, ``q_c = p_c / c_c`` with ``c`` the content-free class
    probabilities divided by their mean, carried out in log space and
    renormalised over the classes::

        q = softmax(log_softmax(scores) - log_softmax(content_free))

    Any real scores (logits, negative or near-zero similarities) give a
    finite probability vector; a class the content-free input disfavours is
    raised, one it favours is lowered, and a uniform content-free input
    changes nothing.

    Parameters
    ----------
    scores : array-like of shape (n_samples, n_classes)
        Raw zero-shot scores (logits) of the inputs.
    content_free : array-like of shape (n_classes,)
        Raw zero-shot scores of the content-free input.

    Returns
    -------
    q : ndarray of shape (n_samples, n_classes)
        Calibrated class probabilities; each row sums to one.

    Examples
    --------
    >>> import numpy as np
    >>> from skcrosstune.dect import calibrate
    >>> calibrate(np.array([[2.0, 1.0]]), np.array([2.0, 1.0])).round(3)
    array([[0.5, 0.5]])
    >>> calibrate(np.array([[-3.0, -1.0]]), np.array([0.0, 0.0])).round(3)
    array([[0.119, 0.881]])
    """
    return np.exp(_calibrated_log_probs(scores, content_free))


def _calibrated_log_probs(scores, reference) -> np.ndarray:
    """``log`` of :func:`calibrate`, computed in log space (finite for any finite scores)."""
    scores = np.asarray(scores, dtype=np.float64)
    reference = np.asarray(reference, dtype=np.float64).reshape(1, -1)
    shifted = _log_softmax(scores) - _log_softmax(reference)
    return _log_softmax(shifted)


def _log_softmax(scores: np.ndarray) -> np.ndarray:
    return scores - np.logaddexp.reduce(scores, axis=1, keepdims=True)


class _PrototypeDecoder(nn.Module):
    """Prototype scores in a learned projection, plus the weighted zero-shot probabilities.

    One decoder per zero-shot weight, trained side by side as independent
    heads that start alike (the same projection, prototypes and radii); the
    cross-validation of the weight trains all its candidates in one pass.

    Parameters
    ----------
    X, y : torch.Tensor
        The training rows (representation then calibrated zero-shot
        probabilities) and their class indices (a column per head may be
        given; the first is used), to place the prototypes and radii.
    width, n_classes, proto_dim : int
    prototypes : {"random", "class_mean"}
    normalize : bool
        Unit-length projections.
    zero_shot_weights : sequence of float
        ``lambda`` of each head; the zero-shot columns of the input hold ``q``
        or ``log q``. The logits have shape ``(n_samples, n_classes)`` for one
        head, ``(n_samples, n_classes, n_heads)`` for several.
    """

    def __init__(self, X, y, width, n_classes, proto_dim, prototypes, normalize, zero_shot_weights, multilabel=False):
        super().__init__()
        if multilabel:  # a label-indicator matrix (a copy per head)
            y = y[..., 0] if y.ndim == 3 else y
        else:
            y = y[:, 0] if y.ndim == 2 else y
        heads = len(zero_shot_weights)
        self.width = width
        self.normalize = normalize
        self.register_buffer("zero_shot_weights", torch.tensor(zero_shot_weights, dtype=torch.float32))
        first = nn.Linear(width, proto_dim, bias=False).weight.detach()
        self.projection = nn.Parameter(first.expand(heads, -1, -1).clone())
        with torch.no_grad():
            v = self._project(X[:, :width])[0]
            if multilabel:  # a label's rows: those that carry it
                members = y.to(v.dtype)
                counts = members.sum(0)
            else:
                counts = torch.bincount(y, minlength=n_classes).to(v.dtype)
            if prototypes == "random":
                start = nn.functional.normalize(torch.randn(n_classes, proto_dim), dim=1)
            elif multilabel:
                start = (members.T @ v) / counts[:, None]
            else:
                start = v.new_zeros(n_classes, proto_dim).index_add_(0, y, v) / counts[:, None]
            if multilabel:
                radius = (members * _distances(v, start)).sum(0) / counts
            else:
                spread = _distances(v, start)[torch.arange(len(y)), y]
                radius = spread.new_zeros(n_classes).index_add_(0, y, spread) / counts
        start = start.expand(heads, -1, -1).clone()
        if prototypes == "random":
            self.register_buffer("prototypes", start)
        else:
            self.prototypes = nn.Parameter(start)
        self.radius = nn.Parameter(radius.expand(heads, -1).clone())

    def _project(self, h):
        """``(n_heads, n_samples, proto_dim)`` projections."""
        v = h @ self.projection.transpose(1, 2)
        return nn.functional.normalize(v, dim=2) if self.normalize else v

    def forward(self, features):
        v = self._project(features[:, : self.width])
        q = features[:, self.width :]
        logits = -_distances(v, self.prototypes) + self.radius[:, None] + self.zero_shot_weights[:, None, None] * q
        return logits[0] if len(logits) == 1 else logits.permute(1, 2, 0)


def _distances(v, prototypes):
    """Euclidean distances, with a gradient that stays finite when a point sits on its prototype.

    ``v`` is ``(..., n_samples, proto_dim)``, ``prototypes`` ``(..., n_classes,
    proto_dim)``. Squared distances are expanded into norms and one matrix
    product, never forming the ``(n_samples, n_classes, proto_dim)``
    differences (184 MB per step at 150 classes and 2,400 examples).
    """
    cross = v @ prototypes.transpose(-1, -2)
    squared = (v**2).sum(-1, keepdim=True) - 2 * cross + (prototypes**2).sum(-1)[..., None, :]
    return torch.sqrt(squared.clamp_min(0.0) + 1e-12)
