import hashlib
import multiprocessing
import sqlite3

import numpy as np
import pytest

from skcrosstune.cache import query_through_store
from skcrosstune.stores import open_store
from skcrosstune.stores.base import legacy_checksum
from skcrosstune.stores.sqlite import SQLiteStore


def fake_vector(item):
    """What a deterministic black box would answer for ``item``."""
    text = item if isinstance(item, str) else " | ".join(item)
    seed = int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "little")
    rng = np.random.default_rng(seed)
    return rng.standard_normal(4).astype(np.float32) + len(text)


class CountingBlackBox:
    def __init__(self):
        self.sent = []

    def __call__(self, batch):
        self.sent.extend(batch)
        return np.stack([fake_vector(item) for item in batch])


FINGERPRINT = {"backend": "fake", "model": "m1"}


def reopen(directory, fingerprint=FINGERPRINT):
    """A new store object on ``directory``, as another process would open it."""
    store = SQLiteStore(directory, fingerprint)
    store.check()
    return store


@pytest.fixture
def cache(tmp_path):
    return open_store(tmp_path / "cache", FINGERPRINT)


def test_each_unique_item_is_queried_once_and_then_served_from_disk(cache):
    box = CountingBlackBox()
    items = ["a", "b", "a", ("p", "h"), "b"]
    out, report = query_through_store(items, box, store=cache, batch_size=2)
    assert sorted(map(str, box.sent)) == sorted(map(str, ["a", "b", ("p", "h")]))
    assert (report.n_items, report.n_unique, report.n_cached, report.n_queried) == (5, 3, 0, 3)
    np.testing.assert_array_equal(out[0], out[2])
    np.testing.assert_array_equal(out[3], fake_vector(("p", "h")))

    # A new process would open a new store on the same folder.
    reopened = reopen(cache.directory)
    box2 = CountingBlackBox()
    out2, report2 = query_through_store(items + ["c"], box2, store=reopened, batch_size=2)
    assert box2.sent == ["c"]
    assert (report2.n_cached, report2.n_queried) == (3, 1)
    np.testing.assert_array_equal(out2[:5], out)


def test_overlapping_folds_pay_for_the_union_only(cache):
    texts = [f"text {i}" for i in range(30)]
    box = CountingBlackBox()
    for fold in range(5):  # what GridSearchCV's folds would ask for
        subset = [t for i, t in enumerate(texts) if i % 5 != fold]
        query_through_store(subset, box, store=cache, batch_size=7)
    assert sorted(box.sent) == sorted(texts)


def test_a_pair_and_a_single_text_never_share_an_entry(cache):
    assert cache.key(("a", "b")) != cache.key("a | b")
    assert cache.key(("a", "b")) != cache.key(("b", "a"))
    assert cache.key("a") != reopen(cache.directory, {"backend": "fake", "model": "m2"}).key("a")


def test_another_fingerprint_never_answers(cache):
    query_through_store(["a"], CountingBlackBox(), store=cache, batch_size=4)
    other = reopen(cache.directory, {"backend": "fake", "model": "m2"})
    box = CountingBlackBox()
    query_through_store(["a"], box, store=other, batch_size=4)
    assert box.sent == ["a"]
    assert other.path != cache.path


def test_disabled_cache_still_deduplicates():
    box = CountingBlackBox()
    out, report = query_through_store(["x", "x", "y"], box, store=None, batch_size=8)
    assert box.sent == ["x", "y"] and report.n_queried == 2
    np.testing.assert_array_equal(out[0], out[1])


def test_every_position_of_a_repeated_item_gets_its_answer(cache):
    stored = [f"stored {i}" for i in range(2500)]  # more than one look-up chunk
    query_through_store(stored, CountingBlackBox(), store=cache, batch_size=500)
    rng = np.random.default_rng(0)
    items = [stored[i] for i in rng.integers(0, 2500, 4000)] + [f"new {i}" for i in rng.integers(0, 40, 120)]
    items = [items[i] for i in rng.permutation(len(items))]
    box = CountingBlackBox()
    out, report = query_through_store(items, box, store=cache, batch_size=16)
    assert sorted(box.sent) == sorted({item for item in items if item.startswith("new")})
    assert report.n_items == len(items) and report.n_unique == len(set(items))
    np.testing.assert_array_equal(out, np.stack([fake_vector(item) for item in items]))


def test_misses_are_batched_longest_first(cache):
    batches = []

    def box(batch):
        batches.append(list(batch))
        return np.stack([fake_vector(t) for t in batch])

    query_through_store(
        ["bb", "a", "dddd", "ccc"], box, store=cache, batch_size=2, lengths=lambda items: [len(t) for t in items]
    )
    assert batches == [["dddd", "ccc"], ["bb", "a"]]


