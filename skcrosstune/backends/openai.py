"""OpenAI-compatible embedding endpoints (OpenAI, vLLM, Ollama, TEI...) as black boxes.

The key is read from an environment variable whose *name* is configured; it
lives only inside the client object, which is never pickled, and is scrubbed
from every error message.
"""

from __future__ import annotations

import os
from collections.abc import Hashable, Sequence

import numpy as np

from ._retry import call_with_retries
from .base import Backend

__all__ = ["OpenAIClient", "OpenAIEmbeddingBackend", "split_api_model"]

API_PREFIX = "openai:"


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


class OpenAIClient:
    """The client side shared by every OpenAI-compatible backend.

    Needs ``model``, ``base_url``, ``api_key_env``, ``timeout`` and
    ``max_retries`` attributes. The client (holding the key) is created on
    first use and never pickled; the key is kept apart only to scrub it from
    messages.
    """

    _client = None
    _secret = None

    @property
    def endpoint(self) -> str:
        """The base URL requests go to."""
        return (self.base_url or os.environ.get("OPENAI_BASE_URL") or "https://api.openai.com/v1").rstrip("/")

    def _get_client(self):
        if self._client is None:
            import openai

            if self.api_key_env is None:
                key = "no-key"
            else:
                key = os.environ.get(self.api_key_env)
                if not key:
                    raise ValueError(
                        f"The environment variable {self.api_key_env!r} is not set; it must hold "
                        f"the API key for {self.endpoint} (api_key_env names the variable)."
                    )
                self._secret = key
            self._client = openai.OpenAI(api_key=key, base_url=self.endpoint, max_retries=0, timeout=self.timeout)
        return self._client

    def _request(self, send, kind: str):
        """``send(client)`` with retries on transient faults; errors name the ``kind`` endpoint and the model."""
        client = self._get_client()
        return call_with_retries(
            lambda: send(client),
            what=f"{kind} endpoint {self.endpoint} (model {self.model!r})",
            max_retries=self.max_retries,
            secret=self._secret,
        )

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_client"] = None
        state["_secret"] = None
        return state


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
    """

    pair_separator = "\n"

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
        self._client = None
        self._secret = None

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
        """One embeddings request for a batch, retried on transient faults."""
        # Endpoints reject empty strings; a lone space stands in (the cache key keeps "").
        texts = [(item if isinstance(item, str) else self.pair_separator.join(item)) or " " for item in items]
        extra = {} if self.dimensions is None else {"dimensions": self.dimensions}
        response = self._request(
            lambda client: client.embeddings.create(model=self.model, input=texts, encoding_format="float", **extra),
            "embeddings",
        )
        rows = sorted(response.data, key=lambda d: d.index)
        if len(rows) != len(texts):
            raise RuntimeError(
                f"The embeddings endpoint {self.endpoint} returned {len(rows)} vectors for {len(texts)} texts."
            )
        return np.asarray([row.embedding for row in rows], dtype=np.float32)
