"""CrossTuneClassifier: label-enhanced cross-attention over black-box representations.

The method of CrossTune (Luo et al., LREC-COLING 2024, arXiv 2403.12468), as
built here:

1. Each class has one or more natural-language descriptions. The black box
   embeds them once (one cached query each), like any input text.
2. The few training examples enhance the labels: each description's key is
   the posterior mean of its class's direction, the description counting as
   ``description_weight`` examples and each training representation of the
   class as one, rescaled to unit length. With one example per class the
   descriptions dominate; with many, the examples do.
3. The input's representation ``h`` is projected to a query, the keys ``e``
   to keys per head ``k``::

       q_k = P h + A_k h,     key_k = e + B_k e,     s_k(c) = q_k . key_k(c)

   ``P`` is the fixed prior projection (the identity for texts; the mean of
   the two sides for separately embedded sentence pairs) and ``A_k``, ``B_k``
   are low-rank residuals that start at zero. Several descriptions of one
   class are attended over (a softmax over their scores).
4. The class means ``m_c`` also score as a nearest-centroid rule,
   ``h . m_c - |m_c|^2 / 2``, with a learned weight ``gamma``: zero at the
   start when the descriptions give a prior, one when they cannot (a pair's
   cosine feature alone).
5. The class logits are the head-averaged scores plus ``gamma`` times the
   prototype scores, times a learned inverse temperature, plus a direct
   linear read-out of ``h`` (zero at the start: for what descriptions cannot
   say) and a per-class bias, trained with cross-entropy (AdamW).
6. All of that is linear in ``h``; a class whose examples fall into several
   groups (the phrasings of one intent) is not. So each class's training
   representations are also clustered into up to ``n_subcentroids``
   k-means centres ``mu``, and their scores
   ``T logsumexp_j((h . mu_j - |mu_j|^2 / 2) / T)`` (a soft nearest
   sub-centroid rule) are added to the logits with a weight chosen on the
   held-out predictions of the cross-validation folds (centres from each
   fold's training rows), zero included: the smallest weight whose
   held-out accuracy is within one standard error of the best (of the
   row-by-row differences), as for the epochs.

Before any gradient step the residuals are zero, so the classifier predicts
what similarity between the text and the label-enhanced keys predicts; with
``max_epochs=0`` the keys are the bare descriptions and it is the zero-shot
classifier. Weight decay pulls the residuals back toward that prior, and the
number of epochs is chosen on internal cross-validation, counting zero
epochs as a candidate and taking the fewest epochs within one standard error
of the best held-out loss: training moves away from the label-enhanced prior
only as far as held-out data clearly supports.
"""

from __future__ import annotations

import copy
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
    _simplest_within_one_standard_error,
    _small_work_threads,
    resolve_device,
    torch_seed,
    train_classifier,
)
from ._validation import check_label_descriptions, check_memory, check_targets, count_inputs

__all__ = ["CrossTuneClassifier"]

# The sub-centroid scores: the temperature of their soft maximum over a class's centres, and the weights
# the held-out predictions choose from, the smallest first (the smallest within one standard error of the best).
_SUBCENTROID_TEMPERATURE = 0.1
_SUBCENTROID_WEIGHTS = (0.0, 2.5, 5.0, 10.0, 20.0, 40.0)


