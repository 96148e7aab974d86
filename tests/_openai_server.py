"""A small, real HTTP server speaking the OpenAI protocol, for tests.

The server listens on ``127.0.0.1`` on a free port chosen by the system and
answers the two endpoints skcrosstune uses, through the real ``openai``
client and a real socket:

* ``POST /v1/embeddings`` returns deterministic embeddings: each text seeds
  its own vector from a hash, so identical texts always get identical
  vectors, and the ``dimensions`` field shortens them.
* ``POST /v1/chat/completions`` returns replies given by a callable that
  tests can set (by default an echo of the last user message), and with
  ``logprobs=True`` the ``top_logprobs`` of the first reply token, given by
  another callable.

Every request is recorded (path, JSON body, ``Authorization`` header), and
a queue of scripted faults is consumed one per request before normal
answers: rate limits with ``Retry-After``, server errors, responses slower
than the client's timeout, authentication errors and malformed bodies, and
200 answers that parse but cannot be used (a NaN inside a vector, rows
without ``index``, short rows, string embeddings, a wrong number of rows,
``data: null``, an HTML or plain-text page). Setting :attr:`OpenAIServer.width`
changes the vector width behind the same model name.

Examples
--------
>>> import openai
>>> with OpenAIServer() as server:
...     server.push(server_error(500))
...     client = openai.OpenAI(base_url=server.url, api_key="k", max_retries=1)
...     vectors = client.embeddings.create(model="m", input=["hello"]).data
...     (len(vectors), server.request_count)
(1, 2)
"""

from __future__ import annotations

import base64
import hashlib
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import numpy as np

__all__ = [
    "DEFAULT_WIDTH",
    "Fault",
    "OpenAIServer",
    "RecordedRequest",
    "UNUSABLE_ANSWERS",
    "duplicate_index",
    "embedding_for",
    "html_page",
    "malformed_json",
    "non_finite_value",
    "null_data",
    "plain_text",
    "rate_limited",
    "rows_without_index",
    "server_error",
    "short_row",
    "slow",
    "string_embedding",
    "unauthorized",
    "wrong_count",
]

#: Width of the embeddings when a request gives no ``dimensions``.
DEFAULT_WIDTH = 24

HOST = "127.0.0.1"


def embedding_for(text: str, width: int = DEFAULT_WIDTH) -> list[float]:
    """The deterministic embedding the server returns for ``text``.

    Parameters
    ----------
    text : str
        The input text, exactly as received.
    width : int, default=DEFAULT_WIDTH
        Number of values. A shorter width is a prefix of a longer one (as
        with models that support shortening), before normalisation.

    Returns
    -------
    embedding : list of float
        Unit-length float32-representable values.
    """
    seed = int.from_bytes(hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=8).digest(), "little")
    values = np.random.default_rng(seed).standard_normal(max(width, 1)).astype(np.float32)[:width]
    values /= max(float(np.linalg.norm(values)), 1e-12)
    return [float(v) for v in values]


# --------------------------------------------------------------------- faults
@dataclass(frozen=True)
class Fault:
    """One scripted misbehaviour, consumed by exactly one request.

    Parameters
    ----------
    status : int, default=500
        HTTP status code of the faulty answer.
    body : dict, bytes or None, default=None
        The answer body: a dict is sent as JSON, bytes as they are, None
        sends an OpenAI-style error body for ``status``.
    headers : dict, default={}
        Extra response headers, e.g. ``{"Retry-After": "2"}``.
    delay : float, default=0.0
        Seconds to wait before answering.
    answer_normally : bool, default=False
        After ``delay``, give the normal answer instead of ``status`` and
        ``body`` (a slow but correct response).
    echo_key : bool, default=False
        Put the received ``Authorization`` token in the error message, as a
        careless server might; tests use it to check that the client-side
        message is scrubbed.
    mutate : callable, default=None
        ``mutate(answer) -> dict or bytes`` spoils the normal answer (a dict
        the server would have sent): the result is sent with HTTP 200, a
        dict as JSON, bytes as they are with ``headers``.
    """

    status: int = 500
    body: dict | bytes | None = None
    headers: dict = field(default_factory=dict)
    delay: float = 0.0
    answer_normally: bool = False
    echo_key: bool = False
    mutate: Callable[[dict], dict | bytes] | None = None


