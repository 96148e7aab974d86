"""The SQLite store: the embedded default, one file per black box in a private local folder.

SQLite gives atomic, durable transactions and safe concurrent writers (the
processes of a grid search, several notebooks), on a local disk; its
write-ahead log does not work on network file systems, so a store shared by
machines belongs in a server (``redis://``).

Trust model: whoever can write the store folder can plant answers that every
user of the store will read as the black box's. The folder is therefore
created private (0700, files 0600), a folder that other users can write is
refused unless ``$SKCROSSTUNE_ALLOW_SHARED_STORE=1`` says it is trusted, and
nothing is written through a symbolic link. Entries are raw bytes with a
checksum, never pickles, so a planted entry can only be a wrong answer,
never code.

A damaged file is moved aside under a unique name (every one is kept), every
entry that can still be read and passes its checksum is copied into a fresh
file, and one warning says so.
"""

from __future__ import annotations

import json
import os
import sqlite3
import stat
import tempfile
import threading
import time
import uuid
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path
from urllib.parse import quote

import numpy as np

from .base import Store, StoreError, decode_entry, encode_entry, owner_is_gone

__all__ = ["ALLOW_SHARED_ENV", "SQLiteStore"]

#: Set this environment variable to ``1`` to use a store folder that other users can write.
ALLOW_SHARED_ENV = "SKCROSSTUNE_ALLOW_SHARED_STORE"

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS entries (key TEXT PRIMARY KEY, dtype TEXT NOT NULL, shape TEXT NOT NULL, "
    "data BLOB NOT NULL, checksum TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS claims (key TEXT PRIMARY KEY, owner TEXT NOT NULL, expires REAL NOT NULL)",
    "CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL)",
)
_CHUNK = 500  # keys per statement, under SQLite's variable limit
_SQLITE_CORRUPT, _SQLITE_NOTADB = 11, 26


