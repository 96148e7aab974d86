"""The LLMAugmenter estimator: generation through the store, clean-up, and the switch."""

from __future__ import annotations

import json
import logging
import math
import os
import warnings
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from numbers import Integral, Real

import numpy as np
from imblearn.over_sampling.base import BaseOverSampler
from imblearn.utils import check_sampling_strategy, check_target_type
from sklearn.base import clone
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted

from .._compat import HasMethods, Interval, StrOptions
from .._training import DeviceOptions
from .._validation import check_label_descriptions, check_labels, check_texts
from ..backends.base import Paid, Usage
from ..backends.chat import LocalChatGenerator, OpenAIChatGenerator
from ..backends.openai import split_api_model
from ..backends.openai_logprobs import OpenAILogProbBackend, label_word_fingerprint
from ..cache import QueryEstimate, check_price, cost_of
from ..stores import open_store, query_counts
from ._judges import (
    _seed,
    answer_words,
    class_thresholds,
    generator_proba,
    gold_proba,
    judge_instruction,
    memoised,
    out_of_fold_proba,
    task_similarity,
)
from ._parsing import DROP_REASONS, NearCopies, clean_reason, normalise, parse_examples

__all__ = ["LLMAugmenter"]

logger = logging.getLogger("skcrosstune")

_SYSTEM = "You write new, realistic examples for a text classification dataset. You reply with JSON only."