def rate_limited(retry_after: float | str | None = 1) -> Fault:
    """HTTP 429 with a ``Retry-After`` header (omitted when None).

    Parameters
    ----------
    retry_after : float, str or None, default=1
        The header value, in seconds.

    Returns
    -------
    fault : Fault
    """
    headers = {} if retry_after is None else {"Retry-After": str(retry_after)}
    return Fault(status=429, headers=headers)


def server_error(status: int = 500) -> Fault:
    """A 5xx answer with an OpenAI-style error body.

    Parameters
    ----------
    status : int, default=500
        Usually 500, 502 or 503.

    Returns
    -------
    fault : Fault
    """
    return Fault(status=status)


def slow(delay: float) -> Fault:
    """A correct answer sent only after ``delay`` seconds.

    Parameters
    ----------
    delay : float
        Longer than the client's timeout to make the client give up.

    Returns
    -------
    fault : Fault
    """
    return Fault(status=200, delay=delay, answer_normally=True)


def unauthorized(*, echo_key: bool = False) -> Fault:
    """HTTP 401 with OpenAI's ``invalid_api_key`` error body.

    Parameters
    ----------
    echo_key : bool, default=False
        Quote the received key, unmasked, in the error message.

    Returns
    -------
    fault : Fault
    """
    return Fault(status=401, echo_key=echo_key)


def malformed_json() -> Fault:
    """HTTP 200 with ``Content-Type: application/json`` and a body that is not JSON.

    Returns
    -------
    fault : Fault
    """
    return Fault(status=200, body=b'{"object": "list", "data": [', headers={"Content-Type": "application/json"})


def _spoiled(mutate: Callable[[dict], dict | bytes], headers: dict | None = None) -> Fault:
    return Fault(status=200, answer_normally=True, mutate=mutate, headers=headers or {})


def _set_value(row: int, position: int, value: float):
    def mutate(answer: dict) -> dict:
        answer["data"][row]["embedding"][position] = value
        return answer

    return mutate


def non_finite_value(value: float = float("nan"), *, row: int = 0, position: int = 0) -> Fault:
    """A normal answer with one value of one vector replaced, e.g. by NaN or infinity.

    Parameters
    ----------
    value : float, default=nan
        Sent as the JSON token ``NaN``, ``Infinity`` or ``-Infinity``, as
        Python's encoder writes them (and Python's decoder reads them).
    row, position : int, default=0
        Which vector of the answer (in the order sent), and which value.

    Returns
    -------
    fault : Fault
    """
    return _spoiled(_set_value(row, position, value))


def null_data() -> Fault:
    """A 200 answer whose ``data`` is ``null``.

    Returns
    -------
    fault : Fault
    """
    return _spoiled(lambda answer: dict(answer, data=None))


def rows_without_index() -> Fault:
    """A 200 answer whose rows carry no ``index`` field.

    Returns
    -------
    fault : Fault
    """
    return _spoiled(
        lambda answer: dict(
            answer, data=[{"object": "embedding", "embedding": row["embedding"]} for row in answer["data"]]
        )
    )


def duplicate_index() -> Fault:
    """A 200 answer in which every row says ``index: 0``.

    Returns
    -------
    fault : Fault
    """
    return _spoiled(lambda answer: dict(answer, data=[dict(row, index=0) for row in answer["data"]]))


def short_row(row: int = 0) -> Fault:
    """A 200 answer in which one vector lacks its last value.

    Parameters
    ----------
    row : int, default=0
        Which vector of the answer is cut.

    Returns
    -------
    fault : Fault
    """

    def mutate(answer: dict) -> dict:
        answer["data"][row]["embedding"] = answer["data"][row]["embedding"][:-1]
        return answer

    return _spoiled(mutate)


