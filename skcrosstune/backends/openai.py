"""OpenAI-compatible embedding endpoints (OpenAI, vLLM, Ollama, TEI...) as black boxes.

The key is read from an environment variable whose *name* is configured and
goes straight into the client object, which is never pickled: no frame of
ours holds it, and every message is scrubbed of it. Credentials written into
the URL (``http://user:password@host/v1``, read from ``$OPENAI_BASE_URL``: a
``base_url`` parameter holding them is refused, as a parameter shows in
reprs and pickles) are used to connect and shown nowhere: messages,
fingerprints (hence the store) and reprs use :attr:`OpenAIClient.endpoint`,
the URL without them. Every answer is checked
before it is returned (one finite vector per text, all of the width learned
at fit); an unusable answer is asked for again, like a malformed one.
"""

from __future__ import annotations

import os
import threading
import warnings
from collections.abc import Hashable, Sequence
from urllib.parse import unquote, urlsplit, urlunsplit

import numpy as np

from ._retry import call_with_retries
from .base import Backend, Paid, UnusableAnswer, check_vectors, read_usage

__all__ = ["OpenAIClient", "OpenAIEmbeddingBackend", "split_api_model", "strip_credentials"]

API_PREFIX = "openai:"
_CLIENT_LOCK = threading.Lock()


def split_api_model(model: str) -> str | None:
    """The API model name in ``"openai:<name>"``, or None for a local model."""
    if isinstance(model, str) and model.startswith(API_PREFIX):
        name = model[len(API_PREFIX) :]
        if not name:
            raise ValueError(
                "model='openai:' needs a model name after the colon, e.g. 'openai:text-embedding-3-small'."
            )
        return name
    return None


def strip_credentials(url: str) -> str:
    """``url`` without the ``user:password@`` part of its host, if any.

    Examples
    --------
    >>> strip_credentials("https://me:s3cret@example.org:8443/v1")
    'https://example.org:8443/v1'
    """
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))


def _describe(answer, expected: str) -> str:
    """Why ``answer`` is not the ``expected`` kind of object, for a message."""
    if isinstance(answer, (str, bytes)):
        text = answer.decode("utf-8", "replace") if isinstance(answer, bytes) else answer
        return f"it is a text, not {expected}: {text[:80]!r}"
    return f"it is a {type(answer).__name__}, not {expected}"


class OpenAIClient:
    """The client side shared by every OpenAI-compatible backend.

    Needs ``model``, ``base_url``, ``api_key_env``, ``timeout`` and
    ``max_retries`` attributes. The client (holding the key) is created on
    first use and never pickled.
    """

    _client = None

    @property
    def _url(self) -> str:
        """The base URL requests go to, credentials included: for the client only."""
        return (self.base_url or os.environ.get("OPENAI_BASE_URL") or "https://api.openai.com/v1").rstrip("/")

    @property
    def endpoint(self) -> str:
        """The base URL requests go to, without credentials: for messages and fingerprints."""
        return strip_credentials(self._url)

    def _refuse_credentials_in_parameter(self) -> None:
        if self.base_url and strip_credentials(self.base_url) != self.base_url:
            raise ValueError(
                f"base_url for {strip_credentials(self.base_url)} holds credentials, which a parameter would show "
                "in the estimator's repr, pickle and tracebacks: leave base_url=None and put the URL with its "
                "credentials in $OPENAI_BASE_URL (or the key in the variable api_key_env names)."
            )

    def _get_client(self):
        with _CLIENT_LOCK:  # threads sending requests at once share one client
            return self._get_client_once()

    def _get_client_once(self):
        if self._client is None:
            if self.api_key_env is not None and not os.environ.get(self.api_key_env):
                raise ValueError(
                    f"The environment variable {self.api_key_env!r} is not set; it must hold "
                    f"the API key for {self.endpoint} (api_key_env names the variable)."
                )
            self._client, problem = _new_client(self.api_key_env, self._url, self.timeout)
            if problem is not None:
                raise ValueError(f"No client could be made for {self.endpoint}: {self._scrub(problem)}.")
        return self._client

    def _scrub(self, message: str) -> str:
        """``message`` without the key or the URL's credentials."""
        url = urlsplit(self._url)
        secrets = [self._url, url.netloc.rpartition("@")[0], url.password]
        if self.api_key_env is not None:
            secrets.append(os.environ.get(self.api_key_env))
            if self._client is not None:
                secrets.append(self._client.api_key)
        for secret in secrets:
            if secret:
                message = message.replace(secret, self.endpoint if secret == self._url else "***")
        return message

    def _request(self, send, kind: str, *, check=None):
        """``check(send(client))`` with retries on transient faults and unusable answers.

        Errors name the ``kind`` endpoint (without credentials) and the model.
        """
        client = self._get_client()
        return call_with_retries(
            lambda: send(client),
            what=f"{kind} endpoint {self.endpoint} (model {self.model!r})",
            check=check,
            scrub=self._scrub,
            max_retries=self.max_retries,
        )

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_client"] = None
        return state