class CrossTuneClassifier(EmbeddingHeadClassifier):
    """Few-shot classification by cross-attention between inputs and label descriptions.

    Parameters
    ----------
    embedder : BlackBoxEmbedder, default=None
        The black box, as a nested estimator (so ``embedder__template`` and
        the like can be tuned). None uses ``BlackBoxEmbedder()`` on the
        embedded default model (for sentence pairs: the cosine of the two
        separately embedded sides, the best pair feature on the benchmark's
        pair tasks; with ``pair_features`` holding ``"u"`` and ``"v"`` the
        prior reads the mean of the two sides). When
        ``X`` is already numeric (after a BlackBoxEmbedder step in a
        Pipeline), ``embedder`` embeds only the label descriptions and must
        be the same black box as that step.

    label_descriptions : dict, default=None
        Label -> description, or list of descriptions, for every class. None
        builds one from each label name (``"not_entailment"`` reads
        ``"not entailment"``).

    description_weight : float or "auto", default="auto"
        How many training examples a class's descriptions count for in its
        label-enhanced keys: each key is the description's embedding averaged
        with the class's training representations, the description weighted
        ``description_weight`` and each example 1 (then rescaled to unit
        length). Small values trust the examples sooner; ``math.inf`` keeps
        the bare descriptions. ``"auto"``: 8, and 32 for multi-label targets,
        where a label's rows also carry other labels, so their mean speaks
        less for the label alone. Ignored when ``max_epochs=0``, which gives the
        pure zero-shot classifier, and when the inputs cannot be compared
        with the descriptions.

    n_heads : int, default=4
        Attention heads; each has its own low-rank query and key residuals.

    rank : int, default=8
        Rank of each residual projection.

    temperature : float, default=0.05
        Initial temperature of the scores (logits = similarity / temperature);
        learned during training.

    dropout : float, default=0.1
        Dropout on the input representation during training.

    max_epochs : int, default=300
        Upper bound on training epochs; 0 gives a pure zero-shot classifier
        from the descriptions.

    learning_rate : float, default=5e-3
        AdamW learning rate.

    weight_decay : float, default=1.0
        AdamW weight decay of the residual projections, i.e. the pull toward
        the zero-shot prior.

    batch_size : int, default=256
        Mini-batch size (a few-shot training set of up to 256 texts trains in
        full batches).

    cv : int or "auto", default="auto"
        Folds of the internal cross-validation that chooses the number of
        epochs (the fewest whose mean held-out loss is within one standard
        error of the best, the error taken over the held-out examples' paired
        differences from the best epoch), after which the model is retrained
        on all the data. Multi-label: the epoch of the lowest mean held-out
        loss, and each label's decision threshold, the one with the best F1
        on the folds' held-out predictions (``thresholds_``). ``"auto"``: 2
        folds, and 4 for multi-label targets, whose thresholds need fold
        models close to the one trained on all the data. When a class has a single example nothing can be
        validated, and the label-enhanced prior is kept as it is; without a
        prior (features from another black box, or pair features without
        ``u`` and ``v``) ``max_epochs`` are trained. 0 or 1 trains
        ``max_epochs`` without validation.

    n_subcentroids : int, default=2
        k-means centres per class (fewer for a class with fewer examples)
        whose soft nearest-centre scores are added to the logits, with a
        weight chosen among ``(0, 2.5, 5, 10, 20, 40)`` by the accuracy of
        the cross-validation folds' held-out predictions (the centres then
        come from each fold's training rows). They let a class whose
        examples form several groups be told apart where the rest of the
        model, linear in the input, cannot. 0 turns them off; without
        cross-validation (``cv < 2``, one example in a class, or
        ``max_epochs=0``) their weight is 0.

    n_iter_no_change : int, default=10
        Epochs without a better held-out loss before a fold stops (when an
        epoch is more than two mini-batches: three epochs and
        ``2 * n_iter_no_change`` steps, so many-class training sets do not
        pay for long epochs).

    device : str, default="auto"
        Where training runs: ``"auto"`` (CUDA when present), ``"cpu"``,
        ``"cuda"``... The fitted model always lives on the CPU.

    random_state : int, RandomState instance or None, default=None
        Seeds initialisation, the internal split, shuffling and dropout; the
        same value gives identical predictions on the CPU.

    verbose : bool, default=False
        Progress bars while embedding and training.

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
        The labels seen in ``fit``.

    embedder_ : BlackBoxEmbedder or None
        The fitted clone of ``embedder`` for the inputs (None for numeric input).

    description_embedder_ : BlackBoxEmbedder
        The fitted clone of ``embedder`` that embedded the descriptions.

    descriptions_ : list of list of str
        The descriptions used, per class in the order of ``classes_``.

    description_embeddings_ : ndarray of shape (n_descriptions, dim)
        Their black-box embeddings.

    module_ : torch.nn.Module
        The trained cross-attention network with its fixed parts multiplied
        out, in float64 on the CPU: one score vector per head and
        description, or, when every class has one description, a single
        linear map and bias. Predictions do not depend on the batch a row
        comes in.

    n_epochs_ : int
        Epochs of the final training (0: the label-enhanced prior was kept).

    subcentroid_weight_ : float
        The weight of the sub-centroid scores in the logits (0: not used):
        the smallest candidate whose held-out accuracy is within one
        standard error of the best.

    subcentroid_cv_scores_ : dict or None
        Held-out accuracy of the folds' predictions for each candidate
        weight; None when there was no cross-validation or
        ``n_subcentroids=0``.

    input_kind_ : {"texts", "pairs", "numeric"}
        What ``fit`` was given.

    n_features_in_ : int
        Width of numeric input; for texts, the input columns (1 for texts, 2
        for sentence pairs).

    feature_names_in_ : ndarray of shape (`n_features_in_`,)
        Column names, when fitted on a DataFrame with string column names.

    See Also
    --------
    BlackBoxEmbedder : The black box and its query cache.

    Notes
    -----
    The learned inverse temperature plays the role of the
    ``1/sqrt(d)`` scaling of scaled dot-product attention.

    References
    ----------
    .. [1] D. Luo, C. Zhang, Y. Zhang and H. Li, "CrossTune: Black-Box
       Few-Shot Classification with Label Enhancement", LREC-COLING 2024,
       arXiv:2403.12468.

    Examples
    --------
    >>> from skcrosstune import CrossTuneClassifier
    >>> texts = ["a joyful, moving film", "loved every minute", "dull and lifeless", "a tedious mess"]
    >>> labels = ["positive", "positive", "negative", "negative"]
    >>> clf = CrossTuneClassifier(
    ...     label_descriptions={"positive": "a glowing review", "negative": "a scathing review"},
    ...     random_state=0,
    ... ).fit(texts, labels)
    >>> clf.predict(["an absolute delight"])
    array(['positive'], dtype='<U8')
    """

    _parameter_constraints: dict = {
        "embedder": [HasMethods(["fit", "transform"]), None],
        "label_descriptions": [dict, None],
        "description_weight": [Interval(Real, 0, None, closed="both"), StrOptions({"auto"})],
        "n_heads": [Interval(Integral, 1, None, closed="left")],
        "rank": [Interval(Integral, 1, None, closed="left")],
        "temperature": [Interval(Real, 0, None, closed="neither")],
        "dropout": [Interval(Real, 0, 1, closed="left")],
        "max_epochs": [Interval(Integral, 0, None, closed="left")],
        "learning_rate": [Interval(Real, 0, None, closed="neither")],
        "weight_decay": [Interval(Real, 0, None, closed="left")],
        "batch_size": [Interval(Integral, 1, None, closed="left")],
        "cv": [Interval(Integral, 0, None, closed="left"), StrOptions({"auto"})],
        "n_subcentroids": [Interval(Integral, 0, None, closed="left")],
        "n_iter_no_change": [Interval(Integral, 1, None, closed="left")],
        "device": [DeviceOptions()],
        "random_state": ["random_state"],
        "verbose": ["verbose"],
    }

    def __init__(
        self,
        embedder=None,
        label_descriptions=None,
        *,
        description_weight="auto",
        n_heads=4,
        rank=8,
        temperature=0.05,
        dropout=0.1,
        max_epochs=300,
        learning_rate=5e-3,
        weight_decay=1.0,
        batch_size=256,
        cv="auto",
        n_subcentroids=2,
        n_iter_no_change=10,
        device="auto",
        random_state=None,
        verbose=False,
    ):
        self.embedder = embedder
        self.label_descriptions = label_descriptions
        self.description_weight = description_weight
        self.n_heads = n_heads
        self.rank = rank
        self.temperature = temperature
        self.dropout = dropout
        self.max_epochs = max_epochs
        self.learning_rate = learning_rate
        self.weight_decay = weight_decay
        self.batch_size = batch_size
        self.cv = cv
        self.n_subcentroids = n_subcentroids
        self.n_iter_no_change = n_iter_no_change
        self.device = device
        self.random_state = random_state
        self.verbose = verbose

    def _fit_extra_inputs(self, classes, input_kind: str) -> list[tuple[str, list]]:
        """The label descriptions, embedded after ``X``."""
        descriptions = check_label_descriptions(self.label_descriptions, classes)
        return [("descriptions", [text for texts in descriptions for text in texts])]

    @_with_x_parameter
    @_fit_context(prefer_skip_nested_validation=False)
    def fit(self, X, y):
        """Embed inputs and label descriptions, then train the cross-attention network.

        {X, y}

        Returns
        -------
        self : CrossTuneClassifier
            The fitted classifier.
        """
        # everything is checked before the first paid query
        self.classes_, y_index, multilabel = check_targets(y, count_inputs(X))
        check_memory(len(y_index), len(self.classes_), type(self).__name__)
        self.descriptions_ = check_label_descriptions(self.label_descriptions, self.classes_)
        H = self._fit_representations(X)

        flat = [text for texts in self.descriptions_ for text in texts]
        E = self._embed_descriptions(flat)
        self.description_embeddings_ = E
        # texts: the input already lives in the description space, so there is no prior to store or multiply
        identity = self._projects_as_identity(H.shape[1], E.shape[1])
        prior = None if identity else self._prior_projection(H.shape[1], E.shape[1])
        has_prior = identity or bool(prior.any())
        owner = np.repeat(np.arange(len(self.classes_)), [len(t) for t in self.descriptions_])

        # the examples enhance the keys only when they are learned from and can be compared with the descriptions
        kappa = _auto(self.description_weight, 8.0, 32.0, multilabel) if self.max_epochs > 0 and has_prior else math.inf

        def make_network(X_train, y_train):
            if multilabel:  # a label's mean over the rows that carry it
                counts = y_train.sum(0)
                means = (y_train.T @ X_train) / counts[:, None]
            else:
                means = _class_means(X_train, y_train, len(self.classes_))
                counts = torch.bincount(y_train, minlength=len(self.classes_))
            in_description_space = means if prior is None else means @ torch.as_tensor(prior)
            keys = _enhanced_keys(E, owner, in_description_space, counts, kappa)
            network = _CrossAttentionNetwork(
                prior, keys, owner, means, has_prior, self.n_heads, self.rank, self.temperature, self.dropout
            )
            if multilabel:
                _center_label_biases(network, X_train, y_train)
            return network

        seed = torch_seed(self.random_state)
        rows, targets = torch.as_tensor(H), torch.as_tensor(y_index)  # in float64 a fold at a time
        if multilabel:  # the held-out logits themselves, to choose each label's threshold on
            held_out = {"summarizer": lambda train_idx, valid_idx: np.copy}
        else:
            held_out = {
                "summarizer": lambda train_idx, valid_idx: self._subcentroid_hits(rows, targets, train_idx, valid_idx)
            }
        network, self.n_epochs_ = train_classifier(
            make_network,
            H,
            y_index,
            max_epochs=self.max_epochs,
            learning_rate=self.learning_rate,
            weight_decay=self.weight_decay,
            batch_size=self.batch_size,
            cv=_auto(self.cv, 2, 4, multilabel),
            n_iter_no_change=self.n_iter_no_change,
            device=resolve_device(self.device),
            seed=seed,
            no_decay=("log_scale", "bias"),
            epochs_without_cv=0 if has_prior else None,
            paired=True,
            out_of_fold=held_out if self.n_subcentroids > 0 or multilabel else None,
            multilabel=multilabel,
            verbose=self.verbose,
        )
        self.module_ = network.folded()
        self.subcentroid_weight_, self.subcentroid_cv_scores_ = 0.0, None
        self.thresholds_ = _thresholds(y_index, held_out) if multilabel else None
        if "summaries" in held_out and not multilabel:
            self._add_subcentroids(rows, targets, held_out["summaries"])
        return self

    def _subcentroid_hits(self, H, y, train_idx, valid_idx):
        """For one fold: which held-out rows each candidate weight of the sub-centroid scores gets right.

        The returned function maps the fold's held-out logits after an epoch
        to ``(n_weights, n_valid)`` booleans (centres from the fold's
        training rows). Only these are kept for each epoch until the epoch
        is chosen, not the logits (``n_valid x n_classes`` floats): the
        weight's choice needs no more.
        """
        with _small_work_threads("cpu"):
            n_classes, valid = len(self.classes_), H[valid_idx].double()
            centres, mask = _subcentroids(H[train_idx], y[train_idx], n_classes, self.n_subcentroids)
            scores = _subcentroid_scores(valid, centres, mask, _SUBCENTROID_TEMPERATURE)
        weights = torch.tensor(_SUBCENTROID_WEIGHTS, dtype=torch.float64)[:, None, None]
        target = y[valid_idx]

        def hits(logits):
            logits = torch.as_tensor(logits, dtype=torch.float64)
            return ((logits + weights * scores).argmax(-1) == target).numpy()

        return hits

    def _add_subcentroids(self, H, y, hits) -> None:
        """Choose the weight of the sub-centroid scores on the folds' held-out predictions; add them if not 0.

        ``hits`` holds, for each fold, which of its held-out rows each candidate weight gets right.
        """
        hits = np.concatenate(hits, axis=1)
        self.subcentroid_cv_scores_ = dict(zip(_SUBCENTROID_WEIGHTS, map(float, hits.mean(1)), strict=True))
        # as for the epochs: the smallest weight the held-out rows cannot tell from the best, row by row
        choice = _simplest_within_one_standard_error(1.0 - hits, paired=True)
        self.subcentroid_weight_ = _SUBCENTROID_WEIGHTS[choice]
        if self.subcentroid_weight_ > 0:
            with _small_work_threads("cpu"):
                centres, mask = _subcentroids(H, y, len(self.classes_), self.n_subcentroids)
            self.module_.add_subcentroids(centres, mask, self.subcentroid_weight_, _SUBCENTROID_TEMPERATURE)

    def _prior_projection(self, width: int, dim: int) -> np.ndarray:
        """The fixed map from input features to the description space (the zero-shot prior)."""
        projection = self._description_projection(width, dim)
        if projection is not None:
            return projection
        if width != dim and self.input_kind_ == "numeric":
            warnings.warn(
                f"The input representations have {width} features but the descriptions {dim}: they do not "
                "come from the same black box, so training starts without the zero-shot prior.",
                UserWarning,
                stacklevel=3,
            )
        return np.zeros((width, dim), dtype=np.float32)