def string_embedding(row: int = 0) -> Fault:
    """A 200 answer in which one vector is a string instead of a list of floats.

    Parameters
    ----------
    row : int, default=0
        Which vector of the answer becomes a string.

    Returns
    -------
    fault : Fault
    """

    def mutate(answer: dict) -> dict:
        answer["data"][row]["embedding"] = "0.1, 0.2, 0.3"
        return answer

    return _spoiled(mutate)


def wrong_count(delta: int = -1) -> Fault:
    """A 200 answer with ``delta`` rows too many (repeating the last) or too few.

    Parameters
    ----------
    delta : int, default=-1
        Rows added (positive) or dropped (negative).

    Returns
    -------
    fault : Fault
    """

    def mutate(answer: dict) -> dict:
        data = answer["data"]
        if delta < 0:
            data = data[:delta]
        else:
            data = data + [dict(data[-1], index=len(data) + i) for i in range(delta)]
        return dict(answer, data=data)

    return _spoiled(mutate)


def html_page() -> Fault:
    """A 200 answer that is an HTML page (a captive portal or a proxy's login page).

    Returns
    -------
    fault : Fault
    """
    page = b"<!DOCTYPE html><html><body><h1>Please sign in</h1></body></html>"
    return _spoiled(lambda answer: page, {"Content-Type": "text/html; charset=utf-8"})


def plain_text() -> Fault:
    """A 200 answer in plain text.

    Returns
    -------
    fault : Fault
    """
    return _spoiled(lambda answer: b"OK", {"Content-Type": "text/plain"})


#: Every kind of 200 answer that parses but cannot be used, by name.
UNUSABLE_ANSWERS = {
    "nan": lambda: non_finite_value(float("nan")),
    "infinity": lambda: non_finite_value(float("inf"), row=-1, position=3),
    "null-data": null_data,
    "rows-without-index": rows_without_index,
    "duplicate-index": duplicate_index,
    "short-row": short_row,
    "string-embedding": string_embedding,
    "too-few-rows": lambda: wrong_count(-1),
    "too-many-rows": lambda: wrong_count(+1),
    "html-page": html_page,
    "plain-text": plain_text,
}


_ERROR_TYPES = {
    400: ("invalid_request_error", None, "Invalid request."),
    401: ("invalid_request_error", "invalid_api_key", "Incorrect API key provided."),
    403: ("invalid_request_error", None, "You are not allowed to use this model."),
    404: ("invalid_request_error", None, "Unknown request URL."),
    429: ("requests", "rate_limit_exceeded", "Rate limit reached for requests. Please try again later."),
}


def _error_body(status: int, message: str | None = None, *, param: str | None = None) -> dict:
    kind, code, default = _ERROR_TYPES.get(
        status, ("server_error", None, "The server had an error processing your request.")
    )
    return {"error": {"message": message or default, "type": kind, "param": param, "code": code}}


# ------------------------------------------------------------------- recording
@dataclass(frozen=True)
class RecordedRequest:
    """One request as the server received it.

    Attributes
    ----------
    path : str
        The URL path, e.g. ``"/v1/embeddings"``.
    body : Any
        The decoded JSON body, or None when it was not valid JSON.
    authorization : str or None
        The ``Authorization`` header, e.g. ``"Bearer sk-..."``.
    headers : dict
        All request headers, lower-cased names.
    """

    path: str
    body: Any
    authorization: str | None
    headers: dict


class _BadRequest(Exception):
    def __init__(self, message: str, param: str | None = None):
        super().__init__(message)
        self.param = param


