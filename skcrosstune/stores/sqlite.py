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

import functools
import itertools
import json
import mmap
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

from .base import (
    _HEADER_AT,
    COUNTERS,
    MAGIC,
    Store,
    StoreError,
    StoreUnavailable,
    _entry_width,
    _header_layout,
    decode_legacy_entry,
    is_key,
    key_ids,
    owner_is_gone,
    pack_entries,
    raw_keys,
    split_entries,
    stack_parts,
    unpack_entries,
    worker_thread,
)

__all__ = ["ALLOW_SHARED_ENV", "SQLiteStore"]

#: Set this environment variable to ``1`` to use a store folder that other users can write.
ALLOW_SHARED_ENV = "SKCROSSTUNE_ALLOW_SHARED_STORE"

#: The file layout; a new layout gets a new file name, so no version reads another's file as its own.
LAYOUT = 3
#: The files of earlier layouts, whose answers are carried over (``{digest}`` is the fingerprint's): the first
#: kept the key as the primary key with a separate index, the second the key's first 64 bits as the row id
#: beside the key, dtype, shape, data and a BLAKE2b checksum in columns of their own.
_EARLIER_LAYOUTS = ("{digest}.sqlite3", "{digest}.v2.sqlite3")
_SCHEMA = (
    # id: the key's first 64 bits, so a look-up is one B-tree search of the table (no separate index); the
    # entry (stores.base's format) holds the full key, compared on every read, so two keys sharing their first
    # 64 bits are never confused, and everything else about the answer, checked in bulk: one value per row
    "CREATE TABLE IF NOT EXISTS entries (id INTEGER PRIMARY KEY, entry BLOB NOT NULL)",
    "CREATE TABLE IF NOT EXISTS claims (key TEXT PRIMARY KEY, owner TEXT NOT NULL, expires REAL NOT NULL)",
    "CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL)",
    "CREATE TABLE IF NOT EXISTS imported (source TEXT PRIMARY KEY, last_rowid INTEGER NOT NULL)",
)
_TABLES = {"entries", "claims", "counters", "imported"}
_INTO = "INTO entries (id, entry) VALUES (?, ?)"
_INSERT = f"INSERT OR REPLACE {_INTO}"
_CHUNK = 500  # keys per statement, under SQLite's variable limit
_SQLITE_CORRUPT, _SQLITE_FULL, _SQLITE_NOTADB = 11, 13, 26
_ID_OFFSET = 1 << 63  # row ids run from -2**63