def _entry(store, text):
    """The stored entry of ``text``, read straight from the file."""
    with sqlite3.connect(store.path) as conn:
        rows = conn.execute("SELECT entry FROM entries").fetchall()
    conn.close()
    key = bytes.fromhex(store.key(text))
    (entry,) = [row[0] for row in rows if row[0][4:24] == key]
    return entry


def _replace_entry(store, text, entry):
    key = bytes.fromhex(store.key(text))
    with sqlite3.connect(store.path) as conn:
        row_id = int.from_bytes(key[:8], "big") - (1 << 63)
        assert conn.execute("UPDATE entries SET entry = ? WHERE id = ?", (entry, row_id)).rowcount == 1
    conn.close()


def test_storage_is_raw_float_bytes_not_pickle(cache):
    query_through_store(["a"], CountingBlackBox(), store=cache, batch_size=1)
    entry = _entry(cache, "a")
    # the format, the key, the header naming dtype and shape, a checksum, then the raw little-endian floats
    assert entry[:4] == b"SKE3" and entry[4:24] == bytes.fromhex(cache.key("a"))
    assert entry[26:32] == b"<f4|[4" and entry[-16:] == fake_vector("a").astype("<f4").tobytes()


def test_a_corrupted_entry_is_detected_and_recomputed(cache):
    query_through_store(["a", "b"], CountingBlackBox(), store=cache, batch_size=4)
    cache.close()
    entry = _entry(cache, "a")
    _replace_entry(cache, "a", entry[:-16] + bytes([entry[-16] ^ 0xFF]) + entry[-15:])
    box = CountingBlackBox()
    out, report = query_through_store(["a", "b"], box, store=cache, batch_size=4)
    assert box.sent == ["a"]
    assert report.n_corrupt == 1 and report.n_cached == 1
    np.testing.assert_array_equal(out[0], fake_vector("a"))
    # and the repaired entry is served again
    box2 = CountingBlackBox()
    query_through_store(["a"], box2, store=cache, batch_size=4)
    assert box2.sent == []


def test_a_truncated_entry_is_never_returned(cache):
    query_through_store(["a"], CountingBlackBox(), store=cache, batch_size=4)
    cache.close()
    with sqlite3.connect(cache.path) as conn:
        conn.execute("UPDATE entries SET entry = substr(entry, 1, length(entry) - 8)")
    conn.close()
    box = CountingBlackBox()
    out, report = query_through_store(["a"], box, store=cache, batch_size=4)
    assert box.sent == ["a"] and report.n_corrupt == 1
    np.testing.assert_array_equal(out[0], fake_vector("a"))


def test_every_corrupt_entry_of_a_large_look_up_is_found_and_fetched_again(cache):
    texts = [f"text {i}" for i in range(1600)]  # several statements, read by two threads
    query_through_store(texts, CountingBlackBox(), store=cache, batch_size=400)
    cache.close()
    spoiled = [texts[i] for i in (3, 700, 1100, 1599)]
    for text in spoiled:
        entry = _entry(cache, text)
        _replace_entry(cache, text, entry[:-5] + bytes([entry[-5] ^ 0x01]) + entry[-4:])  # one bit of one answer
    box = CountingBlackBox()
    out, report = query_through_store(texts, box, store=cache, batch_size=400)
    assert sorted(box.sent) == sorted(spoiled)
    assert (report.n_corrupt, report.n_cached) == (4, 1596)
    np.testing.assert_array_equal(out, np.stack([fake_vector(t) for t in texts]))


def test_keys_sharing_their_first_64_bits_are_never_confused(cache):
    first, second = "0123456789abcdef" + "0" * 24, "0123456789abcdef" + "f" * 24
    cache.put_many([(first, np.ones(4, np.float32))])
    assert cache.get_many([second]) == ({}, 0)
    cache.put_many([(second, np.zeros(4, np.float32))])
    found, n_corrupt = cache.get_many([first, second])
    # one row per first 64 bits: the later answer holds it, the other is a miss (paid again, never wrong)
    assert n_corrupt == 0 and list(found) == [second]
    np.testing.assert_array_equal(found[second], np.zeros(4, np.float32))


def _earlier_row(key, array):
    """``(key, dtype, shape, data, checksum)``: an entry as the first two file layouts kept it."""
    dtype, shape, data = array.dtype.str, f"[{', '.join(map(str, array.shape))}]", array.tobytes()
    return key, dtype, shape, data, legacy_checksum(data, dtype, shape)


