"""The query stores (SQLite and Redis) under many users: claims, counters, crashes, hostile folders.

Every test runs real stores: SQLite files in a temporary folder, and a real
``redis-server`` on 127.0.0.1 (the ``redis_server`` fixture; skipped with the
reason when the binary is not installed). Several users are real processes
(forked, so that they start at once) or threads.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import pickle
import re
import shutil
import signal
import sqlite3
import stat
import tempfile
import threading
import time
import uuid
import warnings
from pathlib import Path

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline

from skcrosstune import BlackBoxEmbedder, cache
from skcrosstune.cache import query_through_store
from skcrosstune.stores import StoreError, open_store, query_counts
from skcrosstune.stores.base import (
    MAGIC,
    entry_key,
    fingerprint_digest,
    legacy_checksum,
    new_owner,
    pack_entries,
    unpack_entries,
)
from skcrosstune.stores.sqlite import ALLOW_SHARED_ENV, SQLiteStore

from .test_cache import CountingBlackBox, fake_vector

FORK = multiprocessing.get_context("fork")


@pytest.fixture(params=["sqlite", "redis"])
def location(request, tmp_path):
    """A store location of each kind; Redis tests share one server, each under its own fingerprint."""
    if request.param == "sqlite":
        return str(tmp_path / "store")
    return request.getfixturevalue("redis_server")


@pytest.fixture
def fingerprint():
    """A fingerprint no other test uses (Redis keys are scoped by it)."""
    return {"backend": "fake", "model": f"m-{uuid.uuid4().hex}"}


def slow_box(delay: float, sent: list | None = None):
    def box(batch):
        time.sleep(delay)
        if sent is not None:
            sent.extend(batch)
        return np.stack([fake_vector(t) for t in batch])

    return box


# ----------------------------------------------------------------- the protocol
def test_entries_are_checksummed_bytes_scoped_by_fingerprint(location, fingerprint):
    store = open_store(location, fingerprint)
    store.put_many([(store.key("a"), fake_vector("a")), (store.key(("a", "b")), fake_vector(("a", "b")))])
    found, bad = store.get_many([store.key("a"), store.key(("a", "b")), store.key("missing")])
    assert bad == 0 and set(found) == {store.key("a"), store.key(("a", "b"))}
    np.testing.assert_array_equal(found[store.key("a")], fake_vector("a"))
    other = open_store(location, {**fingerprint, "model": "another"})
    assert other.get_many([other.key("a")]) == ({}, 0)


@pytest.mark.parametrize(
    "array",
    [np.arange(5, dtype="<f4"), np.arange(6, dtype=">f8").reshape(2, 3), np.frombuffer(b"text", np.uint8)],
    ids=["float32", "big-endian float64 2-d", "bytes"],
)
def test_every_damaged_byte_of_an_entry_is_caught(array):
    (entry,) = pack_entries([("ab" * 20, array)])
    found, bad = unpack_entries([entry])
    np.testing.assert_array_equal(found[0][2][0], array)
    assert found[0][2][0].dtype == array.dtype and len(bad) == 0
    damaged = [entry[:i] + bytes([entry[i] ^ flip]) + entry[i + 1 :] for i in range(len(entry)) for flip in (1, 0x80)]
    damaged += [entry[:-8], entry + bytes(8), bytes(len(entry)), entry.decode("latin-1")]
    found, bad = unpack_entries(damaged)
    assert found == [] and bad.tolist() == list(range(len(damaged)))


def test_answers_of_several_kinds_are_served_from_one_look_up(location, fingerprint):
    # many statements, each mixing widths and dtypes (as label-word scores of several label sets do)
    store = open_store(location, fingerprint)
    texts = [f"t{i}" for i in range(1300)]
    stored = {t: np.full(3 if i % 3 else 5, i, dtype=np.float32 if i % 2 else "<i8") for i, t in enumerate(texts)}
    store.put_many((store.key(t), array) for t, array in stored.items())
    found, n_corrupt = store.get_many([store.key(t) for t in texts])
    assert n_corrupt == 0 and len(found) == len(texts)
    for t in texts:
        assert found[store.key(t)].dtype == stored[t].dtype
        np.testing.assert_array_equal(found[store.key(t)], stored[t])


def test_an_entry_kept_under_another_key_is_never_served(location, fingerprint):
    store = open_store(location, fingerprint)
    store.put_many([(store.key("a"), fake_vector("a"))])
    (entry,) = pack_entries([(store.key("a"), fake_vector("a"))])
    if location.startswith("redis://"):
        import redis

        redis.Redis.from_url(location).set(f"skcrosstune:e:{store.key('b')}", entry)
    else:
        with sqlite3.connect(store.path) as conn:
            conn.execute(
                "INSERT INTO entries (id, entry) VALUES (?, ?)", (int(store.key("b")[:16], 16) - (1 << 63), entry)
            )
        conn.close()
    box = CountingBlackBox()
    out, _ = query_through_store(["a", "b"], box, store=store, batch_size=4)
    assert box.sent == ["b"]
    np.testing.assert_array_equal(out, np.stack([fake_vector("a"), fake_vector("b")]))


@pytest.mark.parametrize("bad", ["ABCDEF" * 6 + "ABCD", "0" * 39, "0" * 41, "xyz", None])
def test_a_malformed_key_is_a_clear_error_naming_its_position(location, fingerprint, bad):
    store = open_store(location, fingerprint)
    keys = [store.key("a"), store.key("b"), bad]
    for use in (store.get_many, lambda keys: store.put_many((k, np.zeros(2)) for k in keys)):
        with pytest.raises(ValueError, match=r"40 lowercase hexadecimal digits.*keys\[2\]"):
            use(keys)
    assert store.get_many(keys[:2]) == ({}, 0)  # nothing was written


def test_redis_answers_written_by_earlier_versions_are_still_served(redis_server, fingerprint):
    import redis

    store = open_store(redis_server, fingerprint)
    client = redis.Redis.from_url(redis_server)
    for text, checksum in (("a", None), ("b", "0" * 32)):  # "b" fails its checksum
        data = fake_vector(text).tobytes()
        checksum = checksum or legacy_checksum(data, "<f4", "[4]")
        client.set(f"skcrosstune:e:{store.key(text)}", b"<f4\n[4]\n" + checksum.encode() + b"\n" + data)
    box = CountingBlackBox()
    out, report = query_through_store(["a", "b"], box, store=store, batch_size=4)
    assert box.sent == ["b"] and report.n_cached == 1 and report.n_corrupt == 1
    np.testing.assert_array_equal(out, np.stack([fake_vector("a"), fake_vector("b")]))
    # the old value was rewritten in today's format, and is served from it
    assert client.get(f"skcrosstune:e:{store.key('a')}")[:4] == MAGIC
    again, report = query_through_store(["a", "b"], box, store=store, batch_size=4)
    assert box.sent == ["b"] and report.n_cached == 2
    np.testing.assert_array_equal(again, out)


@pytest.mark.parametrize(
    "text", ["plain", 'quote " back \\ slash', "ctrl \x00\x1f\x7f\t\n", "é 漢字 😀", "\ud800 lone", ""]
)
def test_a_text_keeps_its_key_across_versions(text):
    # the fast path for str must give the key of the canonical JSON, or every existing store goes cold
    digest = "0123456789abcdef0123456789abcdef"
    canonical = json.dumps(text, ensure_ascii=False, sort_keys=True).encode("utf-8", "surrogatepass")
    expected = hashlib.blake2b(digest.encode() + b"\x00" + canonical, digest_size=20).hexdigest()
    assert entry_key(digest, text) == expected


def test_a_claim_is_held_until_released_expired_or_its_process_is_gone(location, fingerprint):
    store = open_store(location, fingerprint)
    keys = [store.key(t) for t in "abc"]
    first, second = new_owner(), new_owner()
    assert sorted(store.claim(keys, first, 30)) == sorted(keys)
    assert store.claim(keys, second, 30) == []  # held by a live owner
    store.release(keys[:1], first)
    assert store.claim(keys, second, 30) == keys[:1]
    store.extend(keys[1:2], first, 0.2)
    time.sleep(0.4)
    assert store.claim(keys[1:], second, 30) == keys[1:2]  # its lease ran out
    child = FORK.Process(target=time.sleep, args=(0,))
    child.start()
    child.join()
    gone = f"{first.split(':')[0]}:{child.pid}:dead"  # a process of this machine that no longer runs
    store.release(keys[2:], first)
    assert store.claim(keys[2:], gone, 30) == keys[2:]
    assert store.claim(keys[2:], first, 30) == keys[2:]  # taken over at once


def test_counters_add_up_over_every_process(location, fingerprint):
    child = FORK.Process(target=_process_worker, args=(location, fingerprint, ["x", "y"], 0.0, FORK.Queue()))
    child.start()
    child.join()
    query_through_store(["x", "y", "z"], CountingBlackBox(), store=open_store(location, fingerprint), batch_size=8)
    assert query_counts(location, fingerprint) == {"sent": 3, "hits": 2, "prompt_tokens": 0, "completion_tokens": 0}
    open_store(location, fingerprint).reset_counts()
    assert query_counts(location, fingerprint) == {"sent": 0, "hits": 0, "prompt_tokens": 0, "completion_tokens": 0}


# ---------------------------------------------------- several users at once
def test_threads_asking_for_the_same_texts_pay_once(location, fingerprint):
    store = open_store(location, fingerprint)
    sent: list = []
    texts = [f"text {i}" for i in range(24)]
    results = [None] * 4

    def run(i):
        results[i] = query_through_store(texts[i:] + texts[:i], slow_box(0.05, sent), store=store, batch_size=4)[0]

    threads = [threading.Thread(target=run, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(sent) == sorted(texts)
    for i, out in enumerate(results):
        np.testing.assert_array_equal(out, np.stack([fake_vector(t) for t in texts[i:] + texts[:i]]))


def _process_worker(location, fingerprint, texts, delay, report):
    sent: list = []
    query_through_store(texts, slow_box(delay, sent), store=open_store(location, fingerprint), batch_size=5)
    report.put(len(sent))


def test_four_processes_on_the_same_texts_send_each_once(location, fingerprint):
    texts = [f"text {i}" for i in range(60)]
    report = FORK.Queue()
    orders = [texts, texts[::-1], texts, texts[::-1]]
    procs = [FORK.Process(target=_process_worker, args=(location, fingerprint, o, 0.05, report)) for o in orders]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(60)
        assert proc.exitcode == 0
    assert sum(report.get(timeout=5) for _ in procs) == len(texts)
    assert query_counts(location, fingerprint)["sent"] == len(texts)


def test_a_killed_process_costs_at_most_its_batch_in_flight(location, fingerprint):
    texts = [f"text {i}" for i in range(40)]
    store = open_store(location, fingerprint)
    proc = FORK.Process(target=_process_worker, args=(location, fingerprint, texts, 0.2, FORK.Queue()))
    proc.start()
    deadline = time.monotonic() + 30
    while store.counts()["sent"] < 15 and time.monotonic() < deadline:
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.join()
    found, _ = store.get_many([store.key(t) for t in texts])
    sent_before = store.counts()["sent"]
    assert len(found) >= sent_before - 5  # every batch answered before the kill was stored
    rerun: list = []
    start = time.monotonic()
    out, _ = query_through_store(texts, slow_box(0.0, rerun), store=store, batch_size=5)
    assert time.monotonic() - start < 10  # the dead owner's claims were taken over at once, not waited out
    assert len(rerun) == len(texts) - len(found) and len(rerun) <= len(texts) - sent_before + 5
    np.testing.assert_array_equal(out, np.stack([fake_vector(t) for t in texts]))


def _paused_worker(location, fingerprint, texts, report):
    cache.LEASE_SECONDS = 1.0  # this forked process's own lease: a pause of a few seconds outlives it
    _process_worker(location, fingerprint, texts, 0.05, report)


def test_a_process_paused_past_its_lease_reads_what_others_paid_for_instead_of_paying_again(
    location, fingerprint, monkeypatch
):
    """Ctrl-Z, a closed laptop lid, a paused VM: SIGSTOP one payer, let another take over, SIGCONT the first."""
    monkeypatch.setattr(cache, "LEASE_SECONDS", 1.0)
    texts = [f"text {i}" for i in range(200)]
    store = open_store(location, fingerprint)
    report = FORK.Queue()
    paused = FORK.Process(target=_paused_worker, args=(location, fingerprint, texts, report))
    paused.start()
    deadline = time.monotonic() + 30
    while store.counts()["sent"] < 30 and time.monotonic() < deadline:
        time.sleep(0.01)
    os.kill(paused.pid, signal.SIGSTOP)
    try:
        sent_before = store.counts()["sent"]
        mine: list = []
        out, _ = query_through_store(texts, slow_box(0.0, mine), store=store, batch_size=5)  # waits out the lease
        assert len(mine) <= len(texts) - sent_before + 5
    finally:
        os.kill(paused.pid, signal.SIGCONT)
    paused.join(60)
    assert paused.exitcode == 0
    theirs = report.get(timeout=5)
    # the paused process resumes with at most its batch in flight; everything else it reads from the store
    assert theirs + len(mine) <= len(texts) + 5
    assert store.counts()["sent"] == theirs + len(mine)
    np.testing.assert_array_equal(out, np.stack([fake_vector(t) for t in texts]))


def test_a_slow_batch_keeps_its_claims_alive(location, fingerprint, monkeypatch):
    # Renewed every 0.67 s: a batch of 3 s outlives the lease, and a pause of the whole process
    # (a garbage collection of a big test session) up to about 1.3 s still finds the claim alive.
    monkeypatch.setattr(cache, "LEASE_SECONDS", 2.0)
    store = open_store(location, fingerprint)
    sent: list = []
    slow = threading.Thread(
        target=query_through_store, args=(["a", "b"], slow_box(3.0, sent)), kwargs={"store": store, "batch_size": 2}
    )
    slow.start()
    time.sleep(0.2)
    out, report = query_through_store(["a", "b"], slow_box(0.0, sent), store=store, batch_size=2)
    slow.join()
    assert sent == ["a", "b"] and report.n_cached == 2  # waited for the renewed claim, did not pay again
    np.testing.assert_array_equal(out[0], fake_vector("a"))


def test_a_failed_owner_hands_its_claims_over_at_once(location, fingerprint):
    store = open_store(location, fingerprint)

    def broken(batch):
        time.sleep(0.3)
        raise ConnectionError("the black box went away")

    def fail():
        with pytest.raises(ConnectionError):
            query_through_store(["a", "b"], broken, store=store, batch_size=2)

    failing = threading.Thread(target=fail)
    failing.start()
    time.sleep(0.1)
    box = CountingBlackBox()
    start = time.monotonic()
    out, _ = query_through_store(["a", "b"], box, store=store, batch_size=2)
    failing.join()
    assert box.sent == ["a", "b"] and time.monotonic() - start < 5


def test_a_bad_answer_is_never_stored(location, fingerprint):
    store = open_store(location, fingerprint)

    def nan_box(batch):
        rows = np.stack([fake_vector(t) for t in batch])
        rows[-1, 0] = np.nan
        return rows

    with pytest.raises(RuntimeError, match="non-finite"):
        query_through_store(["a", "b"], nan_box, store=store, batch_size=2)
    with pytest.raises(RuntimeError, match="shape"):
        query_through_store(["a", "b"], CountingBlackBox(), store=store, batch_size=2, width=7)

    def refuse(batch, rows):
        raise ValueError("not plausible")

    with pytest.raises(ValueError, match="not plausible"):
        query_through_store(["a"], CountingBlackBox(), store=store, batch_size=2, validate=refuse)
    assert store.get_many([store.key("a"), store.key("b")]) == ({}, 0)
    box = CountingBlackBox()
    query_through_store(["a", "b"], box, store=store, batch_size=2)
    assert box.sent == ["a", "b"]  # nothing was stored, and no claim was left behind


# --------------------------------------------------- estimators and stores
TEXTS = [f"{w} {v}" for w in ["great", "awful", "fine", "dull"] for v in ["movie", "plot", "story", "acting", "scene"]]
LABELS = np.array([i % 2 for i in range(len(TEXTS))])


def test_grid_search_with_two_jobs_on_a_cold_store_sends_each_text_once(tiny_bert, tmp_path):
    store = str(tmp_path / "store")
    y = np.array([i % 2 for i in range(len(TEXTS))])
    pipe = make_pipeline(BlackBoxEmbedder(str(tiny_bert), store=store, batch_size=2), LogisticRegression())
    search = GridSearchCV(pipe, {"logisticregression__C": [0.1, 1.0, 10.0]}, cv=4, n_jobs=2).fit(TEXTS, y)
    embedder = search.best_estimator_.named_steps["blackboxembedder"]
    counts = embedder.store_counts()
    assert counts["sent"] == len(TEXTS)  # every clone, in both workers, and the refit
    assert counts["hits"] > 0
    assert counts == query_counts(store, embedder.backend_.fingerprint())


def test_a_pickled_model_uses_the_store_of_the_machine_it_runs_on(tiny_bert, tmp_path, monkeypatch):
    y = np.array([i % 2 for i in range(len(TEXTS))])
    fitted = make_pipeline(BlackBoxEmbedder(str(tiny_bert)), LogisticRegression()).fit(TEXTS, y)
    expected = fitted.predict_proba(TEXTS)
    blob = pickle.dumps(fitted)
    assert str(tmp_path).encode() not in blob  # no path of the fitting machine travels with the model
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("SKCROSSTUNE_CACHE_DIR", str(blocker / "cache"))  # where the model now runs
    loaded = pickle.loads(blob)
    with pytest.warns(RuntimeWarning, match="default query store .* cannot be used") as caught:
        proba = loaded.predict_proba(TEXTS[:3])
        loaded.predict(TEXTS[3:6])
    assert len(caught) == 1  # one warning, and the work went on without a store
    np.testing.assert_allclose(proba, expected[:3], atol=1e-6)

    embedder = loaded.named_steps["blackboxembedder"]
    with pytest.raises(StoreError, match="a-file"):  # asked to: an error
        embedder.set_params(store=str(blocker / "mine"), store_errors="raise").transform(TEXTS[:1])
    with pytest.warns(RuntimeWarning, match="a-file.*Working without it") as caught:  # by default: one warning
        embedder.set_params(store_errors="warn").transform(TEXTS[:1])
        embedder.transform(TEXTS[1:2])
    assert len(caught) == 1
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        loaded.set_params(blackboxembedder__store=None).predict(TEXTS[:2])
        loaded.set_params(blackboxembedder__store=str(tmp_path / "elsewhere")).predict(TEXTS[:2])
    counts = embedder.store_counts()
    assert (counts["sent"], counts["hits"]) == (2, 0)


def test_an_unknown_store_kind_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="no known store kind"):
        open_store("ftp://user:secret@host/x", {"m": 1})
    try:
        open_store("ftp://user:secret@host/x", {"m": 1})
    except ValueError as exc:
        assert "secret" not in str(exc)


# ------------------------------------------------------ a hostile folder
def _mode(path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def test_folders_and_files_are_private(tmp_path, fingerprint):
    store = open_store(tmp_path / "new" / "store", fingerprint)
    query_through_store(["a"], CountingBlackBox(), store=store, batch_size=1)
    assert _mode(store.directory) == 0o700
    files = list(store.directory.iterdir())
    assert {p.suffix for p in files} >= {".sqlite3", ".json"}
    assert all(_mode(p) == 0o600 for p in files), [(p.name, oct(_mode(p))) for p in files]


def test_a_folder_others_can_write_is_refused_unless_trusted(tmp_path, fingerprint, monkeypatch):
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    with pytest.raises(StoreError, match="other users") as raised:
        open_store(shared, fingerprint)
    assert str(shared) in str(raised.value) and ALLOW_SHARED_ENV in str(raised.value)
    monkeypatch.setenv("SKCROSSTUNE_CACHE_DIR", str(shared))
    with pytest.warns(RuntimeWarning, match="other users"):
        assert open_store("auto", fingerprint) is None  # the work goes on without a store
    monkeypatch.setenv(ALLOW_SHARED_ENV, "1")
    assert open_store(shared, fingerprint) is not None


def test_links_planted_in_the_folder_are_never_written_through(tmp_path, fingerprint):
    folder = tmp_path / "store"
    folder.mkdir(mode=0o700)
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    digest = fingerprint_digest(fingerprint)
    (folder / f"{digest}.json").symlink_to(victim)
    store = open_store(folder, fingerprint)
    assert victim.read_text() == "precious"
    assert not (folder / f"{digest}.json").is_symlink()
    assert json.loads((folder / f"{digest}.json").read_text()) == fingerprint

    other = {**fingerprint, "model": "other"}
    SQLiteStore(folder, other).path.symlink_to(victim)
    with pytest.raises(StoreError, match=r"sqlite3 is a symbolic link.*Remove the link"):
        open_store(folder, other)
    assert victim.read_text() == "precious" and store is not None

    planted = {**fingerprint, "model": "planted wal"}
    SQLiteStore(folder, planted).check()
    wal = Path(f"{SQLiteStore(folder, planted).path}-wal")
    wal.unlink(missing_ok=True)
    wal.symlink_to(victim)
    SQLiteStore(folder, planted).close()
    with pytest.raises(StoreError, match=r"sqlite3-wal is a symbolic link"):  # the message names the link
        SQLiteStore(folder, planted).check()
    assert victim.read_text() == "precious"


def test_a_folder_where_the_file_should_be_is_moved_aside_and_the_store_goes_on(tmp_path, fingerprint):
    folder = tmp_path / "store"
    folder.mkdir(mode=0o700)
    store = SQLiteStore(folder, fingerprint)
    store.path.mkdir()
    (store.path / "something.txt").write_text("kept")
    with pytest.warns(RuntimeWarning, match="was not a file; it was kept as"):
        store.check()
    query_through_store(["a"], CountingBlackBox(), store=store, batch_size=1)
    assert store.get_many([store.key("a")])[0]
    kept = [p for p in folder.glob("*.corrupt-*") if p.is_dir()]
    assert len(kept) == 1 and (kept[0] / "something.txt").read_text() == "kept"


def test_a_table_that_lost_a_column_is_recovered_not_fatal(tmp_path, fingerprint):
    store, texts = _filled(tmp_path, fingerprint, n=20)
    with sqlite3.connect(store.path) as conn:
        conn.execute("ALTER TABLE entries RENAME COLUMN entry TO spoiled")
    fresh = SQLiteStore(store.directory, fingerprint)
    fresh.check()
    box = CountingBlackBox()
    with pytest.warns(RuntimeWarning, match="was damaged"):
        out, _ = query_through_store(texts, box, store=fresh, batch_size=5)
    assert len(box.sent) < len(texts)  # the answers' bytes are still in the file: found again
    np.testing.assert_array_equal(out, np.stack([fake_vector(t) for t in texts]))


def test_credentials_in_urls_never_reach_the_store(tmp_path):
    fingerprint = {"backend": "openai", "base_url": "http://alice:hunter2@127.0.0.1:9/v1", "model": "m"}
    store = open_store(tmp_path / "store", fingerprint)
    query_through_store(["a"], CountingBlackBox(), store=store, batch_size=1)
    store.close()
    for path in store.directory.iterdir():
        assert b"hunter2" not in path.read_bytes() and b"alice" not in path.read_bytes()
    assert store.digest == fingerprint_digest({**fingerprint, "base_url": "http://127.0.0.1:9/v1"})


def test_a_redis_password_comes_from_the_environment_never_from_a_parameter(tiny_bert, monkeypatch):
    from skcrosstune.stores.redis import PASSWORD_ENV

    from ._redis import RedisServer, find_redis_server

    if find_redis_server() is None:
        pytest.skip("redis-server is not installed (Debian: apt-get install redis-server)")
    secret = f"pw-{uuid.uuid4().hex}"
    fingerprint = {"backend": "fake", "model": f"m-{uuid.uuid4().hex}"}
    with RedisServer(password=secret) as server:
        monkeypatch.delenv(PASSWORD_ENV, raising=False)
        with pytest.raises(StoreError) as refused:  # the server asks for a password nobody gave
            open_store(server.url, fingerprint)
        assert secret not in str(refused.value)

        in_url = server.url.replace("redis://", f"redis://:{secret}@")
        with pytest.raises(StoreError, match=PASSWORD_ENV) as refused:
            BlackBoxEmbedder(str(tiny_bert), store=in_url).fit_transform(TEXTS[:2])
        assert secret not in str(refused.value) and refused.value.__cause__ is None

        monkeypatch.setenv(PASSWORD_ENV, secret)
        embedder = BlackBoxEmbedder(str(tiny_bert), store=server.url)
        embedder.fit_transform(TEXTS[:2])
        embedder.transform(TEXTS[:2])
        counts = embedder.store_counts()
        assert (counts["sent"], counts["hits"], counts["prompt_tokens"]) == (2, 2, embedder.n_tokens_)
        assert secret.encode() not in pickle.dumps(embedder) and secret not in repr(embedder)


# ------------------------------------------------------------ recovery
def _filled(tmp_path, fingerprint, n=500):
    store = open_store(tmp_path / "store", fingerprint)
    texts = [f"entry number {i}" for i in range(n)]
    query_through_store(texts, CountingBlackBox(), store=store, batch_size=50)
    store.close()  # the last connection folds the write-ahead log into the file
    return store, texts


def test_garbage_inside_the_file_costs_only_the_damaged_entries(tmp_path, fingerprint):
    store, texts = _filled(tmp_path, fingerprint, n=1000)  # some 60 entries of 4 floats to a page
    data = store.path.read_bytes()
    page_size = int.from_bytes(data[16:18], "big")
    # a leaf page of the entries' B-tree (type byte 0x0D; page 1 holds the file header), so the damage
    # is always to the file's structure, never only to the bytes of one answer (that is the checksum's job)
    leaves = [i for i in range(1, len(data) // page_size) if data[i * page_size] == 0x0D]
    with open(store.path, "r+b") as handle:
        handle.seek(leaves[len(leaves) // 2] * page_size)
        handle.write(bytes([0xA5]) * page_size)
    fresh = SQLiteStore(store.directory, fingerprint)
    fresh.check()
    box = CountingBlackBox()
    with pytest.warns(RuntimeWarning, match="was damaged") as caught:
        out, report = query_through_store(texts, box, store=fresh, batch_size=50)
    assert len(caught) == 1
    assert report.n_cached >= 0.9 * len(texts)  # one 4 KiB page lost (some 6 %), not the whole file
    assert len(box.sent) == len(texts) - report.n_cached
    np.testing.assert_array_equal(out, np.stack([fake_vector(t) for t in texts]))
    assert len(list(store.directory.glob("*.corrupt-*"))) >= 1


@pytest.mark.parametrize("damage", ["cut to half its length", "header overwritten"])
def test_a_cut_short_or_headless_file_gives_back_the_entries_still_in_its_bytes(tmp_path, fingerprint, damage):
    store, texts = _filled(tmp_path, fingerprint, n=500)
    data = store.path.read_bytes()
    if damage == "cut to half its length":
        data = data[: len(data) // 2]
    else:  # the first 100 bytes: the file header, the page size, the schema's start
        data = bytes(100) + data[100:]
    store.path.write_bytes(data)
    in_the_bytes = data.count(b"SKE3")  # the entries whose format mark is still in the file (one may be cut)
    fresh = SQLiteStore(store.directory, fingerprint)
    with pytest.warns(RuntimeWarning, match=r"was damaged .* the (\d+) answers still sound") as caught:
        fresh.check()
        box = CountingBlackBox()
        out, report = query_through_store(texts, box, store=fresh, batch_size=50)
    n_kept = int(re.search(r"the (\d+) answers still sound", str(caught[0].message)).group(1))
    assert n_kept >= in_the_bytes - 1 > 0, f"{n_kept} salvaged of the {in_the_bytes} entries in the bytes left"
    assert report.n_cached == n_kept and len(box.sent) == len(texts) - n_kept
    np.testing.assert_array_equal(out, np.stack([fake_vector(t) for t in texts]))


def test_every_quarantined_file_is_kept(tmp_path, fingerprint):
    store = SQLiteStore(tmp_path / "store", fingerprint)
    store.directory.mkdir(mode=0o700)
    for _ in range(2):  # twice within the same second
        store.close()
        store.path.write_bytes(b"this is not a database" * 100)
        with pytest.warns(RuntimeWarning, match="was damaged"):
            store.check()
    assert len([p for p in store.directory.glob("*.corrupt-*") if not p.name.endswith(("-wal", "-shm"))]) == 2


def test_an_empty_file_or_a_lost_table_is_not_rebuilt_silently(tmp_path, fingerprint):
    store, texts = _filled(tmp_path, fingerprint, n=5)
    with sqlite3.connect(store.path) as conn:
        conn.execute("DROP TABLE entries")
    with pytest.warns(RuntimeWarning, match="lost its table"):
        SQLiteStore(store.directory, fingerprint).check()

    other = {**fingerprint, "model": "empty"}
    folder = tmp_path / "store"
    SQLiteStore(folder, other).path.write_bytes(b"")
    with pytest.warns(RuntimeWarning, match="was empty"):
        SQLiteStore(folder, other).check()


def test_a_stored_answer_that_cannot_be_right_is_fetched_again(location, fingerprint):
    store = open_store(location, fingerprint)
    poisoned = fake_vector("a")
    poisoned[0] = np.nan
    store.put_many([(store.key("a"), poisoned), (store.key("b"), np.zeros(12, np.float32))])
    box = CountingBlackBox()
    out, report = query_through_store(["a", "b"], box, store=store, batch_size=2, width=4)
    assert box.sent == ["a", "b"] and report.n_corrupt == 2
    np.testing.assert_array_equal(out, np.stack([fake_vector("a"), fake_vector("b")]))


def test_waiting_for_a_stuck_owner_is_bounded(location, fingerprint, monkeypatch):
    monkeypatch.setattr(cache, "WAIT_SECONDS", 0.3)
    store = open_store(location, fingerprint)
    stuck = "another-machine:1:stuck"  # alive as far as this machine can tell, and never answering
    assert store.claim([store.key("a")], stuck, 60) == [store.key("a")]
    box = CountingBlackBox()
    start = time.monotonic()
    with pytest.warns(RuntimeWarning, match="were not answered within"):
        out, _ = query_through_store(["a", "b"], box, store=store, batch_size=2)
    assert sorted(box.sent) == ["a", "b"] and time.monotonic() - start < 10
    np.testing.assert_array_equal(out[0], fake_vector("a"))


def test_the_prompt_search_keeps_log_prob_answers_where_its_store_says(openai_server, tmp_path):
    from skcrosstune.backends.openai_logprobs import OpenAILogProbBackend

    from .test_bdpl import KEY, key_word_classifier, key_word_data

    openai_server.chat_logprobs = lambda body: (
        {"yes": -0.05, "no": -3.0} if body["messages"][-1]["content"].split()[-1] == "alpha" else {"yes": -3.0}
    )
    X, y = key_word_data(0)
    backend = OpenAILogProbBackend("m", base_url=openai_server.url, api_key_env=None)
    folder = tmp_path / "bdpl-store"
    clf = key_word_classifier(backend, random_state=0, max_queries=300, store=str(folder)).fit(X, y)
    assert clf.n_queries_ > 0 and list(folder.glob("*.sqlite3")) and KEY in clf.candidates_
    sent = openai_server.request_count
    assert clone(clf).fit(X, y).n_queries_ == 0 and openai_server.request_count == sent  # answered by the store
    assert clone(clf).set_params(store=None).fit(X, y).n_queries_ == clf.n_queries_  # no store: paid again


# ------------------------------------------------------------------- a Redis restart
def _own_redis(**params):
    from ._redis import RedisServer, find_redis_server

    if find_redis_server() is None:
        pytest.skip("redis-server is not installed (Debian: apt-get install redis-server)")
    return RedisServer(**params)


def test_a_redis_restart_mid_run_is_waited_out_and_each_text_is_paid_once(fingerprint):
    texts = [f"text {i}" for i in range(3000)]
    with _own_redis(persistent=True) as server:
        store = open_store(server.url, fingerprint)
        sent: list = []
        outcome: dict = {}

        def run():
            try:
                outcome["out"], _ = query_through_store(texts, slow_box(0.01, sent), store=store, batch_size=50)
            except BaseException as exc:  # noqa: BLE001 - asserted below
                outcome["error"] = exc

        worker = threading.Thread(target=run)
        worker.start()
        deadline = time.monotonic() + 60
        while len(sent) < 600 and time.monotonic() < deadline:
            time.sleep(0.01)
        server.restart(down_for=3.0)  # killed mid-run, back 3 s later with what it had written to disk
        worker.join(120)
        assert not worker.is_alive() and "error" not in outcome, outcome.get("error")
        assert len(sent) == len(set(sent)) == len(texts), "each text paid once"
        np.testing.assert_array_equal(outcome["out"], np.stack([fake_vector(t) for t in texts]))
        found, bad = store.get_many(store.keys(texts))
        assert len(found) == len(texts) and bad == 0, "every paid answer is in the store"
        # a counter increment whose reply the crash swallowed is retried, so the count may exceed by one batch
        assert len(texts) <= store.counts()["sent"] <= len(texts) + 50


def test_redis_down_for_longer_than_the_retries_is_one_clear_error(fingerprint, monkeypatch):
    from skcrosstune.stores import redis as redis_store

    monkeypatch.setattr(redis_store, "RETRY_SECONDS", 1.0)
    with _own_redis() as server:
        store = open_store(server.url, fingerprint)
        query_through_store(["a"], CountingBlackBox(), store=store, batch_size=1)
        server.stop()
        with pytest.raises(StoreError, match=r"has not answered for 1 s.*a rerun pays only for what") as info:
            query_through_store(["a", "b"], CountingBlackBox(), store=store, batch_size=1)
        assert info.value.__cause__ is None and info.value.__context__ is None


# ------------------------------------------------------------- a deployed model's store
def _read_only_reader(location, fingerprint, texts, queue):
    """Read a store this process cannot write: as user nobody when run by root, else with the folder made 0500."""
    if os.geteuid() == 0:
        os.setgid(65534)
        os.setuid(65534)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        store = open_store(location, fingerprint)
        sent: list = []
        out, report = query_through_store(texts, slow_box(0.0, sent), store=store, batch_size=4)
        again: list = []
        query_through_store(texts, slow_box(0.0, again), store=store, batch_size=4)
    queue.put((sent, again, report.n_cached, [str(w.message) for w in caught], store.read_only))


def test_a_read_only_store_is_read_and_new_answers_are_not_kept(fingerprint):
    location = tempfile.mkdtemp(prefix="skcrosstune-read-only-")  # outside the private test folders: others read it
    try:
        os.chmod(location, 0o700)
        stored = [f"text {i}" for i in range(6)]
        query_through_store(stored, slow_box(0.0), store=open_store(location, fingerprint), batch_size=4)
        open_store(location, fingerprint).close()
        os.chmod(location, 0o755 if os.geteuid() == 0 else 0o500)  # nobody (or this user) can read, not write
        for path in Path(location).iterdir():
            path.chmod(0o644 if os.geteuid() == 0 else 0o400)
        queue = FORK.Queue()
        reader = FORK.Process(target=_read_only_reader, args=(location, fingerprint, stored + ["new text"], queue))
        reader.start()
        reader.join(60)
        assert reader.exitcode == 0
        sent, again, n_cached, messages, read_only = queue.get(timeout=5)
        assert read_only and n_cached == len(stored) and sent == ["new text"]
        assert again == ["new text"], "a new answer is not kept in a store that cannot be written"
        assert len(messages) == 1 and "read-only" in messages[0]
    finally:
        os.chmod(location, 0o700)
        shutil.rmtree(location, ignore_errors=True)


def test_a_deployed_model_whose_redis_is_down_predicts_with_one_warning(tiny_bert, fingerprint, monkeypatch):
    from skcrosstune.stores import redis as redis_store

    monkeypatch.setattr(redis_store, "RETRY_SECONDS", 0.5)
    with _own_redis() as server:
        model = make_pipeline(BlackBoxEmbedder(str(tiny_bert), store=server.url), LogisticRegression())
        model.fit(TEXTS, LABELS)
        expected = model.predict_proba(TEXTS)
        blob = pickle.dumps(model)
    loaded = pickle.loads(blob)  # the server is gone: a deployed model on another day
    with pytest.warns(RuntimeWarning, match="Working without it") as caught:
        np.testing.assert_allclose(loaded.predict_proba(TEXTS), expected, atol=1e-6)
        loaded.predict(TEXTS[:2])
    assert len(caught) == 1
    with pytest.raises(StoreError, match="has not answered"):
        loaded.set_params(blackboxembedder__store_errors="raise").predict(TEXTS[:2])


# ------------------------------------------------------------------- a full disk
class _FillingDisk:
    """The connections of an SQLite store whose disk fills up when ``full`` is set (every write then fails).

    ``answers_only``: only new answers fail to fit (claims and counters reuse pages they have).
    """

    answers_only = False

    def __init__(self, store):
        self.full = False
        connect = store._connect

        def connect_through():
            return _FullDiskConnection(connect(), self)

        store._connect = connect_through


class _FullDiskConnection:
    def __init__(self, conn, disk):
        self._conn, self._disk = conn, disk

    def executemany(self, statement, rows):
        writes = ("INSERT INTO entries", "INSERT OR REPLACE INTO entries") if _FillingDisk.answers_only else ("INSERT",)
        if self._disk.full and statement.lstrip().startswith(writes):
            raise sqlite3.OperationalError("database or disk is full")
        return self._conn.executemany(statement, rows)

    def __getattr__(self, name):
        return getattr(self._conn, name)


def test_a_full_disk_is_one_clear_error_and_every_paid_answer_is_written_once_there_is_room(tmp_path, fingerprint):
    store = open_store(tmp_path / "store", fingerprint)
    disk = _FillingDisk(store)
    texts = [f"text {i}" for i in range(40)]
    sent: list = []

    def fills_up(batch):
        disk.full = len(sent) >= 15  # the disk is full from the fourth batch on
        return slow_box(0.0, sent)(batch)

    with pytest.raises(StoreError, match="disk is full.*held in this process") as info:
        query_through_store(texts, fills_up, store=store, batch_size=5)
    assert info.value.__cause__ is None and info.value.__context__ is None
    assert sent == texts, "the run went on to the end, each text paid once"
    assert len(store.get_many(store.keys(texts))[0]) == 15
    disk.full = False  # room again: the next use of the store writes what was held
    rerun: list = []
    with pytest.warns(RuntimeWarning, match="25 answers paid for while the store .* were written to it now"):
        out, _ = query_through_store(texts, slow_box(0.0, rerun), store=store, batch_size=5)
    assert rerun == [] and store.counts()["sent"] == len(texts)
    np.testing.assert_array_equal(out, np.stack([fake_vector(t) for t in texts]))


def test_a_full_disk_under_warn_gives_every_answer_and_says_why(tmp_path, fingerprint, monkeypatch):
    store = open_store(tmp_path / "store", fingerprint)
    store.claim([store.key("x")], "someone", 60.0)  # the claims table has its pages: claims still fit
    _FillingDisk(store).full = True
    with pytest.raises(StoreError, match="disk is full"):  # before anything is paid: an error, nothing lost
        query_through_store(["a"], slow_box(0.0), store=store, batch_size=2, store_errors="warn")
    monkeypatch.setattr(_FillingDisk, "answers_only", True)
    out, report = query_through_store(["a", "b", "c"], slow_box(0.0), store=store, batch_size=2, store_errors="warn")
    assert isinstance(report.store_error, StoreError) and "disk is full" in str(report.store_error)
    np.testing.assert_array_equal(out, np.stack([fake_vector(t) for t in "abc"]))


def test_a_store_folder_deleted_during_a_run_is_noticed_and_made_again(tmp_path, fingerprint):
    location = tmp_path / "store"
    store = open_store(location, fingerprint)
    texts = [f"text {i}" for i in range(20)]
    sent: list = []

    def deletes_the_folder(batch):
        if len(sent) == 10:
            shutil.rmtree(location)  # someone cleans up ~/.cache mid-run
        return slow_box(0.0, sent)(batch)

    with pytest.warns(RuntimeWarning, match="was deleted .* while in use; it is made again") as caught:
        query_through_store(texts, deletes_the_folder, store=store, batch_size=5)
    assert len(caught) == 1 and sent == texts
    kept, _ = store.get_many(store.keys(texts))
    assert set(kept) == set(store.keys(texts)), "every answer of the run is in the new file"
    rerun: list = []
    query_through_store(texts, slow_box(0.0, rerun), store=store, batch_size=5)
    assert rerun == [], "the run's answers written to the deleted file were written again into the new one"
