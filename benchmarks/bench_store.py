"""The query store under parallel load: what is paid for, how fast the store answers, what n_jobs buys.

Three measurements, against a stand-in black box: the test suite's
OpenAI-compatible HTTP server (tests/_openai_server.py) on 127.0.0.1, whose
embeddings are deterministic per text, made to answer each request after a
fixed delay as a remote API would (``--latency``). Nothing leaves the machine.

1. **Paid against unique.** ``GridSearchCV(Pipeline(BlackBoxEmbedder,
   LogisticRegression))`` on a cold store: with ``n_jobs`` 1, 2 and 4 on a
   SQLite store, and on a two-worker Dask ``LocalCluster`` (process workers,
   ``joblib.parallel_config(backend="dask")``) sharing a Redis store. *Sent*
   is every text the server received, counted at the server; *unique* the
   distinct texts of the search. The store's own counters are recorded too.
2. **Store throughput** at 10k, 100k and 1M entries of 384 float32 values
   (all-MiniLM-L6-v2's width), for the SQLite and the Redis store: writes per
   second while filling it up to that size (``put_many`` of 10k entries), and
   look-ups per second of texts already stored, drawn at random, through
   ``query_through_store`` (key hashing, ``get_stacked``, checksums, stacking;
   the black box is never asked) in calls of 10k texts, the best of
   ``--repeats`` timings (fresh texts each time: the machine is shared).
3. **Wall time of a 3×3×3-fold grid** (``Pipeline(BlackBoxEmbedder,
   CrossTuneClassifier)``, 9 settings × 3 folds + refit) on a cold SQLite store,
   ``n_jobs=1`` against ``n_jobs=2``.
4. **Concurrent requests** (``--parts concurrent``): one process embeds
   ``--concurrent-texts`` texts (10,000) through a server answering each
   request after ``--concurrent-latency`` seconds (0.1), with ``n_concurrent``
   1, 4 and 8 (batches of 64), each on a cold SQLite store: wall time, texts
   sent and distinct texts sent.

Run from the repository root (``redis-server`` on PATH for the Redis parts)::

    python -m benchmarks.bench_store              # 8 minutes on a shared 2-core box
    python -m benchmarks.bench_store --quick      # a smoke run: small sizes, results to a temp folder

It writes ``benchmarks/results/store.{md,json,png}``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")

DEFAULT_RESULTS_DIR = Path(__file__).parent / "results"
WIDTH = 384
LOOKUP_CALL = 10_000
WRITE_CALL = 10_000


# ----------------------------------------------------------------- black box
def _slow_server(latency: float):
    """The suite's OpenAI-compatible server, answering each embeddings request after ``latency`` seconds."""
    from tests._openai_server import OpenAIServer

    class SlowServer(OpenAIServer):
        def _embeddings(self, body):
            time.sleep(latency)
            return super()._embeddings(body)

    return SlowServer()


def _texts(n: int, prefix: str) -> list[str]:
    return [f"{prefix} text {i}: {'a fine' if i % 2 else 'a dull'} film, scene {i % 7}" for i in range(n)]


def _embedder(server, store, batch_size=16):
    from skcrosstune import BlackBoxEmbedder

    return BlackBoxEmbedder(
        "openai:bench-embed", base_url=server.url, api_key_env=None, store=store, batch_size=batch_size
    )


# ------------------------------------------------------- 1. paid against unique
def _grid_search(server, store, n_jobs):
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GridSearchCV
    from sklearn.pipeline import make_pipeline

    return GridSearchCV(
        make_pipeline(_embedder(server, store), LogisticRegression()),
        {"logisticregression__C": [0.1, 1.0, 10.0]},
        cv=3,
        n_jobs=n_jobs,
    )


