"""Retries with exponential backoff and jitter for API black boxes.

Rate limits (429, honouring ``Retry-After`` in seconds or as an HTTP date,
and ``retry-after-ms``), server errors (5xx), timeouts, dropped connections
and response bodies that are not valid JSON (truncated answers, proxy error
pages) are retried; requests the server refused for a reason that will not
change (400, 401, 403, 404, 422, and a 429 for an exhausted quota) raise at
once. Error messages name the endpoint and model, never the key.
"""

from __future__ import annotations

import email.utils
import json
import logging
import random
import time
from collections.abc import Callable
from datetime import datetime, timezone
from typing import TypeVar

from .base import BlackBoxError

__all__ = ["call_with_retries"]

logger = logging.getLogger("skcrosstune")
T = TypeVar("T")


def _retry_after(exc) -> float | None:
    """Seconds the server asked to wait, or None.

    ``retry-after-ms`` wins over ``Retry-After``, which may be seconds or an HTTP date.
    """
    response = getattr(exc, "response", None)
    headers = getattr(response, "headers", None) or {}
    millis = headers.get("retry-after-ms")
    if millis is not None:
        try:
            return max(float(millis) / 1000.0, 0.0)
        except ValueError:
            pass
    value = headers.get("retry-after") or headers.get("Retry-After")
    if value is None:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max((when - datetime.now(timezone.utc)).total_seconds(), 0.0)


def _is_retryable(exc) -> bool:
    import openai

    if isinstance(exc, json.JSONDecodeError):
        return True
    if isinstance(exc, openai.RateLimitError):
        # A 429 for an exhausted quota or billing limit will not clear by waiting.
        return getattr(exc, "code", None) not in ("insufficient_quota", "billing_hard_limit_reached")
    if isinstance(exc, (openai.APITimeoutError, openai.APIConnectionError)):
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
        except (openai.OpenAIError, json.JSONDecodeError) as exc:
            # A JSONDecodeError means the client could not parse a 2xx body:
            # a truncated answer or an error page from a proxy.
            text = (
                f"the response body was not valid JSON ({exc})" if isinstance(exc, json.JSONDecodeError) else str(exc)
            )
            message = _scrub(text, secret)
            if not _is_retryable(exc):
                status = getattr(exc, "status_code", None)
                raise BlackBoxError(
                    f"The {what} refused the request" + (f" with HTTP {status}" if status else "") + f": {message}"
                ) from None
            if attempt == max_retries:
                raise BlackBoxError(f"The {what} still failed after {max_retries + 1} attempts: {message}") from None
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
