"""The store protocol: where black-box answers are kept so that nothing is paid for twice.

A store holds the answers of one black box (named by its *fingerprint*, a
JSON-able dict of the model and every setting that changes its answers):

- ``get_many`` / ``put_many``: content-addressed entries, each one array
  kept as raw bytes, its dtype and shape, and a checksum. Nothing is ever
  pickled or unpickled, and an entry that fails its checksum is never
  returned.
- ``claim`` / ``extend`` / ``release``: in-flight deduplication. Before
  asking the black box, a caller claims the keys it lacks under an owner name
  and a lease; others see the claim and wait for the answer instead of paying
  for it again. A claim ends when it is released, when its lease runs out, or
  at once when its owner is a process of this machine that no longer runs.
- ``add_counts`` / ``counts``: what was paid (``sent``, and the tokens
  those requests used: ``prompt_tokens``, ``completion_tokens``) and what the
  store answered (``hits``) for this fingerprint, by every process that used
  it. Tokens are counted in the same call as the inputs sent, as soon as a
  request is answered, so the totals survive processes and machines.

A store kind is one module of this package holding a :class:`Store` subclass
with its URL ``schemes``; :func:`open_store` finds it by the location's
scheme (a plain folder path is the SQLite store). Nothing here knows about
scikit-learn.
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import json
import math
import os
import pkgutil
import socket
import threading
import uuid
import warnings
from abc import ABC, abstractmethod
from collections.abc import Hashable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from json.encoder import encode_basestring
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import numpy as np

__all__ = [
    "COUNTERS",
    "Store",
    "StoreError",
    "StoreUnavailable",
    "default_location",
    "fingerprint_digest",
    "open_store",
    "query_counts",
]


#: The counters every store keeps per fingerprint, in the order ``counts()`` lists them.
COUNTERS = ("sent", "hits", "prompt_tokens", "completion_tokens")


class StoreError(OSError):
    """A store location that cannot be used (unreachable, refused or unreadable)."""


class StoreUnavailable(StoreError):
    """A store that cannot be reached or made now (a server down, a folder that cannot be created).

    Unlike the other store errors (a refused, untrusted or misconfigured
    location), it is what a deployed model may work around: see the
    embedder's ``store_errors``.
    """


# ------------------------------------------------------------- fingerprints
def _canonical_json(value) -> bytes:
    return json.dumps(value, sort_keys=True, ensure_ascii=False).encode("utf-8", "surrogatepass")


def _strip_userinfo(value):
    """``value`` with any ``user:password@`` removed from URLs, recursively."""
    if isinstance(value, dict):
        return {k: _strip_userinfo(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_strip_userinfo(v) for v in value]
    if isinstance(value, str) and "://" in value and "@" in value:
        try:
            parts = urlsplit(value)
        except ValueError:
            return value
        if parts.username is not None or parts.password is not None:
            host = parts.netloc.rsplit("@", 1)[1]
            return urlunsplit(parts._replace(netloc=host))
    return value


def public_fingerprint(fingerprint: dict) -> dict:
    """The fingerprint as stores keep it: credentials inside URLs removed."""
    return _strip_userinfo(dict(fingerprint))


def fingerprint_digest(fingerprint: dict) -> str:
    """A stable hex digest of a backend fingerprint (credentials in URLs never count)."""
    return hashlib.blake2b(_canonical_json(public_fingerprint(fingerprint)), digest_size=16).hexdigest()


def entry_key(digest: str, item: Hashable) -> str:
    """The content address of ``item`` (a str or a tuple of str) under a fingerprint digest."""
    return entry_keys(digest, [item])[0]


def entry_keys(digest: str, items: Iterable[Hashable]) -> list[str]:
    """The content addresses of many items at once (the prefix hash is found once)."""
    prefix, keys = _key_prefix(digest), []
    for item in items:
        h = prefix.copy()
        if isinstance(item, str):  # what _canonical_json gives a str, without building a JSON encoder per call
            h.update(encode_basestring(item).encode("utf-8", "surrogatepass"))
        else:
            h.update(_canonical_json(item))
        keys.append(h.hexdigest())
    return keys


@functools.lru_cache(maxsize=64)
def _key_prefix(digest: str):
    """The key hash fed with the digest and its separator, copied for each key (half the cost of a fresh one)."""
    return hashlib.blake2b(digest.encode() + b"\x00", digest_size=20)


# ------------------------------------------------------------------ entries
# An entry as every store kind keeps it: one byte string, read and checked in bulk.
#
#   0   b"SKE3"                    the format (a store never reads another format as its own)
#   4   the key, 20 raw bytes      the entry says whose answer it is
#   24  header length, u16 LE
#   26  header, ASCII "<dtype>|<shape JSON>", padded with spaces to a multiple of 8 bytes
#   H   checksum, u64 LE
#   H+8 the array's bytes, padded with zeros to a multiple of 8
#
# The checksum is a weighted sum of the entry's other 64-bit words, modulo 2**64,
# with odd weights: it catches any damage to one word (a flipped bit, a torn
# page, a truncation or a swap of entries is caught by the size, key and
# header checks) and is computed for thousands of entries by one numpy
# product. It is a check against damage, not against tampering: whoever can
# write a store can plant any answer (see each kind's trust model), and
# nothing in an entry is ever executed, so nothing is gained by a
# cryptographic hash on this hot path.
MAGIC = b"SKE3"
KEY_BYTES = 20
_HEADER_AT = 26
_SEED = 0x736B63726F737374  # the checksum of an entry whose words are all zero
_STEP = 0x9E3779B97F4A7C15


@functools.lru_cache(maxsize=64)
def _weights(n_words: int, at: int) -> np.ndarray:
    """The checksum weights of an entry of ``n_words`` words whose checksum is word ``at`` (weight 0 there)."""
    weights = (np.arange(1, n_words + 1, dtype=np.uint64) * np.uint64(_STEP)) | np.uint64(1)
    weights[at] = 0
    weights.flags.writeable = False
    return weights


def _entry_checksums(words: np.ndarray, at: int) -> np.ndarray:
    """The checksums of entries given as rows of 64-bit little-endian words."""
    with np.errstate(over="ignore"):
        return (words @ _weights(words.shape[1], at)) + np.uint64(_SEED)


@functools.lru_cache(maxsize=256)
def _header(dtype: str, shape: tuple) -> bytes:
    """The header field of an array's entry: its length, then its text padded to the checksum's alignment."""
    text = f"{dtype}|{json.dumps(list(shape))}".encode("ascii")
    padded = text + b" " * (-(_HEADER_AT + len(text)) % 8)
    return len(padded).to_bytes(2, "little") + padded


_HEX_DIGITS = frozenset("0123456789abcdef")


def is_key(value) -> bool:
    """Whether ``value`` is a store key: 40 lowercase hexadecimal digits, as :meth:`Store.key` gives them."""
    return isinstance(value, str) and len(value) == 2 * KEY_BYTES and _HEX_DIGITS.issuperset(value)


def raw_keys(keys: Sequence[str]) -> np.ndarray:
    """Keys (see :func:`is_key`) as rows of 20 raw bytes; a ValueError naming the first that is not one."""
    if set(map(type, keys)) <= {str} and set(map(len, keys)) <= {2 * KEY_BYTES}:
        joined = "".join(keys)
        try:
            raw = bytes.fromhex(joined)
        except ValueError:
            raw = None
        if raw is not None and len(raw) == KEY_BYTES * len(keys) and joined.lower() == joined:
            return np.frombuffer(raw, dtype=np.uint8).reshape(len(keys), KEY_BYTES)
    position = next(i for i, key in enumerate(keys) if not is_key(key))
    raise ValueError(
        f"Store keys are 40 lowercase hexadecimal digits, as Store.key gives them; keys[{position}] is "
        f"{keys[position]!r:.60}."
    )


def pack_entries(entries: Iterable[tuple[str, np.ndarray]]) -> list[bytes]:
    """The stored form of ``(key, array)`` pairs, in their order (see the layout above).

    Arrays of one dtype and shape are packed and checksummed together.
    """
    entries = list(entries)
    packed: list[bytes | None] = [None] * len(entries)
    groups: dict[tuple, list[int]] = {}
    arrays = []
    for position, (_, array) in enumerate(entries):
        array = np.asarray(array)
        if array.dtype.hasobject:
            raise TypeError("A store keeps numeric arrays only, never Python objects.")
        arrays.append(array)
        groups.setdefault((array.dtype.str, array.shape), []).append(position)
    for (dtype, shape), positions in groups.items():
        header = _header(dtype, shape)
        at = _HEADER_AT - 2 + len(header)  # the checksum's byte offset, a multiple of 8
        size = np.dtype(dtype).itemsize * int(np.prod(shape, dtype=np.int64))
        width = at + 8 + size + (-size % 8)
        rows = np.zeros((len(positions), width), dtype=np.uint8)
        rows[:, :4] = np.frombuffer(MAGIC, dtype=np.uint8)
        rows[:, 4 : 4 + KEY_BYTES] = raw_keys([entries[p][0] for p in positions])
        rows[:, _HEADER_AT - 2 : at] = np.frombuffer(header, dtype=np.uint8)
        if size:
            stacked = np.stack([arrays[p] for p in positions]).astype(dtype, copy=False).reshape(len(positions), -1)
            rows[:, at + 8 : at + 8 + size] = np.ascontiguousarray(stacked).view(np.uint8)
        words = rows.view("<u8")
        words[:, at // 8] = _entry_checksums(words, at // 8)
        flat = rows.tobytes()
        for i, position in enumerate(positions):
            packed[position] = flat[i * width : (i + 1) * width]
    return packed


def unpack_entries(blobs: Sequence) -> tuple[list[tuple[np.ndarray, np.ndarray, np.ndarray]], np.ndarray]:
    """Check and decode stored entries in bulk: ``([(indices, keys, block), ...], bad)``.

    For each distinct dtype and shape: the indices in ``blobs`` of its sound
    entries, their keys (rows of 20 raw bytes) and their arrays stacked in
    one block, in the same order. ``bad``: the indices of the entries that
    are not sound (not bytes, another format, a wrong size, header or
    checksum), which are never decoded.
    """
    if set(map(type, blobs)) <= {bytes}:
        lengths = np.fromiter(map(len, blobs), dtype=np.intp, count=len(blobs))
    else:  # values of other types read back from a damaged or planted store
        lengths = np.array([len(blob) if type(blob) is bytes else -1 for blob in blobs], dtype=np.intp)
    found, bad = [], [np.flatnonzero((lengths < _HEADER_AT + 14) | (lengths % 8 != 0))]
    for width in np.unique(lengths[(lengths >= _HEADER_AT + 14) & (lengths % 8 == 0)]):
        indices = np.flatnonzero(lengths == width)
        rows = np.frombuffer(b"".join([blobs[i] for i in indices]), dtype=np.uint8).reshape(len(indices), width)
        todo = np.ones(len(indices), dtype=bool)
        while todo.any():  # one pass per distinct header of this width (almost always one)
            first = np.flatnonzero(todo)[0]
            at, kind, dims = _entry_layout(rows[first])
            same = todo & np.all(rows[:, 4 + KEY_BYTES : at] == rows[first, 4 + KEY_BYTES : at], axis=1)
            todo &= ~same
            if kind is None or _entry_width(at, kind, dims) != width:
                bad.append(indices[same])
                continue
            group, members = (rows, indices) if same.all() else (rows[same], indices[same])  # no copy if one header
            sound = _sound_rows(group, at)
            if not sound.all():
                bad.append(members[~sound])
                group, members = group[sound], members[sound]
            if len(members):
                found.append((members, *_keys_and_block(group, at, kind, dims)))
    return found, np.sort(np.concatenate(bad)).astype(np.intp)


def split_entries(joined: bytes) -> tuple[np.ndarray, np.ndarray] | None:
    """Entries stored back to back, all of one dtype and shape and all sound: ``(keys, block)``.

    None when they are not (mixed kinds, or any entry failing a check): the
    caller then reads them one by one with :func:`unpack_entries`, which
    tells the sound from the bad.
    """
    if len(joined) < _HEADER_AT + 14 or joined[:4] != MAGIC:
        return None
    rows = np.frombuffer(joined, dtype=np.uint8)
    at, kind, dims = _entry_layout(rows)
    width = _entry_width(at, kind, dims) if kind is not None else 0
    if not width or len(joined) % width:
        return None
    rows = rows.reshape(-1, width)
    if not (rows[:, 4 + KEY_BYTES : at] == rows[0, 4 + KEY_BYTES : at]).all() or not _sound_rows(rows, at).all():
        return None
    return _keys_and_block(rows, at, kind, dims)


def _entry_layout(row: np.ndarray) -> tuple[int, np.dtype | None, tuple[int, ...]]:
    """``(checksum offset, dtype, shape)`` that an entry's header names (dtype None when it names none)."""
    at = _HEADER_AT + int(row[_HEADER_AT - 2]) + (int(row[_HEADER_AT - 1]) << 8)
    if at % 8 or at + 8 > len(row):
        return at, None, ()
    return (at, *_header_layout(bytes(row[_HEADER_AT:at])))