@functools.lru_cache(maxsize=16)
def _marks(n: int) -> str:
    return ",".join("?" * n)


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
        self._generation = 0  # bumped when the file is replaced or the connections closed: every thread reconnects
        self._recover_lock = threading.RLock()  # recovery reconnects under it
        self._connections: list[tuple[int, sqlite3.Connection]] = []  # (pid, connection) of every thread
        self.read_only = False
        #: Times the file was found deleted or replaced in use (and made again) in this process.
        self.replacements = 0

    @property
    def path(self) -> Path:
        """The SQLite file of this fingerprint (its name says the file layout)."""
        return self.directory / f"{self.digest}.v{LAYOUT}.sqlite3"

    @property
    def earlier_paths(self) -> list[Path]:
        """Where the earlier file layouts kept this fingerprint's answers (carried over when the store opens)."""
        return [self.directory / name.format(digest=self.digest) for name in _EARLIER_LAYOUTS]

    # -- the folder and its files ------------------------------------------
    def check(self) -> None:
        """Create the folder and file if needed, refuse an untrusted folder, and open the database.

        A store this process cannot write (a read-only file system or folder,
        as deployed images often are) whose database exists is opened
        read-only, with one warning: its answers are served, new ones are
        neither kept nor shared.
        """
        self._prepare_folder()
        try:
            self._write_fingerprint_file()
            self._connect()
        except (OSError, sqlite3.Error) as exc:
            if not self._can_only_read():
                if isinstance(exc, sqlite3.Error):
                    raise StoreError(f"The store file {self.path} cannot be opened: {exc}") from None
                raise
            self.read_only = True
            try:
                self._connect()
            except sqlite3.Error as again:
                raise StoreError(f"The read-only store file {self.path} cannot be read: {again}") from None
            warnings.warn(
                f"The store {self.location} is read-only here: its stored answers are served, but new answers are "
                "neither kept nor shared with other processes.",
                RuntimeWarning,
                stacklevel=5,
            )
            return
        self._import_legacy()

    def _can_only_read(self) -> bool:
        """Whether the folder cannot be written by this process while its database file can be read."""
        try:
            writable = os.access(self.directory, os.W_OK) and not os.statvfs(self.directory).f_flag & os.ST_RDONLY
        except (OSError, AttributeError):
            writable = os.access(self.directory, os.W_OK)
        return not writable and os.path.isfile(self.path) and os.access(self.path, os.R_OK)

    def _import_legacy(self) -> None:
        """Copy in the sound answers of earlier-layout files not copied yet; those files are left as they are.

        An older skcrosstune may still be adding to one: what it added since
        the last import is copied the next time a process opens this store.
        """
        for source in self.earlier_paths:
            try:
                if not stat.S_ISREG(os.lstat(source).st_mode):
                    continue
            except FileNotFoundError:
                continue
            self._import_file(source)

    def _import_file(self, source: Path) -> None:
        conn = self._connect()
        row = conn.execute("SELECT last_rowid FROM imported WHERE source = ?", (source.name,)).fetchone()
        try:
            legacy = sqlite3.connect(f"file:{quote(str(source))}?mode=ro", uri=True, isolation_level=None)
            try:
                cursor = legacy.execute(
                    "SELECT rowid, key, dtype, shape, data, checksum FROM entries WHERE rowid > ? ORDER BY rowid",
                    (row[0] if row else 0,),
                )
                while batch := cursor.fetchmany(2000):
                    sound = [(key, decode_legacy_entry(*rest)) for _, key, *rest in batch if is_key(key)]
                    sound = [(key, array) for key, array in sound if array is not None]
                    rows = _rows(sound)
                    with _transaction(conn):  # a batch at a time: other users of the store wait little
                        conn.executemany(f"INSERT OR IGNORE {_INTO}", rows)
                        conn.execute(
                            "INSERT INTO imported (source, last_rowid) VALUES (?, ?) ON CONFLICT(source) "
                            "DO UPDATE SET last_rowid = max(last_rowid, excluded.last_rowid)",
                            (source.name, batch[-1][0]),
                        )
            finally:
                legacy.close()
        except sqlite3.Error as exc:
            warnings.warn(
                f"The store file {source} of an earlier layout could not be read to the end ({exc}); the "
                f"answers not copied from it to {self.path.name} will be queried again.",
                RuntimeWarning,
                stacklevel=5,
            )

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
        for suffix in ("", "-wal", "-shm"):
            if os.path.islink(f"{self.path}{suffix}"):
                raise StoreError(
                    f"{self.path}{suffix} is a symbolic link, which could send the store's writes elsewhere; "
                    "refusing to use it. Remove the link (the store makes its own files)."
                )
        if not stat.S_ISREG(info.st_mode):  # a folder, say, where the file should be: moved aside, not deleted
            kept = Path(f"{self.path}.corrupt-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:8]}")
            os.replace(self.path, kept)
            warnings.warn(
                f"The store file {self.path} was not a file; it was kept as {kept.name} and the store starts afresh.",
                RuntimeWarning,
                stacklevel=5,
            )
            self._create_database()
            return
        if info.st_size == 0:
            warnings.warn(
                f"The store file {self.path} was empty (0 bytes); it starts afresh and its answers will be "
                "queried again.",
                RuntimeWarning,
                stacklevel=5,
            )
        if info.st_mode & 0o077 and info.st_uid == os.geteuid() and not self.read_only:
            for suffix in ("", "-wal", "-shm"):
                if os.path.isfile(f"{self.path}{suffix}") and not os.path.islink(f"{self.path}{suffix}"):
                    os.chmod(f"{self.path}{suffix}", 0o600)

    # -- connections ---------------------------------------------------------
    def _connect(self) -> sqlite3.Connection:
        """The connection of the calling thread (a connection never crosses a fork or a recovery)."""
        local = self._local
        generation = self._generation
        stale = getattr(local, "conn", None)
        if stale is not None and local.key == (os.getpid(), generation):
            return stale
        if stale is not None and local.key[0] == os.getpid():
            with self._recover_lock:
                self._drop(stale)
        local.conn = None
        self._check_database_file()
        try:
            conn = self._open()
        except sqlite3.DatabaseError as exc:
            if not _is_damage(exc):
                raise
            self._recover(exc, generation)
            return self._connect()
        local.conn, local.key = conn, (os.getpid(), generation)
        local.inode = _inode(self.path)
        with self._recover_lock:
            self._connections.append((os.getpid(), conn))
        return conn

    def _open(self) -> sqlite3.Connection:
        if self.read_only:  # nothing of ours is written: no journal, no shared-memory file, no lock
            uri = f"file:{quote(str(self.path))}?mode=ro&immutable=1"
            return sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False)
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
            if not _TABLES <= tables:
                for statement in _SCHEMA:
                    conn.execute(statement)
            conn.execute("SELECT 1 FROM entries LIMIT 1").fetchall()
        except BaseException:
            conn.close()
            raise
        return conn

    def close(self) -> None:
        """Close the connections of every thread of this process (reopened on next use); not while they run."""
        with self._recover_lock:
            pid = os.getpid()
            for owner, conn in self._connections:
                if owner == pid:  # a connection never crosses a fork: a parent's is left to the parent
                    conn.close()
            self._connections.clear()
            self._generation += 1

    def _drop(self, conn: sqlite3.Connection) -> None:
        """Close a connection of the calling thread (under the lock)."""
        self._connections = [(owner, c) for owner, c in self._connections if c is not conn]
        conn.close()

    def _run(self, action):
        """``action(connection)``, recovering once from a damaged file; a full disk is a :class:`StoreUnavailable`."""
        generation = self._generation
        try:
            try:
                return action(self._connect())
            except sqlite3.DatabaseError as exc:
                if not _is_damage(exc):
                    raise
                self._recover(exc, generation)
                return action(self._connect())
        except sqlite3.OperationalError as exc:
            if getattr(exc, "sqlite_errorcode", None) != _SQLITE_FULL and "full" not in str(exc):
                raise
        raise StoreUnavailable(  # outside the except block: one error of ours, no sqlite3 frames behind it
            f"The store file {self.path} cannot be written: the disk is full. Free some space (or point store= at "
            "another disk); the answers of the run are held in this process and written at its next use of the "
            "store."
        )

    # -- recovery ------------------------------------------------------------
    def _recover(self, exc: Exception, generation: int) -> None:
        """Keep the damaged file aside (a unique name), copy its sound entries to a fresh file, warn once.

        ``generation``: the connections' generation the damage was seen with;
        when another thread has recovered since, there is nothing left to do.
        """
        with self._recover_lock:
            if self._generation != generation:
                return
            own = getattr(self._local, "conn", None)
            if own is not None and self._local.key[0] == os.getpid():
                self._drop(own)  # other threads' are closed by them as they next connect
            self._local.conn = None
            self._generation += 1
            stamp = f"{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:8]}"
            kept = Path(f"{self.path}.corrupt-{stamp}")
            for suffix in ("", "-wal", "-shm"):
                source = Path(f"{self.path}{suffix}")
                if source.exists():
                    os.replace(source, f"{kept}{suffix}")
            conn = self._connect()
            salvaged: set[int] = set()
            for rows in itertools.chain(_salvage(kept), _scan_raw(kept)):
                rows = [row for row in rows if row[0] not in salvaged]
                with _transaction(conn):
                    conn.executemany(_INSERT, rows)
                salvaged.update(row[0] for row in rows)
            n_kept = len(salvaged)
        warnings.warn(
            f"The store file {self.path} was damaged ({exc}); it was kept as {kept.name}, and the "
            f"{n_kept} answers still sound were copied to a fresh file. Other answers will be queried again.",
            RuntimeWarning,
            stacklevel=4,
        )

    # -- entries -------------------------------------------------------------
    def get_stacked(self, keys: Sequence[str]) -> tuple[list[tuple[np.ndarray, np.ndarray]], int]:
        """Stored arrays for ``keys`` (distinct), stacked per dtype and shape; see :meth:`Store.get_stacked`.

        The keys are looked up in the order of their row ids, 500 to a
        statement; many keys are fetched by two threads, each with its own
        connection, both searching the file at once (see :meth:`_fetch`).
        Then the entries are checked in bulk (stores.base): their full key,
        format, size and checksum; those failing are deleted and left out.
        """
        keys = list(keys)
        if not keys:
            return [], 0
        raw = raw_keys(keys)
        ids = key_ids(raw)
        order = np.argsort(ids, kind="stable")
        ids, raw = ids[order], raw[order]
        chunks = [ids[start : start + _CHUNK].tolist() for start in range(0, len(ids), _CHUNK)]
        if len(chunks) > 1:
            helper = worker_thread("store-reader").submit(self._fetch, chunks[1::2])
            fetched = self._fetch(chunks[0::2]) + helper.result()
        else:
            fetched = self._fetch(chunks)
        found, n_corrupt = self._check(fetched)
        parts = []
        for found_keys, block in found:
            found_ids = key_ids(found_keys)
            at = np.searchsorted(ids, found_ids)  # where each entry's key was asked, if it was
            at[at == len(ids)] = 0
            mine = np.all(raw[at] == found_keys, axis=1)
            for j in np.flatnonzero(~mine):  # keys sharing their first 64 bits, asked together (rare)
                for candidate in range(at[j] + 1, int(np.searchsorted(ids, found_ids[j], side="right"))):
                    if (raw[candidate] == found_keys[j]).all():
                        at[j], mine[j] = candidate, True
            # an entry of another key sharing the first 64 bits is a miss for the key asked
            parts.append((order[at[mine]], block[mine]))
        return stack_parts(parts), n_corrupt

    def _fetch(self, chunks: list[list[int]]) -> list[tuple[list[int], bytes]]:
        """``(chunk, its entries joined)`` for each chunk of row ids that holds any.

        Each chunk's entries come back joined in one value: SQLite works a
        whole statement without taking Python's lock, so a second thread
        fetching beside this one runs at the same time, and no Python object
        is made per entry.
        """

        def fetch(conn):
            joined = []
            for chunk in chunks:
                (value,) = conn.execute(
                    f"SELECT CAST(group_concat(entry, x'') AS BLOB) FROM entries WHERE id IN ({_marks(len(chunk))})",
                    chunk,
                ).fetchone()
                if value is not None:
                    joined.append((chunk, value))
            return joined

        return self._run(fetch)

    def _check(self, fetched: list[tuple[list[int], bytes]]) -> tuple[list[tuple[np.ndarray, np.ndarray]], int]:
        """``([(keys, block), ...], n_corrupt)``: the sound entries of the chunks fetched.

        A chunk whose joined entries are not all sound and of one kind is read
        again entry by entry, to keep the sound ones and delete the bad.
        """
        parts, loose = [], []
        for chunk, joined in fetched:
            split = split_entries(joined)
            if split is None:
                loose.append(chunk)
            else:
                parts.append(split)
        if not loose:
            return parts, 0

        def read(conn):
            select = "SELECT id, entry FROM entries WHERE id IN ({})"
            stored = [row for chunk in loose for row in conn.execute(select.format(_marks(len(chunk))), chunk)]
            found, bad = unpack_entries([entry for _, entry in stored])
            if len(bad):
                with _transaction(conn):  # only if still the entry read: a repaired one is kept
                    conn.executemany("DELETE FROM entries WHERE id = ? AND entry IS ?", [stored[i] for i in bad])
            return parts + [(found_keys, block) for _, found_keys, block in found], len(bad)

        return self._run(read)

    def put_many(self, entries: Iterable[tuple[str, np.ndarray]]) -> None:
        """Store arrays in one transaction: all of them are committed, or none."""
        if self.read_only:  # nothing is written: every caller answers for itself
            return
        rows = _rows(list(entries))

        def write(conn):
            with _transaction(conn):
                conn.executemany(_INSERT, rows)

        self._run(write)
        if _inode(self.path) != getattr(self._local, "inode", None):  # deleted or replaced under us
            warnings.warn(
                f"The store file {self.path} was deleted (or replaced) while in use; it is made again and the "
                "answers from now on are kept there (those written to the deleted file are gone).",
                RuntimeWarning,
                stacklevel=4,
            )
            self.close()
            self._prepare_folder()
            self._write_fingerprint_file()
            self._run(write)
            self.replacements += 1  # callers holding this run's earlier answers write them again

    def __len__(self) -> int:
        return self._run(lambda conn: conn.execute("SELECT count(*) FROM entries").fetchone()[0])

    # -- claims --------------------------------------------------------------
    def claim(self, keys: Sequence[str], owner: str, lease: float) -> list[str]:
        """Claim ``keys`` for ``owner``; returns those granted (free, expired, or held by a gone process)."""
        if self.read_only:  # nothing is written: every caller answers for itself
            return list(keys)
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
        if self.read_only:  # nothing is written: every caller answers for itself
            return
        expires = time.time() + lease
        self._update_claims("UPDATE claims SET expires = ? WHERE owner = ? AND key IN ({})", keys, expires, owner)

    def release(self, keys: Sequence[str], owner: str) -> None:
        """End ``owner``'s claims on ``keys``."""
        if self.read_only:  # nothing is written: every caller answers for itself
            return
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
    def add_counts(self, *, sent: int = 0, hits: int = 0, prompt_tokens: int = 0, completion_tokens: int = 0) -> None:
        """Add to this fingerprint's counters, in one transaction."""
        if self.read_only:  # nothing is written: every caller answers for itself
            return
        added = (sent, hits, prompt_tokens, completion_tokens)
        rows = [(name, int(n)) for name, n in zip(COUNTERS, added, strict=True) if n]

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
        """The counters, summed over every user of this file."""
        found = dict(self._run(lambda conn: conn.execute("SELECT name, value FROM counters").fetchall()))
        return {name: int(found.get(name, 0)) for name in COUNTERS}

    def reset_counts(self) -> None:
        """Set the counters to zero."""
        if self.read_only:  # nothing is written: every caller answers for itself
            return

        def reset(conn):
            with _transaction(conn):
                conn.execute("DELETE FROM counters")

        self._run(reset)