class LLMAugmenter(BaseOverSampler):
    """Over-sampling with examples written by a language model, kept only when a teacher agrees.

    A resampler in imbalanced-learn's protocol: ``fit_resample(X, y)``
    returns the gold data followed by the kept generated examples, so it sits
    in an :class:`imblearn.pipeline.Pipeline` in front of any classifier on
    texts. Generation happens while fitting only, never at prediction.

    Parameters
    ----------
    model : str, default="openai:gpt-4o-mini"
        The generator. ``"openai:<name>"`` queries the chat-completions
        endpoint at ``base_url``; any other value is a local Hugging Face
        causal LM folder (or a hub name already in the local cache), sampled
        on this machine.

    task_description : str, default=None
        What the classifier decides, in a sentence, shown first in the
        prompt. None says that texts are classified into the labels below.

    label_descriptions : dict, default=None
        Label -> description (or list of descriptions, the first is shown),
        for every class. None describes each label by its name. Also given to
        the default teacher.

    n_per_class : int or None, default=16
        Examples requested per class. None uses ``sampling_strategy``
        instead; setting both is an error.

    sampling_strategy : float, str, dict or callable, default="auto"
        How many examples to generate, in imbalanced-learn's vocabulary
        (``"auto"`` balances the classes; a dict gives the target count per
        class). Read only when ``n_per_class=None``.

    n_demonstrations : int, default=4
        Gold examples per class shown in each prompt (fewer when a class has
        fewer), redrawn for every request.

    n_per_request : int, default=8
        Examples asked for in one request.

    teacher : classifier, "generator" or None, default=None
        The switch's judge. A classifier on texts with ``predict_proba`` is
        cloned and fitted as ``cv`` says. ``"generator"`` asks the
        generating chat model itself to label each generated example (one
        request per example, stored like the generations) and reads the
        probability of each label from the log-probabilities of its first
        answer token; it needs an ``"openai:"`` model whose endpoint returns
        ``logprobs``. Each class answers by its name when every name is one
        word; otherwise the labels are numbered and the number answers (at
        most nine classes), since only the first token is read. None uses a
        :class:`~skcrosstune.CrossTuneClassifier` on the vectors of
        ``embedder``, with ``label_descriptions``, seeded by
        ``random_state``: the descriptions give it a prior that the few gold
        examples alone lack. In ``augment_sim`` it separates relabelled from
        clean generations better than the logistic regression (``C=10``)
        that was the default before it.

    cv : int or None, default=4
        How a classifier teacher judges. An int: out of fold, confident
        learning's way. The generations are split into ``cv`` folds and each
        is scored by a teacher fitted on the gold examples (each counted
        ``gold_weight`` times) and the generations of the other folds, so
        the judge knows what the whole augmented set says, never the example
        it judges. None: one teacher fitted on the gold examples only.
        Ignored when ``teacher="generator"``.

    gold_weight : int, default=1
        How many times each gold example is repeated in an out-of-fold
        teacher's training set. The default counts a gold example as much
        as a generation; the CrossTune teacher judged best that way in
        ``augment_sim``.

    embedder : transformer or None, default=None
        The vectors of the off-task check and of the default teacher: any
        transformer of texts to vectors, cloned and fitted on the gold
        examples. None uses :class:`~skcrosstune.BlackBoxEmbedder`'s default
        black box, its answers kept in ``store``.

    off_task_quantile : float in [0, 1) or None, default=0.05
        The off-task check, run before the label judge. Each generated
        example's vector is compared with the centroid of the gold examples'
        vectors (cosine similarity); it is rejected as off-task when it is
        less similar than this quantile of the gold examples' own
        similarities (each to the centroid of the others). The default
        rejects what is less like the task than all but the least typical
        5 % of the gold examples. None (or 0) switches the check off. It does
        not depend on ``threshold``: a grid over the knob leaves it as it is.

    threshold : float, default=0.5
        The switch's one knob. A generated example is kept when the judge's
        probability for its intended label is at least ``threshold`` times
        its class's threshold: the mean probability the judge gives the
        class's own generations (confident learning's per-class threshold,
        which adapts to the number of classes and to how sharp the judge's
        probabilities are). 0 switches the filter off (and nothing is
        judged); 1 rejects what the judge finds less typical of its label
        than the class's average generation; the default 0.5 only what it
        finds half as probable as that average. Scores are computed once per
        distinct training set and reused, so GridSearchCV tunes it without
        a new request or a teacher fitted twice.

    max_chars : int, default=None
        Longest generated text kept, in characters (per side of a pair).
        None allows three times the longest gold text.

    max_requests : int, default=None
        Budget of generation requests sent per fit (answers from the store
        are free; a retried request counts once). When it runs out,
        generation stops with a warning and what was received is used.

    temperature : float, default=1.0
        Sampling temperature of the generator.

    max_tokens : int, default=None
        Upper bound on the tokens of one reply; None leaves it to the
        endpoint (512 new tokens for a local model).

    base_url : str, default=None
        Endpoint of the OpenAI-compatible API; None uses ``$OPENAI_BASE_URL``
        or the OpenAI API.

    api_key_env : str or None, default="OPENAI_API_KEY"
        The *name* of the environment variable holding the API key, read
        when the first request is sent. The key is never stored in the
        estimator, its repr, its logs or its pickle. None for servers that
        need no key.

    timeout : float, default=60.0
        Seconds before a request counts as failed and is retried.

    max_retries : int, default=5
        Retries of rate-limited (honouring ``Retry-After``), failed (5xx) or
        timed-out requests, with exponential backoff and jitter. A request
        refused with 400, 401 or 403 raises at once, naming the endpoint and
        model.

    n_concurrent : int, default=4
        Requests in flight at once (API generators only).

    device : str, default="auto"
        Where a local generator and the default teacher run.

    store : "auto", str, path or None, default="auto"
        Where replies are kept, resolved at each fit on the machine running
        it: ``"auto"`` (``$SKCROSSTUNE_CACHE_DIR``, else the user cache
        folder; if unusable, one warning and no store), a folder path, a
        ``"redis://host:port/db"`` URL, or None to keep nothing between fits.
        As for :class:`~skcrosstune.BlackBoxEmbedder`.

    random_state : int, RandomState instance or None, default=None
        Draws the demonstrations and the generator's sampling seeds, and
        seeds the default teacher. An int makes refits and grid searches
        re-read the store instead of paying for new requests.

    verbose : bool, default=False
        A progress bar over requests, and a log line of what one fit cost.

    Attributes
    ----------
    sampling_strategy_ : dict
        Class -> number of examples requested.

    generations_ : list of dict
        One record per generated example, in the order received: ``text``
        (and ``text_pair`` for pairs), ``label`` (the class it was written
        for), ``probability`` (the judge's probability for that label, NaN
        when not judged), ``kept`` and ``reason`` (``"kept"`` or one of
        ``"malformed"``, ``"empty"``, ``"too_long"``, ``"gold_copy"``,
        ``"near_copy"`` (most of its words are those of a gold example),
        ``"duplicate"``, ``"surplus"`` (beyond the number requested),
        ``"off_task"`` (less like the gold examples than the off-task check
        allows) and ``"below_threshold"``), and ``task_similarity`` (its
        cosine similarity to the gold examples' centroid, NaN when not
        checked).

    drop_counts_ : dict
        Reason -> number of generated examples dropped for it, plus
        ``"unparseable"``: replies in which no JSON could be found.

    n_generated_ : int
        Generated examples added to the data.

    off_task_threshold_ : float or None
        The task similarity a generated example needed to pass the off-task
        check; None when it did not run.

    class_thresholds_ : dict
        Class -> the probability a generated example of that class needed to
        be kept (``threshold`` times the class's mean probability); empty
        when nothing was judged.

    generator_ : ChatGenerator
        The generator (its client, holding the key, is never pickled).

    n_requests_ : int
        Generation requests sent during the last fit.

    n_judge_requests_ : int
        Requests sent to the generator as judge (``teacher="generator"``)
        during the last fit; answers already stored are free.

    n_cache_hits_ : int
        Requests answered by the store during the last fit.

    n_prompt_tokens_ : int
        Tokens the requests sent during the last fit read (generation and
        judge requests), from the endpoint's ``usage`` (a local generator's
        tokenizer); requests answered by the store cost none.

    n_completion_tokens_ : int
        Tokens those requests wrote.

    budget_exhausted_ : bool
        Whether ``max_requests`` stopped generation.

    n_features_in_ : int
        Input columns: 1 for texts, 2 for sentence pairs.

    feature_names_in_ : ndarray of shape (`n_features_in_`,)
        Column names, when fitted on a DataFrame with string column names.

    See Also
    --------
    CrossTuneClassifier : The default teacher, and a classifier to put behind.
    imblearn.over_sampling.RandomOverSampler : Over-sampling by repetition.

    Notes
    -----
    Sentence pairs are generated as pairs: the demonstrations and the
    requested answer are objects with ``text`` and ``text_pair``.

    Generated text is only data: it is parsed as JSON and never executed or
    used as a prompt instruction.

    References
    ----------
    .. [1] D. Luo, C. Zhang, Y. Zhang and H. Li, "CrossTune: Black-Box
       Few-Shot Classification with Label Enhancement", LREC-COLING 2024,
       arXiv:2403.12468.

    Examples
    --------
    >>> from imblearn.pipeline import Pipeline
    >>> from skcrosstune import CrossTuneClassifier, LLMAugmenter
    >>> augmenter = LLMAugmenter(
    ...     "openai:gpt-4o-mini",
    ...     task_description="Is a movie review positive or negative?",
    ...     label_descriptions={"positive": "a glowing review", "negative": "a scathing review"},
    ...     n_per_class=32,
    ...     threshold=0.8,
    ...     random_state=0,
    ... )
    >>> pipe = Pipeline([("augment", augmenter), ("clf", CrossTuneClassifier(random_state=0))])
    >>> pipe.get_params()["augment__threshold"]
    0.8

    Fitting sends requests to the endpoint (here the OpenAI API, with the key
    in ``$OPENAI_API_KEY``)::

        pipe.fit(texts, labels)
        pipe[0].drop_counts_  # why generated examples were left out
    """

    _parameter_constraints: dict = {
        **BaseOverSampler._parameter_constraints,
        "model": [str],
        "task_description": [str, None],
        "label_descriptions": [dict, None],
        "n_per_class": [Interval(Integral, 1, None, closed="left"), None],
        "n_demonstrations": [Interval(Integral, 0, None, closed="left")],
        "n_per_request": [Interval(Integral, 1, None, closed="left")],
        "teacher": [HasMethods(["fit", "predict_proba"]), StrOptions({"generator"}), None],
        "cv": [Interval(Integral, 2, None, closed="left"), None],
        "gold_weight": [Interval(Integral, 1, None, closed="left")],
        "embedder": [HasMethods(["fit", "transform"]), None],
        "off_task_quantile": [Interval(Real, 0, 1, closed="left"), None],
        "threshold": [Interval(Real, 0, None, closed="left")],
        "max_chars": [Interval(Integral, 1, None, closed="left"), None],
        "max_requests": [Interval(Integral, 0, None, closed="left"), None],
        "temperature": [Interval(Real, 0, None, closed="left")],
        "max_tokens": [Interval(Integral, 1, None, closed="left"), None],
        "base_url": [str, None],
        "api_key_env": [str, None],
        "timeout": [Interval(Real, 0, None, closed="neither")],
        "max_retries": [Interval(Integral, 0, None, closed="left")],
        "n_concurrent": [Interval(Integral, 1, None, closed="left")],
        "device": [DeviceOptions()],
        "store": [str, os.PathLike, None],
        "verbose": ["verbose"],
    }

    def __init__(
        self,
        model="openai:gpt-4o-mini",
        *,
        task_description=None,
        label_descriptions=None,
        n_per_class=16,
        sampling_strategy="auto",
        n_demonstrations=4,
        n_per_request=8,
        teacher=None,
        cv=4,
        gold_weight=1,
        embedder=None,
        off_task_quantile=0.05,
        threshold=0.5,
        max_chars=None,
        max_requests=None,
        temperature=1.0,
        max_tokens=None,
        base_url=None,
        api_key_env="OPENAI_API_KEY",
        timeout=60.0,
        max_retries=5,
        n_concurrent=4,
        device="auto",
        store="auto",
        random_state=None,
        verbose=False,
    ):
        super().__init__(sampling_strategy=sampling_strategy)
        self.model = model
        self.task_description = task_description
        self.label_descriptions = label_descriptions
        self.n_per_class = n_per_class
        self.n_demonstrations = n_demonstrations
        self.n_per_request = n_per_request
        self.teacher = teacher
        self.cv = cv
        self.gold_weight = gold_weight
        self.embedder = embedder
        self.off_task_quantile = off_task_quantile
        self.threshold = threshold
        self.max_chars = max_chars
        self.max_requests = max_requests
        self.temperature = temperature
        self.max_tokens = max_tokens
        self.base_url = base_url
        self.api_key_env = api_key_env
        self.timeout = timeout
        self.max_retries = max_retries
        self.n_concurrent = n_concurrent
        self.device = device
        self.store = store
        self.random_state = random_state
        self.verbose = verbose

    # ------------------------------------------------------------ validation
    def fit_resample(self, X, y, **params):
        """Generate new labelled examples and return them after the gold ones.

        Parameters
        ----------
        X : list, ndarray, Series or DataFrame of str
            Texts, or sentence pairs.
        y : array-like of shape (n_samples,)
            Class labels of any type.
        **params : dict
            Passed on to imbalanced-learn's ``fit_resample``.

        Returns
        -------
        X_resampled : ndarray of object
            The gold inputs, then the kept generated ones.
        y_resampled : ndarray
            Their labels.
        """
        # texts and labels get skcrosstune's errors (naming the position) before imbalanced-learn's own checks
        check_labels(y, len(check_texts(X, estimator=type(self).__name__)))
        return super().fit_resample(X, y, **params)

    def _check_X_y(self, X, y, accept_sparse=None):
        """Accept texts or sentence pairs (not numeric features) and labels of any type."""
        y, binarize_y = check_target_type(y, indicate_one_vs_all=True)
        if binarize_y:
            raise ValueError(
                f"{type(self).__name__}: y must hold one label per example; multilabel indicator targets are not "
                "supported."
            )
        batch = check_texts(X, estimator=type(self).__name__)
        check_labels(y, len(batch))
        self.n_features_in_ = batch.n_columns
        if batch.feature_names is not None:
            self.feature_names_in_ = batch.feature_names
        elif hasattr(self, "feature_names_in_"):
            del self.feature_names_in_
        rows = batch.texts if not batch.is_pair else list(zip(batch.texts, batch.text_pairs, strict=True))
        return _object_rows(rows, batch.is_pair), np.asarray(y), binarize_y

    # ------------------------------------------------------------ resampling
    def _fit_resample(self, X, y):
        prompter = self._prepare(X, y)
        try:
            return self._augment(X, y, prompter)
        finally:
            del self._reply_store

    def _prepare(self, X, y) -> _Prompter:
        """Everything before the first request: the counts per class, the generator, its store, the prompter."""
        pairs = X.ndim == 2
        classes = np.unique(y)
        self.sampling_strategy_ = self._requested_counts(classes)
        descriptions = [texts[0] for texts in check_label_descriptions(self.label_descriptions, classes)]
        gold = [_item(row, pairs) for row in X]
        if isinstance(self.teacher, str) and split_api_model(self.model) is None:
            raise ValueError(
                f"LLMAugmenter's teacher='generator' needs an 'openai:<name>' model whose endpoint returns "
                f"log-probabilities; got model={self.model!r}. Give a classifier as teacher instead."
            )
        self.generator_ = self._make_generator()
        # resolved now, on this machine, and never kept in the fitted augmenter
        self._reply_store = open_store(self.store, self.generator_.fingerprint())
        return _Prompter(self, gold, y, classes, descriptions, pairs)

    def estimate_queries(self, X, y, *, tokenizer=None, price_per_1k_tokens=None) -> QueryEstimate:
        """What ``fit_resample(X, y)`` would send in its first round of requests, before anything is paid.

        Generation asks for ``ceil(count / n_per_request)`` replies per class
        (at most ``max_requests`` in all); those the store holds are free.
        Replies that yield too few usable examples are followed by more
        requests (at most as many again), which only the replies can tell.
        With ``teacher="generator"`` the judge then scores each generated
        example once (not counted here). Nothing is sent and no counter moves.

        Parameters
        ----------
        X : list, ndarray, Series or DataFrame of str
            Texts, or sentence pairs.
        y : array-like of shape (n_samples,)
            Class labels.
        tokenizer : callable, default=None
            ``tokenizer(text)`` giving a text's tokens (a list or their
            number), to count the prompt tokens of an API model's requests;
            a local generator counts its own (with its chat template).
        price_per_1k_tokens : float or (float, float), default=None
            One price per 1,000 tokens, or per 1,000 prompt and completion
            tokens. ``cost`` is then the prompt tokens' cost plus, when
            ``max_tokens`` is set, the most the replies can cost; None when
            the replies' length has no bound.

        Returns
        -------
        estimate : QueryEstimate
            Requests (``n_inputs`` ... ``n_to_send``), their prompt ``tokens``
            and ``cost``.
        """
        price = check_price(price_per_1k_tokens)
        if tokenizer is not None and not callable(tokenizer):
            raise TypeError(f"tokenizer must be a callable giving a text's tokens, got {type(tokenizer).__name__}.")
        check_labels(y, len(check_texts(X, estimator=type(self).__name__)))
        planner = clone(self)
        planner._validate_params()
        X, y, _ = planner._check_X_y(X, y)
        planner.sampling_strategy_ = check_sampling_strategy(planner.sampling_strategy, y, planner._sampling_type)
        prompter = planner._prepare(X, y)
        requests = dict(prompter.request(label, i) for label, n in planner._first_round().items() for i in range(n))
        store = planner._reply_store
        stored = store.get_texts(list(requests)) if store is not None else {}
        missing = [request for key, request in requests.items() if key not in stored]
        to_send = missing[: self.max_requests]  # what the budget lets through
        tokens = _prompt_tokens(planner.generator_, to_send, tokenizer)
        cost = None
        if price is not None and tokens is not None:
            replies = None if self.max_tokens is None else len(to_send) * self.max_tokens
            prompt_price, completion_price = price if isinstance(price, tuple) else (price, price)
            if replies is not None or completion_price == 0:
                cost = cost_of(tokens, replies or 0, (prompt_price, completion_price))
        n = len(requests)
        return QueryEstimate(n, n, n - len(missing), len(to_send), tokens, cost)

    def _first_round(self) -> dict:
        """Class -> the requests that ask for its count once (``n_per_request`` examples each)."""
        return {label: math.ceil(n / self.n_per_request) for label, n in self.sampling_strategy_.items() if n > 0}

    def _augment(self, X, y, prompter: _Prompter):
        self.n_requests_ = 0
        self.n_cache_hits_ = 0
        self.n_prompt_tokens_ = self.n_completion_tokens_ = 0
        self.budget_exhausted_ = False

        pairs = prompter.pairs
        candidates, self.drop_counts_ = self._generate(prompter, prompter.gold, pairs)
        self._switch(candidates, X, y, prompter)
        kept = [c for c in candidates if c["kept"]]
        self.generations_ = candidates
        self.n_generated_ = len(kept)
        if self.verbose:
            logger.info(
                "LLMAugmenter: %d requests sent, %d from the store; %d of %d generated examples kept; dropped: %s.",
                self.n_requests_,
                self.n_cache_hits_,
                len(kept),
                len(candidates),
                self.drop_counts_,
            )
        X_new = _object_rows([(c["text"], c["text_pair"]) if pairs else c["text"] for c in kept], pairs)
        y_new = np.asarray([c["label"] for c in kept], dtype=y.dtype)
        return np.concatenate([X, X_new]), np.concatenate([y, y_new])

    def _requested_counts(self, classes) -> dict:
        if self.n_per_class is None:
            return dict(self.sampling_strategy_)
        if not (isinstance(self.sampling_strategy, str) and self.sampling_strategy == "auto"):
            raise ValueError(
                "Give either n_per_class or sampling_strategy, not both: set n_per_class=None "
                f"to use sampling_strategy={self.sampling_strategy!r}."
            )
        return {label: int(self.n_per_class) for label in classes}

    def _make_generator(self):
        api_model = split_api_model(self.model)
        if api_model is not None:
            return OpenAIChatGenerator(
                api_model,
                base_url=self.base_url,
                api_key_env=self.api_key_env,
                temperature=self.temperature,
                max_tokens=self.max_tokens,
                timeout=self.timeout,
                max_retries=self.max_retries,
            )
        return LocalChatGenerator(
            self.model, temperature=self.temperature, max_tokens=self.max_tokens, device=self.device
        )

    # ------------------------------------------------------------ generation
    def _generate(self, prompter: _Prompter, gold: list, pairs: bool) -> tuple[list, dict]:
        """Request, parse and clean examples until every class has its count (or requests run out)."""
        wanted = {label: n for label, n in self.sampling_strategy_.items() if n > 0}
        planned = self._first_round()
        limit = self._char_limit(gold)
        seen = {normalise(item) for item in gold}
        gold_keys = set(seen)
        near_copies = NearCopies(gold)
        counts = dict.fromkeys(("unparseable", *DROP_REASONS), 0)
        records: list[dict] = []
        valid = dict.fromkeys(wanted, 0)
        next_sample = dict.fromkeys(wanted, 0)
        while not self.budget_exhausted_:
            requests = []
            for label, n in wanted.items():
                # at most twice the planned requests, so a generator that keeps failing cannot loop
                missing = math.ceil(max(n - valid[label], 0) / self.n_per_request)
                stop = min(next_sample[label] + missing, 2 * planned[label])
                requests += [(label, i) for i in range(next_sample[label], stop)]
                next_sample[label] = max(stop, next_sample[label])
            if not requests:
                break
            replies = self._replies([prompter.request(label, i) for label, i in requests])
            for (label, _), reply in zip(requests, replies, strict=True):
                if reply is None:  # not sent: the budget ran out
                    continue
                examples = parse_examples(reply, pairs=pairs)
                if examples is None:
                    counts["unparseable"] += 1
                    continue
                examples = examples[: self.n_per_request]
                for example, near in zip(examples, near_copies.flags(examples), strict=True):
                    reason = clean_reason(example, limit, gold_keys, seen, near)
                    if reason is None:
                        seen.add(normalise(example))
                        reason = "surplus" if valid[label] >= wanted[label] else None
                        valid[label] += reason is None
                    if reason is not None:
                        counts[reason] += 1
                    records.append(_record(example, label, pairs, reason))
        return records, counts

    def _char_limit(self, gold: list) -> int:
        if self.max_chars is not None:
            return int(self.max_chars)
        longest = max(max(map(len, item)) if isinstance(item, tuple) else len(item) for item in gold)
        return 3 * max(longest, 1)

    def _replies(self, requests: list[tuple[str, dict]]) -> list[str | None]:
        """Replies from the store, else from the generator; each one is stored as it arrives."""
        keys = [key for key, _ in requests]
        store = self._reply_store
        stored = store.get_texts(list(dict.fromkeys(keys))) if store is not None else {}
        replies = [stored.get(key) for key in keys]
        hits = sum(reply is not None for reply in replies)
        self.n_cache_hits_ += hits
        if store is not None and hits:
            store.add_counts(hits=hits)
        missing = [i for i, reply in enumerate(replies) if reply is None]
        if self.max_requests is not None:
            allowed = max(self.max_requests - self.n_requests_, 0)
            if len(missing) > allowed:
                warnings.warn(
                    f"LLMAugmenter stopped generating: the budget of max_requests={self.max_requests} requests "
                    f"is spent ({len(missing) - allowed} more were needed); the examples received are used.",
                    UserWarning,
                    stacklevel=4,
                )
                self.budget_exhausted_ = True
                missing = missing[:allowed]
        if not missing:
            return replies
        from tqdm.auto import tqdm

        workers = self.n_concurrent if self.generator_.concurrent else 1
        queue = list(reversed(missing))
        with (
            tqdm(total=len(missing), disable=not self.verbose, desc="LLMAugmenter", unit="request", leave=False) as bar,
            ThreadPoolExecutor(max_workers=workers) as pool,
        ):
            # At most `workers` requests in flight. After a failure nothing new is sent, but every
            # request already in flight is awaited and its reply stored: it has been paid for.
            pending: dict = {}
            failure: BaseException | None = None
            while pending or (queue and failure is None):
                while queue and failure is None and len(pending) < workers:
                    i = queue.pop()
                    pending[pool.submit(self._send, requests[i][1])] = i
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    i = pending.pop(future)
                    if future.exception() is not None:
                        failure = failure or future.exception()
                        continue
                    replies[i], usage = future.result()
                    self.n_requests_ += 1
                    self._count_tokens(usage)
                    if store is not None:  # the reply first: it has been paid for
                        store.put_texts([(keys[i], replies[i])])
                        store.add_counts(sent=1, **usage.counts())
                    bar.update(1)
            if failure is not None:
                raise failure
        return replies

    def _send(self, request: dict) -> Paid:
        return self.generator_.respond(request["messages"], seed=request["seed"])

    def _count_tokens(self, usage: Usage) -> None:
        self.n_prompt_tokens_ += usage.prompt_tokens
        self.n_completion_tokens_ += usage.completion_tokens

    def store_counts(self, *, price_per_1k_tokens=None) -> dict:
        """What every user of this augmenter's store paid and was answered for its generator.

        Summed over every process and machine sharing the store since it was
        created: generation requests (the judge's answers, with
        ``teacher="generator"``, are kept and counted under the log-prob
        black box of their own instruction).

        Parameters
        ----------
        price_per_1k_tokens : float or (float, float), default=None
            The price per 1,000 tokens, or per 1,000 prompt and per 1,000
            completion tokens (APIs price them apart); when given, ``"cost"``
            is added.

        Returns
        -------
        counts : dict
            ``{"sent": requests sent, "hits": requests the store answered,
            "prompt_tokens": ..., "completion_tokens": ...}``; zeros without a
            store.
        """
        check_is_fitted(self, "generator_")
        price = check_price(price_per_1k_tokens)
        counts: dict = query_counts(self.store, self.generator_.fingerprint())
        if price is not None:
            counts["cost"] = cost_of(counts["prompt_tokens"], counts["completion_tokens"], price)
        return counts

    # ------------------------------------------------------------ the switch
    def _switch(self, records: list[dict], X, y, prompter: _Prompter) -> None:
        """Judge the clean generations: drop those off the task, then those whose label is atypical of its class."""
        clean = [r for r in records if r["reason"] is None]
        for record in clean:
            record["kept"], record["reason"] = True, "kept"
        self.class_thresholds_ = {}
        self.off_task_threshold_ = None
        self.n_judge_requests_ = 0
        pairs = X.ndim == 2
        gold = _as_input(X)
        if self.off_task_quantile and clean:
            clean = self._off_task_check(clean, gold, pairs)
        if self.threshold == 0 or not clean:
            return
        candidates = [(r["text"], r["text_pair"]) if pairs else r["text"] for r in clean]
        labels = [r["label"] for r in clean]
        proba = self._judge(gold, y, candidates, labels, prompter)
        per_class = class_thresholds(proba, labels)
        self.class_thresholds_ = {label: self.threshold * t for label, t in per_class.items()}
        for record, p in zip(clean, proba, strict=True):
            record["probability"] = float(p)
            if p < self.class_thresholds_[record["label"]]:
                record["kept"], record["reason"] = False, "below_threshold"
                self.drop_counts_["below_threshold"] += 1

    def _off_task_check(self, clean: list[dict], gold: list, pairs: bool) -> list[dict]:
        """Reject the generations less like the gold examples than all but a quantile of them; return the rest."""
        candidates = [(r["text"], r["text_pair"]) if pairs else r["text"] for r in clean]
        embedder = self._embedder()
        gold_scores, scores = memoised(
            ("task_similarity", embedder, gold, candidates), lambda: task_similarity(embedder, gold, candidates)
        )
        self.off_task_threshold_ = float(np.quantile(gold_scores, self.off_task_quantile))
        for record, score in zip(clean, scores, strict=True):
            record["task_similarity"] = float(score)
            if score < self.off_task_threshold_:
                record["kept"], record["reason"] = False, "off_task"
                self.drop_counts_["off_task"] += 1
        return [r for r in clean if r["kept"]]

    def _judge(self, gold: list, y, candidates: list, labels: list, prompter: _Prompter) -> np.ndarray:
        """The judge's probability of each candidate's intended label, computed once per distinct input."""
        if isinstance(self.teacher, str):  # "generator"
            backend = OpenAILogProbBackend(
                split_api_model(self.model),
                base_url=self.base_url,
                api_key_env=self.api_key_env,
                instruction=judge_instruction(prompter.task, prompter.classes, prompter.descriptions),
                timeout=self.timeout,
                max_retries=self.max_retries,
            )
            words = answer_words(prompter.classes)
            store = open_store(self.store, label_word_fingerprint(backend, words))

            def compute():
                proba, report = generator_proba(backend, store, candidates, labels, prompter.classes)
                self.n_judge_requests_ += report.n_queried
                self._count_tokens(report.usage)
                return proba

            return memoised(("generator", backend.fingerprint(), words, candidates, labels), compute)
        teacher = self.teacher if self.teacher is not None else self._default_teacher()
        if self.cv is None:
            key = ("gold", teacher, gold, y, candidates, labels)
            return memoised(key, lambda: gold_proba(teacher, gold, y, candidates, labels))
        settings = dict(cv=self.cv, gold_weight=self.gold_weight, random_state=self.random_state)
        key = ("out_of_fold", teacher, settings, gold, y, candidates, labels)
        return memoised(key, lambda: out_of_fold_proba(teacher, gold, y, candidates, labels, **settings))

    def _embedder(self):
        from ..embedder import BlackBoxEmbedder

        return clone(self.embedder) if self.embedder is not None else BlackBoxEmbedder(store=self.store)

    def _default_teacher(self):
        from ..crosstune import CrossTuneClassifier

        return CrossTuneClassifier(
            self._embedder(), self.label_descriptions, device=self.device, random_state=_seed(self.random_state)
        )

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.string = True
        tags.input_tags.two_d_array = False
        tags.input_tags.sparse = False
        tags.non_deterministic = self.random_state is None
        return tags