class SQLiteStore(Store):
    """Answers in ``<folder>/<fingerprint digest>.sqlite3``, safe for many threads and processes.

    Parameters
    ----------
    location : str or path
        The folder; created (0700) when missing.
    fingerprint : dict
        The black box's fingerprint; ``<digest>.json`` next to the database
        says which black box it serves.
    """

    schemes = ()

    def __init__(self, location, fingerprint: dict):
        super().__init__(os.fspath(location), fingerprint)
        self.directory = Path(self.location).expanduser()
        self._local = threading.local()
        self._generation = 0
        self._recover_lock = threading.Lock()

    @property
    def path(self) -> Path:
        """The SQLite file of this fingerprint."""
        return self.directory / f"{self.digest}.sqlite3"

    # -- the folder and its files ------------------------------------------
    def check(self) -> None:
        """Create the folder and file if needed, refuse an untrusted folder, and open the database."""
        self._prepare_folder()
        self._write_fingerprint_file()
        try:
            self._connect()
        except sqlite3.Error as exc:
            raise StoreError(f"The store file {self.path} cannot be opened: {exc}") from None

    def _prepare_folder(self) -> None:
        folder = self.directory
        try:
            os.makedirs(folder, mode=0o700)
        except FileExistsError:
            pass
        else:
            os.chmod(folder, 0o700)
        info = os.stat(folder)
        if not stat.S_ISDIR(info.st_mode):
            raise StoreError(f"The store location {folder} exists and is not a folder.")
        if os.name == "posix" and os.environ.get(ALLOW_SHARED_ENV) != "1":
            others_write = info.st_mode & 0o022
            foreign = info.st_uid not in (os.getuid(), 0)
            if others_write or foreign:
                raise StoreError(
                    f"The store folder {folder} can be written by other users (mode {stat.filemode(info.st_mode)}, "
                    f"owner uid {info.st_uid}), and whoever can write a store can plant answers in it. Use a "
                    f"private folder, or set {ALLOW_SHARED_ENV}=1 if you trust everyone who can write it."
                )

    def _write_fingerprint_file(self) -> None:
        """A readable note next to the database saying which black box it serves (never through a link)."""
        target = self.directory / f"{self.digest}.json"
        try:
            if stat.S_ISREG(os.lstat(target).st_mode):
                return
        except FileNotFoundError:
            pass
        fd, tmp = tempfile.mkstemp(dir=self.directory, prefix=f".{self.digest}.", suffix=".tmp")  # O_EXCL, 0600
        try:
            with os.fdopen(fd, "w") as handle:
                json.dump(self.fingerprint, handle, indent=2, sort_keys=True)
            os.replace(tmp, target)  # replaces a planted link itself, never what it points to
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def _create_database(self) -> None:
        """A new, initialised database file (0600), made under a random name then linked into place."""
        fd, tmp = tempfile.mkstemp(dir=self.directory, prefix=f".{self.digest}.", suffix=".new")
        os.close(fd)
        try:
            conn = sqlite3.connect(tmp, isolation_level=None)
            try:
                for statement in _SCHEMA:
                    conn.execute(statement)
            finally:
                conn.close()
            try:
                os.link(tmp, self.path)  # fails if someone else made it first: theirs is used
            except FileExistsError:
                pass
            except OSError:  # a file system without hard links
                if not os.path.lexists(self.path):
                    os.rename(tmp, self.path)
        finally:
            Path(tmp).unlink(missing_ok=True)

    def _check_database_file(self) -> None:
        try:
            info = os.lstat(self.path)
        except FileNotFoundError:
            self._create_database()
            return
        if stat.S_ISLNK(info.st_mode) or not stat.S_ISREG(info.st_mode):
            raise StoreError(f"The store file {self.path} is not a regular file (a link?); refusing to use it.")
        if info.st_size == 0:
            warnings.warn(
                f"The store file {self.path} was empty (0 bytes); it starts afresh and its answers will be "
                "queried again.",
                RuntimeWarning,
                stacklevel=5,
            )
        if info.st_mode & 0o077 and info.st_uid == os.geteuid():
            for suffix in ("", "-wal", "-shm"):
                if os.path.isfile(f"{self.path}{suffix}") and not os.path.islink(f"{self.path}{suffix}"):
                    os.chmod(f"{self.path}{suffix}", 0o600)

    # -- connections ---------------------------------------------------------
    def _connect(self) -> sqlite3.Connection:
        """The connection of the calling thread (a connection never crosses a fork or a recovery)."""
        local = self._local
        if getattr(local, "conn", None) is not None and local.key == (os.getpid(), self._generation):
            return local.conn
        self._check_database_file()
        try:
            conn = self._open()
        except sqlite3.DatabaseError as exc:
            if not _is_damage(exc):
                raise
            self._recover(exc)
            return self._connect()
        local.conn, local.key = conn, (os.getpid(), self._generation)
        return conn

    def _open(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=60.0, isolation_level=None, check_same_thread=False)
        try:
            conn.execute("PRAGMA busy_timeout = 60000")
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = NORMAL")
            tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            if tables and "entries" not in tables:
                warnings.warn(
                    f"The store file {self.path} had lost its table of answers; it was recreated empty and its "
                    "answers will be queried again.",
                    RuntimeWarning,
                    stacklevel=5,
                )
            if not {"entries", "claims", "counters"} <= tables:
                for statement in _SCHEMA:
                    conn.execute(statement)
            conn.execute("SELECT 1 FROM entries LIMIT 1").fetchall()
        except BaseException:
            conn.close()
            raise
        return conn

    def close(self) -> None:
        """Close this thread's connection (reopened on next use)."""
        conn = getattr(self._local, "conn", None)
        if conn is not None and self._local.key[0] == os.getpid():
            conn.close()
        self._local.conn = None

    def _run(self, action):
        """``action(connection)``, recovering once from a damaged file."""
        try:
            return action(self._connect())
        except sqlite3.DatabaseError as exc:
            if not _is_damage(exc):
                raise
            self._recover(exc)
            return action(self._connect())

    # -- recovery ------------------------------------------------------------
    def _recover(self, exc: Exception) -> None:
        """Keep the damaged file aside (a unique name), copy its sound entries to a fresh file, warn once."""
        with self._recover_lock:
            self.close()
            stamp = f"{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:8]}"
            kept = Path(f"{self.path}.corrupt-{stamp}")
            for suffix in ("", "-wal", "-shm"):
                source = Path(f"{self.path}{suffix}")
                if source.exists():
                    os.replace(source, f"{kept}{suffix}")
            self._generation += 1
            rows = _salvage(kept)
            conn = self._connect()
            with _transaction(conn):
                conn.executemany(
                    "INSERT OR REPLACE INTO entries (key, dtype, shape, data, checksum) VALUES (?, ?, ?, ?, ?)", rows
                )
        warnings.warn(
            f"The store file {self.path} was damaged ({exc}); it was kept as {kept.name}, and the "
            f"{len(rows)} answers still sound were copied to a fresh file. Other answers will be queried again.",
            RuntimeWarning,
            stacklevel=4,
        )

    # -- entries -------------------------------------------------------------
    def get_many(self, keys: Sequence[str]) -> tuple[dict[str, np.ndarray], int]:
        """Stored arrays for ``keys``; entries failing their checksum are deleted and left out."""
        keys = list(keys)

        def read(conn):
            found, corrupt = {}, []
            for start in range(0, len(keys), _CHUNK):
                chunk = keys[start : start + _CHUNK]
                marks = ",".join("?" * len(chunk))
                rows = conn.execute(
                    f"SELECT key, dtype, shape, data, checksum FROM entries WHERE key IN ({marks})", chunk
                ).fetchall()
                for key, dtype, shape, data, checksum in rows:
                    array = decode_entry(dtype, shape, data, checksum)
                    if array is None:
                        corrupt.append(key)
                    else:
                        found[key] = array
            if corrupt:
                with _transaction(conn):
                    conn.executemany("DELETE FROM entries WHERE key = ?", [(k,) for k in corrupt])
            return found, len(corrupt)

        return self._run(read)

    def put_many(self, entries: Iterable[tuple[str, np.ndarray]]) -> None:
        """Store arrays in one transaction: all of them are committed, or none."""
        rows = [(key, *encode_entry(array)) for key, array in entries]

        def write(conn):
            with _transaction(conn):
                conn.executemany(
                    "INSERT OR REPLACE INTO entries (key, dtype, shape, data, checksum) VALUES (?, ?, ?, ?, ?)", rows
                )

        self._run(write)

    def __len__(self) -> int:
        return self._run(lambda conn: conn.execute("SELECT count(*) FROM entries").fetchone()[0])

    # -- claims --------------------------------------------------------------
    def claim(self, keys: Sequence[str], owner: str, lease: float) -> list[str]:
        """Claim ``keys`` for ``owner``; returns those granted (free, expired, or held by a gone process)."""
        keys = list(keys)

        def grant(conn):
            now = time.time()
            granted, gone = [], {}
            with _transaction(conn):
                conn.execute("DELETE FROM claims WHERE expires < ?", (now - 3600,))
                for start in range(0, len(keys), _CHUNK):
                    chunk = keys[start : start + _CHUNK]
                    marks = ",".join("?" * len(chunk))
                    held = {
                        key: (holder, expires)
                        for key, holder, expires in conn.execute(
                            f"SELECT key, owner, expires FROM claims WHERE key IN ({marks})", chunk
                        )
                    }
                    for key in chunk:
                        holder, expires = held.get(key, (None, 0.0))
                        if holder is not None and holder != owner and expires > now:
                            if holder not in gone:
                                gone[holder] = owner_is_gone(holder)
                            if not gone[holder]:
                                continue
                        granted.append(key)
                conn.executemany(
                    "INSERT OR REPLACE INTO claims (key, owner, expires) VALUES (?, ?, ?)",
                    [(key, owner, now + lease) for key in granted],
                )
            return granted

        return self._run(grant)

    def extend(self, keys: Sequence[str], owner: str, lease: float) -> None:
        """Renew ``owner``'s claims on ``keys``."""
        expires = time.time() + lease
        self._update_claims("UPDATE claims SET expires = ? WHERE owner = ? AND key IN ({})", keys, expires, owner)

    def release(self, keys: Sequence[str], owner: str) -> None:
        """End ``owner``'s claims on ``keys``."""
        self._update_claims("DELETE FROM claims WHERE owner = ? AND key IN ({})", keys, owner)

    def _update_claims(self, statement: str, keys: Sequence[str], *params) -> None:
        keys = list(keys)

        def update(conn):
            with _transaction(conn):
                for start in range(0, len(keys), _CHUNK):
                    chunk = keys[start : start + _CHUNK]
                    conn.execute(statement.format(",".join("?" * len(chunk))), [*params, *chunk])

        if keys:
            self._run(update)

    # -- counters ------------------------------------------------------------
    def add_counts(self, *, sent: int = 0, hits: int = 0) -> None:
        """Add to this fingerprint's ``sent`` and ``hits`` counters."""
        rows = [(name, int(n)) for name, n in (("sent", sent), ("hits", hits)) if n]

        def add(conn):
            with _transaction(conn):
                conn.executemany(
                    "INSERT INTO counters (name, value) VALUES (?, ?) "
                    "ON CONFLICT(name) DO UPDATE SET value = value + excluded.value",
                    rows,
                )

        if rows:
            self._run(add)

    def counts(self) -> dict[str, int]:
        """``{"sent": ..., "hits": ...}`` summed over every user of this file."""
        found = dict(self._run(lambda conn: conn.execute("SELECT name, value FROM counters").fetchall()))
        return {"sent": int(found.get("sent", 0)), "hits": int(found.get("hits", 0))}

    def reset_counts(self) -> None:
        """Set the counters to zero."""

        def reset(conn):
            with _transaction(conn):
                conn.execute("DELETE FROM counters")

        self._run(reset)


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