def _inode(path: Path) -> tuple[int, int] | None:
    """The file's identity (device, inode), or None when it is gone."""
    try:
        info = os.stat(path)
    except FileNotFoundError:
        return None
    return info.st_dev, info.st_ino


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
    return any(sign in message for sign in ("malformed", "not a database", "no such table", "no such column"))


def _rows(entries: list[tuple[str, np.ndarray]]) -> list[tuple[int, bytes]]:
    """``(row id, entry)`` of ``(key, array)`` pairs, in row order (nearby rows are written together)."""
    if not entries:
        return []
    ids = key_ids(raw_keys([key for key, _ in entries])).tolist()
    return sorted(zip(ids, pack_entries(entries), strict=True))


def _keepable(rows: list[tuple]) -> list[tuple]:
    """The ``(id, entry)`` rows read whose entry is sound and whose id is its key's."""
    found, _ = unpack_entries([entry for _, entry in rows])
    keep = []
    for indices, found_keys, _ in found:
        for index, row_id in zip(indices.tolist(), key_ids(found_keys).tolist(), strict=True):
            if rows[index][0] == row_id:
                keep.append(rows[index])
    return keep


def _readable(conn: sqlite3.Connection, start: int) -> bool:
    try:
        conn.execute("SELECT id FROM entries WHERE id >= ? ORDER BY id LIMIT 1", (start,)).fetchall()
    except sqlite3.Error:
        return False
    return True


