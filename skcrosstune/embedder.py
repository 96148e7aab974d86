"""BlackBoxEmbedder: the scikit-learn face of a black box and its query store."""

from __future__ import annotations

import logging
import os
from numbers import Integral, Real

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin, clone
from sklearn.exceptions import NotFittedError
from sklearn.utils.validation import check_is_fitted

from ._compat import Interval, StrOptions, _check_feature_names, _check_feature_names_in, _fit_context
from ._training import DeviceOptions
from ._validation import TextBatch, check_label_word_groups, check_texts, template_fields
from .backends.local import DEFAULT_MODEL, LocalBackend
from .backends.openai import OpenAIEmbeddingBackend, split_api_model
from .cache import (
    ProcessCountersMixin,
    QueryEstimate,
    QueryReport,
    check_price,
    cost_of,
    estimate_queries,
    query_through_store,
)
from .stores import Store, StoreUnavailable, open_store, query_counts
from .stores.base import warn_once_without_store

__all__ = ["BlackBoxEmbedder"]

logger = logging.getLogger("skcrosstune")

PAIR_FEATURES = ("u", "v", "abs_diff", "product", "cosine")
DEFAULT_TEMPLATES = {False: "{text} It was {mask}.", True: "{text} ? {mask}, {text_pair}"}