class _Prompter:
    """Builds the request for the ``i``-th sample of a class: its key in the store, messages and seed."""

    def __init__(self, augmenter: LLMAugmenter, gold: list, y, classes, descriptions: list[str], pairs: bool):
        self.augmenter = augmenter
        self.gold = gold
        self.classes = list(classes)
        self.descriptions = descriptions
        self.pairs = pairs
        self.y = y
        self.by_class = [np.flatnonzero(y == label) for label in classes]
        self.seed = int(check_random_state(augmenter.random_state).randint(np.iinfo(np.int32).max))

    def request(self, label, sample: int) -> tuple[str, dict]:
        c = self.classes.index(label)
        rng = np.random.default_rng([self.seed, c, sample])
        k = self.augmenter.n_demonstrations
        shown = [rng.choice(rows, size=min(k, len(rows)), replace=False) for rows in self.by_class]
        order = rng.permutation(np.concatenate(shown).astype(int))
        messages = [
            {"role": "system", "content": _SYSTEM},
            {"role": "user", "content": self._prompt(label, c, order)},
        ]
        seed = int(rng.integers(np.iinfo(np.int32).max))
        item = {"messages": messages, "seed": self.seed, "sample": sample}
        store = self.augmenter._reply_store
        key = store.key(item) if store is not None else json.dumps(item)
        return key, {"messages": messages, "seed": seed}

    @property
    def task(self) -> str:
        unit = "pair of texts (text, text_pair)" if self.pairs else "text"
        return self.augmenter.task_description or f"Classify each {unit} into one of the labels below."

    def _prompt(self, label, c: int, demonstrations) -> str:
        augmenter = self.augmenter
        lines = [f"Task: {self.task}", "", "Labels:"]
        lines += [
            f"- {json.dumps(str(name))}: {text}" for name, text in zip(self.classes, self.descriptions, strict=True)
        ]
        if len(demonstrations):
            lines += ["", "Examples:"]
            lines += [json.dumps(self._demonstration(i), ensure_ascii=False) for i in demonstrations]
        n = augmenter.n_per_request
        answer = (
            f'a JSON list of {n} objects with the keys "text" and "text_pair"'
            if self.pairs
            else f"a JSON list of {n} strings"
        )
        lines += [
            "",
            f"Write {n} new, diverse examples of the label {json.dumps(str(label))} ({self.descriptions[c]}). "
            "They must differ from the examples above and from each other, and read like real data of this task. "
            f"Reply with {answer}, and nothing else.",
        ]
        return "\n".join(lines)

    def _demonstration(self, i: int) -> dict:
        item = self.gold[i]
        shown = {"text": item[0], "text_pair": item[1]} if self.pairs else {"text": item}
        return {**shown, "label": str(self.y[i])}