class _CrossAttentionNetwork(nn.Module):
    """Multi-head cross-attention from an input representation to label descriptions (the trained form).

    Parameters
    ----------
    prior : ndarray of shape (width, dim) or None
        Fixed projection of the input into the description space; None for
        the identity (texts), which is neither stored nor multiplied.
    descriptions : ndarray of shape (n_descriptions, dim)
        Description embeddings.
    owner : ndarray of shape (n_descriptions,)
        Class index of each description.
    prototypes : torch.Tensor of shape (n_classes, width)
        The class means of the training representations.
    has_prior : bool
        Whether the input can be compared with the descriptions at all.
    n_heads, rank : int
    temperature, dropout : float
    """

    def __init__(self, prior, descriptions, owner, prototypes, has_prior, n_heads, rank, temperature, dropout):
        super().__init__()
        width, dim = prototypes.shape[1], descriptions.shape[1]
        n_classes = len(prototypes)
        counts = np.bincount(owner, minlength=n_classes)
        # each class's descriptions side by side, padded to the largest count (mask: which are real)
        order = np.argsort(owner, kind="stable")
        slot = np.arange(len(owner)) - np.repeat(np.cumsum(counts) - counts, counts)
        keys = np.zeros((n_classes, counts.max(), dim), dtype=np.float32)
        keys[owner[order], slot] = descriptions[order]
        mask = np.arange(counts.max()) < counts[:, None]
        self.register_buffer("prior", None if prior is None else torch.as_tensor(prior))
        self.register_buffer("keys", torch.as_tensor(keys))
        self.register_buffer("key_mask", torch.as_tensor(mask))
        # Residuals A = query_in @ query_out and B = key_in @ key_out start at zero.
        self.query_in = nn.Parameter(torch.randn(n_heads, width, rank) / math.sqrt(width))
        self.query_out = nn.Parameter(torch.zeros(n_heads, rank, dim))
        self.key_in = nn.Parameter(torch.randn(n_heads, dim, rank) / math.sqrt(dim))
        self.key_out = nn.Parameter(torch.zeros(n_heads, rank, dim))
        self.log_scale = nn.Parameter(torch.tensor(math.log(1.0 / temperature)))
        self.register_buffer("prototypes", prototypes)
        # The weight of the prototype scores starts at zero, where the descriptions give a prior;
        # without one (e.g. a pair's cosine feature alone) the model starts as a nearest-centroid rule.
        self.gamma = nn.Parameter(torch.tensor(0.0 if has_prior else 1.0))
        # a direct linear read-out of the input, zero at the start, for what
        # the descriptions cannot express (e.g. the similarity of a pair's sides)
        self.linear = nn.Parameter(torch.zeros(width, n_classes))
        self.bias = nn.Parameter(torch.zeros(n_classes))
        self.drop = nn.Dropout(dropout)

    def _score_parts(self):
        """The network as a function of ``h``: score vectors (or None), linear map and bias.

        A score ``q_k . key_k(c)`` is linear in ``h``: ``h . w_k(c)`` with
        ``w_k(c) = P key_k(c) + A_k key_k(c)``. So every head and description
        needs one input-space vector, built from the parameters in a few
        (heads x descriptions x dim x rank) products, and when every class has
        a single description (no attention to take) the whole classifier is
        one linear map plus a bias. Training and prediction both use this
        form: a step costs one ``n x width x classes`` product rather than
        per-head queries scored against per-head keys.
        """
        n_heads, width = self.query_in.shape[:2]
        n_classes, m, dim = self.keys.shape
        keys = self.keys.reshape(1, n_classes * m, dim)
        keys = keys + (keys @ self.key_in) @ self.key_out  # (head, class * m, dim)
        vectors = keys if self.prior is None else keys @ self.prior.T
        vectors = vectors + (keys @ self.query_out.transpose(1, 2)) @ self.query_in.transpose(1, 2)
        scale = self.log_scale.exp()
        linear = self.linear + scale * self.gamma * self.prototypes.T
        bias = self.bias - 0.5 * scale * self.gamma * (self.prototypes**2).sum(1)
        vectors = scale * vectors.reshape(n_heads, n_classes, m, width)
        if m == 1:
            return None, linear + vectors[:, :, 0].mean(0).T, bias
        return vectors, linear, bias

    def forward(self, h):
        vectors, linear, bias = self._score_parts()
        return _attend(self.drop(h), vectors, self.key_mask, linear, bias)

    @torch.no_grad()
    def folded(self) -> _FoldedCrossAttention:
        """The same function of the input, with the fixed parts multiplied out, in float64."""
        vectors, linear, bias = copy.deepcopy(self).double()._score_parts()
        return _FoldedCrossAttention(vectors, None if vectors is None else self.key_mask, linear, bias)


