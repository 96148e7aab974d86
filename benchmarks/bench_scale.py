"""Fit and predict time and peak memory of each method's classifier head, against training-set size.

The full SST-2 training set (6,920 texts), its test set (872), the 16-shot
dev split of seed 13 and every label text are embedded once, through the
query cache. Each black-box method of the main few-shot table is then built
by its own registered factory with the embedder swapped for a lookup in
those vectors, so what is measured is the head on arrays: from 16 examples
per class up to the whole training set.

- time: the best of ``--repeats`` fits (and predictions of the 872 test
  texts), wall-clock;
- traced memory: the peak of Python and numpy allocations (``tracemalloc``)
  during one more fit, above what was allocated before it; it includes the
  input matrix the lookup builds (n × 384 float32), but not torch tensors;
- resident memory: the growth of the peak resident set size (``VmHWM``)
  during one fit in a forked child process, which does count torch (Linux
  only; coarse for small heads, whose allocations fit in memory the process
  already holds). The child runs torch on one thread: a forked process
  cannot use its parent's thread pool.

White-box methods (SetFit) have no head on cached embeddings, and BDPL
queries the black box while it fits: both are left out.

Run from the repository root::

    python -m benchmarks.bench_scale
    python -m benchmarks.bench_scale --by-classes
    python -m benchmarks.bench_scale --multilabel

It writes ``benchmarks/results/scale.{md,json,png}``. ``--by-classes`` measures
the same heads against the number of classes instead: 16 examples per class
of CLINC150 subsets of 2, 6, 20, 50 and 150 intents (the same random subsets
for every head), the fit time as the median over the five split seeds, and
writes ``benchmarks/results/scale_classes.{md,json}`` after each size (so an
interrupted run keeps the sizes it finished). ``--multilabel`` times the
multi-label heads (CrossTune and DecT with label descriptions, and the
one-vs-rest probe) on the 16-shot GoEmotions splits of every seed, and writes
``benchmarks/results/scale_multilabel.{md,json}``.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import time
import tracemalloc
from dataclasses import replace
from functools import partial
from pathlib import Path

import numpy as np
from sklearn.preprocessing import FunctionTransformer

from skcrosstune import BlackBoxEmbedder
from skcrosstune.datasets import FEWSHOT_SEEDS, load_fewshot, load_full_train

from .fewshot import (
    DEFAULT_CACHE_DIR,
    DEFAULT_RESULTS_DIR,
    REGISTRY,
    RunContext,
    label_names,
    load_descriptions,
    resolve_data_home,
)

TASK = "sst2"
MANY_CLASSES_TASK = "clinc150"
CLASS_COUNTS = (2, 6, 20, 50, 150)


def lookup_embedder(vectors: dict) -> FunctionTransformer:
    """A transformer returning the precomputed vector of each text (clones share the table)."""

    def embed(texts):
        return np.stack([vectors[text] for text in texts])

    return FunctionTransformer(embed)


def balanced_subsample(y: np.ndarray, per_class: int, rng: np.random.Generator) -> np.ndarray:
    """Sorted indices of ``per_class`` examples of each class."""
    keep = [rng.choice(np.flatnonzero(y == label), size=per_class, replace=False) for label in np.unique(y)]
    return np.sort(np.concatenate(keep))


def time_head(build, X, y, X_test, repeats: int) -> dict:
    """Best-of-``repeats`` fit and predict seconds, and the memory of one more fit."""
    fit_times, predict_times = [], []
    for _ in range(repeats):
        head = build()
        start = time.perf_counter()
        head.fit(X, y)
        fit_times.append(time.perf_counter() - start)
        start = time.perf_counter()
        head.predict(X_test)
        predict_times.append(time.perf_counter() - start)
    head = build()
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        head.fit(X, y)
        fit_peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
    return {
        "fit_seconds": min(fit_times),
        "predict_seconds": min(predict_times),
        "fit_traced_mib": fit_peak / 2**20,
        "fit_rss_mib": resident_growth(build, X, y),
    }


def _memory_status() -> dict:
    """VmRSS and VmHWM (peak) of this process, in MiB, from /proc."""
    status = {}
    with open("/proc/self/status") as handle:
        for line in handle:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                status[key] = int(value.split()[0]) / 1024
    return status


def _fit_and_report(build, X, y, connection) -> None:
    import torch

    # a forked child cannot use the parent's intra-op thread pool (it would wait on it forever): one thread
    torch.set_num_threads(1)
    before = _memory_status()["VmRSS"]
    build().fit(X, y)
    connection.send(_memory_status()["VmHWM"] - before)


def resident_growth(build, X, y, timeout: float = 600.0) -> float | None:
    """How far one fit raises the peak resident set size, measured in a forked child.

    None off Linux, and None (with a message) when the child has not
    answered within ``timeout`` seconds: it is killed rather than waited for.
    """
    if not os.path.exists("/proc/self/status"):
        return None
    context = multiprocessing.get_context("fork")
    receiver, sender = context.Pipe(duplex=False)
    child = context.Process(target=_fit_and_report, args=(build, X, y, sender))
    child.start()
    growth = receiver.recv() if receiver.poll(timeout) else None
    if growth is None:
        child.kill()
        print(f"  the forked child measuring resident memory gave no answer in {timeout:.0f} s: killed", flush=True)
    child.join()
    return growth


def embed_through_the_store(texts, cache_dir):
    """``(vectors by text, queries sent, seconds)`` for ``texts`` through the query store."""
    embedder = BlackBoxEmbedder(store=str(cache_dir))
    start = time.perf_counter()
    vectors = dict(zip(texts, embedder.fit_transform(texts), strict=True))
    return vectors, embedder.n_queries_, time.perf_counter() - start


TABLES = (
    ("fit_seconds", "fit, seconds", "{:.3f}"),
    ("predict_seconds", "predict the 872 test texts, seconds", "{:.3f}"),
    ("fit_traced_mib", "fit, peak traced allocations (MiB, tracemalloc: Python and numpy)", "{:.1f}"),
    ("fit_rss_mib", "fit, growth of the peak resident set (MiB, forked child: counts torch too)", "{:.1f}"),
)


def markdown(records: list[dict], meta: dict) -> str:
    """One table per figure of :data:`TABLES`: methods × training-set size."""
    sizes = sorted({r["n_train"] for r in records})
    methods = list(dict.fromkeys(r["method"] for r in records))
    cell = {(r["method"], r["n_train"]): r for r in records}
    lines = [
        "# Speed and memory of the classifier heads, SST-2",
        "",
        f"Machine: {meta['machine']}, which other jobs share (load average {meta['load_before']:.1f} before the "
        f"run, {meta['load_after']:.1f} after): timings move with the load, compare them within a run. Heads "
        f"run on cached all-MiniLM-L6-v2 embeddings (384 floats per text). Time: best of {meta['repeats']}, "
        f"wall-clock. This run's embedding pass over the {meta['n_embedded']:,} texts took "
        f"{meta['embed_seconds']:.0f} s and sent {meta['queries']:,} queries (the rest came from the cache).",
    ]
    for key, title, fmt in TABLES:
        lines += ["", f"## {title}", "", "| method | " + " | ".join(f"n={n:,}" for n in sizes) + " |"]
        lines.append("|---|" + "---:|" * len(sizes))
        for method in methods:
            values = ["—" if cell[method, n][key] is None else fmt.format(cell[method, n][key]) for n in sizes]
            lines.append(f"| {method} | " + " | ".join(values) + " |")
    return "\n".join(lines) + "\n"


def plot(records: list[dict], path: Path) -> None:
    """Every figure of :data:`TABLES` against training-set size, log-log."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    methods = list(dict.fromkeys(r["method"] for r in records))
    fig, axes = plt.subplots(2, 2, figsize=(11, 8.5))
    for ax, (key, title, _) in zip(axes.flat, TABLES, strict=True):
        for i, method in enumerate(methods):
            mine = [r for r in records if r["method"] == method and r[key] is not None]
            # A zero (nothing allocated) cannot sit on a log axis: floor it at 1 ms / 0.01 MiB.
            floor = 1e-3 if key.endswith("seconds") else 1e-2
            ax.plot(
                [r["n_train"] for r in mine],
                [max(r[key], floor) for r in mine],
                marker="o",
                color=plt.get_cmap("tab10")(i % 10),
                label=method,
            )
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.yaxis.set_major_locator(LogLocator(subs=(1.0, 3.0)))
        ax.yaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
        ax.yaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel("training texts")
        ax.set_title(title.replace(" (", "\n("), fontsize=9)
        ax.grid(alpha=0.3, which="both")
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=4, fontsize=9, frameon=False)
    fig.suptitle("Classifier heads on cached embeddings, SST-2 (16 per class to the full 6,920)")
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    fig.savefig(path, dpi=120)
    plt.close(fig)