def _new_client(api_key_env: str | None, url: str, timeout: float):
    """``(client, None)`` or ``(None, problem)``; the key goes from the environment into the client only.

    Credentials in the URL become the client's basic auth, so that the URL the
    HTTP library logs has none, when no key is configured: a request carries
    one ``Authorization``, and a configured key (the API's own) takes it, as
    ``Bearer``; the URL's credentials are then not sent (one warning says so).
    """
    import openai

    parts = urlsplit(url)
    if "@" in parts.netloc and api_key_env is not None:
        warnings.warn(
            f"$OPENAI_BASE_URL holds credentials and api_key_env={api_key_env!r} names a key: a request carries one "
            f"Authorization header, so the key is sent (as Bearer) to {strip_credentials(url)} and the URL's "
            "credentials are not. Set api_key_env=None to authenticate with the URL's credentials instead.",
            UserWarning,
            stacklevel=6,
        )
    try:
        http_client = None
        if "@" in parts.netloc and api_key_env is None:
            http_client = openai.DefaultHttpxClient(auth=(unquote(parts.username or ""), unquote(parts.password or "")))
        client = openai.OpenAI(
            api_key="no-key" if api_key_env is None else os.environ[api_key_env],
            base_url=strip_credentials(url),
            max_retries=0,
            timeout=timeout,
            http_client=http_client,
        )
    except Exception as exc:  # noqa: BLE001 - reported without the frames that hold the key
        return None, f"{type(exc).__name__}: {exc}"
    return client, None


class OpenAIEmbeddingBackend(OpenAIClient, Backend):
    """An embeddings endpoint speaking the OpenAI protocol.

    Parameters
    ----------
    model : str
        The model name the endpoint knows.
    base_url : str or None
        The endpoint, e.g. ``"http://localhost:11434/v1"``; None uses the
        client's default (``OPENAI_BASE_URL`` or the OpenAI API).
    api_key_env : str or None
        Name of the environment variable holding the key; None for servers
        that need no key.
    dimensions : int or None
        Requested output width, for models that support shortening.
    batch_size, timeout, max_retries : int, float, int

    Attributes
    ----------
    expected_width : int or None
        The width every answer must have when ``dimensions`` is None, once
        known: the embedder sets it to the width it learned at fit. A model
        that changes width behind the same name then gets a clear error
        instead of vectors of two widths.
    """

    pair_separator = "\n"
    concurrent = True  # the client is shared by the threads of a call

    def __init__(
        self,
        model,
        *,
        base_url=None,
        api_key_env="OPENAI_API_KEY",
        dimensions=None,
        batch_size=64,
        timeout=60.0,
        max_retries=5,
    ):
        self.model = model
        self.base_url = base_url
        self.api_key_env = api_key_env
        self.dimensions = dimensions
        self.batch_size = batch_size
        self.timeout = timeout
        self.max_retries = max_retries
        self.expected_width = None
        self._client = None
        self._refuse_credentials_in_parameter()

    def fingerprint(self) -> dict:
        """The endpoint and model: the same name elsewhere may answer differently."""
        return {
            "backend": "openai",
            "base_url": self.endpoint,
            "model": self.model,
            "dimensions": self.dimensions,
        }

    @property
    def dimension(self) -> int | None:
        """``dimensions`` when requested; else only a query can tell."""
        return self.dimensions

    def encode(self, items: Sequence[Hashable]) -> np.ndarray:
        """One embeddings request for a batch, retried on transient faults and unusable answers."""
        return self.query(items).answer

    def query(self, items: Sequence[Hashable]) -> Paid:
        """:meth:`encode`, with the tokens the endpoint's ``usage`` reports for the request."""
        # Endpoints reject empty strings; a lone space stands in (the cache key keeps "").
        texts = [(item if isinstance(item, str) else self.pair_separator.join(item)) or " " for item in items]
        extra = {} if self.dimensions is None else {"dimensions": self.dimensions}
        return self._request(
            lambda client: client.embeddings.create(model=self.model, input=texts, encoding_format="float", **extra),
            "embeddings",
            check=lambda response: Paid(self._vectors(response, len(texts)), read_usage(response)),
        )

    def _vectors(self, response, n_texts: int) -> np.ndarray:
        """The answer's vectors in input order, or :class:`UnusableAnswer`."""
        data = getattr(response, "data", None)
        if not isinstance(data, list):
            raise UnusableAnswer(
                "its data is not a list of vectors"
                if hasattr(response, "data")
                else _describe(response, "an embeddings list")
            )
        if len(data) != n_texts:
            raise UnusableAnswer(f"it holds {len(data)} vectors for {n_texts} texts")
        indices = [getattr(row, "index", None) for row in data]
        if any(type(i) is not int for i in indices) or sorted(indices) != list(range(n_texts)):
            raise UnusableAnswer(f"the index fields of its rows are not 0 to {n_texts - 1}, each once")
        vectors = [None] * n_texts
        for i, row in zip(indices, data, strict=True):
            vectors[i] = getattr(row, "embedding", None)
        rows = check_vectors(vectors, n_texts)
        width = self.dimensions or self.expected_width
        if width is not None and rows.shape[1] != width:
            learned = "asked for with dimensions" if self.dimensions else "learned when the embedder was fitted"
            raise UnusableAnswer(
                f"its vectors are {rows.shape[1]} wide, not the {width} {learned}: the model behind "
                f"{self.model!r} has changed. Refit the embedder (and start a new store, or clear this "
                "model's entries) to use the new model.",
                retry=False,
            )
        return rows