class BlackBoxEmbedder(ProcessCountersMixin, TransformerMixin, BaseEstimator):
    r"""Texts in, black-box representations out, never paying twice for a query.

    The black box is a local Hugging Face model used forward only (by default
    the embedded all-MiniLM-L6-v2), or an OpenAI-compatible embeddings API.
    Every answer is kept in a per-text, content-addressed query store, so
    refitting, cross-validation folds, and the threads and processes sharing
    the store (a grid search with ``n_jobs``, several notebooks) send each
    unique text to the black box once in total: a text another user of the
    store is already fetching is waited for, not sent again.

    Parameters
    ----------
    model : str, default="all-MiniLM-L6-v2"
        The black box. ``"all-MiniLM-L6-v2"`` is the embedded default (no
        download); any other value is a local Hugging Face model folder, or a
        hub name already in the local Hugging Face cache. ``"openai:<name>"``
        queries the embeddings endpoint at ``base_url`` instead.

    pooling : {"mean", "cls", "mask"}, default="mean"
        How a local model's last hidden layer becomes one vector: the mean
        over tokens, the first token, or the hidden state at the mask token of
        ``template`` (for masked LMs; enables :meth:`label_word_scores`).

    template : str, default=None
        Prompt wrapped around each input, with ``{text}``, ``{text_pair}`` for
        sentence pairs, and one ``{mask}`` when ``pooling="mask"``. None uses
        ``"{text} It was {mask}."`` (pairs: ``"{text} ? {mask}, {text_pair}"``)
        for mask pooling and no template otherwise. Over-long texts are cut,
        never the template.

    pair_encoding : {"auto", "separate", "joint"}, default="auto"
        How sentence pairs are encoded. ``"joint"`` feeds both sides together
        (the tokenizer's pair input, or the template); ``"separate"`` embeds
        each side on its own and returns ``pair_features``. ``"auto"`` is
        joint for mask pooling and separate otherwise.

    pair_features : tuple of str, default=("cosine",)
        Features of separately embedded pairs, from ``"u"``, ``"v"``,
        ``"abs_diff"`` (\\|u-v\\|), ``"product"`` (u*v) and ``"cosine"``.
        The default was chosen on the pair tasks of the benchmark, where the
        cosine alone beat the full set and joint encoding.

    normalize : bool, default=True
        Scale each representation to unit length. Applied after the store,
        so it never causes a new query.

    max_length : int, default=None
        Token budget per input of a local model; None uses the model's own
        limit (256 for all-MiniLM-L6-v2).

    batch_size : int, default=32
        Inputs per black-box query.

    device : str, default="auto"
        Where a local model runs: ``"auto"`` (CUDA when present, with bf16 or
        fp16 autocast), ``"cpu"``, ``"cuda"``, ``"cuda:1"``...

    store : "auto", str, path or None, default="auto"
        Where answers are kept, resolved each time the embedder queries, on
        the machine running it (a fitted model holds no path, so it can be
        pickled on one machine and used on another). ``"auto"``:
        ``$SKCROSSTUNE_CACHE_DIR``, else the user cache folder
        (``~/.cache/skcrosstune``); if that cannot be used, one warning is
        given and the work goes on without a store. A folder path: SQLite
        files there (an unusable folder is an error). ``"redis://host:port/db"``:
        a Redis server shared by many machines (needs the ``redis`` extra;
        its password, if any, is read from ``$SKCROSSTUNE_REDIS_PASSWORD``,
        never from the URL). None: no store (duplicates within one call are still sent once).

    base_url : str, default=None
        Endpoint of an OpenAI-compatible API (``model="openai:..."``), e.g.
        ``"http://localhost:11434/v1"``; None uses ``$OPENAI_BASE_URL`` or the
        OpenAI API. A URL with credentials (``http://user:password@host/v1``)
        belongs in ``$OPENAI_BASE_URL``, where it is used (as basic auth,
        with ``api_key_env=None``: a configured key takes the request's one
        ``Authorization`` header) and shown nowhere; as a parameter it is
        refused, since parameters show in reprs and pickles.

    api_key_env : str or None, default="OPENAI_API_KEY"
        The *name* of the environment variable holding the API key, read when
        the first query is sent. The key itself is never stored in the
        estimator, its repr, its logs or its pickle. None for servers that
        need no key.

    dimensions : int, default=None
        Output width requested from embedding APIs that can shorten vectors.

    timeout : float, default=60.0
        Seconds before an API request counts as failed and is retried.

    max_retries : int, default=5
        Retries of rate-limited, failed or timed-out API requests, with
        exponential backoff and jitter.

    store_errors : {"warn", "raise"}, default="warn"
        What a named ``store`` that cannot be reached when this embedder
        queries (a Redis server down, a folder that cannot be created: a
        :class:`~skcrosstune.stores.StoreUnavailable`) does:
        ``"warn"`` gives one warning per store and process and goes on
        without it (answers are computed, not kept), so a deployed model keeps
        predicting; ``"raise"`` raises it, for runs that must not pay
        without a store. A store refused for safety (a password in a URL, a
        folder others can write) raises either way; a read-only store is
        read either way (new answers are not kept, with one warning).

    n_concurrent : int, default=4
        API models: embedding requests (of ``batch_size`` inputs each) in
        flight at once from this process, so that a large corpus waits on
        the API's throughput rather than on each request's latency. Each
        answer is checked and stored as it arrives; a failed request stops
        new ones, and the answers of those in flight are stored before the
        error is raised. A rate limit is met with the retries' backoff.
        Local models answer one batch at a time (the model uses every core).

    verbose : bool, default=False
        Show a progress bar while querying, and log what each call cost.

    Attributes
    ----------
    backend_ : Backend
        The black box; loads its model or client lazily, on the first query.

    is_pair_ : bool
        Whether the embedder was fitted on sentence pairs.

    n_features_in_ : int
        Input columns: 1 for texts, 2 for sentence pairs.

    feature_names_in_ : ndarray of shape (`n_features_in_`,)
        Column names, when fitted on a DataFrame with string column names.

    n_features_out_ : int
        Width of the output.

    n_queries_ : int
        Inputs this process sent to the black box since :meth:`fit`, or
        since the embedder was loaded: an unpickled embedder starts at 0.

    n_cache_hits_ : int
        Inputs the store answered for this process since :meth:`fit` or
        loading (:meth:`store_counts` totals every process).

    n_tokens_ : int
        Tokens the queries of :attr:`n_queries_` used, as the black box
        reports them (an API's ``usage``; a local model's tokenizer, padding
        left out); an unpickled embedder starts at 0.

    See Also
    --------
    sentence_transformers.SentenceTransformer : White-box sentence encoders.

    Notes
    -----
    The store key covers the backend fingerprint (the weights digest or the
    API endpoint and model, the pooling, template and token budget) and the
    text. Settings applied after the store (``normalize``, ``pair_features``,
    ``batch_size``, ``device``) are not in the key: changing them never
    re-queries. With separate pair encoding each side is stored as a single
    text, shared with every other task that embeds it.

    Examples
    --------
    >>> from skcrosstune import BlackBoxEmbedder
    >>> embedder = BlackBoxEmbedder(store=None)
    >>> X = embedder.fit_transform(["a gripping, funny film", "dull and far too long"])
    >>> X.shape, X.dtype
    ((2, 384), dtype('float32'))
    >>> embedder.n_queries_
    2
    """

    _parameter_constraints: dict = {
        "model": [str],
        "pooling": [StrOptions({"mean", "cls", "mask"})],
        "template": [str, None],
        "pair_encoding": [StrOptions({"auto", "separate", "joint"})],
        "pair_features": [tuple, list],
        "normalize": ["boolean"],
        "max_length": [Interval(Integral, 4, None, closed="left"), None],
        "batch_size": [Interval(Integral, 1, None, closed="left")],
        "device": [DeviceOptions()],
        "store": [str, os.PathLike, None],
        "base_url": [str, None],
        "api_key_env": [str, None],
        "dimensions": [Interval(Integral, 1, None, closed="left"), None],
        "timeout": [Interval(Real, 0, None, closed="neither")],
        "max_retries": [Interval(Integral, 0, None, closed="left")],
        "n_concurrent": [Interval(Integral, 1, None, closed="left")],
        "store_errors": [StrOptions({"warn", "raise"})],
        "verbose": ["verbose"],
    }

    def __init__(
        self,
        model=DEFAULT_MODEL,
        *,
        pooling="mean",
        template=None,
        pair_encoding="auto",
        pair_features=("cosine",),
        normalize=True,
        max_length=None,
        batch_size=32,
        device="auto",
        store="auto",
        base_url=None,
        api_key_env="OPENAI_API_KEY",
        dimensions=None,
        timeout=60.0,
        max_retries=5,
        store_errors="warn",
        n_concurrent=4,
        verbose=False,
    ):
        self.model = model
        self.pooling = pooling
        self.template = template
        self.pair_encoding = pair_encoding
        self.pair_features = pair_features
        self.normalize = normalize
        self.max_length = max_length
        self.batch_size = batch_size
        self.device = device
        self.store = store
        self.base_url = base_url
        self.api_key_env = api_key_env
        self.dimensions = dimensions
        self.timeout = timeout
        self.max_retries = max_retries
        self.store_errors = store_errors
        self.n_concurrent = n_concurrent
        self.verbose = verbose

    # ------------------------------------------------------------------ fit
    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None):
        """Check the input and settings and prepare the black box (nothing is queried).

        For an API model without ``dimensions``, the first input is embedded
        (and stored) to learn the output width.

        Parameters
        ----------
        X : list, ndarray, Series or DataFrame of str
            Texts, or sentence pairs as a 2-column array / DataFrame or a
            sequence of 2-tuples.
        y : None
            Ignored.

        Returns
        -------
        self : BlackBoxEmbedder
            The fitted embedder.
        """
        batch = check_texts(X)
        self._prepare(batch, X)
        self.n_queries_ = 0
        self.n_cache_hits_ = 0
        self.n_tokens_ = 0
        self.embedding_dim_ = self.backend_.dimension  # None until the probe below learns it
        if self.embedding_dim_ is None:
            probe = self._raw_states(self._probe_batch(batch), split_pairs=False)
            self.embedding_dim_ = probe.shape[1]
        self.embedding_dim_ = int(self.embedding_dim_)
        self.backend_.expected_width = self.embedding_dim_  # an answer of another width is then refused
        self.n_features_out_ = self._output_width(self.embedding_dim_)
        return self

    def _check_pair_features(self):
        features = tuple(self.pair_features)
        unknown = [f for f in features if f not in PAIR_FEATURES]
        if not features or unknown or len(set(features)) != len(features):
            raise ValueError(
                f"pair_features must be a non-empty tuple of distinct names from {PAIR_FEATURES}, "
                f"got {self.pair_features!r}."
            )

    def _resolve_pair_encoding(self) -> str:
        if self.pair_encoding == "auto":
            return "joint" if self.pooling == "mask" else "separate"
        if self.pooling == "mask" and self.pair_encoding == "separate" and self.is_pair_:
            raise ValueError(
                "pooling='mask' reads the single mask of a template holding both texts; "
                "use pair_encoding='joint' (or 'auto') for sentence pairs."
            )
        return self.pair_encoding

    def _resolve_template(self) -> str | None:
        joint_pairs = self.is_pair_ and self.pair_encoding_ == "joint"
        template = self.template
        if template is None and self.pooling == "mask":
            template = DEFAULT_TEMPLATES[joint_pairs]
        if template is None:
            return None
        fields = template_fields(template)
        allowed = {"text", "text_pair", "mask"}
        problems = []
        if set(fields) - allowed:
            problems.append(f"unknown fields {sorted(set(fields) - allowed)} (allowed: {sorted(allowed)})")
        if fields.count("text") != 1:
            problems.append("it needs {text} exactly once")
        if self.pooling == "mask" and fields.count("mask") != 1:
            problems.append("pooling='mask' needs {mask} exactly once")
        if self.pooling != "mask" and "mask" in fields:
            problems.append("{mask} is only read with pooling='mask'")
        if joint_pairs and fields.count("text_pair") != 1:
            problems.append("jointly encoded sentence pairs need {text_pair} exactly once")
        if not joint_pairs and "text_pair" in fields:
            problems.append("{text_pair} is only filled for jointly encoded sentence pairs")
        if problems:
            raise ValueError(f"template {template!r} is not usable: " + "; ".join(problems) + ".")
        return template

    def _prepare(self, batch: TextBatch, X) -> None:
        """Everything :meth:`fit` sets up before its first query: the input kind, settings and black box."""
        self.is_pair_ = batch.is_pair
        self.n_features_in_ = batch.n_columns
        _check_feature_names(self, X, reset=True)
        self._check_pair_features()
        self.pair_encoding_ = self._resolve_pair_encoding()
        self.template_ = self._resolve_template()
        self.backend_ = self._make_backend()

    @staticmethod
    def _probe_batch(batch: TextBatch) -> TextBatch:
        """The input :meth:`fit` embeds to learn the output width when the black box does not say it."""
        return TextBatch(texts=batch.texts[:1])

    def _make_backend(self):
        api_model = split_api_model(self.model)
        if api_model is not None:
            if self.pooling != "mean" or self.template is not None:
                raise ValueError(
                    "An embeddings API returns finished embeddings: pooling and template "
                    f"apply to local models only (got pooling={self.pooling!r}, template={self.template!r})."
                )
            return OpenAIEmbeddingBackend(
                api_model,
                base_url=self.base_url,
                api_key_env=self.api_key_env,
                dimensions=self.dimensions,
                batch_size=self.batch_size,
                timeout=self.timeout,
                max_retries=self.max_retries,
            )
        return LocalBackend(
            self.model,
            pooling=self.pooling,
            template=self.template_,
            max_length=self.max_length,
            device=self.device,
            batch_size=self.batch_size,
        )

    def _open_store(self) -> Store | None:
        """The store named by ``store``, resolved now, on this machine (see ``store_errors``)."""
        try:
            return open_store(self.store, self.backend_.fingerprint())
        except StoreUnavailable as exc:
            if self.store_errors == "raise":
                raise
            warn_once_without_store(exc)
            return None

    def store_counts(self, *, price_per_1k_tokens=None) -> dict:
        """What every user of this embedder's store paid and was answered for its black box.

        Summed over every process, thread and machine sharing the store (the
        clones of a grid search included), since the store was created.

        Parameters
        ----------
        price_per_1k_tokens : float or (float, float), default=None
            The black box's price per 1,000 tokens, or per 1,000 prompt and
            per 1,000 completion tokens; when given, ``"cost"`` is added.

        Returns
        -------
        counts : dict
            ``{"sent": inputs sent to the black box, "hits": inputs the store
            answered, "prompt_tokens": ..., "completion_tokens": tokens those
            requests used}`` (tokens as the black box reported them: an API's
            ``usage``, a local model's tokenizer); zeros without a store.
        """
        check_is_fitted(self)
        price = check_price(price_per_1k_tokens)
        counts: dict = query_counts(self.store, self.backend_.fingerprint())
        if price is not None:
            counts["cost"] = cost_of(counts["prompt_tokens"], counts["completion_tokens"], price)
        return counts

    def estimate_queries(self, X, *, tokenizer=None, price_per_1k_tokens=None) -> QueryEstimate:
        """What :meth:`transform` would send for ``X`` now, before anything is sent or paid.

        On an unfitted embedder: what ``fit(X)`` then ``transform(X)`` would
        send. The store is read (what it holds is not sent again) but
        nothing is queried and no counter moves; with no one else paying in
        between, ``to_send`` is exactly what the call then sends.

        Parameters
        ----------
        X : list, ndarray, Series or DataFrame of str
            Texts or sentence pairs.
        tokenizer : callable, default=None
            ``tokenizer(text)`` giving the tokens of a text (a list, or their
            number), e.g. ``tiktoken.get_encoding("cl100k_base").encode``, to
            count the tokens of an API model. A local model counts its own
            tokens; without either, ``tokens`` is None.
        price_per_1k_tokens : float, default=None
            The price per 1,000 (prompt) tokens; when given with a token
            count, ``cost`` is filled.

        Returns
        -------
        estimate : QueryEstimate
            ``n_inputs``, ``n_unique``, ``n_stored`` and ``n_to_send``
            inputs, ``tokens`` and ``cost`` of what would be sent.
        """
        planner = self._planner(check_texts(X), X)
        return estimate_queries([planner._plan(X)], tokenizer=tokenizer, price_per_1k_tokens=price_per_1k_tokens)

    def _planner(self, batch: TextBatch, X) -> BlackBoxEmbedder:
        """Itself when fitted, else an unfitted copy set up as :meth:`fit` would set it up (nothing queried)."""
        try:
            check_is_fitted(self)
            return self
        except NotFittedError:
            planner = clone(self)
            planner._prepare(batch, X)
            planner.embedding_dim_ = planner.backend_.dimension
            return planner

    def _plan(self, X) -> tuple:
        """``(store, items, width, backend)``: what :meth:`transform` of ``X`` queries (and fit's probe, if any)."""
        batch = self._check_input(X)
        items = self._query_items(batch, split_pairs=batch.is_pair and self.pair_encoding_ == "separate")
        if self.embedding_dim_ is None:  # an unfitted API embedder: fit's probe comes first
            items = self._probe_batch(batch).items() + items
        return self._open_store(), items, self.embedding_dim_, self.backend_

    def _output_width(self, dim: int) -> int:
        if not (self.is_pair_ and self.pair_encoding_ == "separate"):
            return dim
        return sum(1 if name == "cosine" else dim for name in self.pair_features)

    # ------------------------------------------------------------ transform
    def transform(self, X):
        """Embed texts (or sentence pairs), asking the black box only for what the store lacks.

        Parameters
        ----------
        X : list, ndarray, Series or DataFrame of str
            Of the same kind (texts or pairs) as seen in :meth:`fit`.

        Returns
        -------
        X_out : ndarray of shape (n_samples, `n_features_out_`), dtype float32
            One representation per input, unit length when ``normalize=True``.
        """
        check_is_fitted(self)
        batch = self._check_input(X)
        if not (batch.is_pair and self.pair_encoding_ == "separate"):
            return self._finish(self._raw_states(batch, split_pairs=False))
        sides = self._finish(self._raw_states(batch, split_pairs=True))
        return self._pair_features(sides[: len(batch)], sides[len(batch) :])

    def _check_input(self, X) -> TextBatch:
        """The texts of ``X``, checked against what :meth:`fit` saw: kind, and column names as scikit-learn does."""
        batch = check_texts(X)
        _check_feature_names(self, X, reset=False)
        if batch.is_pair != self.is_pair_:
            fitted = "sentence pairs" if self.is_pair_ else "single texts"
            given = "sentence pairs" if batch.is_pair else "single texts"
            raise ValueError(f"This embedder was fitted on {fitted} but was given {given}.")
        return batch

    @staticmethod
    def _query_items(batch: TextBatch, *, split_pairs: bool) -> list:
        """The store's items for a batch: each text, or each side of each pair, or each pair as one input."""
        return batch.texts + batch.text_pairs if split_pairs else batch.items()

    def _raw_states(self, batch: TextBatch, *, split_pairs: bool) -> np.ndarray:
        """Raw black-box representations through the store, counted: a new array, held by nothing else."""
        items = self._query_items(batch, split_pairs=split_pairs)
        from tqdm.auto import tqdm

        def query(store):
            bar = tqdm(total=len(items), disable=not self.verbose, desc="BlackBoxEmbedder", unit="text", leave=False)
            with bar:
                return query_through_store(
                    items,
                    self.backend_.query,
                    store=store,
                    batch_size=self.batch_size,
                    lengths=self.backend_.item_lengths,
                    width=self.embedding_dim_,
                    dtype=np.float32,
                    progress=bar.update,
                    concurrency=self.n_concurrent if getattr(self.backend_, "concurrent", False) else 1,
                    store_errors=self.store_errors,
                )

        store = self._open_store()
        try:
            states, report = query(store)
        except StoreUnavailable as exc:  # the store could not be read: nothing was paid for yet
            if self.store_errors == "raise" or store is None:
                raise
            warn_once_without_store(exc)
            states, report = query(None)
        if report.store_error is not None:  # the store failed to keep answers: held here, written at its next use
            warn_once_without_store(report.store_error)
        self._account(report)
        return states

    def _account(self, report: QueryReport) -> None:
        self.n_queries_ += report.n_queried
        self.n_cache_hits_ += report.n_cached
        self.n_tokens_ += report.usage.prompt_tokens + report.usage.completion_tokens
        if report.n_corrupt:
            logger.warning("%d corrupted or unusable stored answers were fetched again.", report.n_corrupt)
        if self.verbose:
            logger.info(
                "BlackBoxEmbedder: %d inputs, %d unique, %d from the store, %d queried (%d tokens).",
                report.n_items,
                report.n_unique,
                report.n_cached,
                report.n_queried,
                report.usage.prompt_tokens + report.usage.completion_tokens,
            )

    def _finish(self, states: np.ndarray) -> np.ndarray:
        """Float32 representations, scaled to unit length in place (block by block: no full-size copy).

        ``states`` must be what :meth:`_raw_states` just returned: a new array
        that neither the store, the backend nor the caller holds.
        """
        states = np.asarray(states, dtype=np.float32)
        if self.normalize:
            for start in range(0, len(states), 512):
                block = states[start : start + 512]
                block /= _row_norms(block)
        return states

    def _pair_features(self, u: np.ndarray, v: np.ndarray) -> np.ndarray:
        blocks = []
        for name in self.pair_features:
            if name == "u":
                blocks.append(u)
            elif name == "v":
                blocks.append(v)
            elif name == "abs_diff":
                blocks.append(np.abs(u - v))
            elif name == "product":
                blocks.append(u * v)
            else:
                blocks.append((u * v).sum(1, keepdims=True) / (_row_norms(u) * _row_norms(v)))
        return np.hstack(blocks).astype(np.float32, copy=False)

    # ----------------------------------------------------------- label words
    def label_word_scores(self, X, label_words, *, output="logits"):
        """Zero-shot scores of label words at the mask, from the same stored query as :meth:`transform`.

        Needs ``pooling="mask"`` on a masked LM. The LM head is applied to the
        stored mask state, so texts already embedded cost no new query, and
        a new set of label words never re-queries.

        Parameters
        ----------
        X : list, ndarray, Series or DataFrame of str
            Texts or sentence pairs, as in :meth:`transform`.
        label_words : sequence
            One entry per class: a word, or a list of words whose best score
            (the maximum) stands for the class. Words are scored as they read
            after a space; a word split into several tokens is scored by its
            first token, with a warning.
        output : {"logits", "log_probs", "probs"}, default="logits"
            Raw logits, or log-probabilities / probabilities under the full
            vocabulary softmax.

        Returns
        -------
        scores : ndarray of shape (n_samples, n_classes), dtype float32
            One column per entry of ``label_words``.
        """
        return self._transform_and_label_word_scores(X, label_words, output=output)[1]

    def _transform_and_label_word_scores(self, X, label_words, *, output="logits"):
        """:meth:`transform` and :meth:`label_word_scores` of ``X`` from one pass over the store."""
        check_is_fitted(self)
        if not getattr(self.backend_, "supports_label_words", False):
            raise ValueError(
                "label_word_scores needs pooling='mask' on a local masked language model; "
                f"this embedder has model={self.model!r}, pooling={self.pooling!r}."
            )
        if output not in {"logits", "log_probs", "probs"}:
            raise ValueError(f"output must be 'logits', 'log_probs' or 'probs', got {output!r}.")
        groups = check_label_word_groups(label_words)
        batch = self._check_input(X)
        ids = self.backend_.label_word_ids([word for group in groups for word in group])
        states = self._raw_states(batch, split_pairs=False)
        scores = self.backend_.label_word_scores(states, ids, log_softmax=output != "logits")
        if output == "probs":
            scores = np.exp(scores)
        # mask pooling embeds a pair jointly, so the states are what transform finishes (in place: the
        # scores above were read from them first)
        return self._finish(states), _max_per_group(scores, [len(g) for g in groups]).astype(np.float32)

    # -------------------------------------------------------------- sklearn
    def get_feature_names_out(self, input_features=None):
        """Get the names of the output columns.

        Parameters
        ----------
        input_features : array-like of str, default=None
            The input column names. Checked as scikit-learn does: when given,
            they must equal ``feature_names_in_`` (if fitted on a DataFrame)
            and number ``n_features_in_``, else a ``ValueError`` is raised.
            They do not enter the output names.

        Returns
        -------
        feature_names_out : ndarray of str
            ``embedding0`` ... for texts and joint pairs; for separately
            encoded pairs, ``u0`` ..., ``v0`` ..., ``abs_diff0`` ...,
            ``product0`` ... and ``cosine``, in the order of ``pair_features``.
        """
        check_is_fitted(self)
        _check_feature_names_in(self, input_features, generate_names=False)
        dim = self.embedding_dim_
        if not (self.is_pair_ and self.pair_encoding_ == "separate"):
            return np.asarray([f"embedding{i}" for i in range(dim)], dtype=object)
        names = []
        for block in self.pair_features:
            names += ["cosine"] if block == "cosine" else [f"{block}{i}" for i in range(dim)]
        return np.asarray(names, dtype=object)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.string = True
        tags.input_tags.two_d_array = False
        tags.transformer_tags.preserves_dtype = []
        tags.requires_fit = True
        return tags


def _row_norms(X: np.ndarray) -> np.ndarray:
    """The length of each row, as a column, at least 1e-12 (a zero row is divided by that, not by 0)."""
    return np.maximum(np.linalg.norm(X, axis=1, keepdims=True), 1e-12)


def _max_per_group(scores: np.ndarray, sizes) -> np.ndarray:
    """The best column of each consecutive group of ``sizes`` columns: a class's best word or description."""
    bounds = np.cumsum([0, *sizes])
    return np.stack([scores[:, lo:hi].max(axis=1) for lo, hi in zip(bounds[:-1], bounds[1:], strict=True)], axis=1)