def _attend(h, vectors, mask, linear, bias):
    """``h @ linear + bias``, plus, with score vectors, the head-averaged attention over each class's scores."""
    logits = h @ linear + bias
    if vectors is None:
        return logits
    scores = torch.einsum("np,hcmp->nhcm", h, vectors)
    weights = torch.softmax(scores.masked_fill(~mask, -torch.inf), dim=-1)
    return logits + (weights * scores.masked_fill(~mask, 0.0)).sum(-1).mean(1)


class _FoldedCrossAttention(nn.Module):
    """The fitted cross-attention network as prediction needs it (float64, on the CPU).

    ``logits = h @ linear + bias``, plus, when a class has several
    descriptions, the head-averaged attention over the scores ``h . w``, plus,
    once :meth:`add_subcentroids` has given them a weight, the weighted soft
    nearest sub-centroid scores.

    Parameters
    ----------
    vectors : torch.Tensor of shape (n_heads, n_classes, n_per_class, width) or None
        The scaled score vectors of every head and description.
    mask : torch.Tensor of shape (n_classes, n_per_class) or None
        Which of ``vectors`` are descriptions (classes have different counts).
    linear : torch.Tensor of shape (width, n_classes)
    bias : torch.Tensor of shape (n_classes,)
    """

    def __init__(self, vectors, mask, linear, bias):
        super().__init__()
        self.register_buffer("vectors", vectors)
        self.register_buffer("mask", mask)
        self.register_buffer("linear", linear.contiguous())
        self.register_buffer("bias", bias)
        self.register_buffer("centres", None)
        self.register_buffer("centre_mask", None)
        self.subcentroid_weight = 0.0
        self.subcentroid_temperature = 1.0

    def add_subcentroids(self, centres, mask, weight: float, temperature: float) -> None:
        """Add ``weight`` times the soft nearest sub-centroid scores of ``centres`` to the logits."""
        self.centres, self.centre_mask = centres.double(), mask
        self.subcentroid_weight, self.subcentroid_temperature = float(weight), float(temperature)

    def forward(self, h):
        logits = _attend(h, self.vectors, self.mask, self.linear, self.bias)
        if self.centres is None:
            return logits
        scores = _subcentroid_scores(h, self.centres, self.centre_mask, self.subcentroid_temperature)
        return logits + self.subcentroid_weight * scores