def _next_readable(conn: sqlite3.Connection, low: int) -> int | None:
    """Past a damaged part starting at row ``low``: the first row from which the table can be read again."""
    step, top = 1, _ID_OFFSET - 1
    while not _readable(conn, low + step):  # double the stride until past the damage ...
        if low + step >= top:
            return None
        step = min(step * 2, top - low)
    failed, good = low + step // 2, low + step
    while good - failed > 1:  # ... then halve it back to its end
        middle = (failed + good) // 2
        failed, good = (failed, middle) if _readable(conn, middle) else (middle, good)
    return good


def _salvage(path: Path):
    """Batches of every entry of a damaged file that can still be read and passes its checksum.

    The table is read in row order. Where the reading stops at damage, the
    row before it (lost with the failed step) is read on its own, and the
    first readable row past the damage is found (some 128 probes at most);
    the reading goes on from there.
    """
    try:
        conn = sqlite3.connect(f"file:{quote(str(path))}?mode=ro", uri=True, isolation_level=None)
    except sqlite3.Error:
        return
    select = "SELECT id, entry FROM entries WHERE id >= ? ORDER BY id"
    low = -_ID_OFFSET
    try:
        while low is not None:
            read = []
            try:
                for row in conn.execute(select, (low,)):
                    read.append(row)
                    if len(read) == 256:
                        yield _keepable(read)
                        low, read = read[-1][0] + 1, []
                low = None
            except sqlite3.Error:
                if read:
                    low = read[-1][0] + 1
                low, row = _past_damage(conn, low) if low < _ID_OFFSET else (None, None)
                read += [row] if row is not None else []
            if read:
                yield _keepable(read)
    finally:
        conn.close()