def _record(example, label, pairs: bool, reason: str | None) -> dict:
    if pairs:
        text, text_pair = example if isinstance(example, tuple) else (None, None)
        shown = {"text": text, "text_pair": text_pair}
    else:
        shown = {"text": example}
    nan = float("nan")
    return {
        **shown,
        "label": _plain(label),
        "task_similarity": nan,
        "probability": nan,
        "kept": False,
        "reason": reason,
    }


# ------------------------------------------------------------------ helpers
def _item(row, pairs: bool):
    return (row[0], row[1]) if pairs else row


def _prompt_tokens(generator, requests: list[dict], tokenizer) -> int | None:
    """The prompt tokens of chat requests: by ``tokenizer`` over each message's content, else the generator's count."""
    if tokenizer is None:
        count = getattr(generator, "count_prompt_tokens", None)
        return None if count is None else sum(count(request["messages"]) for request in requests)
    total = 0
    for request in requests:
        for message in request["messages"]:
            counted = tokenizer(message["content"])
            total += counted if isinstance(counted, int) else len(counted)
    return total


def _object_rows(rows: list, pairs: bool) -> np.ndarray:
    """Texts as a 1-D object array, pairs as a 2-column one (never a character array)."""
    out = np.empty((len(rows), 2) if pairs else len(rows), dtype=object)
    for i, row in enumerate(rows):
        out[i] = row
    return out


def _as_input(X: np.ndarray):
    """What a classifier on texts reads: a list of str, or of (text, text_pair) tuples."""
    return [(a, b) for a, b in X] if X.ndim == 2 else list(X)


def _plain(label):
    return label.item() if isinstance(label, np.generic) else label
