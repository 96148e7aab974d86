"""The query cache: the one place that decides whether a black-box query is paid for.

Answers are stored per item (a text, or a sentence pair), content-addressed by
a hash of the backend fingerprint and the item, in one SQLite file per
fingerprint. SQLite gives atomic, durable transactions and safe concurrent
writers (two GridSearchCV workers sharing a folder), and no pickle is ever
read back: an entry is raw float32 bytes, its shape and a checksum. Results
are committed as each batch finishes, so a run killed halfway resumes without
re-querying what it already paid for; an entry whose checksum does not match
is treated as missing and recomputed, never returned.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import time
import warnings
from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

__all__ = [
    "QueryCache",
    "QueryReport",
    "default_cache_dir",
    "fingerprint_digest",
    "query_through_cache",
]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS entries (
    key TEXT PRIMARY KEY,
    dtype TEXT NOT NULL,
    shape TEXT NOT NULL,
    data BLOB NOT NULL,
    checksum TEXT NOT NULL
)
"""
_SQL_VARIABLE_LIMIT = 500


def default_cache_dir() -> Path:
    """The user cache folder.

    ``$SKCROSSTUNE_CACHE_DIR``, else ``$XDG_CACHE_HOME/skcrosstune``, else
    ``~/.cache/skcrosstune``.
    """
    env = os.environ.get("SKCROSSTUNE_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "skcrosstune"


def _canonical_json(value) -> bytes:
    return json.dumps(value, sort_keys=True, ensure_ascii=False).encode("utf-8", "surrogatepass")


def fingerprint_digest(fingerprint: dict) -> str:
    """A stable hex digest of a backend fingerprint (a JSON-able dict)."""
    return hashlib.blake2b(_canonical_json(fingerprint), digest_size=16).hexdigest()


def _checksum(data: bytes, dtype: str, shape: str) -> str:
    h = hashlib.blake2b(digest_size=16)
    h.update(dtype.encode())
    h.update(shape.encode())
    h.update(data)
    return h.hexdigest()


@dataclass
class QueryReport:
    """What one call cost: items asked for, unique items, cache answers, queries sent."""

    n_items: int = 0
    n_unique: int = 0
    n_cached: int = 0
    n_queried: int = 0
    n_corrupt: int = 0

    def __iadd__(self, other: QueryReport) -> QueryReport:
        for name in self.__dataclass_fields__:
            setattr(self, name, getattr(self, name) + getattr(other, name))
        return self


@dataclass
class QueryCache:
    """A persistent store of black-box answers for one backend fingerprint.

    Parameters
    ----------
    directory : str or Path
        The cache folder; created on first write.
    fingerprint : dict
        JSON-able description of the backend and every setting that changes
        its answers. Its digest names the SQLite file and is mixed into every
        key, so no entry can answer for another model or setting.
    """

    directory: Path
    fingerprint: dict
    _connection: sqlite3.Connection | None = field(default=None, init=False, repr=False)
    _pid: int | None = field(default=None, init=False, repr=False)

    def __post_init__(self):
        self.directory = Path(self.directory).expanduser()
        self.digest = fingerprint_digest(self.fingerprint)

    @property
    def path(self) -> Path:
        """The SQLite file of this fingerprint."""
        return self.directory / f"{self.digest}.sqlite3"

    def key(self, item: Hashable) -> str:
        """The content address of ``item`` (a str or a tuple of str)."""
        h = hashlib.blake2b(digest_size=20)
        h.update(self.digest.encode())
        h.update(b"\x00")
        h.update(_canonical_json(item))
        return h.hexdigest()

    # -- connection handling -------------------------------------------------
    def _connect(self) -> sqlite3.Connection:
        # A connection must never cross a fork: reopen in each process.
        if self._connection is not None and self._pid == os.getpid():
            return self._connection
        self.directory.mkdir(parents=True, exist_ok=True)
        self._write_fingerprint_file()
        try:
            self._connection = self._open()
        except sqlite3.DatabaseError as exc:
            self._quarantine(exc)
            self._connection = self._open()
        self._pid = os.getpid()
        return self._connection

    def _open(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=60.0, isolation_level=None)
        conn.execute("PRAGMA busy_timeout = 60000")
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = NORMAL")
        conn.execute(_SCHEMA)
        conn.execute("SELECT count(*) FROM entries LIMIT 1").fetchone()
        return conn

    def _quarantine(self, exc: Exception) -> None:
        """Move an unreadable database file aside and start a fresh one."""
        self.close()
        stamp = time.strftime("%Y%m%d-%H%M%S")
        for suffix in ("", "-wal", "-shm"):
            src = Path(str(self.path) + suffix)
            if src.exists():
                src.replace(Path(str(self.path) + suffix + f".corrupt-{stamp}"))
        warnings.warn(
            f"The query cache file {self.path} could not be read ({exc}); it was "
            "moved aside and a fresh cache started. Affected texts will be re-queried.",
            RuntimeWarning,
            stacklevel=3,
        )

    def _write_fingerprint_file(self) -> None:
        """A readable note next to the database saying which backend it serves."""
        target = self.directory / f"{self.digest}.json"
        if target.exists():
            return
        tmp = target.with_suffix(f".json.tmp-{os.getpid()}")
        tmp.write_text(json.dumps(self.fingerprint, indent=2, sort_keys=True))
        os.replace(tmp, target)

    def close(self) -> None:
        """Close this process's connection (reopened on next use)."""
        if self._connection is not None and self._pid == os.getpid():
            self._connection.close()
        self._connection = None
        self._pid = None

    def __getstate__(self):
        return {"directory": self.directory, "fingerprint": self.fingerprint, "digest": self.digest}

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._connection = None
        self._pid = None

    # -- reading and writing -------------------------------------------------
    def get_many(self, keys: Sequence[str]) -> tuple[dict, int]:
        """Stored arrays for ``keys``; returns ``(found, n_corrupt)``.

        Entries that fail their checksum or cannot be decoded are deleted and
        left out of ``found``, so the caller recomputes them.
        """
        found: dict[str, np.ndarray] = {}
        corrupt: list[str] = []
        conn = self._connect()
        for start in range(0, len(keys), _SQL_VARIABLE_LIMIT):
            chunk = list(keys[start : start + _SQL_VARIABLE_LIMIT])
            marks = ",".join("?" * len(chunk))
            try:
                rows = conn.execute(
                    f"SELECT key, dtype, shape, data, checksum FROM entries WHERE key IN ({marks})",
                    chunk,
                ).fetchall()
            except sqlite3.DatabaseError as exc:
                self._quarantine(exc)
                return {}, 0
            for key, dtype, shape, data, checksum in rows:
                array = _decode(dtype, shape, data, checksum)
                if array is None:
                    corrupt.append(key)
                else:
                    found[key] = array
        if corrupt:
            with _transaction(conn):
                conn.executemany("DELETE FROM entries WHERE key = ?", [(k,) for k in corrupt])
        return found, len(corrupt)

    def put_many(self, entries: Iterable[tuple[str, np.ndarray]]) -> None:
        """Store arrays atomically: all of this batch is committed, or none."""
        rows = []
        for key, array in entries:
            array = np.ascontiguousarray(array)
            dtype, shape, data = array.dtype.str, json.dumps(list(array.shape)), array.tobytes()
            rows.append((key, dtype, shape, data, _checksum(data, dtype, shape)))
        conn = self._connect()
        with _transaction(conn):
            conn.executemany(
                "INSERT OR REPLACE INTO entries (key, dtype, shape, data, checksum) VALUES (?, ?, ?, ?, ?)",
                rows,
            )

    def get_texts(self, keys: Sequence[str]) -> dict[str, str]:
        """Stored texts (such as generated answers) for ``keys``; corrupt entries are left out."""
        found, _ = self.get_many(keys)
        return {key: value.tobytes().decode("utf-8", "surrogatepass") for key, value in found.items()}

    def put_texts(self, entries: Iterable[tuple[str, str]]) -> None:
        """Store texts atomically, as checksummed UTF-8 bytes."""
        self.put_many(
            (key, np.frombuffer(text.encode("utf-8", "surrogatepass"), dtype=np.uint8)) for key, text in entries
        )

    def __len__(self) -> int:
        return self._connect().execute("SELECT count(*) FROM entries").fetchone()[0]


class _transaction:
    """``BEGIN IMMEDIATE`` ... ``COMMIT``; rolls back on error."""

    def __init__(self, conn: sqlite3.Connection):
        self.conn = conn

    def __enter__(self):
        self.conn.execute("BEGIN IMMEDIATE")
        return self.conn

    def __exit__(self, exc_type, exc, tb):
        self.conn.execute("ROLLBACK" if exc_type else "COMMIT")
        return False


def _decode(dtype: str, shape: str, data: bytes, checksum: str) -> np.ndarray | None:
    if not isinstance(data, bytes) or _checksum(data, dtype, shape) != checksum:
        return None
    try:
        array = np.frombuffer(data, dtype=np.dtype(dtype)).reshape(json.loads(shape))
    except (ValueError, TypeError):
        return None
    return array.copy()


def query_through_cache(
    items: Sequence[Hashable],
    compute: Callable[[list], np.ndarray],
    *,
    cache: QueryCache | None,
    batch_size: int,
    lengths: Callable[[list], Sequence[int]] | None = None,
    progress: Callable[[int], object] | None = None,
) -> tuple[np.ndarray, QueryReport]:
    """Answer ``items`` from the cache, querying ``compute`` only for what it lacks.

    Duplicate items are queried once. Missing items are sent in batches of
    ``batch_size``, longest first when ``lengths`` is given (to pad little),
    and each batch is committed to the cache as soon as it returns.

    Parameters
    ----------
    items : sequence of hashable
        Texts, or ``(text, text_pair)`` tuples.
    compute : callable
        ``compute(list_of_items) -> ndarray`` with one row per item: the
        black-box query.
    cache : QueryCache or None
        None disables persistence (duplicates are still queried once).
    batch_size : int
    lengths : callable, optional
        ``lengths(missing_items) -> sequence of int``, used to sort misses;
        called only when something is missing.
    progress : callable, optional
        Called with the number of items finished after each batch.

    Returns
    -------
    answers : ndarray of shape (len(items), ...)
    report : QueryReport
    """
    report = QueryReport(n_items=len(items))
    unique = list(dict.fromkeys(items))
    report.n_unique = len(unique)
    answers: dict = {}
    if cache is not None:
        keys = {item: cache.key(item) for item in unique}
        stored, report.n_corrupt = cache.get_many(list(keys.values()))
        for item in unique:
            if keys[item] in stored:
                answers[item] = stored[keys[item]]
        report.n_cached = len(answers)
    missing = [item for item in unique if item not in answers]
    if lengths is not None and len(missing) > batch_size:
        order = np.argsort(-np.asarray(lengths(missing)), kind="stable")
        missing = [missing[i] for i in order]
    for start in range(0, len(missing), batch_size):
        batch = missing[start : start + batch_size]
        rows = np.asarray(compute(batch))
        if len(rows) != len(batch):
            raise RuntimeError(f"The black box returned {len(rows)} answers for {len(batch)} inputs.")
        if cache is not None:
            cache.put_many((keys[item], row) for item, row in zip(batch, rows, strict=True))
        answers.update(zip(batch, rows, strict=True))
        report.n_queried += len(batch)
        if progress is not None:
            progress(len(batch))
    return np.stack([answers[item] for item in items]), report
