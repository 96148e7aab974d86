"""The Redis store: a server that the machines of a cluster share (``redis://host:port/db``).

The same guarantees as the SQLite file: entries are content-addressed and
scoped by the black box's fingerprint digest (mixed into every key), each one
raw bytes with its dtype, shape and a checksum, never a pickle; credentials
never reach the server (the fingerprint holds URLs without them, and the API
key is no part of it). The server's password is read from the environment
variable ``SKCROSSTUNE_REDIS_PASSWORD`` when connecting: a store URL is an
estimator parameter, shown in its repr and kept in its pickle, so a URL that
holds a password is refused. Claims are ``SET NX PX`` keys holding their owner's
name, so a lease ends on the server's clock whatever the clients' clocks
say; counters are ``HINCRBY`` on one hash per fingerprint.

Keys, all under ``skcrosstune:``: ``e:<key>`` an entry, ``c:<key>`` a claim,
``n:<digest>`` the counters, ``f:<digest>`` the fingerprint as JSON.

Trust model: whoever can write to the server can plant answers; use a server
(or a database number with an ACL user) that only you and your workers can
reach.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import time
from collections.abc import Iterable, Sequence
from urllib.parse import urlsplit

import numpy as np

from .base import (
    COUNTERS,
    MAGIC,
    Store,
    StoreError,
    StoreUnavailable,
    decode_legacy_entry,
    owner_is_gone,
    pack_entries,
    raw_keys,
    stack_parts,
    unpack_entries,
)

__all__ = ["PASSWORD_ENV", "RETRY_SECONDS", "RedisStore"]

PASSWORD_ENV = "SKCROSSTUNE_REDIS_PASSWORD"

#: Seconds an operation is retried, with backoff, while the server cannot be reached (a restart, a network
#: blip); past them the store raises one :class:`StoreError` naming the server. Every retried operation is
#: safe to repeat, except that a counter increment whose reply was lost may count twice.
RETRY_SECONDS = 30.0

logger = logging.getLogger("skcrosstune")

_PREFIX = "skcrosstune:"
_CHUNK = 1000

# Grant each free key (or one already ours) to ARGV[1] for ARGV[2] ms; returns the 1-based positions granted.
_CLAIM = """
local granted = {}
for i, key in ipairs(KEYS) do
  if redis.call('SET', key, ARGV[1], 'NX', 'PX', ARGV[2]) then
    table.insert(granted, i)
  elseif redis.call('GET', key) == ARGV[1] then
    redis.call('PEXPIRE', key, ARGV[2])
    table.insert(granted, i)
  end
end
return granted
"""
# Take over KEYS[i] if it is still held by ARGV[i + 2] (a gone owner); returns the positions taken.
_TAKE_OVER = """
local taken = {}
for i, key in ipairs(KEYS) do
  if redis.call('GET', key) == ARGV[i + 2] then
    redis.call('SET', key, ARGV[1], 'PX', ARGV[2])
    table.insert(taken, i)
  end
end
return taken
"""
# Renew (ARGV[2] > 0: PEXPIRE) or end (ARGV[2] == 0: DEL) the claims on KEYS held by ARGV[1].
_UPDATE = """
for _, key in ipairs(KEYS) do
  if redis.call('GET', key) == ARGV[1] then
    if tonumber(ARGV[2]) > 0 then redis.call('PEXPIRE', key, ARGV[2]) else redis.call('DEL', key) end
  end