def paid_against_unique(args, redis_url) -> list[dict]:
    """Texts sent to the black box against unique texts, per configuration."""
    records = []
    X = _texts(args.grid_texts, "grid")
    y = np.arange(len(X)) % 2
    configs = [("sqlite", n) for n in (1, 2, 4)] + ([("dask+redis", 2)] if redis_url else [])
    for kind, n_jobs in configs:
        with ExitStack() as stack:
            server = stack.enter_context(_slow_server(args.latency))
            if kind == "sqlite":
                store = tempfile.mkdtemp(prefix="bench-store-", dir=args.scratch)
                stack.callback(shutil.rmtree, store, True)
                search = _grid_search(server, store, n_jobs)
                search.fit(X, y)
            else:
                import joblib
                from distributed import Client, LocalCluster

                cluster = stack.enter_context(
                    LocalCluster(
                        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None, host="127.0.0.1"
                    )
                )
                stack.enter_context(Client(cluster))
                store = redis_url
                search = _grid_search(server, store, -1)
                with joblib.parallel_config(backend="dask"):
                    search.fit(X, y)
            sent = server.embedded_texts()
            counts = search.best_estimator_[0].store_counts()
        record = {
            "store": kind,
            "n_jobs": n_jobs if kind == "sqlite" else "2 Dask workers",
            "unique": len(set(X)),
            "sent": len(sent),
            "sent_distinct": len(set(sent)),
            "store_counted_sent": counts["sent"],
            "store_counted_hits": counts["hits"],
        }
        print(f"  paid: {record}", flush=True)
        records.append(record)
        if kind == "dask+redis":
            _flush_redis(redis_url)
    return records


def _flush_redis(url):
    import redis

    redis.Redis.from_url(url).flushdb(asynchronous=True)  # freed in the background: 1M entries take a while


# ------------------------------------------------------------ 2. throughput
def _fingerprint(kind: str) -> dict:
    return {"backend": "bench-store", "kind": kind, "width": WIDTH}


def store_throughput(args, redis_url) -> list[dict]:
    """Writes/s while filling each store, and look-ups/s of stored texts, at each size."""
    from skcrosstune.cache import query_through_store
    from skcrosstune.stores import open_store

    def never(batch):
        raise AssertionError(f"the store missed {len(batch)} stored texts")

    records = []
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((WRITE_CALL, WIDTH)).astype(np.float32)
    kinds = [("sqlite", None)] + ([("redis", redis_url)] if redis_url else [])
    for kind, url in kinds:
        folder = tempfile.mkdtemp(prefix="bench-store-", dir=args.scratch)
        try:
            store = open_store(url or folder, _fingerprint(kind))
            filled = 0
            for size in args.sizes:
                write_seconds = 0.0
                start_size = filled
                while filled < size:
                    n = min(WRITE_CALL, size - filled)
                    keys = [store.key(t) for t in _texts_range(filled, filled + n)]
                    t0 = time.perf_counter()
                    store.put_many(zip(keys, vectors[:n], strict=True))
                    write_seconds += time.perf_counter() - t0
                    filled += n
                if kind == "sqlite":  # look-ups of a settled store: the file written out, not while the disk is busy
                    store.close()
                    os.sync()
                lookups = min(args.lookups, size)
                timings = []  # (wall, cpu, get_many) seconds of each repeat, fresh texts each time
                for _ in range(args.repeats):
                    picks = rng.choice(size, size=lookups, replace=False)
                    texts = [_text_at(int(i)) for i in picks]
                    wall, cpu = time.perf_counter(), time.process_time()
                    for lo in range(0, lookups, LOOKUP_CALL):
                        answers, report = query_through_store(
                            texts[lo : lo + LOOKUP_CALL], never, store=store, batch_size=64
                        )
                        assert report.n_queried == 0 and answers.shape[1] == WIDTH
                    lookup_wall, lookup_cpu = time.perf_counter() - wall, time.process_time() - cpu
                    keys = [store.key(t) for t in texts[:LOOKUP_CALL]]
                    t0 = time.perf_counter()
                    found, _ = store.get_many(keys)
                    timings.append((lookup_wall, lookup_cpu, time.perf_counter() - t0))
                    assert len(found) == len(keys)
                lookup_wall, lookup_cpu, get_seconds = (min(column) for column in zip(*timings, strict=True))
                record = {
                    "store": kind,
                    "entries": size,
                    "writes_per_s": round((filled - start_size) / write_seconds) if write_seconds else None,
                    "lookups_per_s": round(lookups / lookup_wall),
                    "lookups_per_s_each_repeat": [round(lookups / wall) for wall, _, _ in timings],
                    "lookups_per_cpu_s": round(lookups / lookup_cpu),
                    "get_many_per_s": round(len(keys) / get_seconds),
                    "disk_mib": round(_folder_mib(folder), 1) if kind == "sqlite" else None,
                    "load_average": round(os.getloadavg()[0], 1),
                }
                print(f"  throughput: {record}", flush=True)
                records.append(record)
            store.close()
        finally:
            shutil.rmtree(folder, ignore_errors=True)
            if url:
                _flush_redis(url)
    return records