# --------------------------------------------------------------------- server
class OpenAIServer:
    """A scriptable OpenAI-compatible server on ``127.0.0.1`` in a background thread.

    Parameters
    ----------
    api_key : str or None, default=None
        When set, requests must carry ``Authorization: Bearer <api_key>``
        and get a 401 otherwise; None accepts any or no key.
    width : int, default=DEFAULT_WIDTH
        Embedding width when a request gives no ``dimensions``; can be
        changed at any time (a new model behind the same name).
    chat_reply : callable, default=None
        ``chat_reply(body) -> str`` gives the reply content of a chat
        completion from the decoded request body (called once per choice);
        None echoes the last user message. Can be replaced at any time.
    chat_logprobs : callable, default=None
        ``chat_logprobs(body) -> dict`` gives token -> log-probability of the
        alternatives for the first reply token, answered when the request
        asks for ``logprobs`` (the ``top_logprobs`` most likely are listed);
        None lists the reply's first word with log-probability 0.
    reverse_data : bool, default=False
        List embeddings in reverse order in the response (each keeps its
        ``index``), to check that clients order rows by ``index``.
    latency : float, default=0.0
        Seconds every request waits before it is answered (a remote API's
        round trip); can be changed at any time.

    Attributes
    ----------
    url : str
        The base URL to give the client, ``"http://127.0.0.1:<port>/v1"``.
    requests : list of RecordedRequest
        A copy of every request received so far, in order of arrival.
    request_count : int
        Number of requests received so far, faulty ones included.
    most_in_flight : int
        The most requests that were waiting on the latency at the same time.

    Notes
    -----
    Use it as a context manager, or call :meth:`start` and :meth:`stop`.
    Each connection is closed after one answer (HTTP/1.0), so no keep-alive
    socket outlives a test.
    """

    def __init__(
        self,
        *,
        api_key: str | None = None,
        width: int = DEFAULT_WIDTH,
        chat_reply: Callable[[dict], str] | None = None,
        chat_logprobs: Callable[[dict], dict] | None = None,
        reverse_data: bool = False,
        latency: float = 0.0,
    ):
        self.api_key = api_key
        self.latency = latency
        self.in_flight = self.most_in_flight = 0
        self.reverse_data = reverse_data
        self.width = width
        self.chat_reply = chat_reply
        self.chat_logprobs = chat_logprobs
        self._lock = threading.Lock()
        self._faults: list[Fault | None] = []
        self._requests: list[RecordedRequest] = []
        self._usage = {"prompt_tokens": 0, "completion_tokens": 0}
        self._stopping = threading.Event()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle -----------------------------------------------------------
    def start(self) -> OpenAIServer:
        """Bind ``127.0.0.1`` on a free port and serve in a daemon thread.

        Returns
        -------
        self : OpenAIServer
        """
        if self._httpd is not None:
            raise RuntimeError("The server is already running.")
        self._stopping.clear()
        handler = type("_BoundHandler", (_Handler,), {"server_state": self})
        httpd = ThreadingHTTPServer((HOST, 0), handler)
        httpd.daemon_threads = True
        self._httpd = httpd
        self._thread = threading.Thread(
            target=httpd.serve_forever, kwargs={"poll_interval": 0.01}, name="openai-test-server", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, wake delayed answers and close the socket. Safe to call twice."""
        self._stopping.set()
        httpd, self._httpd = self._httpd, None
        if httpd is not None:
            httpd.shutdown()
            httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> OpenAIServer:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()

    @property
    def port(self) -> int:
        """The port chosen by the system."""
        if self._httpd is None:
            raise RuntimeError("The server is not running.")
        return self._httpd.server_address[1]

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}/v1"

    # -- scripting -----------------------------------------------------------
    def push(self, *faults: Fault | None) -> None:
        """Queue faults, consumed one per request in order, before normal answers.

        Parameters
        ----------
        *faults : Fault or None
            None answers that request normally (to let some requests through
            before a fault).
        """
        with self._lock:
            self._faults.extend(faults)

    @property
    def pending_faults(self) -> int:
        """Faults queued but not yet consumed."""
        with self._lock:
            return len(self._faults)

    # -- inspection ----------------------------------------------------------
    @property
    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._requests)

    @property
    def request_count(self) -> int:
        with self._lock:
            return len(self._requests)

    def requests_to(self, endpoint: str) -> list[RecordedRequest]:
        """Requests whose path ends with ``endpoint``, e.g. ``"/embeddings"``."""
        return [r for r in self.requests if r.path.endswith(endpoint)]

    def embedded_texts(self) -> list[str]:
        """Every input received by the embeddings endpoint, in order, faulty requests included."""
        texts: list[str] = []
        for request in self.requests_to("/embeddings"):
            inputs = (request.body or {}).get("input") if isinstance(request.body, dict) else None
            texts.extend([inputs] if isinstance(inputs, str) else list(inputs or []))
        return texts

    @property
    def usage(self) -> dict[str, int]:
        """The tokens billed: the ``usage`` of every answer sent whole (not a fault's), summed."""
        with self._lock:
            return dict(self._usage)

    def reset(self) -> None:
        """Forget recorded requests, queued faults and the tokens billed."""
        with self._lock:
            self._requests.clear()
            self._faults.clear()
            self._usage = dict.fromkeys(self._usage, 0)

    def _bill(self, answer: dict) -> None:
        with self._lock:
            for name in self._usage:
                self._usage[name] += answer["usage"].get(name, 0)

    # -- used by the handler -------------------------------------------------
    def _record(self, request: RecordedRequest) -> Fault | None:
        """Store the request and take the next fault, atomically."""
        with self._lock:
            self._requests.append(request)
            return self._faults.pop(0) if self._faults else None

    def _embeddings(self, body: dict) -> dict:
        model = body.get("model")
        if not isinstance(model, str) or not model:
            raise _BadRequest("you must provide a model parameter", "model")
        inputs = body.get("input")
        if isinstance(inputs, str):
            inputs = [inputs]
        if not isinstance(inputs, list) or not inputs or not all(isinstance(t, str) for t in inputs):
            raise _BadRequest("'input' must be a non-empty string or list of strings", "input")
        if any(t == "" for t in inputs):
            raise _BadRequest("'$.input' is invalid: empty strings are not accepted", "input")
        width = body.get("dimensions", self.width)
        if not isinstance(width, int) or isinstance(width, bool) or width < 1:
            raise _BadRequest("'dimensions' must be a positive integer", "dimensions")
        encoding = body.get("encoding_format", "float")
        if encoding not in ("float", "base64"):
            raise _BadRequest("'encoding_format' must be 'float' or 'base64'", "encoding_format")
        data = []
        for index, text in enumerate(inputs):
            vector = embedding_for(text, width)
            if encoding == "base64":
                vector = base64.b64encode(np.asarray(vector, dtype="<f4").tobytes()).decode("ascii")
            data.append({"object": "embedding", "index": index, "embedding": vector})
        if self.reverse_data:
            data.reverse()
        tokens = sum(max(len(t.split()), 1) for t in inputs)
        return {
            "object": "list",
            "data": data,
            "model": model,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }

    def _chat(self, body: dict) -> dict:
        model = body.get("model")
        if not isinstance(model, str) or not model:
            raise _BadRequest("you must provide a model parameter", "model")
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages or not all(isinstance(m, dict) for m in messages):
            raise _BadRequest("'messages' must be a non-empty list of messages", "messages")
        n = body.get("n", 1)
        if not isinstance(n, int) or isinstance(n, bool) or n < 1:
            raise _BadRequest("'n' must be a positive integer", "n")
        reply = self.chat_reply or _echo_last_user_message
        choices = []
        for index in range(n):
            content = reply(body)
            if not isinstance(content, str):
                raise TypeError(f"chat_reply must return a str, got {type(content).__name__}.")
            choices.append(
                {
                    "index": index,
                    "message": {"role": "assistant", "content": content, "refusal": None},
                    "logprobs": self._first_token_logprobs(body, content) if body.get("logprobs") else None,
                    "finish_reason": "stop",
                }
            )
        prompt_tokens = sum(len(str(m.get("content", "")).split()) for m in messages)
        completion_tokens = sum(len(c["message"]["content"].split()) for c in choices)
        digest = hashlib.blake2b(json.dumps(body, sort_keys=True).encode(), digest_size=8).hexdigest()
        return {
            "id": f"chatcmpl-{digest}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,
            "choices": choices,
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            },
        }

    def _first_token_logprobs(self, body: dict, content: str) -> dict:
        alternatives = (self.chat_logprobs or (lambda _: {(content.split() or [""])[0]: 0.0}))(body)
        listed = sorted(alternatives.items(), key=lambda kv: -kv[1])[: int(body.get("top_logprobs") or 0) or 1]
        top = [{"token": token, "logprob": float(logprob), "bytes": None} for token, logprob in listed]
        return {"content": [dict(top[0], top_logprobs=top)], "refusal": None}


def _echo_last_user_message(body: dict) -> str:
    for message in reversed(body["messages"]):
        if message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, list):  # content parts
                content = " ".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
            return str(content)
    return ""