def _auto(value, single, multilabel_value, multilabel: bool):
    """A parameter's value, ``"auto"`` resolved for single-label or multi-label targets."""
    if isinstance(value, str) and value == "auto":
        return multilabel_value if multilabel else single
    return value


def _center_label_biases(network, X, Y) -> None:
    """Set each label's bias so that its mean logit over the training rows is the log-odds of its frequency.

    The descriptions' similarities say which inputs suit a label more than
    others, not where yes turns into no: this puts the untrained network's
    sigmoid at the label's base rate, so a label starts neither always on
    nor always off.
    """
    with torch.no_grad():
        network.eval()
        rate = Y.mean(0).clamp(1e-3, 1 - 1e-3)
        network.bias += torch.logit(rate) - network(X).mean(0)
        network.train()


def _thresholds(Y, held_out: dict) -> np.ndarray:
    """Each label's threshold, chosen on the out-of-fold predictions of the internal cross-validation.

    0.5 for every label when no folds were possible (too few examples of a
    label, or ``cv`` below 2).
    """
    if "summaries" not in held_out:
        return np.full(Y.shape[1], 0.5)
    proba = np.zeros(Y.shape, dtype=np.float64)
    for (_, valid_idx), logits in zip(held_out["folds"], held_out["summaries"], strict=True):
        proba[valid_idx] = expit(logits)
    return choose_thresholds(Y, proba)