def _text_at(i: int) -> str:
    return f"stored text number {i}"


def _texts_range(lo: int, hi: int) -> list[str]:
    return [_text_at(i) for i in range(lo, hi)]


def _folder_mib(folder) -> float:
    return sum(p.stat().st_size for p in Path(folder).iterdir() if p.is_file()) / 2**20


# --------------------------------------------------------- 3. grid wall time
def grid_wall_time(args) -> list[dict]:
    """A 3×3×3-fold grid of Pipeline(BlackBoxEmbedder, CrossTuneClassifier) on a cold store."""
    from sklearn.model_selection import GridSearchCV
    from sklearn.pipeline import make_pipeline

    from skcrosstune import CrossTuneClassifier

    X = _texts(args.grid_texts, "wall")
    y = np.arange(len(X)) % 2
    grid = {"crosstuneclassifier__temperature": [0.05, 0.1, 0.2], "crosstuneclassifier__n_heads": [1, 2, 4]}
    records = []
    _warm_up_workers(2)
    for n_jobs in (1, 2):
        store = tempfile.mkdtemp(prefix="bench-store-", dir=args.scratch)
        try:
            with _slow_server(args.latency) as server:
                search = GridSearchCV(
                    make_pipeline(_embedder(server, store), CrossTuneClassifier(random_state=0)),
                    grid,
                    cv=3,
                    n_jobs=n_jobs,
                )
                start = time.perf_counter()
                search.fit(X, y)
                seconds = time.perf_counter() - start
                sent = len(server.embedded_texts())
        finally:
            shutil.rmtree(store, ignore_errors=True)
        record = {"n_jobs": n_jobs, "fits": 27 + 1, "seconds": round(seconds, 2), "sent": sent, "unique": len(X)}
        print(f"  grid: {record}", flush=True)
        records.append(record)
    return records


# ------------------------------------------------------- 4. concurrent requests
def concurrent_requests(args) -> list[dict]:
    """Wall time of one process embedding many texts through a slow API, one request at a time or several."""
    texts = _texts(args.concurrent_texts, "concurrent")
    records = []
    with _slow_server(args.concurrent_latency) as server:
        for n_concurrent in (1, 4, 8):
            server.reset()
            with tempfile.TemporaryDirectory(dir=args.scratch) as store:
                embedder = _embedder(server, store, batch_size=64).set_params(n_concurrent=n_concurrent)
                start = time.perf_counter()
                embedder.fit_transform(texts)
                seconds = time.perf_counter() - start
                sent = server.embedded_texts()
                record = {
                    "n_concurrent": n_concurrent,
                    "texts": len(texts),
                    "latency_ms": args.concurrent_latency * 1000,
                    "seconds": round(seconds, 2),
                    "texts_per_s": round(len(texts) / seconds),
                    "sent": len(sent),
                    "sent_distinct": len(set(sent)),
                    "store_counted_sent": embedder.store_counts()["sent"],
                }
            records.append(record)
            print(json.dumps(record), flush=True)
    base = records[0]["seconds"]
    for record in records:
        record["speedup"] = round(base / record["seconds"], 2)
    return records