def _scan_raw(path: Path):
    """Batches of the sound entries found in a damaged file's bytes, whatever is left of its SQLite structure.

    Each entry carries its format mark, key, header and checksum (stores.base),
    so one stored whole within a page is found by its mark and checked like
    any other, even where the file was cut short or its header, schema or
    index pages were spoiled. An entry spread over overflow pages is not.
    """
    try:
        handle = open(path, "rb")  # noqa: SIM115 - closed below, after the map
    except OSError:
        return
    try:
        if os.fstat(handle.fileno()).st_size == 0:
            return
        with mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as data:
            found, at = [], data.find(MAGIC)
            while at != -1:
                blob = _entry_at(data, at)
                if blob is not None:
                    found.append(blob)
                if len(found) == 256:
                    yield _sound_rows_of(found)
                    found = []
                at = data.find(MAGIC, at + len(MAGIC))
            if found:
                yield _sound_rows_of(found)
    finally:
        handle.close()


def _entry_at(data, at: int) -> bytes | None:
    """The bytes of the entry whose format mark is at ``at``, as long as its header says; None if it names none."""
    start = at + _HEADER_AT
    if start > len(data):
        return None
    checksum_at = _HEADER_AT + data[start - 2] + (data[start - 1] << 8)
    kind, dims = _header_layout(bytes(data[start : at + checksum_at]))
    if kind is None:
        return None
    width = _entry_width(checksum_at, kind, dims)
    return bytes(data[at : at + width]) if at + width <= len(data) else None