end
return 0
"""


def _redis_module():
    try:
        import redis
    except ImportError:
        raise ImportError(
            "The Redis store needs the redis client: pip install 'skcrosstune[redis]' (or pip install redis)."
        ) from None
    return redis


def _retried(method):
    """Retry ``method`` with backoff while the server is unreachable, up to :data:`RETRY_SECONDS`."""

    @functools.wraps(method)
    def retried(self, *args, **kwargs):
        redis = _redis_module()
        transient = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)
        deadline, delay, warned = time.monotonic() + RETRY_SECONDS, 0.05, False
        while True:
            try:
                return method(self, *args, **kwargs)
            except transient as exc:
                if time.monotonic() + delay > deadline:
                    problem = f"{type(exc).__name__}: {exc}"
                    break
                if not warned:
                    logger.warning(
                        "The Redis store %s cannot be reached (%s); retrying for up to %.0f s.",
                        self.describe(),
                        type(exc).__name__,
                        RETRY_SECONDS,
                    )
                    warned = True
                time.sleep(delay)
                delay = min(2 * delay, 2.0)
        # raised outside the except block: one error of ours, not the client's 25 frames
        raise StoreUnavailable(
            f"The Redis store {self.describe()} has not answered for {RETRY_SECONDS:.0f} s ({problem}). Check that "
            "the server runs and is reachable from this machine; answers already stored are kept, and a rerun "
            "pays only for what is missing."
        )

    return retried


class RedisStore(Store):
    """Answers on a Redis server, shared by every process and machine that reaches it.

    Parameters
    ----------
    location : str
        ``redis://[user@]host:port/db`` (``rediss://`` for TLS, ``unix://``
        for a socket). A password in it is refused: the password is read from
        the environment variable ``SKCROSSTUNE_REDIS_PASSWORD`` of the process
        that connects.
    fingerprint : dict
        The black box's fingerprint.
    """

    schemes = ("redis", "rediss", "unix")

    def __init__(self, location: str, fingerprint: dict):
        super().__init__(location, fingerprint)
        if urlsplit(str(location)).password is not None:
            raise StoreError(
                f"The Redis store {self.describe()!r} has a password in its URL, which would be shown in the "
                f"estimator's repr and kept in its pickle; remove it and set the environment variable "
                f"{PASSWORD_ENV} where the store is used."
            )
        self._client = None
        self._pid = None
        self._scripts: dict = {}

    def _connect(self):
        """The client of the calling process (a connection never crosses a fork)."""
        if self._client is not None and self._pid == os.getpid():
            return self._client
        redis = _redis_module()
        # The password goes straight from the environment to the client, never through a variable of ours.
        self._client = redis.Redis.from_url(self.location, password=os.environ.get(PASSWORD_ENV) or None)
        self._pid = os.getpid()
        self._scripts = {name: self._client.register_script(code) for name, code in _SCRIPTS.items()}
        return self._client

    def check(self) -> None:
        """Reach the server and leave a readable note of the fingerprint; raise :class:`StoreError` if unreachable."""
        redis = _redis_module()
        try:
            client = self._connect()
            client.ping()
            client.set(f"{_PREFIX}f:{self.digest}", json.dumps(self.fingerprint, sort_keys=True), nx=True)
        except redis.exceptions.RedisError as exc:
            raise StoreUnavailable(
                f"The Redis store {self.describe()} cannot be used: {type(exc).__name__}: {exc}"
            ) from None

    def close(self) -> None:
        """Close this process's connections."""
        if self._client is not None and self._pid == os.getpid():
            self._client.close()
        self._client = None

    # -- entries -------------------------------------------------------------
    @_retried
    def get_stacked(self, keys: Sequence[str]) -> tuple[list[tuple[np.ndarray, np.ndarray]], int]:
        """Stored arrays for ``keys``, stacked; entries failing their checks are deleted and left out."""
        keys = list(keys)
        if not keys:
            return [], 0
        client = self._connect()
        values = []
        for start in range(0, len(keys), _CHUNK):
            values += client.mget([f"{_PREFIX}e:{k}" for k in keys[start : start + _CHUNK]])
        current = np.array([i for i, value in enumerate(values) if value is not None and value[:4] == MAGIC], np.intp)
        found, bad = unpack_entries([values[i] for i in current])
        asked = raw_keys(keys)
        parts, corrupt = [], [keys[i] for i in current[bad]]
        for indices, found_keys, block in found:
            positions = current[indices]
            mine = np.all(found_keys == asked[positions], axis=1)
            corrupt += [keys[i] for i in positions[~mine]]  # an entry kept under another key than its own
            parts.append((positions[mine], block[mine]))
        upgraded = []
        for position, value in enumerate(values):  # entries written by earlier versions, one by one
            if value is not None and value[:4] != MAGIC:
                array = _decode_legacy(value)
                if array is None:
                    corrupt.append(keys[position])
                else:
                    parts.append((np.array([position], np.intp), array[np.newaxis]))
                    upgraded.append((keys[position], array))
        if corrupt:
            client.delete(*[f"{_PREFIX}e:{k}" for k in corrupt])
        if upgraded:  # rewritten in today's format: read in bulk from now on (the same answer, content-addressed)
            self.put_many(upgraded)
        return stack_parts(parts), len(corrupt)

    @_retried
    def put_many(self, entries: Iterable[tuple[str, np.ndarray]]) -> None:
        """Store arrays with one ``MSET``: all of them, or none."""
        entries = list(entries)
        mapping = {f"{_PREFIX}e:{key}": value for (key, _), value in zip(entries, pack_entries(entries), strict=True)}
        if mapping:
            self._connect().mset(mapping)

    # -- claims --------------------------------------------------------------
    @_retried
    def claim(self, keys: Sequence[str], owner: str, lease: float) -> list[str]:
        """Claim ``keys`` for ``owner``; returns those granted (free, ours, or held by a gone process)."""
        self._connect()
        ms = max(int(lease * 1000), 1)
        granted = []
        keys = list(keys)
        for start in range(0, len(keys), _CHUNK):
            chunk = keys[start : start + _CHUNK]
            names = [f"{_PREFIX}c:{k}" for k in chunk]
            positions = set(self._scripts["claim"](keys=names, args=[owner, ms]))
            granted += [k for i, k in enumerate(chunk, 1) if i in positions]
            refused = [(k, n) for i, (k, n) in enumerate(zip(chunk, names, strict=True), 1) if i not in positions]
            if refused:
                holders = self._client.mget([n for _, n in refused])
                gone = [
                    (k, n, h.decode())
                    for (k, n), h in zip(refused, holders, strict=True)
                    if h is not None and owner_is_gone(h.decode())
                ]
                if gone:
                    names, holders = [n for _, n, _ in gone], [h for *_, h in gone]
                    taken = set(self._scripts["take_over"](keys=names, args=[owner, ms, *holders]))
                    granted += [k for i, (k, _, _) in enumerate(gone, 1) if i in taken]
        return granted

    @_retried
    def extend(self, keys: Sequence[str], owner: str, lease: float) -> None:
        """Renew ``owner``'s claims on ``keys``."""
        self._update(keys, owner, max(int(lease * 1000), 1))

    @_retried
    def release(self, keys: Sequence[str], owner: str) -> None:
        """End ``owner``'s claims on ``keys``."""
        self._update(keys, owner, 0)

    def _update(self, keys: Sequence[str], owner: str, ms: int) -> None:
        self._connect()
        keys = list(keys)
        for start in range(0, len(keys), _CHUNK):
            chunk = keys[start : start + _CHUNK]
            self._scripts["update"](keys=[f"{_PREFIX}c:{k}" for k in chunk], args=[owner, ms])

    # -- counters ------------------------------------------------------------
    @_retried
    def add_counts(self, *, sent: int = 0, hits: int = 0, prompt_tokens: int = 0, completion_tokens: int = 0) -> None:
        """Add to this fingerprint's counters, in one transaction."""
        pipe = self._connect().pipeline(transaction=True)
        for name, n in zip(COUNTERS, (sent, hits, prompt_tokens, completion_tokens), strict=True):
            if n:
                pipe.hincrby(f"{_PREFIX}n:{self.digest}", name, int(n))
        pipe.execute()

    @_retried
    def counts(self) -> dict[str, int]:
        """The counters, summed over every user of the server."""
        found = self._connect().hgetall(f"{_PREFIX}n:{self.digest}")
        return {name: int(found.get(name.encode(), 0)) for name in COUNTERS}

    @_retried
    def reset_counts(self) -> None:
        """Set the counters to zero."""
        self._connect().delete(f"{_PREFIX}n:{self.digest}")


_SCRIPTS = {"claim": _CLAIM, "take_over": _TAKE_OVER, "update": _UPDATE}


def _decode_legacy(value: bytes) -> np.ndarray | None:
    """An entry as versions before the common entry format wrote it: dtype, shape and checksum lines, then the bytes."""
    parts = value.split(b"\n", 3)
    if len(parts) != 4:
        return None
    try:
        dtype, shape, checksum = (part.decode("ascii") for part in parts[:3])
    except UnicodeDecodeError:
        return None
    return decode_legacy_entry(dtype, shape, parts[3], checksum)