def head_methods() -> list:
    """The black-box methods of the main table that fit on cached vectors (BDPL queries while fitting)."""
    return [m for m in REGISTRY.values() if m.group == "fewshot" and m.black_box and m.in_all and "single" in m.kinds]


def by_multilabel(args, data_home) -> None:
    """Fit and predict time and memory of the multi-label heads on cached GoEmotions vectors, per seed."""
    from .multilabel import methods

    task = "goemotions"
    descriptions = load_descriptions(task, load_fewshot(task, 16, args.seeds[0], data_home=data_home).labels)
    embedder = BlackBoxEmbedder(store=os.path.relpath(args.cache_dir))
    records = []
    for seed in args.seeds:
        split = load_fewshot(task, 16, seed, data_home=data_home)
        X = embedder.fit_transform(split.X_train)
        X_dev, X_test = embedder.transform(split.X_dev), embedder.transform(split.X_test)
        texts = {"names": split.labels, "descriptions": [descriptions[label] for label in split.labels]}
        factories = methods(embedder, texts, X_dev, split.y_dev)
        for name in ("crosstune", "dect", "ovr_probe[dev]"):
            figures = time_head(factories[name], X, split.y_train, X_test, args.repeats)
            records.append({"method": name, "seed": seed, "n_train": len(X), **figures})
            print(f"{name:<16} seed {seed:>3}  n={len(X)}  fit {figures['fit_seconds']:.3f}s", flush=True)
    meta = {
        "machine": f"{os.cpu_count()}-core CPU box ({platform.machine()}, {platform.system()})",
        "task": task,
        "n_test": len(X_test),
        "repeats": args.repeats,
        "load_before": os.getloadavg()[0],
    }
    lines = [
        "# Multi-label heads: fit time on cached vectors",
        "",
        f"GoEmotions, 16 shots per label (84-96 training rows, 7 labels), MiniLM vectors from the store; best of "
        f"{args.repeats} fits, wall-clock; predict = the {len(X_test):,} test rows. Machine: {meta['machine']}, "
        f"load {meta['load_before']:.1f} before the run.",
        "",
        "| head | fit s (median over seeds) | fit s (slowest seed) | predict s | resident MiB |",
        "|---|---:|---:|---:|---:|",
    ]
    for name in dict.fromkeys(r["method"] for r in records):
        mine = [r for r in records if r["method"] == name]
        fits = [r["fit_seconds"] for r in mine]
        rss = max(r["fit_rss_mib"] or 0 for r in mine)
        predict = np.median([r["predict_seconds"] for r in mine])
        lines.append(f"| {name} | {np.median(fits):.3f} | {max(fits):.3f} | {predict:.3f} | {rss:.1f} |")
    results_dir = Path(args.results_dir)
    results_dir.mkdir(parents=True, exist_ok=True)
    (results_dir / "scale_multilabel.json").write_text(json.dumps({"meta": meta, "records": records}, indent=1))
    (results_dir / "scale_multilabel.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"wrote {results_dir / 'scale_multilabel.md'}")


def by_classes(args, data_home) -> None:
    """Fit time (median over the split seeds) and peak memory of every head against the number of classes."""
    splits = {seed: load_fewshot(MANY_CLASSES_TASK, 16, seed, data_home=data_home) for seed in args.seeds}
    first = splits[args.seeds[0]]
    names = label_names(first.labels)
    texts = [t for split in splits.values() for t in split.X_train + split.X_dev] + first.X_test
    texts = list(dict.fromkeys(texts + list(names.values())))
    vectors, queries, seconds = embed_through_the_store(texts, args.cache_dir)
    print(f"embedded {len(texts)} texts in {seconds:.0f} s ({queries} queries)", flush=True)
    rng = np.random.default_rng(0)
    order = list(rng.permutation(first.labels))  # nested subsets: the first k of one random order
    records, meta = (
        [],
        {
            "machine": f"{os.cpu_count()}-core CPU box ({platform.machine()}, {platform.system()})",
            "task": MANY_CLASSES_TASK,
            "seeds": list(args.seeds),
            "load_before": os.getloadavg()[0],
        },
    )
    results_dir = Path(args.results_dir)
    results_dir.mkdir(parents=True, exist_ok=True)
    # label names are the only label texts here, so a method's [names] variant would repeat it; the probe
    # selected on dev fits six probes and is left out for time
    methods = [m for m in head_methods() if not m.uses_dev and not m.name.endswith("[names]")]
    for k in args.classes:
        kept = set(order[:k])
        for method in methods:
            fit_times, fit_cpu, accuracies = [], [], []
            for seed, split in splits.items():
                rows = [i for i, label in enumerate(split.y_train) if label in kept]
                X, y = [split.X_train[i] for i in rows], split.y_train[rows]
                test = [i for i, label in enumerate(first.y_test) if label in kept]
                X_test, y_test = [first.X_test[i] for i in test], first.y_test[test]
                ctx = RunContext(
                    task=MANY_CLASSES_TASK,
                    kind="single",
                    labels=[label for label in split.labels if label in kept],
                    shots=16,
                    seed=seed,
                    embedder=lookup_embedder(vectors),
                    descriptions={label: names[label] for label in kept} if method.uses_descriptions else None,
                    dev=None,
                )
                if method.uses_dev:
                    dev_rows = [i for i, label in enumerate(split.y_dev) if label in kept]
                    ctx = replace(ctx, dev=([split.X_dev[i] for i in dev_rows], split.y_dev[dev_rows]))
                head = method.factory(ctx)
                start, cpu_start = time.perf_counter(), time.process_time()
                head.fit(X, y)
                fit_times.append(time.perf_counter() - start)
                fit_cpu.append(time.process_time() - cpu_start)
                accuracies.append(float(np.mean(head.predict(X_test) == y_test)))
            # peak memory of one more fit, traced in this process: a forked child (as for the SST-2 curve)
            # hung here in CrossTune's fit after torch had started its threads in the parent
            tracemalloc.start()
            try:
                base = tracemalloc.get_traced_memory()[0]
                method.factory(ctx).fit(X, y)
                traced = (tracemalloc.get_traced_memory()[1] - base) / 2**20
            finally:
                tracemalloc.stop()
            record = {
                "method": method.name,
                "n_classes": k,
                "n_train": len(y),
                "fit_seconds_median": float(np.median(fit_times)),
                "fit_seconds": fit_times,
                "fit_cpu_seconds_median": float(np.median(fit_cpu)),
                "test_accuracy_mean": float(np.mean(accuracies)),
                "fit_traced_mib": traced,
            }
            records.append(record)
            print(
                f"{method.name:<20} classes={k:>3}  fit median {record['fit_seconds_median']:.3f}s  "
                f"(CPU {record['fit_cpu_seconds_median']:.3f}s)  "
                f"traced {traced:.1f} MiB  "
                f"accuracy {100 * record['test_accuracy_mean']:.1f}",
                flush=True,
            )
        meta["load_after"] = os.getloadavg()[0]
        (results_dir / "scale_classes.json").write_text(json.dumps({"meta": meta, "records": records}, indent=1) + "\n")
        (results_dir / "scale_classes.md").write_text(classes_markdown(records, meta), encoding="utf-8")
    print(f"wrote {results_dir / 'scale_classes.md'}, scale_classes.json")


def classes_markdown(records: list[dict], meta: dict) -> str:
    """Fit seconds (median over seeds), peak memory and test accuracy: methods × number of classes."""
    counts = sorted({r["n_classes"] for r in records})
    methods = list(dict.fromkeys(r["method"] for r in records))
    cell = {(r["method"], r["n_classes"]): r for r in records}
    lines = [
        "# Speed and memory of the classifier heads against the number of classes, CLINC150 subsets",
        "",
        f"Machine: {meta['machine']}, shared with other jobs (load average {meta['load_before']:.1f} before, "
        f"{meta.get('load_after', float('nan')):.1f} after): timings move with the load. 16 training texts per "
        f"class, label names as label texts, cached all-MiniLM-L6-v2 vectors; fit time is the median over the "
        f"split seeds {meta['seeds']}, memory is one more fit's (seed {meta['seeds'][-1]}), traced. Label "
        "names are the label texts, so the `[names]` variants are the same runs; `linear_probe[dev]` is left out.",
    ]
    tables = (
        ("fit_seconds_median", "fit, seconds (median over seeds)", "{:.2f}"),
        (
            "fit_cpu_seconds_median",
            "fit, CPU seconds of this process, all its threads (median over seeds; less moved by other jobs' load)",
            "{:.2f}",
        ),
        ("fit_traced_mib", "fit, peak traced allocations (MiB, tracemalloc: Python and numpy, not torch)", "{:.1f}"),
        ("test_accuracy_mean", "test accuracy on the subset's test queries (%, mean over seeds)", "{:.1%}"),
    )
    for key, title, fmt in tables:
        lines += ["", f"## {title}", "", "| method | " + " | ".join(f"{k} classes" for k in counts) + " |"]
        lines.append("|---|" + "---:|" * len(counts))
        for method in methods:
            values = [
                "—" if (method, k) not in cell or cell[method, k][key] is None else fmt.format(cell[method, k][key])
                for k in counts
            ]
            lines.append(f"| {method} | " + " | ".join(v.rstrip("%") for v in values) + " |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> None:
    """Embed once, time every head at every size, write the table, the records and the plot."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_scale", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--per-class",
        nargs="+",
        type=int,
        default=[16, 64, 256, 1024],
        help="subsample sizes per class; the full training set is always added",
    )
    parser.add_argument("--repeats", type=int, default=3, help="timed repetitions, the best is kept")
    parser.add_argument("--data-home", default=None, help="task folder (default ../shared/data)")
    parser.add_argument("--cache-dir", default=DEFAULT_CACHE_DIR, help="query cache (default benchmarks/.cache)")
    parser.add_argument("--results-dir", default=DEFAULT_RESULTS_DIR, help="default benchmarks/results")
    parser.add_argument("--by-classes", action="store_true", help="against the number of classes (CLINC150)")
    parser.add_argument("--classes", nargs="+", type=int, default=list(CLASS_COUNTS), help="class counts")
    parser.add_argument("--seeds", nargs="+", type=int, default=list(FEWSHOT_SEEDS), help="split seeds")
    parser.add_argument("--multilabel", action="store_true", help="the multi-label heads on GoEmotions")
    args = parser.parse_args(argv)

    data_home = resolve_data_home(args.data_home)
    if args.by_classes:
        by_classes(args, data_home)
        return
    if args.multilabel:
        by_multilabel(args, data_home)
        return
    X_full, y_full = load_full_train(TASK, data_home=data_home)
    split = load_fewshot(TASK, 16, 13, data_home=data_home)
    descriptions = load_descriptions(TASK, split.labels)
    texts = list(
        dict.fromkeys(
            X_full + split.X_test + split.X_dev + list(descriptions.values()) + list(label_names(split.labels).values())
        )
    )
    vectors, queries, embed_seconds = embed_through_the_store(texts, args.cache_dir)
    print(f"embedded {len(texts)} texts in {embed_seconds:.0f} s ({queries} queries)", flush=True)

    load_before = os.getloadavg()[0]
    # heads on cached vectors: methods that query the black box while fitting (bdpl) are left out
    methods = head_methods()
    sizes = [(n, balanced_subsample(y_full, n, np.random.default_rng(0))) for n in args.per_class]
    sizes.append((None, np.arange(len(y_full))))
    records = []
    for per_class, index in sizes:
        X, y = [X_full[i] for i in index], y_full[index]
        for method in methods:
            label_texts = descriptions if method.label_text == "descriptions" else label_names(split.labels)
            ctx = RunContext(
                task=TASK,
                kind="single",
                labels=split.labels,
                shots=int(min(np.unique(y, return_counts=True)[1])),
                seed=13,
                embedder=lookup_embedder(vectors),
                descriptions=label_texts if method.uses_descriptions else None,
                dev=(split.X_dev, split.y_dev) if method.uses_dev else None,
            )
            figures = time_head(partial(method.factory, ctx), X, y, split.X_test, args.repeats)
            record = {"method": method.name, "per_class": per_class, "n_train": len(y), **figures}
            records.append(record)
            print(
                f"{method.name:<20} n={len(y):>5}  fit {record['fit_seconds']:.4f}s  "
                f"predict {record['predict_seconds']:.4f}s  traced {record['fit_traced_mib']:.1f} MiB  "
                f"resident {record['fit_rss_mib'] or 0:.1f} MiB",
                flush=True,
            )

    meta = {
        "machine": f"{os.cpu_count()}-core CPU box ({platform.machine()}, {platform.system()})",
        "task": TASK,
        "n_test": len(split.X_test),
        "repeats": args.repeats,
        "n_embedded": len(texts),
        "embed_seconds": embed_seconds,
        "queries": queries,
        "load_before": load_before,
        "load_after": os.getloadavg()[0],
    }
    results_dir = Path(args.results_dir)
    results_dir.mkdir(parents=True, exist_ok=True)
    (results_dir / "scale.json").write_text(json.dumps({"meta": meta, "records": records}, indent=1) + "\n")
    (results_dir / "scale.md").write_text(markdown(records, meta), encoding="utf-8")
    plot(records, results_dir / "scale.png")
    print(f"wrote {results_dir / 'scale.md'}, scale.json, scale.png")


if __name__ == "__main__":
    main()