def _entry_width(at: int, kind: np.dtype, dims: tuple[int, ...]) -> int:
    size = kind.itemsize * math.prod(dims)
    return at + 8 + size + (-size % 8)


def _sound_rows(rows: np.ndarray, at: int) -> np.ndarray:
    """Which entries (rows of one width and header) have the format's mark and their checksum."""
    sound = np.all(rows[:, :4] == np.frombuffer(MAGIC, dtype=np.uint8), axis=1)
    words = rows.view("<u8")
    return sound & (words[:, at // 8] == _entry_checksums(words, at // 8))


def _keys_and_block(rows: np.ndarray, at: int, kind: np.dtype, dims: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """The keys and the stacked arrays of sound entries: views of the rows, no copy."""
    size = kind.itemsize * math.prod(dims)
    return rows[:, 4 : 4 + KEY_BYTES], rows[:, at + 8 : at + 8 + size].view(kind).reshape(len(rows), *dims)


def stack_parts(parts: Iterable[tuple[np.ndarray, np.ndarray]]) -> list[tuple[np.ndarray, np.ndarray]]:
    """Parts ``(positions, block)`` found for one look-up, joined into one read-only part per dtype and shape."""
    kinds: dict[tuple, list[tuple[np.ndarray, np.ndarray]]] = {}
    for positions, block in parts:
        if len(positions):
            kinds.setdefault((block.dtype.str, block.shape[1:]), []).append((positions, block))
    blocks = []
    for same in kinds.values():
        positions = np.concatenate([p for p, _ in same]) if len(same) > 1 else same[0][0]
        block = np.concatenate([b for _, b in same]) if len(same) > 1 else same[0][1]
        block.flags.writeable = False
        blocks.append((positions, block))
    return blocks


@functools.lru_cache(maxsize=256)
def _header_layout(text: bytes) -> tuple[np.dtype | None, tuple[int, ...]]:
    """The dtype and shape an entry's header names; ``(None, ())`` when it names none."""
    try:
        dtype, shape = text.decode("ascii").rstrip(" ").rsplit("|", 1)
        kind, dims = layout(dtype, shape)
    except (ValueError, TypeError):
        return None, ()
    return kind, dims


def key_ids(raw_keys: np.ndarray) -> np.ndarray:
    """The signed 64-bit numbers of keys given as raw bytes: their first 8 bytes, big-endian, top bit flipped."""
    first = np.ascontiguousarray(raw_keys[:, :8]).view(">u8").ravel().astype(np.uint64)
    return (first ^ np.uint64(1 << 63)).view(np.int64)


@functools.lru_cache(maxsize=256)
def layout(dtype: str, shape: str) -> tuple[np.dtype, tuple[int, ...]]:
    """The numpy dtype and shape an entry's header names (few distinct ones: cached); an error if it names none."""
    kind = np.dtype(dtype)
    if kind.hasobject:
        raise TypeError("object arrays are never stored")
    dims = json.loads(shape)
    if not isinstance(dims, list) or not all(isinstance(d, int) and d >= 0 for d in dims):
        raise ValueError(f"not a shape: {shape!r}")
    return kind, tuple(dims)


# Entries as the first two SQLite layouts and earlier Redis stores kept them (dtype, shape, data and a
# BLAKE2b checksum): read when their answers are carried over, never written.
def legacy_checksum(data: bytes, dtype: str, shape: str) -> str:
    """The checksum the earlier entry format kept: BLAKE2b of its dtype, shape and bytes."""
    h = hashlib.blake2b(dtype.encode(), digest_size=16)
    h.update(shape.encode())
    h.update(data)
    return h.hexdigest()


def decode_legacy_entry(dtype, shape, data, expected) -> np.ndarray | None:
    """The array of an entry of the earlier format, or None when it fails its checksum or cannot be decoded."""
    if not isinstance(data, bytes) or not isinstance(dtype, str) or not isinstance(shape, str):
        return None
    if legacy_checksum(data, dtype, shape) != expected:
        return None
    try:
        kind, dims = layout(dtype, shape)
        return np.frombuffer(data, dtype=kind).reshape(dims)
    except (ValueError, TypeError):
        return None


# ------------------------------------------------------------------ threads
_workers: dict[str, tuple[int, ThreadPoolExecutor]] = {}
_workers_lock = threading.Lock()


def worker_thread(name: str) -> ThreadPoolExecutor:
    """The thread called ``name`` of this process, that look-ups hand work to (a forked child starts its own)."""
    with _workers_lock:
        pid, pool = _workers.get(name, (None, None))
        if pool is None or pid != os.getpid():
            pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"skcrosstune-{name}")
            _workers[name] = (os.getpid(), pool)
        return pool


# ------------------------------------------------------------------- owners
_HOST = socket.gethostname()


def new_owner() -> str:
    """A fresh owner name for claims: this machine, this process, and a random token."""
    return f"{_HOST}:{os.getpid()}:{uuid.uuid4().hex[:16]}"


def owner_is_gone(owner: str) -> bool:
    """Whether ``owner`` was a process of this machine that no longer runs.

    The machine is known by its host name: containers sharing a host name but
    not a process table could take each other's live claims for gone ones,
    and pay twice for those texts (never wrongly answer).
    """
    host, _, rest = owner.partition(":")
    pid = rest.partition(":")[0]
    if host != _HOST or not pid.isdigit():
        return False
    if int(pid) == os.getpid():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except OSError:
        return False
    return False


# -------------------------------------------------------------------- store
class Store(ABC):
    """The answers of one black box, shared by every thread, process and machine that opens it.

    Subclasses implement the abstract methods for one kind of storage and
    list the URL ``schemes`` they serve (an empty tuple: plain folder paths).

    Parameters
    ----------
    location : str
        Where the store is (a folder, or a URL).
    fingerprint : dict
        The black box and every setting that changes its answers. Its digest
        is mixed into every key, so no entry can answer for another model or
        setting. Credentials inside URLs are removed before anything is kept.
    """

    schemes: tuple[str, ...] = ()
    _kinds: dict[str, type[Store]] = {}

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        for scheme in cls.schemes:
            Store._kinds[scheme] = cls
        if not cls.schemes:
            Store._kinds[""] = cls

    def __init__(self, location: str, fingerprint: dict):
        self.location = location
        self.fingerprint = public_fingerprint(fingerprint)
        self.digest = fingerprint_digest(self.fingerprint)

    def key(self, item: Hashable) -> str:
        """The content address of ``item`` (a str or a tuple of str)."""
        return entry_key(self.digest, item)

    def keys(self, items: Iterable[Hashable]) -> list[str]:
        """The content addresses of ``items``, in their order."""
        return entry_keys(self.digest, items)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.describe()!r}, digest={self.digest!r})"

    def describe(self) -> str:
        """The location as it may be shown in messages (no credentials)."""
        return _strip_userinfo(str(self.location))

    # -- what every kind implements ---------------------------------------
    @abstractmethod
    def check(self) -> None:
        """Make the store ready and prove it usable; raise :class:`StoreError` if not."""

    @abstractmethod
    def get_stacked(self, keys: Sequence[str]) -> tuple[list[tuple[np.ndarray, np.ndarray]], int]:
        """Stored arrays for ``keys`` (distinct), stacked: ``([(positions, block), ...], n_corrupt)``.

        For each distinct dtype and shape found (almost always one), the
        positions in ``keys`` of those entries (in no set order) and their
        arrays stacked into one read-only block, row ``i`` for position ``i``.
        Entries failing a check are deleted and counted in ``n_corrupt``,
        never returned.
        """

    def get_many(self, keys: Sequence[str]) -> tuple[dict[str, np.ndarray], int]:
        """Stored arrays for ``keys``: ``(found, n_corrupt)``, as :meth:`get_stacked` finds them."""
        keys = list(keys)
        blocks, n_corrupt = self.get_stacked(keys)
        return {keys[p]: row for positions, block in blocks for p, row in zip(positions, block, strict=True)}, n_corrupt

    @abstractmethod
    def put_many(self, entries: Iterable[tuple[str, np.ndarray]]) -> None:
        """Store arrays; all of the call is kept, or none."""

    @abstractmethod
    def claim(self, keys: Sequence[str], owner: str, lease: float) -> list[str]:
        """Claim ``keys`` for ``owner`` for ``lease`` seconds; returns the keys now held by ``owner``.

        A key is granted when nobody holds it, or its holder's lease ran out,
        or its holder is a process of this machine that no longer runs.
        """

    @abstractmethod
    def extend(self, keys: Sequence[str], owner: str, lease: float) -> None:
        """Renew ``owner``'s claims on ``keys`` for another ``lease`` seconds."""

    @abstractmethod
    def release(self, keys: Sequence[str], owner: str) -> None:
        """End ``owner``'s claims on ``keys`` (others' claims are left alone)."""

    @abstractmethod
    def add_counts(self, *, sent: int = 0, hits: int = 0, prompt_tokens: int = 0, completion_tokens: int = 0) -> None:
        """Add to this fingerprint's counters (:data:`COUNTERS`), all in one atomic step.

        ``sent``: inputs sent to the black box; ``hits``: inputs the store
        answered; ``prompt_tokens`` / ``completion_tokens``: the tokens the
        sent requests read and wrote.
        """

    @abstractmethod
    def counts(self) -> dict[str, int]:
        """The counters of this fingerprint (every name of :data:`COUNTERS`), summed over every user of the store."""

    @abstractmethod
    def reset_counts(self) -> None:
        """Set this fingerprint's counters to zero."""

    def close(self) -> None:  # noqa: B027 - most kinds have nothing to close
        """Let go of this process's connections (reopened on next use)."""

    # -- texts, for generators --------------------------------------------
    def get_texts(self, keys: Sequence[str]) -> dict[str, str]:
        """Stored texts (such as generated replies) for ``keys``; corrupt entries are left out."""
        found, _ = self.get_many(keys)
        return {key: value.tobytes().decode("utf-8", "surrogatepass") for key, value in found.items()}

    def put_texts(self, entries: Iterable[tuple[str, str]]) -> None:
        """Store texts, as checksummed UTF-8 bytes."""
        self.put_many(
            (key, np.frombuffer(text.encode("utf-8", "surrogatepass"), dtype=np.uint8)) for key, text in entries
        )