def _class_means(X, y, n_classes: int):
    """The mean training representation of each class (rows ``X``, class indices ``y``)."""
    sums = torch.zeros(n_classes, X.shape[1], dtype=X.dtype).index_add_(0, y, X)
    return sums / torch.bincount(y, minlength=n_classes).to(X.dtype)[:, None]


def _subcentroids(X, y, n_classes: int, k: int, n_iter: int = 10):
    """Up to ``k`` k-means centres of each class's rows, all classes at once.

    Each class starts from its row farthest from the class mean, then the
    row farthest from the centres chosen so far (deterministic), followed by
    ``n_iter`` Lloyd steps; a centre left without rows stays where it was.
    A class of ``n < k`` rows has ``n`` centres.

    Parameters
    ----------
    X : torch.Tensor of shape (n_samples, width)
        Copied by class into one float64 array (a float32 ``X`` is not
        converted as a whole first: one copy of the rows, not two).
    y : torch.Tensor of shape (n_samples,)
        Class indices; every class has a row.
    n_classes, k, n_iter : int

    Returns
    -------
    centres : torch.Tensor of shape (n_classes, k, width), float64
    mask : torch.Tensor of shape (n_classes, k)
        Which centres are real.
    """
    counts = torch.bincount(y, minlength=n_classes)
    order = torch.argsort(y, stable=True)
    slot = torch.arange(len(y)) - torch.repeat_interleave(torch.cumsum(counts, 0) - counts, counts)
    points = torch.zeros(n_classes, int(counts.max()), X.shape[1], dtype=torch.float64)
    points[y[order], slot] = X[order].double()
    valid = torch.arange(points.shape[1]) < counts[:, None]
    mask = torch.arange(k) < counts[:, None]
    rows = torch.arange(n_classes)
    norms = (points**2).sum(-1)

    def squared_distances(centres):  # (class, row, centre), by norms and one product
        return norms[..., None] - 2 * points @ centres.transpose(1, 2) + (centres**2).sum(-1)[:, None]

    mean = points.sum(1) / counts[:, None]  # the padding rows are zeros
    farthest = squared_distances(mean[:, None])[..., 0]
    chosen = []
    for _ in range(k):
        chosen.append(points[rows, farthest.masked_fill(~valid, -torch.inf).argmax(1)])
        nearest = squared_distances(chosen[-1][:, None])[..., 0]
        farthest = nearest if len(chosen) == 1 else torch.minimum(farthest, nearest)
    centres, assign = torch.stack(chosen, 1), None
    for _ in range(n_iter):
        previous, assign = assign, squared_distances(centres).masked_fill(~mask[:, None], torch.inf).argmin(-1)
        if previous is not None and torch.equal(assign, previous):
            break
        members = nn.functional.one_hot(assign, k).to(points.dtype) * valid[..., None]
        sizes = members.sum(1)[..., None]
        centres = torch.where(sizes > 0, members.transpose(1, 2) @ points / sizes.clamp_min(1), centres)
    return centres, mask