def _concurrent_markdown(records: list[dict]) -> str:
    if not records:
        return ""
    first = records[0]
    lines = [
        "",
        f"## Concurrent requests: {first['texts']:,} texts through one embedder, {first['latency_ms']:.0f} ms "
        "per request, batches of 64, cold store",
        "",
        "| n_concurrent | seconds | texts/s | speed-up | sent | distinct sent | store's count |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in records:
        lines.append(
            f"| {r['n_concurrent']} | {r['seconds']} | {r['texts_per_s']:,} | {r['speedup']}× | {r['sent']:,} | "
            f"{r['sent_distinct']:,} | {r['store_counted_sent']:,} |"
        )
    return "\n".join(lines) + "\n"


def _import_skcrosstune() -> None:
    import skcrosstune  # noqa: F401 - imports torch, the slow part of a worker's start


def _warm_up_workers(n_jobs: int) -> None:
    """Start joblib's worker processes before a timing, as a session that already ran one would have them."""
    import joblib

    joblib.Parallel(n_jobs=n_jobs)(joblib.delayed(_import_skcrosstune)() for _ in range(n_jobs))


# ------------------------------------------------------------------- report
def _markdown(meta, paid, throughput, wall) -> str:
    lines = [
        "# The query store under parallel load (`bench_store.py`)",
        "",
        f"{meta['machine']}; black box: the test suite's OpenAI-compatible server on 127.0.0.1, "
        f"{meta['latency_ms']:.0f} ms per request; {meta['grid_texts']} texts per grid search.",
        "",
        "## Texts sent to the black box against unique texts (GridSearchCV, 3 settings × 3 folds + refit, cold)",
        "",
        "| store | n_jobs | unique | sent | distinct sent | store's count (sent / hits) |",
        "|---|---|---:|---:|---:|---|",
    ]
    for r in paid:
        lines.append(
            f"| {r['store']} | {r['n_jobs']} | {r['unique']} | {r['sent']} | {r['sent_distinct']} | "
            f"{r['store_counted_sent']} / {r['store_counted_hits']} |"
        )
    lines += [
        "",
        f"## Store throughput ({WIDTH} float32 per entry; look-ups of stored texts drawn at random, "
        f"best of {meta.get('repeats', 1)} timings with fresh texts each)",
        "",
        "| store | entries | writes/s (filling up to it) | look-ups/s: texts through query_through_store "
        "| the same per CPU-second of this process | get_many/s, keys | SQLite file MiB | load average |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in throughput:
        disk = "" if r["disk_mib"] is None else r["disk_mib"]
        lines.append(
            f"| {r['store']} | {r['entries']:,} | {r['writes_per_s']:,} | {r['lookups_per_s']:,} | "
            f"{r['lookups_per_cpu_s']:,} | {r['get_many_per_s']:,} | {disk} | {r['load_average']} |"
        )
    lines += [
        "",
        "## Wall time of a 3×3×3-fold grid, Pipeline(BlackBoxEmbedder, CrossTuneClassifier), cold SQLite store",
        "",
        "| n_jobs | fits | seconds | sent | unique |",
        "|---:|---:|---:|---:|---:|",
    ]
    for r in wall:
        lines.append(f"| {r['n_jobs']} | {r['fits']} | {r['seconds']} | {r['sent']} | {r['unique']} |")
    return "\n".join(lines) + "\n"


def _plot(path, paid, throughput, wall) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 5.2))
    ax = axes[0]
    labels = [f"{r['store']}\n{r['n_jobs']}" for r in paid]
    x = np.arange(len(paid))
    ax.bar(x - 0.2, [r["unique"] for r in paid], 0.4, label="unique texts", color="#999999")
    ax.bar(x + 0.2, [r["sent"] for r in paid], 0.4, label="texts sent", color="#1f77b4")
    ax.set_xticks(x, labels, fontsize=8)
    ax.set_ylabel("texts")
    ax.set_title("Paid against unique (cold store)")
    ax.legend(fontsize=8, loc="lower right")

    ax = axes[1]
    for kind, color in (("sqlite", "#1f77b4"), ("redis", "#d62728")):
        rows = [r for r in throughput if r["store"] == kind]
        if not rows:
            continue
        sizes = [r["entries"] for r in rows]
        ax.plot(sizes, [r["lookups_per_s"] for r in rows], "o-", color=color, label=f"{kind} look-ups")
        ax.plot(sizes, [r["writes_per_s"] for r in rows], "s--", color=color, label=f"{kind} writes")
        cpu = [r.get("lookups_per_cpu_s") for r in rows]
        if all(cpu):
            ax.plot(sizes, cpu, "x:", color=color, label=f"{kind} look-ups per CPU-second")
    ax.axhline(100_000, color="black", lw=0.8, ls=":", label="bar: 100k look-ups/s")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("entries in the store")
    ax.set_ylabel("texts per second")
    ax.set_title(f"Store throughput ({WIDTH} float32 per entry)")
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=2)

    ax = axes[2]
    ax.bar([str(r["n_jobs"]) for r in wall], [r["seconds"] for r in wall], color="#2ca02c")
    for i, r in enumerate(wall):
        ax.text(i, r["seconds"], f"{r['seconds']:.1f} s", ha="center", va="bottom", fontsize=9)
    ax.set_xlabel("n_jobs")
    ax.set_ylabel("seconds")
    ax.set_title("3×3×3-fold grid, cold store")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None) -> None:
    """Run the three measurements and write the results."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_store", description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--lookups", type=int, default=100_000, help="texts looked up at each size")
    parser.add_argument("--repeats", type=int, default=3, help="look-up timings at each size (the best is kept)")
    parser.add_argument("--grid-texts", type=int, default=120, help="texts in each grid search")
    parser.add_argument("--latency", type=float, default=0.05, help="seconds per black-box request")
    parser.add_argument("--parts", nargs="+", default=["paid", "throughput", "wall", "concurrent"])
    parser.add_argument("--concurrent-texts", type=int, default=10_000, help="texts of the concurrency part")
    parser.add_argument("--concurrent-latency", type=float, default=0.1, help="seconds per request there")
    parser.add_argument("--results-dir", type=Path, default=DEFAULT_RESULTS_DIR)
    parser.add_argument("--scratch", default=None, help="folder for the temporary SQLite stores")
    parser.add_argument("--quick", action="store_true", help="small sizes, results to a temporary folder")
    args = parser.parse_args(argv)
    if args.quick:
        args.sizes, args.lookups, args.grid_texts = [1_000, 10_000], 5_000, 60
        args.results_dir = Path(tempfile.mkdtemp(prefix="bench-store-results-"))
    if args.scratch is not None:
        Path(args.scratch).mkdir(parents=True, exist_ok=True)

    from tests._redis import RedisServer, find_redis_server

    meta = {
        "machine": f"{os.cpu_count()}-core CPU box ({platform.processor() or platform.machine()})",
        "python": platform.python_version(),
        "latency_ms": args.latency * 1000,
        "grid_texts": args.grid_texts,
        "sizes": args.sizes,
        "lookups": args.lookups,
        "repeats": args.repeats,
        "redis": find_redis_server() is not None,
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }
    results = {"meta": meta, "paid": [], "throughput": [], "grid_wall_time": [], "concurrent": []}
    previous = args.results_dir / "store.json"
    if previous.exists() and len(args.parts) < 4:  # a partial rerun keeps the other parts' results
        old = json.loads(previous.read_text())
        results = {**old, "meta": {**old.get("meta", {}), **meta, "parts_rerun": args.parts}}
    with ExitStack() as stack:
        redis_url = stack.enter_context(RedisServer()).url if meta["redis"] else None
        if redis_url is None:
            print("redis-server is not installed: the Redis and Dask parts are skipped.")
        for part, key, run in (
            ("paid", "paid", lambda: paid_against_unique(args, redis_url)),
            ("throughput", "throughput", lambda: store_throughput(args, redis_url)),
            ("wall", "grid_wall_time", lambda: grid_wall_time(args)),
            ("concurrent", "concurrent", lambda: concurrent_requests(args)),
        ):
            if part in args.parts:
                results[key] = run()
                _write(args.results_dir, results)  # each part is kept as soon as it is measured
    print(f"written to {args.results_dir}/store.{{md,json,png}}")


def _write(results_dir: Path, results: dict) -> None:
    results_dir.mkdir(parents=True, exist_ok=True)
    paid, throughput, wall = results["paid"], results["throughput"], results["grid_wall_time"]
    (results_dir / "store.json").write_text(json.dumps(results, indent=1) + "\n")
    markdown = _markdown(results["meta"], paid, throughput, wall) + _concurrent_markdown(results.get("concurrent", []))
    (results_dir / "store.md").write_text(markdown)
    _plot(results_dir / "store.png", paid, throughput, wall)


if __name__ == "__main__":
    main()