# ------------------------------------------------------------ opening stores
def default_location() -> Path:
    """Where ``store="auto"`` points on the machine running now.

    ``$SKCROSSTUNE_CACHE_DIR``, else ``$XDG_CACHE_HOME/skcrosstune``, else
    ``~/.cache/skcrosstune``.
    """
    env = os.environ.get("SKCROSSTUNE_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "skcrosstune"


_open_lock = threading.Lock()
_open_stores: dict[tuple, Store] = {}
_warned_auto: set[str] = set()


def _store_kind(location: str) -> type[Store]:
    scheme = urlsplit(location).scheme.lower() if "://" in location else ""
    if scheme not in Store._kinds:
        for module in pkgutil.iter_modules([str(Path(__file__).parent)]):
            if not module.name.startswith("_") and module.name != "base":
                importlib.import_module(f"{__package__}.{module.name}")
    if scheme not in Store._kinds:
        known = ", ".join(sorted(f"{s}://" for s in Store._kinds if s))
        raise ValueError(
            f"store={_strip_userinfo(location)!r} names no known store kind: give a folder path, "
            f"one of {known} URLs, 'auto' or None."
        )
    return Store._kinds[scheme]


def _open(location: str, fingerprint: dict) -> Store:
    kind = _store_kind(location)
    digest = fingerprint_digest(fingerprint)
    key = (kind.__name__, location, digest, os.getpid())
    with _open_lock:
        store = _open_stores.get(key)
        if store is None:
            store = kind(location, fingerprint)
            store.check()
            _open_stores[key] = store
    return store


_warned_unusable: set[str] = set()


def warn_once_without_store(error: StoreError) -> None:
    """Say once per process and store that work goes on without a store that cannot be used."""
    message = str(error)
    if message not in _warned_unusable:
        _warned_unusable.add(message)
        warnings.warn(
            f"{message} Working without it: answers are computed but not kept (store_errors='raise' makes this an "
            "error).",
            RuntimeWarning,
            stacklevel=4,
        )


def open_store(location, fingerprint: dict) -> Store | None:
    """The store at ``location`` for the black box ``fingerprint``, ready to use.

    Resolved on the machine that calls it, each time (an open store is reused
    within a process).

    Parameters
    ----------
    location : "auto", None, str or path
        ``"auto"``: :func:`default_location` as SQLite files; when it cannot be
        used, one warning per location and process is given and None is
        returned, so the work goes on without a store. ``None``: no store.
        A folder path: SQLite files there. A URL such as
        ``"redis://host:6379/0"``: the store kind serving that scheme. A named
        location that cannot be used raises :class:`StoreError`.
    fingerprint : dict
        The black box's fingerprint.

    Returns
    -------
    store : Store or None
    """
    if location is None:
        return None
    if isinstance(location, str) and location == "auto":
        path = str(default_location())
        try:
            return _open(path, fingerprint)
        except (StoreError, OSError) as exc:
            if path not in _warned_auto:
                _warned_auto.add(path)
                warnings.warn(
                    f"The default query store {path} cannot be used ({exc}); working without a store, so "
                    "answers are not kept. Set SKCROSSTUNE_CACHE_DIR to a usable folder, or pass store=.",
                    RuntimeWarning,
                    stacklevel=3,
                )
            return None
    location = os.fspath(location)
    try:
        return _open(location, fingerprint)
    except StoreError:
        raise
    except OSError as exc:
        raise StoreUnavailable(f"The store {_strip_userinfo(location)!r} cannot be used: {exc}") from None


def query_counts(location, fingerprint) -> dict[str, int]:
    """What every user of a store paid and was answered for one black box.

    Parameters
    ----------
    location : "auto", str or path
        The store, as given to an estimator's ``store`` parameter.
    fingerprint : dict or fitted BlackBoxEmbedder
        The black box: its fingerprint, or a fitted embedder using it.

    Returns
    -------
    counts : dict
        ``{"sent": inputs sent to the black box, "hits": inputs the store
        answered, "prompt_tokens": ..., "completion_tokens": tokens the sent
        requests read and wrote}``, summed over every process, thread and
        machine that used the store since it was created (or since
        ``reset_counts``). Tokens are what the black box reported (an API's
        ``usage``, a local model's tokenizer); zero for one that reports
        none. Zeros when there is no usable store.
    """
    if hasattr(fingerprint, "backend_"):
        fingerprint = fingerprint.backend_.fingerprint()
    store = open_store(location, fingerprint)
    return store.counts() if store is not None else dict.fromkeys(COUNTERS, 0)