def _subcentroid_scores(h, centres, mask, temperature: float):
    """Each class's soft nearest-centre score: ``T logsumexp_j((h . mu_j - |mu_j|^2 / 2) / T)`` over its centres."""
    n_classes, k, width = centres.shape
    scores = (h @ centres.reshape(-1, width).T).reshape(-1, n_classes, k) - 0.5 * (centres**2).sum(-1)
    return temperature * torch.logsumexp(scores.masked_fill(~mask, -torch.inf) / temperature, dim=-1)


def _enhanced_keys(descriptions, owner, means, counts, kappa: float) -> np.ndarray:
    """Description embeddings enhanced by the training examples of their class.

    Each key is the posterior mean of its class's direction: the description
    counts as ``kappa`` pseudo-examples and each of the class's ``counts``
    training representations (whose mean ``means`` is already in the
    description space) as one; rescaled to unit length. ``kappa=inf`` keeps
    the bare descriptions.
    """
    if math.isinf(kappa):
        return descriptions
    E, owner = torch.as_tensor(descriptions, dtype=torch.float32), torch.as_tensor(owner)
    n = counts.to(E.dtype)[owner, None]
    keys = (kappa * E + n * means[owner]) / (kappa + n)
    return torch.nn.functional.normalize(keys, dim=1).numpy()