def _sound_rows_of(blobs: list[bytes]) -> list[tuple[int, bytes]]:
    """``(row id, entry)`` of the blobs that are sound entries (their checksum and size hold)."""
    found, _ = unpack_entries(blobs)
    rows = []
    for indices, found_keys, _ in found:
        rows += [(row_id, blobs[i]) for i, row_id in zip(indices.tolist(), key_ids(found_keys).tolist(), strict=True)]
    return rows


def _past_damage(conn: sqlite3.Connection, low: int) -> tuple[int | None, tuple | None]:
    """``(where to read on, the row read)`` after a failure to read on from row ``low``.

    The next row, if it can be found, is read on its own (a failed step loses
    the row before it); if even finding it fails, the damage starts here and
    the reading goes on from the first readable row past it. None: nothing
    more can be read.
    """
    try:
        first = conn.execute("SELECT id FROM entries WHERE id >= ? ORDER BY id LIMIT 1", (low,)).fetchall()
    except sqlite3.Error:
        return _next_readable(conn, low), None
    if not first:
        return None, None
    try:
        row = conn.execute("SELECT id, entry FROM entries WHERE id = ?", first[0]).fetchone()
    except sqlite3.Error:
        row = None
    return (first[0][0] + 1 if first[0][0] < _ID_OFFSET - 1 else None), row