class _Handler(BaseHTTPRequestHandler):
    """Answers one request per connection on behalf of an :class:`OpenAIServer`."""

    server_state: OpenAIServer  # set on the per-server subclass
    protocol_version = "HTTP/1.0"

    def log_message(self, format, *args):  # noqa: A002 - keep test output quiet
        pass

    def do_GET(self):  # noqa: N802
        self._read_and_record(b"")
        self._send_json(404, _error_body(404, f"Unknown request URL: GET {self.path}."))

    def do_POST(self):  # noqa: N802
        state = self.server_state
        with state._lock:  # requests waiting on the latency together (counted before any answer is written)
            state.in_flight += 1
            state.most_in_flight = max(state.most_in_flight, state.in_flight)
        try:
            stopping = state.latency and state._stopping.wait(state.latency)
        finally:
            with state._lock:
                state.in_flight -= 1
        if not stopping:
            self._answer_post(state)

    def _answer_post(self, state):
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        body, fault = self._read_and_record(raw)
        if fault is not None:
            if fault.delay and state._stopping.wait(fault.delay):
                return  # the server is stopping: drop the answer
            if not fault.answer_normally:
                self._send_fault(fault)
                return
        if state.api_key is not None and self.headers.get("Authorization") != f"Bearer {state.api_key}":
            self._send_json(401, _error_body(401))
            return
        if body is None:
            self._send_json(400, _error_body(400, "We could not parse the JSON body of your request."))
            return
        try:
            if self.path.rstrip("/") == "/v1/embeddings":
                answer = state._embeddings(body)
            elif self.path.rstrip("/") == "/v1/chat/completions":
                answer = state._chat(body)
            else:
                self._send_json(404, _error_body(404, f"Unknown request URL: POST {self.path}."))
                return
        except _BadRequest as exc:
            self._send_json(400, _error_body(400, str(exc), param=exc.param))
            return
        except Exception as exc:  # a broken chat_reply: answer 500 rather than hang the client
            self._send_json(500, _error_body(500, f"{type(exc).__name__}: {exc}"))
            return
        if fault is not None and fault.mutate is not None:
            spoiled = fault.mutate(answer)
            if isinstance(spoiled, bytes):
                self._send(200, spoiled, fault.headers)
            else:
                self._send_json(200, spoiled, fault.headers)
            return
        self._send_json(200, answer)
        state._bill(answer)

    def _read_and_record(self, raw: bytes) -> tuple[Any, Fault | None]:
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        request = RecordedRequest(
            path=self.path,
            body=body,
            authorization=self.headers.get("Authorization"),
            headers={k.lower(): v for k, v in self.headers.items()},
        )
        return body, self.server_state._record(request)

    def _send_fault(self, fault: Fault) -> None:
        if isinstance(fault.body, bytes):
            self._send(fault.status, fault.body, fault.headers)
            return
        body = fault.body
        if body is None:
            message = None
            if fault.echo_key:
                message = f"Incorrect API key provided: {self.headers.get('Authorization', '')}."
            body = _error_body(fault.status, message)
        self._send_json(fault.status, body, fault.headers)

    def _send_json(self, status: int, payload: dict, headers: dict | None = None) -> None:
        merged = {"Content-Type": "application/json"}
        merged.update(headers or {})
        self._send(status, json.dumps(payload).encode("utf-8"), merged)

    def _send(self, status: int, data: bytes, headers: dict) -> None:
        try:
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(data)
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (e.g. its timeout ran out first)
