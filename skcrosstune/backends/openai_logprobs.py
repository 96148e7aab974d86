"""An OpenAI-compatible chat endpoint as a log-probability black box.

The model reads a text and is asked for a one-token answer; the black box is
the log-probability of each label word as that first token, read from the
``top_logprobs`` the endpoint returns. Nothing but these numbers is used, as
with a commercial API that hides its weights and hidden states.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence

import numpy as np

from .base import Paid, UnusableAnswer, Usage, read_usage
from .openai import OpenAIClient, _describe, strip_credentials

__all__ = ["OpenAILogProbBackend", "label_word_fingerprint"]

DEFAULT_INSTRUCTION = "Read the text and answer with a single word."


class OpenAILogProbBackend(OpenAIClient):
    """Log-probabilities of label words from a chat completions endpoint.

    One request per input, asking for one token with its ``top_logprobs``.
    A label word is matched to the listed tokens without surrounding spaces
    and case; a word missing from the list gets the smallest listed
    log-probability (an upper bound of its own), so a score is always finite.

    Parameters
    ----------
    model : str
        The model name the endpoint knows.
    base_url : str, default=None
        The endpoint, e.g. ``"http://localhost:8000/v1"``; None uses
        ``$OPENAI_BASE_URL`` or the OpenAI API.
    api_key_env : str or None, default="OPENAI_API_KEY"
        The *name* of the environment variable holding the key, read at the
        first request; None for servers that need no key.
    instruction : str, default=None
        The system message; None asks for a one-word answer.
    top_logprobs : int, default=20
        How many alternatives of the first token the endpoint lists (OpenAI
        allows at most 20).
    timeout : float, default=60.0
    max_retries : int, default=5

    Examples
    --------
    >>> from skcrosstune.backends.openai_logprobs import OpenAILogProbBackend
    >>> backend = OpenAILogProbBackend("gpt-4o-mini", api_key_env=None)
    >>> backend.fingerprint()["model"]
    'gpt-4o-mini'
    """

    pair_separator = "\n"

    def __init__(
        self,
        model,
        *,
        base_url=None,
        api_key_env="OPENAI_API_KEY",
        instruction=None,
        top_logprobs=20,
        timeout=60.0,
        max_retries=5,
    ):
        self.model = model
        self.base_url = base_url
        self.api_key_env = api_key_env
        self.instruction = instruction
        self.top_logprobs = top_logprobs
        self.timeout = timeout
        self.max_retries = max_retries
        self._refuse_credentials_in_parameter()

    def __repr__(self) -> str:
        base_url = None if self.base_url is None else strip_credentials(self.base_url)
        return f"{type(self).__name__}({self.model!r}, base_url={base_url!r})"

    def fingerprint(self) -> dict:
        """Everything that changes the answers: endpoint, model, instruction and list length."""
        return {
            "backend": "openai-chat-logprobs",
            "base_url": self.endpoint,
            "model": self.model,
            "instruction": self.instruction or DEFAULT_INSTRUCTION,
            "top_logprobs": self.top_logprobs,
        }

    def label_word_log_probs(self, items: Sequence[Hashable], label_words: Sequence[str]) -> np.ndarray:
        """Query the endpoint once per item: the first answer token's log-probability of each label word.

        Parameters
        ----------
        items : sequence of str or (str, str)
            Texts, or sentence pairs (joined by a newline).
        label_words : sequence of str

        Returns
        -------
        log_probs : ndarray of shape (len(items), len(label_words)), dtype float32
        """
        return self.query_label_words(items, label_words).answer

    def query_label_words(self, items: Sequence[Hashable], label_words: Sequence[str]) -> Paid:
        """:meth:`label_word_log_probs`, with the tokens its requests used in all (from each ``usage``)."""
        wanted = [word.strip().lower() for word in label_words]
        rows = []
        usage = Usage()
        for item in items:
            text = item if isinstance(item, str) else self.pair_separator.join(item)
            messages = [
                {"role": "system", "content": self.instruction or DEFAULT_INSTRUCTION},
                {"role": "user", "content": text or " "},
            ]
            row, used = self._request(
                lambda client, messages=messages: client.chat.completions.create(
                    model=self.model,
                    messages=messages,
                    max_tokens=1,
                    temperature=0.0,
                    logprobs=True,
                    top_logprobs=self.top_logprobs,
                ),
                "chat",
                check=lambda response: Paid(self._read_first_token(response, wanted), read_usage(response)),
            )
            rows.append(row)
            usage += used
        return Paid(np.asarray(rows, dtype=np.float32).reshape(len(items), len(wanted)), usage)

    def _read_first_token(self, response, wanted: list[str]) -> list[float]:
        """The label words' log-probabilities, or :class:`UnusableAnswer`."""
        choices = getattr(response, "choices", None)
        if not isinstance(choices, list):
            raise UnusableAnswer(
                "its choices are not a list" if hasattr(response, "choices") else _describe(response, "a completion")
            )
        content = getattr(choices[0].logprobs, "content", None) if choices else None
        if not content or not getattr(content[0], "top_logprobs", None):
            raise UnusableAnswer(
                "it holds no top_logprobs; this black box needs an endpoint that supports logprobs=True",
                retry=False,
            )
        listed: dict[str, float] = {}
        for alternative in content[0].top_logprobs:
            token, logprob = getattr(alternative, "token", None), getattr(alternative, "logprob", None)
            if not isinstance(token, str) or isinstance(logprob, bool) or not isinstance(logprob, (int, float)):
                raise UnusableAnswer(f"a top_logprobs entry is not a token and a number: {alternative!r:.80}")
            if not np.isfinite(logprob) or logprob > 0:
                raise UnusableAnswer(f"the log-probability {logprob!r} of {token!r} is not a finite number <= 0")
            token = token.strip().lower()
            listed[token] = max(listed.get(token, -np.inf), float(logprob))
        floor = min(listed.values())
        return [listed.get(word, floor) for word in wanted]


def label_word_fingerprint(backend, label_words) -> dict:
    """The fingerprint of ``backend``'s answers for ``label_words``: one column per word, in this order.

    A stored answer is a row of log-probabilities in the order of the words
    asked for, so the order is part of the key: the same words in another
    order are other answers.

    Parameters
    ----------
    backend : object
        A log-probability black box, with ``fingerprint()``.
    label_words : sequence of str
        The words, in the order of the answer's columns.

    Returns
    -------
    fingerprint : dict

    Examples
    --------
    >>> backend = OpenAILogProbBackend("gpt-4o-mini", api_key_env=None)
    >>> label_word_fingerprint(backend, ["yes", "no"])["label_words"]
    ['yes', 'no']
    """
    return {**backend.fingerprint(), "label_words": list(label_words)}
