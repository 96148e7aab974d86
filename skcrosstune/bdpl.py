"""BlackBoxPromptClassifier: a discrete prompt learned through the black box by policy gradient.

The method of BDPL, "Black-box Prompt Learning for Pre-trained Language
Models" (Diao et al., TMLR 2023, arXiv 2201.08531), as built here:

1. Prompt candidates are n-grams mined from the training texts: adjacent
   words with a high pointwise mutual information are merged into n-grams of
   up to ``max_ngram_length`` words, and the ``n_candidates`` most frequent
   are kept (:func:`skcrosstune._ngrams.mine_ngrams`).
2. The prompt has ``prompt_length`` slots; slot ``i`` holds a categorical
   distribution ``p_i`` over the candidates, uniform at the start. The
   prompted input is ``template`` filled with the prompt (the slots' n-grams
   joined by spaces) and the text.
3. Each step draws ``sample_size`` prompts from the distributions, asks the
   black box for the class scores of the prompted mini-batch, and computes
   each prompt's loss ``L_k`` (cross-entropy or margin). The gradient is the
   variance-reduced score-function estimate::

       g = 1 / (K - 1) * sum_k (L_k - mean(L)) * grad log P(prompt_k)

   where ``grad log P`` is ``1 / p_i[j]`` at each slot's sampled candidate
   ``j`` and zero elsewhere. AdamW takes the clipped step, and each slot is
   projected back onto the probability simplex, exactly.
4. After every pass over the training data the most likely prompt (each
   slot's arg-max) is scored on a held-out split, and a copy of the best
   distribution is kept. The prompt-free input is scored first, so a
   learned prompt is used only when it does better on held-out data.

Class scores come from one of three black boxes: the log-probabilities of
label words at the mask of a masked LM (a :class:`BlackBoxEmbedder` with
``pooling="mask"``); the log-probabilities of label words as the first token
of a chat model's answer (:class:`~skcrosstune.backends.openai_logprobs.OpenAILogProbBackend`);
or, on any embedding model, the cosine similarities between the prompted
text and the label descriptions. Every prompted text goes through the query
store, and ``max_queries`` bounds what the search may ask for.
"""

from __future__ import annotations

import copy
import os
from numbers import Integral, Real

import numpy as np
import torch
from sklearn.base import clone
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted

from ._base import EmbeddingHeadClassifier
from ._compat import HasMethods, Interval, StrOptions, _check_feature_names, _fit_context
from ._ngrams import mine_ngrams, project_onto_simplex
from ._training import steps_per_epoch, torch_seed
from ._validation import (
    _preview,
    check_label_descriptions,
    check_label_word_groups,
    check_labels,
    check_texts,
    template_fields,
)
from .backends.openai_logprobs import label_word_fingerprint
from .cache import ProcessCountersMixin, QueryEstimate, estimate_queries, query_through_store
from .embedder import BlackBoxEmbedder, _max_per_group, _row_norms
from .stores import open_store

__all__ = ["BlackBoxPromptClassifier"]

#: Temperature of cosine similarities when none is given (log-probabilities use 1).
SIMILARITY_TEMPERATURE = 0.05


