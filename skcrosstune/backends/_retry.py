"""Retries with exponential backoff and jitter for API black boxes.

Rate limits (429, honouring ``Retry-After`` in seconds or as an HTTP date,
and ``retry-after-ms``), server errors (5xx), timeouts, dropped connections,
response bodies that are not valid JSON (truncated answers, proxy error
pages) and answers that parse but cannot be used (see
:class:`~skcrosstune.backends.base.UnusableAnswer`) are retried; requests the
server refused for a reason that will not change (400, 401, 403, 404, 422,
and a 429 for an exhausted quota) raise at once.

Every failure becomes a :class:`~skcrosstune.backends.base.BlackBoxError`
naming the endpoint and model, raised outside of any ``except`` block: it
carries no chained exception (the client's errors hold the request headers,
``Authorization: Bearer <key>`` among them), no frame of the client's code,
and every message passes through ``scrub`` first.
"""

from __future__ import annotations

import email.utils
import json
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TypeVar

from .base import BlackBoxError, UnusableAnswer

__all__ = ["call_with_retries"]

logger = logging.getLogger("skcrosstune")
T = TypeVar("T")


@dataclass(frozen=True)
class _Failure:
    """What one failed attempt left behind: scrubbed words and numbers, never the exception."""

    kind: str
    message: str
    retry: bool
    status: int | None = None
    retry_after: float | None = None


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


def _attempt(request: Callable[[], object], check: Callable[[object], T], scrub: Callable[[str], str]):
    """``(value, None)``, or ``(None, failure)``: the exception and its frames end here."""
    import openai

    try:
        return check(request()), None
    except UnusableAnswer as exc:
        return None, _Failure("UnusableAnswer", scrub(f"its answer could not be used: {exc}"), exc.retry)
    except json.JSONDecodeError as exc:
        # the client could not parse a 2xx body: a truncated answer or an error page from a proxy
        return None, _Failure(type(exc).__name__, scrub(f"the response body was not valid JSON ({exc})"), True)
    except openai.OpenAIError as exc:
        return None, _Failure(
            type(exc).__name__,
            scrub(str(exc)),
            _is_retryable(exc),
            getattr(exc, "status_code", None),
            _retry_after(exc),
        )
    except Exception as exc:  # noqa: BLE001 - anything else the client raised, without its frames
        return None, _Failure(type(exc).__name__, scrub(f"the request failed: {type(exc).__name__}: {exc}"), False)


def call_with_retries(
    request: Callable[[], object],
    *,
    what: str,
    check: Callable[[object], T] | None = None,
    scrub: Callable[[str], str] | None = None,
    max_retries: int = 5,
    base_delay: float = 1.0,
    max_delay: float = 60.0,
    rng: random.Random | None = None,
) -> T:
    """Run ``request()`` and ``check`` its answer, retrying transient faults with backoff.

    Parameters
    ----------
    request : callable
        Sends one request and returns its response.
    what : str
        Names the endpoint and model in messages, e.g.
        ``"embeddings endpoint http://... (model 'x')"``; never a credential.
    check : callable, optional
        ``check(response) -> value``: what the caller gets, or
        :class:`UnusableAnswer` for an answer to ask for again. None returns
        the response as it is.
    scrub : callable, optional
        ``scrub(message) -> message`` without secrets; every message raised
        or logged passes through it.
    max_retries : int
        Retries after the first attempt.
    base_delay, max_delay : float
        The n-th retry waits ``min(max_delay, base_delay * 2**n)`` scaled by a
        random factor in [0.5, 1], or the server's ``Retry-After`` if longer.
    rng : random.Random, optional
        The jitter's source.

    Returns
    -------
    value
        What ``check`` made of the first usable answer.

    Raises
    ------
    BlackBoxError
        For a refused request, or when no usable answer came after
        ``max_retries`` retries; with no chained exception.
    """
    rng = rng or random.Random()
    check = check or (lambda response: response)
    scrub = scrub or (lambda message: message)
    for attempt in range(max_retries + 1):
        value, failure = _attempt(request, check, scrub)
        if failure is None:
            return value
        if not failure.retry:
            if failure.kind == "UnusableAnswer":
                error = BlackBoxError(f"The {what} gave an answer that asking again cannot fix: {failure.message}")
            else:
                status = f" with HTTP {failure.status}" if failure.status else ""
                error = BlackBoxError(f"The {what} refused the request{status}: {failure.message}")
            break
        if attempt == max_retries:
            error = BlackBoxError(f"The {what} still failed after {max_retries + 1} attempts: {failure.message}")
            break
        delay = min(max_delay, base_delay * 2**attempt) * rng.uniform(0.5, 1.0)
        if failure.retry_after is not None:
            delay = max(delay, min(failure.retry_after, max_delay))
        logger.warning("%s: %s; retry %d of %d in %.1f s", what, failure.kind, attempt + 1, max_retries, delay)
        time.sleep(delay)
    # raised here, outside any except block: no __context__ to hold the client's request or the key
    raise error from None
