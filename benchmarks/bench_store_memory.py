"""Peak memory of embedding through the store: at most 1.5x the output (issue 13).

``BlackBoxEmbedder.transform`` on ``--n-texts`` unique texts (default 50,000)
whose black box answers ``--width`` floats each (default 1,536, an
OpenAI-sized embedding), so the float32 output is ``n x width x 4`` bytes
(293 MiB by default). The black box is a fake backend answering at once, so
only the package's own memory is measured. Three cases, each in a fresh
process:

- ``no store``: ``store=None``;
- ``SQLite, cold``: an empty store folder; every answer is sent and stored;
- ``SQLite, warm``: the folder the cold case filled; every answer is read back.

Measured around ``transform`` alone (the texts are built and the embedder
fitted before): the peak of Python and NumPy allocations (``tracemalloc``)
above what was allocated before the call, and the growth of the process's
peak resident set (``ru_maxrss``). The goal: both at most 1.5x the output.

Run from the repository root::

    python -m benchmarks.bench_store_memory                   # 50,000 x 1,536
    python -m benchmarks.bench_store_memory --n-texts 5000    # a quick look

Results go to ``benchmarks/results/store_memory.{md,json}``.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUTPUT = REPO_ROOT / "benchmarks" / "results" / "store_memory"
CASES = ("no store", "SQLite, cold", "SQLite, warm")
GOAL = 1.5
MIB = 2**20


def _fake_embedder(width: int, store):
    """A BlackBoxEmbedder whose black box answers ``width`` floats per text at once."""
    from skcrosstune import BlackBoxEmbedder
    from skcrosstune.backends.base import Backend

    class InstantBackend(Backend):
        expected_width = None

        def fingerprint(self) -> dict:
            return {"backend": "bench-store-memory", "width": width}

        @property
        def dimension(self) -> int:
            return width

        def encode(self, items):
            first = np.arange(len(items), dtype=np.float32)[:, None]
            return first + np.linspace(1.0, 2.0, width, dtype=np.float32)[None, :]

    class InstantEmbedder(BlackBoxEmbedder):
        def _make_backend(self):
            return InstantBackend()

    return InstantEmbedder(store=store, batch_size=256)


def measure(case: str, n_texts: int, width: int, folder: str) -> dict:
    """One case, in this process: the peaks of ``transform`` over the output's size."""
    texts = [f"text number {i}" for i in range(n_texts)]
    embedder = _fake_embedder(width, None if case == "no store" else folder).fit(texts[:1])
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    start = time.perf_counter()
    X = embedder.transform(texts)
    seconds = time.perf_counter() - start
    peak = tracemalloc.get_traced_memory()[1] - before
    tracemalloc.stop()
    rss_growth = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - rss_before
    assert X.shape == (n_texts, width) and X.dtype == np.float32
    assert embedder.n_queries_ == (n_texts if case != "SQLite, warm" else 0)
    return {
        "case": case,
        "output_mib": X.nbytes / MIB,
        "traced_peak_mib": peak / MIB,
        "traced_peak_over_output": peak / X.nbytes,
        "rss_growth_mib": rss_growth / MIB,
        "rss_growth_over_output": rss_growth / X.nbytes,
        "seconds": seconds,
        "queries": embedder.n_queries_,
    }


def run(n_texts: int, width: int) -> list[dict]:
    """Every case in a fresh process, in order (the warm case reads what the cold one stored)."""
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-store-memory-") as folder:
        for case in CASES:
            command = [sys.executable, "-m", "benchmarks.bench_store_memory", "--one", case]
            command += ["--n-texts", str(n_texts), "--width", str(width), "--folder", folder]
            done = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, check=True)
            rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
    return rows


def write(rows: list[dict], n_texts: int, width: int, output: Path) -> str:
    lines = [
        "# Peak memory of embedding through the store",
        "",
        f"`BlackBoxEmbedder.transform` of {n_texts:,} unique texts, {width:,} float32 per answer, from an "
        "instant fake black box (`python -m benchmarks.bench_store_memory`); each case in a fresh process. "
        f"Machine: {platform.machine()} {platform.system()}, 2-core CPU box shared with other jobs. "
        "Peaks are measured around `transform` alone, above what was allocated before it.",
        "",
        "| case | output MiB | traced peak MiB | traced / output | peak RSS growth MiB | RSS / output | seconds |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['case']} | {r['output_mib']:.0f} | {r['traced_peak_mib']:.0f} | {r['traced_peak_over_output']:.2f}x "
            f"| {r['rss_growth_mib']:.0f} | {r['rss_growth_over_output']:.2f}x | {r['seconds']:.1f} |"
        )
    worst = max(max(r["traced_peak_over_output"], r["rss_growth_over_output"]) for r in rows)
    lines += [
        "",
        f"Largest peak over the output: {worst:.2f}x; goal <= {GOAL}x: {'met' if worst <= GOAL else 'NOT met'}.",
    ]
    text = "\n".join(lines) + "\n"
    output.with_suffix(".md").write_text(text)
    output.with_suffix(".json").write_text(json.dumps({"n_texts": n_texts, "width": width, "rows": rows}, indent=2))
    return text


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-texts", type=int, default=50_000)
    parser.add_argument("--width", type=int, default=1536)
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    parser.add_argument("--one", choices=CASES, help=argparse.SUPPRESS)
    parser.add_argument("--folder", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.one:
        print(json.dumps(measure(args.one, args.n_texts, args.width, args.folder)))
        return
    print(write(run(args.n_texts, args.width), args.n_texts, args.width, args.output))


if __name__ == "__main__":
    main()
