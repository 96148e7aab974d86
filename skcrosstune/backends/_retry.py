"""Retries with exponential backoff and jitter for API black boxes.

Rate limits (429, honouring ``Retry-After``), server errors (5xx), timeouts and
dropped connections are retried; requests the server refused for a reason
that will not change (400, 401, 403, 404, 422) raise at once. Error messages
name the endpoint and model, never the key.
"""

from __future__ import annotations

import logging
import random
import time
from typing import Callable, TypeVar

from .base import BlackBoxError

__all__ = ["call_with_retries"]

logger = logging.getLogger("skcrosstune")
T = TypeVar("T")


def _retry_after(exc) -> float | None:
    response = getattr(exc, "response", None)
    headers = getattr(response, "headers", None) or {}
    value = headers.get("retry-after") or headers.get("Retry-After")
    try:
        return max(float(value), 0.0) if value is not None else None
    except ValueError:
        return None


def _is_retryable(exc) -> bool:
    import openai

    if isinstance(exc, (openai.APITimeoutError, openai.APIConnectionError, openai.RateLimitError)):
        return True
    if isinstance(exc, openai.APIStatusError):
        return exc.status_code >= 500 or exc.status_code in (408, 409)
    return False


def call_with_retries(
    request: Callable[[], T],
    *,
    what: str,
    max_retries: int = 5,
    base_delay: float = 1.0,
    max_delay: float = 60.0,
    secret: str | None = None,
    rng: random.Random | None = None,
) -> T:
    """Run ``request()``, retrying transient API faults with backoff.

    Parameters
    ----------
    request : callable
        Sends one request and returns its response.
    what : str
        Names the endpoint and model in messages, e.g.
        ``"embeddings endpoint http://... (model 'x')"``.
    max_retries : int
        Retries after the first attempt.
    base_delay, max_delay : float
        The n-th retry waits ``min(max_delay, base_delay * 2**n)`` scaled by a
        random factor in [0.5, 1], or the server's ``Retry-After`` if longer.
    secret : str, optional
        Scrubbed from any message that is raised or logged.
    """
    import openai

    rng = rng or random.Random()
    for attempt in range(max_retries + 1):
        try:
            return request()
        except openai.OpenAIError as exc:
            message = _scrub(str(exc), secret)
            if not _is_retryable(exc):
                status = getattr(exc, "status_code", None)
                raise BlackBoxError(
                    f"The {what} refused the request"
                    + (f" with HTTP {status}" if status else "")
                    + f": {message}"
                ) from None
            if attempt == max_retries:
                raise BlackBoxError(
                    f"The {what} still failed after {max_retries + 1} attempts: {message}"
                ) from None
            delay = min(max_delay, base_delay * 2**attempt) * rng.uniform(0.5, 1.0)
            hint = _retry_after(exc)
            if hint is not None:
                delay = max(delay, min(hint, max_delay))
            logger.warning(
                "%s: %s; retry %d of %d in %.1f s", what, type(exc).__name__, attempt + 1, max_retries, delay
            )
            time.sleep(delay)
    raise AssertionError("unreachable")  # pragma: no cover


def _scrub(message: str, secret: str | None) -> str:
    if secret:
        message = message.replace(secret, "***")
    return message