def _write_earlier_layout(store, layout, rows):
    """Rows ``(key, dtype, shape, data, checksum)`` in a file of an earlier layout, as earlier versions wrote it."""
    path = store.earlier_paths[layout - 1]
    with sqlite3.connect(path) as conn:
        if layout == 1:
            conn.execute(
                "CREATE TABLE IF NOT EXISTS entries (key TEXT PRIMARY KEY, dtype TEXT NOT NULL, "
                "shape TEXT NOT NULL, data BLOB NOT NULL, checksum TEXT NOT NULL)"
            )
            conn.executemany("INSERT OR REPLACE INTO entries VALUES (?, ?, ?, ?, ?)", rows)
        else:
            conn.execute(
                "CREATE TABLE IF NOT EXISTS entries (id INTEGER PRIMARY KEY, key TEXT NOT NULL, dtype TEXT NOT NULL, "
                "shape TEXT NOT NULL, data BLOB NOT NULL, checksum TEXT NOT NULL)"
            )
            rows = [(int(row[0][:16], 16) - (1 << 63), *row) for row in rows]
            conn.executemany("INSERT OR REPLACE INTO entries VALUES (?, ?, ?, ?, ?, ?)", rows)
    conn.close()
    return path


@pytest.mark.parametrize("layout", [1, 2])
def test_answers_in_a_file_of_an_earlier_layout_are_kept(tmp_path, layout):
    folder = tmp_path / "cache"
    folder.mkdir(mode=0o700)
    store = SQLiteStore(folder, FINGERPRINT)
    spoiled = _earlier_row(store.key("c"), fake_vector("c"))[:4] + ("0" * 32,)
    path = _write_earlier_layout(store, layout, [_earlier_row(store.key(t), fake_vector(t)) for t in "ab"] + [spoiled])
    before = path.read_bytes()
    store.check()
    box = CountingBlackBox()
    out, report = query_through_store(["a", "b", "c"], box, store=store, batch_size=4)
    assert box.sent == ["c"] and report.n_cached == 2  # an entry failing its checksum is not copied
    np.testing.assert_array_equal(out, np.stack([fake_vector(t) for t in "abc"]))
    assert path.read_bytes() == before  # left as it was: an older version may still use it
    # what an older version adds to that file later is copied when the store is next opened
    _write_earlier_layout(store, layout, [_earlier_row(store.key("d"), fake_vector("d"))])
    box = CountingBlackBox()
    query_through_store(["a", "d"], box, store=reopen(folder), batch_size=4)
    assert box.sent == []


def test_an_unreadable_database_file_is_moved_aside(tmp_path):
    cache = SQLiteStore(tmp_path / "cache", FINGERPRINT)
    cache.directory.mkdir(mode=0o700)
    cache.path.write_bytes(b"this is not a database" * 100)
    box = CountingBlackBox()
    with pytest.warns(RuntimeWarning, match="was damaged"):
        cache.check()
        out, _ = query_through_store(["a"], box, store=cache, batch_size=4)
    assert box.sent == ["a"]
    assert any(".corrupt-" in p.name for p in cache.directory.iterdir())
    np.testing.assert_array_equal(out[0], fake_vector("a"))


def test_a_failure_midway_keeps_every_finished_batch(cache):
    calls = {"n": 0}

    def flaky(batch):
        calls["n"] += 1
        if calls["n"] == 3:
            raise ConnectionError("the black box went away")
        return np.stack([fake_vector(t) for t in batch])

    texts = [f"t{i}" for i in range(10)]
    with pytest.raises(ConnectionError):
        query_through_store(texts, flaky, store=cache, batch_size=2)
    box = CountingBlackBox()
    _, report = query_through_store(texts, box, store=cache, batch_size=2)
    assert report.n_cached == 4 and len(box.sent) == 6


def _write_range(directory, start, stop, batch):
    store = open_store(directory, FINGERPRINT)
    texts = [f"text {i}" for i in range(start, stop)]
    query_through_store(texts, CountingBlackBox(), store=store, batch_size=batch)


def test_two_processes_writing_at_once_lose_and_corrupt_nothing(tmp_path):
    # Overlapping ranges: both processes ask for texts 100..199 at the same time.
    fork = multiprocessing.get_context("fork")
    procs = [
        fork.Process(target=_write_range, args=(tmp_path / "cache", 0, 200, 7)),
        fork.Process(target=_write_range, args=(tmp_path / "cache", 100, 300, 5)),
    ]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(120)
        assert proc.exitcode == 0
    cache = reopen(tmp_path / "cache")
    assert len(cache) == 300
    texts = [f"text {i}" for i in range(300)]
    stored, n_corrupt = cache.get_many([cache.key(t) for t in texts])
    assert n_corrupt == 0 and len(stored) == 300
    assert all(np.array_equal(stored[cache.key(t)], fake_vector(t)) for t in texts)
    assert cache.counts()["sent"] == 300  # and none was paid for twice