def _is_damage(exc: sqlite3.DatabaseError) -> bool:
    """Whether an error means a damaged file (not a busy or read-only one)."""
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None and code & 0xFF in (_SQLITE_CORRUPT, _SQLITE_NOTADB):
        return True
    message = str(exc)
    return "malformed" in message or "not a database" in message or "no such table" in message


def _salvage(path: Path) -> list[tuple]:
    """Every entry of a damaged file that can still be read and passes its checksum, row by row."""
    try:
        conn = sqlite3.connect(f"file:{quote(str(path))}?mode=ro", uri=True, isolation_level=None)
    except sqlite3.Error:
        return []
    select = "SELECT key, dtype, shape, data, checksum FROM entries"
    rows: list[tuple] = []

    def keep(candidates):
        rows.extend(row for row in candidates if isinstance(row[0], str) and decode_entry(*row[1:]) is not None)

    try:
        try:
            last = conn.execute("SELECT max(rowid) FROM entries").fetchone()[0] or 0
        except sqlite3.Error:
            last = None
        if last is None:  # the table cannot even be sized: read in order until the damage
            cursor = conn.execute(select)
            while True:
                try:
                    batch = cursor.fetchmany(256)
                except sqlite3.Error:
                    break
                if not batch:
                    break
                keep(batch)
            return rows
        step = 256
        for low in range(0, last + 1, step):
            try:
                keep(conn.execute(f"{select} WHERE rowid >= ? AND rowid < ?", (low, low + step)).fetchall())
            except sqlite3.Error:
                for rowid in range(low, low + step):
                    try:
                        keep(conn.execute(f"{select} WHERE rowid = ?", (rowid,)).fetchall())
                    except sqlite3.Error:
                        continue
    except sqlite3.Error:
        pass
    finally:
        conn.close()
    return rows