class BlackBoxPromptClassifier(ProcessCountersMixin, EmbeddingHeadClassifier):
    """Few-shot classification by a discrete prompt searched through the black box (BDPL).

    Parameters
    ----------
    embedder : BlackBoxEmbedder, OpenAILogProbBackend or None, default=None
        The black box. A :class:`BlackBoxEmbedder` with ``pooling="mask"``
        scores ``label_words`` at the mask of a masked LM; any other
        BlackBoxEmbedder (None: ``BlackBoxEmbedder()`` on the embedded
        default model) scores classes by the cosine similarity of the
        prompted text to ``label_descriptions``; an object with
        ``label_word_log_probs(items, label_words)`` and ``fingerprint()``,
        such as :class:`~skcrosstune.backends.openai_logprobs.OpenAILogProbBackend`,
        gives log-probabilities of ``label_words`` directly, kept in ``store``.

    label_words : dict or list, default=None
        For label-word black boxes: label -> word (or list of words, whose
        best score stands for the class), or one entry per class in the order
        of ``classes_``. An embedding black box refuses them.

    label_descriptions : dict, default=None
        For embedding black boxes: label -> description (or list of them,
        the closest counts). None builds one from each label name. A
        label-word black box refuses them.

    template : str, default="{prompt} {text}"
        Where the prompt goes: ``{prompt}`` and ``{text}`` once each. A mask
        template of the embedder is applied around the result.

    prompt_length : int, default=10
        Slots of the prompt, each filled with one candidate n-gram.

    n_candidates : int, default=200
        The most frequent mined n-grams each slot chooses from (fewer when
        the training texts hold fewer).

    sample_size : int, default=20
        Prompts drawn per step; their mean loss is the baseline of the
        variance-reduced gradient.

    batch_size : int, default=32
        Training texts per step. A step asks the black box about at most
        ``sample_size * batch_size`` prompted texts.

    max_steps : int, default=100
        Upper bound on optimisation steps.

    max_queries : int or None, default=20000
        Upper bound on the prompted texts the search asks the black box about
        (training steps and held-out evaluations, each distinct input once
        per request, whether the store or the black box answers it, so the
        result does not depend on the store). None: no bound.

    learning_rate : float, default=0.05
        AdamW learning rate of the slot distributions.

    weight_decay : float, default=0.01
        AdamW weight decay (after the projection, a pull toward uniform slots).

    max_grad_norm : float, default=3.0
        The gradient is clipped to this norm before each step.

    loss : {"cross_entropy", "margin"}, default="cross_entropy"
        Per-sample loss on the scores divided by ``temperature``: the
        cross-entropy, or the hinge ``max(0, margin - (s_y - max_{c != y} s_c))``.

    margin : float, default=1.0
        The margin of ``loss="margin"``.

    temperature : float or None, default=None
        Scores are divided by it before the loss and the softmax of
        :meth:`predict_proba`. None: 1 for log-probabilities, 0.05 for
        cosine similarities.

    validation_fraction : float, default=0.25
        Share of each class held out to choose the best prompt (at least one
        example per class). When a class has a single example, or with 0,
        prompts are chosen on the training data itself.

    max_ngram_length : int, default=5
        The longest candidate n-gram, in words.

    min_pmi : float, default=1.0
        Pointwise mutual information (natural log) above which two adjacent
        words, seen together at least twice, are merged into an n-gram.

    min_ngram_count : int, default=1
        The fewest occurrences of a candidate in the training texts.

    store : "auto", str, path or None, default="auto"
        Where the answers of a log-probability black box are kept, resolved
        each time it is queried, on the machine running (as for
        :class:`BlackBoxEmbedder`, whose own ``store`` serves the other black
        boxes).

    random_state : int, RandomState instance or None, default=None
        Seeds the held-out split, the mini-batches and the sampled prompts;
        the same value gives the same prompt.

    verbose : bool, default=False
        A progress bar over the optimisation steps.

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
        The labels seen in ``fit``.

    n_features_in_ : int
        Always 1: one text per sample.

    feature_names_in_ : ndarray of shape (1,)
        The column name, when fitted on a one-column DataFrame with a string
        column name.

    black_box_ : {"mask", "log_probs", "similarity"}
        Which kind of black box scored the classes.

    embedder_ : BlackBoxEmbedder or None
        The fitted clone of ``embedder`` (None for a log-probability black box).

    description_embedder_ : BlackBoxEmbedder
        The fitted clone that embedded the label descriptions (similarity black box only).

    description_embeddings_ : ndarray of shape (n_descriptions, dim)
        Their unit-length embeddings (similarity black box only).

    description_owner_ : ndarray of shape (n_descriptions,)
        The class index of each description (similarity black box only).

    log_prob_backend_ : object
        A copy of ``embedder`` (log-probability black box only).

    temperature_ : float
        The temperature used.

    label_words_ : list of list of str
        The label words per class (label-word black boxes only).

    candidates_ : ndarray of shape (n_mined,), dtype object
        The mined n-grams a slot chooses from.

    distribution_ : ndarray of shape (prompt_length, n_mined)
        A copy of the slot distributions at the best held-out evaluation.

    prompt_indices_ : ndarray of shape (prompt_length,) or (0,)
        The candidates of the chosen prompt; empty when no prompt did better
        than none.

    prompt_ : str
        The chosen prompt as text (``""`` for none).

    best_score_ : float
        Held-out accuracy of the chosen prompt.

    history_ : list of dict
        Every held-out evaluation: step, queries so far, prompt, accuracy, loss.

    n_steps_ : int
        Optimisation steps taken.

    n_requested_ : int
        Prompted inputs the search asked for (what ``max_queries`` bounds).

    n_queries_ : int
        Inputs this process sent to the black box since ``fit`` (label
        descriptions and predictions included: every prompted text is new to
        the black box), or since the model was loaded: an unpickled model
        starts at 0.

    n_cache_hits_ : int
        Inputs the store answered for this process since ``fit`` or loading.

    n_tokens_ : int
        Tokens the queries of ``n_queries_`` used, as the black box reports
        them (an API's ``usage``, a local model's tokenizer).

    See Also
    --------
    CrossTuneClassifier : Few-shot learning on black-box embeddings, with no
        search through the black box.

    Notes
    -----
    The search is what makes the method costly: each step asks about
    ``sample_size`` times as many texts as it trains on, and at prediction
    time every prompted text is a new query. Read ``n_requested_`` and
    ``n_queries_`` to see the price.

    Differences from the reference code: candidates come from the training
    texts given to ``fit``; a pair of words must be seen twice before it is
    merged (in a few-shot corpus every pair seen once has a high PMI); the
    prompt-free input competes in the held-out selection; and the best
    distribution is copied, not referenced, so the best one is the one used.

    References
    ----------
    .. [1] S. Diao, Z. Huang, R. Xu, X. Li, Y. Lin, X. Zhou and T. Zhang,
       "Black-box Prompt Learning for Pre-trained Language Models", TMLR 2023,
       arXiv:2201.08531.

    Examples
    --------
    >>> from skcrosstune import BlackBoxPromptClassifier
    >>> texts = ["a joyful, moving film", "loved every minute", "great fun",
    ...          "dull and lifeless", "a tedious mess", "boring and long"]
    >>> labels = ["positive"] * 3 + ["negative"] * 3
    >>> clf = BlackBoxPromptClassifier(
    ...     label_descriptions={"positive": "a glowing review", "negative": "a scathing review"},
    ...     prompt_length=2, sample_size=4, max_steps=4, random_state=0,
    ... ).fit(texts, labels)
    >>> clf.predict(["an absolute delight"])
    array(['positive'], dtype='<U8')
    """

    _parameter_constraints: dict = {
        "embedder": [
            HasMethods(["fit", "transform"]),
            HasMethods(["label_word_log_probs", "fingerprint"]),
            None,
        ],
        "label_words": [dict, list, tuple, None],
        "label_descriptions": [dict, None],
        "template": [str],
        "prompt_length": [Interval(Integral, 1, None, closed="left")],
        "n_candidates": [Interval(Integral, 2, None, closed="left")],
        "sample_size": [Interval(Integral, 2, None, closed="left")],
        "batch_size": [Interval(Integral, 1, None, closed="left")],
        "max_steps": [Interval(Integral, 0, None, closed="left")],
        "max_queries": [Interval(Integral, 1, None, closed="left"), None],
        "learning_rate": [Interval(Real, 0, None, closed="neither")],
        "weight_decay": [Interval(Real, 0, None, closed="left")],
        "max_grad_norm": [Interval(Real, 0, None, closed="neither")],
        "loss": [StrOptions({"cross_entropy", "margin"})],
        "margin": [Interval(Real, 0, None, closed="neither")],
        "temperature": [Interval(Real, 0, None, closed="neither"), None],
        "validation_fraction": [Interval(Real, 0, 1, closed="left")],
        "max_ngram_length": [Interval(Integral, 1, None, closed="left")],
        "min_pmi": [Real],
        "min_ngram_count": [Interval(Integral, 1, None, closed="left")],
        "store": [str, os.PathLike, None],
        "random_state": ["random_state"],
        "verbose": ["verbose"],
    }

    def __init__(
        self,
        embedder=None,
        *,
        label_words=None,
        label_descriptions=None,
        template="{prompt} {text}",
        prompt_length=10,
        n_candidates=200,
        sample_size=20,
        batch_size=32,
        max_steps=100,
        max_queries=20000,
        learning_rate=0.05,
        weight_decay=0.01,
        max_grad_norm=3.0,
        loss="cross_entropy",
        margin=1.0,
        temperature=None,
        validation_fraction=0.25,
        max_ngram_length=5,
        min_pmi=1.0,
        min_ngram_count=1,
        store="auto",
        random_state=None,
        verbose=False,
    ):
        self.embedder = embedder
        self.label_words = label_words
        self.label_descriptions = label_descriptions
        self.template = template
        self.prompt_length = prompt_length
        self.n_candidates = n_candidates
        self.sample_size = sample_size
        self.batch_size = batch_size
        self.max_steps = max_steps
        self.max_queries = max_queries
        self.learning_rate = learning_rate
        self.weight_decay = weight_decay
        self.max_grad_norm = max_grad_norm
        self.loss = loss
        self.margin = margin
        self.temperature = temperature
        self.validation_fraction = validation_fraction
        self.max_ngram_length = max_ngram_length
        self.min_pmi = min_pmi
        self.min_ngram_count = min_ngram_count
        self.store = store
        self.random_state = random_state
        self.verbose = verbose

    # ------------------------------------------------------------------ fit
    @_fit_context(prefer_skip_nested_validation=False)
    def fit(self, X, y):
        """Mine prompt candidates, then search the prompt through the black box.

        Parameters
        ----------
        X : list, ndarray or Series of str
            Training texts.
        y : array-like of shape (n_samples,)
            Class labels of any type.

        Returns
        -------
        self : BlackBoxPromptClassifier
            The fitted classifier.
        """
        texts = check_texts(X, allow_pairs=False).texts
        self.n_features_in_ = 1
        _check_feature_names(self, X, reset=True)
        self.classes_, y_index = check_labels(y, len(texts))
        self._check_template()
        # everything is checked before the black box is asked anything
        self.black_box_ = self._black_box_kind()
        class_texts = self._class_texts()
        rng = check_random_state(self.random_state)
        self.candidates_ = self._mine_candidates(texts)
        train, held_out = self._split(y_index, rng)
        self._check_budget(len(train), len(held_out))

        self.n_queries_ = self.n_cache_hits_ = self.n_tokens_ = self.n_requested_ = 0
        self._prepare_black_box(texts, class_texts)
        self.temperature_ = self.temperature or (SIMILARITY_TEMPERATURE if self.black_box_ == "similarity" else 1.0)
        with torch.random.fork_rng(devices=[]):  # the caller's global torch state is left as it was
            self._search(self._class_scorer(), texts, y_index, train, held_out, rng)
        return self

    def _check_template(self):
        fields = template_fields(self.template)
        if sorted(fields) != ["prompt", "text"]:
            raise ValueError(f"template must hold {{prompt}} and {{text}} once each and nothing else, got {fields}.")

    def _mine_candidates(self, texts: list[str]) -> np.ndarray:
        ngrams = mine_ngrams(
            texts, max_length=self.max_ngram_length, min_pmi=self.min_pmi, min_count=self.min_ngram_count
        )
        if len(ngrams) < 2:
            raise ValueError(
                f"Only {len(ngrams)} prompt candidate(s) could be mined from the training texts X; "
                "give more (or longer) texts, or lower min_ngram_count."
            )
        return np.asarray(ngrams[: self.n_candidates], dtype=object)

    def _check_budget(self, n_train: int, n_held_out: int) -> None:
        step_cost = self.sample_size * min(self.batch_size, n_train)
        if self.max_queries is not None and self.max_queries < step_cost + 2 * n_held_out:
            raise ValueError(
                f"max_queries={self.max_queries} cannot pay for one step ({self.sample_size} prompts x "
                f"{min(self.batch_size, n_train)} texts) and two evaluations on the {n_held_out} "
                f"held-out texts: raise it to at least {step_cost + 2 * n_held_out}."
            )

    def _black_box_kind(self) -> str:
        """Which kind of black box ``embedder`` is, from its parameters (nothing is fitted or asked)."""
        box = self.embedder
        if box is not None and hasattr(box, "label_word_log_probs"):
            return "log_probs"
        return "mask" if getattr(box, "pooling", None) == "mask" else "similarity"

    def _class_texts(self) -> list[list[str]]:
        """The checked label words (label-word black boxes) or descriptions (similarity), one group per class.

        The one of ``label_words`` and ``label_descriptions`` that this black
        box does not read is refused when given, rather than ignored.
        """
        if self.black_box_ == "similarity":
            if self.label_words is not None:
                raise ValueError(
                    "label_words is for label-word black boxes (a masked LM with pooling='mask', or a "
                    "log-probability backend); this embedder scores classes by similarity to "
                    "label_descriptions: give those instead, or None for the label names."
                )
            return check_label_descriptions(self.label_descriptions, self.classes_)
        if self.label_descriptions is not None:
            raise ValueError(
                f"label_descriptions is for embedding black boxes; this {self.black_box_!r} black box scores "
                "label_words: give label_words only."
            )
        if self.label_words is None:
            raise ValueError(
                f"The {self.black_box_!r} black box scores label words: give label_words, one word (or list "
                f"of words) per class, e.g. {{{self.classes_[0].item()!r}: 'word', ...}}."
            )
        if isinstance(self.label_words, dict):
            return check_label_descriptions(self.label_words, self.classes_, name="label_words")
        groups = check_label_word_groups(self.label_words)
        if len(groups) != len(self.classes_):
            raise ValueError(
                f"label_words has {len(groups)} entries for {len(self.classes_)} classes "
                f"{_preview(list(self.classes_))}; give one per class (in the order of classes_) or a dict "
                "label -> word."
            )
        return groups

    def _prepare_black_box(self, texts: list[str], class_texts: list[list[str]]) -> None:
        """Fit the black box and what the class scores need (label words or description embeddings)."""
        box = self.embedder
        self.embedder_ = None
        if self.black_box_ == "log_probs":
            self.label_words_ = class_texts
            self.log_prob_backend_ = copy.deepcopy(box)
            return
        self.embedder_ = clone(BlackBoxEmbedder() if box is None else box).fit(texts)
        # an API embedder of unknown width pays one query while fitting
        self.n_queries_ += self.embedder_.n_queries_
        self.n_cache_hits_ += self.embedder_.n_cache_hits_
        self.n_tokens_ += self.embedder_.n_tokens_
        if self.black_box_ == "mask":
            self.label_words_ = class_texts
            return
        flat = [text for group in class_texts for text in group]
        self.description_embedder_ = clone(self.embedder_).fit(flat)
        E = np.asarray(self.description_embedder_.transform(flat), dtype=np.float32)
        self.n_queries_ += self.description_embedder_.n_queries_
        self.n_cache_hits_ += self.description_embedder_.n_cache_hits_
        self.n_tokens_ += self.description_embedder_.n_tokens_
        self.description_embeddings_ = E / _row_norms(E)
        self.description_owner_ = np.repeat(np.arange(len(self.classes_)), [len(g) for g in class_texts])

    def _split(self, y_index: np.ndarray, rng) -> tuple[np.ndarray, np.ndarray]:
        """Stratified (train, held-out) indices; the training data twice when nothing can be held out."""
        counts = np.bincount(y_index)
        everything = np.arange(len(y_index))
        if self.validation_fraction == 0 or counts.min() < 2:
            return everything, everything
        held_out = []
        for c, count in enumerate(counts):
            members = rng.permutation(np.flatnonzero(y_index == c))
            held_out.extend(members[: max(1, int(self.validation_fraction * count))])
        held_out = np.sort(held_out)
        return np.setdiff1d(everything, held_out), held_out

    # --------------------------------------------------------------- search
    def _search(self, score, texts, y_index, train, held_out, rng) -> None:
        """Policy-gradient search of the slot distributions, keeping a copy of the best one.

        ``score`` gives the class scores of inputs (:meth:`_class_scorer`).
        """
        n_slots, n_candidates = self.prompt_length, len(self.candidates_)
        torch.manual_seed(torch_seed(rng))
        probs = torch.full((n_slots, n_candidates), 1.0 / n_candidates, dtype=torch.float64, requires_grad=True)
        optimizer = torch.optim.AdamW([probs], lr=self.learning_rate, weight_decay=self.weight_decay)
        dev_texts, dev_y = [texts[i] for i in held_out], y_index[held_out]

        self.history_ = []
        best = self._evaluate(score, np.empty(0, dtype=int), dev_texts, dev_y, step=0)
        self.distribution_ = probs.detach().numpy().copy()
        batches = _minibatches(train, self.batch_size, rng)
        epoch_steps = steps_per_epoch(len(train), self.batch_size)
        evaluated = True
        self.n_steps_ = 0
        from tqdm.auto import tqdm

        for step in tqdm(range(self.max_steps), disable=not self.verbose, desc="BDPL", unit="step", leave=False):
            batch = next(batches)
            cost = self.sample_size * len(batch) + len(dev_texts)
            if self.max_queries is not None and self.n_requested_ + cost > self.max_queries:
                break
            samples = self._sample_prompts(probs.detach().numpy(), rng)
            losses = self._sample_losses(score, samples, [texts[i] for i in batch], y_index[batch])
            gradient = _score_function_gradient(samples, losses, probs.detach().numpy())
            optimizer.zero_grad()
            probs.grad = torch.as_tensor(gradient)
            torch.nn.utils.clip_grad_norm_([probs], self.max_grad_norm)
            optimizer.step()
            with torch.no_grad():
                probs.copy_(torch.as_tensor(project_onto_simplex(probs.numpy())))
            self.n_steps_ = step + 1
            evaluated = False
            if self.n_steps_ % epoch_steps == 0:
                best = self._keep_if_better(score, best, probs, dev_texts, dev_y)
                evaluated = True
        if not evaluated:
            best = self._keep_if_better(score, best, probs, dev_texts, dev_y)
        self.best_score_, _, indices = best
        self.prompt_indices_ = indices
        self.prompt_ = self._prompt_text(indices)

    def _keep_if_better(self, score, best, probs, dev_texts, dev_y):
        distribution = probs.detach().numpy()
        candidate = self._evaluate(score, distribution.argmax(axis=1), dev_texts, dev_y, step=self.n_steps_)
        # higher accuracy, then lower loss; ties keep the earlier (shorter search, or no prompt)
        if (candidate[0], -candidate[1]) > (best[0], -best[1]):
            self.distribution_ = distribution.copy()
            return candidate
        return best

    def _evaluate(self, score, indices, dev_texts, dev_y, *, step):
        """Held-out accuracy and loss of one prompt: ``(accuracy, loss, indices)``."""
        scores = self._requested(score, self._prompted(self._prompt_text(indices), dev_texts))
        accuracy = float(np.mean(scores.argmax(axis=1) == dev_y))
        loss = float(self._losses(scores[None], dev_y)[0])
        self.history_.append(
            {
                "step": step,
                "requested": self.n_requested_,
                "prompt": self._prompt_text(indices),
                "accuracy": accuracy,
                "loss": loss,
            }
        )
        return accuracy, loss, np.asarray(indices, dtype=int)

    def _sample_prompts(self, probs: np.ndarray, rng) -> np.ndarray:
        """``sample_size`` prompts, one candidate index per slot drawn from its distribution."""
        cumulative = np.cumsum(probs, axis=1)
        cumulative[:, -1] = 1.0
        draws = rng.random_sample((self.sample_size, len(probs)))
        samples = np.empty(draws.shape, dtype=int)
        for slot in range(len(probs)):
            samples[:, slot] = np.searchsorted(cumulative[slot], draws[:, slot], side="right")
        # a draw can land on a zero-probability candidate only through rounding: move it to the slot's mode
        zero = probs[np.arange(len(probs))[None, :], samples] <= 0
        samples[zero] = np.broadcast_to(probs.argmax(axis=1), samples.shape)[zero]
        return samples

    def _sample_losses(self, score, samples: np.ndarray, batch_texts: list[str], batch_y: np.ndarray) -> np.ndarray:
        """The mean loss of each sampled prompt on the mini-batch, from one black-box request."""
        items = [item for prompt in samples for item in self._prompted(self._prompt_text(prompt), batch_texts)]
        scores = self._requested(score, items).reshape(len(samples), len(batch_texts), -1)
        return self._losses(scores, batch_y)

    def _losses(self, scores: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Per-prompt mean loss; ``scores`` has shape (n_prompts, n_texts, n_classes)."""
        logits = scores.astype(np.float64) / self.temperature_
        true = np.take_along_axis(logits, y[None, :, None], axis=2)[..., 0]
        if self.loss == "cross_entropy":
            top = logits.max(axis=2)
            log_norm = top + np.log(np.exp(logits - top[..., None]).sum(axis=2))
            return (log_norm - true).mean(axis=1)
        others = logits.copy()
        np.put_along_axis(others, y[None, :, None], -np.inf, axis=2)
        return np.maximum(0.0, self.margin - (true - others.max(axis=2))).mean(axis=1)

    # ------------------------------------------------------------ black box
    def _prompt_text(self, indices) -> str:
        return " ".join(self.candidates_[int(i)] for i in indices)

    def _prompted(self, prompt: str, texts: list[str]) -> list[str]:
        """The inputs the black box sees: exactly the texts when the prompt is empty."""
        if not prompt:
            return list(texts)
        return [self.template.format(prompt=prompt, text=text).strip() for text in texts]

    def _requested(self, score, items: list[str]) -> np.ndarray:
        """``score(items)``, counted in the search budget (each distinct input once per request)."""
        self.n_requested_ += len(set(items))
        return score(items)

    def _class_scorer(self):
        """The function from inputs to class scores, through the store, counting what it costs.

        A log-probability black box's store is resolved here, on this machine,
        once per fit or prediction, and is never kept in the fitted model.
        """
        if self.black_box_ == "log_probs":
            backend, groups = self.log_prob_backend_, self.label_words_
            flat = [word for group in groups for word in group]
            store = open_store(self.store, label_word_fingerprint(backend, flat))
            # a box that tells what its requests used answers query_label_words; any other, label_word_log_probs
            ask = getattr(backend, "query_label_words", backend.label_word_log_probs)

            def score(items: list[str]) -> np.ndarray:
                raw, report = query_through_store(
                    items,
                    lambda batch: ask(batch, flat),
                    store=store,
                    batch_size=self.batch_size,
                    width=len(flat),
                )
                self.n_queries_ += report.n_queried
                self.n_cache_hits_ += report.n_cached
                self.n_tokens_ += report.usage.prompt_tokens + report.usage.completion_tokens
                return _max_per_group(raw, [len(g) for g in groups])

            return score

        def score(items: list[str]) -> np.ndarray:
            before = self.embedder_.n_queries_, self.embedder_.n_cache_hits_, self.embedder_.n_tokens_
            if self.black_box_ == "mask":
                scores = self.embedder_.label_word_scores(items, self.label_words_, output="log_probs")
            else:
                H = np.asarray(self.embedder_.transform(items), dtype=np.float32)
                similarity = (H / _row_norms(H)) @ self.description_embeddings_.T
                scores = _max_per_group(similarity, np.bincount(self.description_owner_))
            self.n_queries_ += self.embedder_.n_queries_ - before[0]
            self.n_cache_hits_ += self.embedder_.n_cache_hits_ - before[1]
            self.n_tokens_ += self.embedder_.n_tokens_ - before[2]
            return scores

        return score

    # ------------------------------------------------------------- estimates
    def estimate_queries(self, X, y=None, *, tokenizer=None, price_per_1k_tokens=None) -> QueryEstimate:
        """What a prediction on ``X`` would send, before anything is paid.

        Only predictions can be estimated: the search chooses the prompts it
        tries (hence the texts it sends) from the answers it gets, so what
        ``fit`` sends is known as it goes; ``max_queries`` bounds it.

        Parameters
        ----------
        X : list of str
            Texts, as given to ``predict``.
        y : None
            Must be None.
        tokenizer : callable, default=None
            ``tokenizer(text)`` giving a text's tokens, for an API model.
        price_per_1k_tokens : float, default=None

        Returns
        -------
        estimate : QueryEstimate
        """
        if y is not None:
            raise ValueError(
                "BlackBoxPromptClassifier cannot tell before fitting what fit(X, y) will send: its search picks the "
                "prompts it tries from the answers it gets. max_queries bounds the prompted texts it asks for."
            )
        check_is_fitted(self)
        texts = self._prompted(self.prompt_, check_texts(X, allow_pairs=False).texts)
        if self.black_box_ == "log_probs":
            flat = [word for group in self.label_words_ for word in group]
            store = open_store(self.store, label_word_fingerprint(self.log_prob_backend_, flat))
            plan = (store, texts, len(flat), self.log_prob_backend_)
        else:
            plan = self.embedder_._plan(texts)
        return estimate_queries([plan], tokenizer=tokenizer, price_per_1k_tokens=price_per_1k_tokens)

    # ----------------------------------------------------------- prediction
    def _representations(self, X) -> np.ndarray:
        """What the prediction methods of the base class read: the class scores of the prompted texts."""
        check_is_fitted(self)
        texts = check_texts(X, allow_pairs=False).texts
        _check_feature_names(self, X, reset=False)
        return self._class_scorer()(self._prompted(self.prompt_, texts))

    def _logits(self, scores: np.ndarray) -> np.ndarray:
        return scores.astype(np.float64) / self.temperature_

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.two_d_array = False
        tags.classifier_tags.multi_label = False  # one label per text: the prompt search scores classes
        return tags


def _minibatches(indices: np.ndarray, batch_size: int, rng):
    """Endless shuffled passes over ``indices``, ``batch_size`` at a time."""
    while True:
        order = rng.permutation(indices)
        for start in range(0, len(order), batch_size):
            yield order[start : start + batch_size]


def _score_function_gradient(samples: np.ndarray, losses: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """The variance-reduced score-function gradient of the expected loss with respect to the slot probabilities.

    ``1 / (K - 1) * sum_k (L_k - mean(L)) * d log P(prompt_k) / d p``, where
    ``d log P / d p_i[j]`` is ``1 / p_i[j]`` for the candidate ``j`` drawn in
    slot ``i`` and zero for the others.
    """
    n_samples, n_slots = samples.shape
    advantages = (losses - losses.mean()) / (n_samples - 1)
    gradient = np.zeros_like(probs)
    slots = np.arange(n_slots)
    for advantage, prompt in zip(advantages, samples, strict=True):
        gradient[slots, prompt] += advantage / probs[slots, prompt]
    return gradient
