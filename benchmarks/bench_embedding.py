"""Embedding throughput: BlackBoxEmbedder against SentenceTransformer.encode.

Both sides embed the same texts with the same model (the embedded
all-MiniLM-L6-v2), the same batch size and the same device, in one process.
Both models are loaded and embed one batch before anything is timed. Then
``--repeats`` repetitions alternate the measurements (the order rotates each
repetition, so a drift in machine load hits every side alike):

- ``sentence-transformers``: ``SentenceTransformer.encode``;
- ``embedder, cold cache``: a new ``BlackBoxEmbedder`` on a fresh, empty
  cache folder; ``fit_transform`` queries the model for every text *and*
  writes each answer to the cache (closing the cache is timed too);
- ``embedder, no cache``: the same with ``store=None``;
- ``embedder, warm cache``: a new embedder on the folder the cold run just
  filled, so every text comes from the cache and the model is never called.

Reported: the median texts/s of each (with min and max), the ratios embedder
/ sentence-transformers (goal >= 1.0 on the CPU) and warm / cold (goal >= 50),
and the largest absolute difference between the two sides' embeddings.

Run from the repository root::

    python -m benchmarks.bench_embedding                      # SST-2 test, 872 texts, CPU
    python -m benchmarks.bench_embedding --texts sst2-train   # 6,920 texts, if the data is there
    python -m benchmarks.bench_embedding --threads 1 --repeats 5
    python -m benchmarks.bench_embedding --device cuda        # ST under the embedder's autocast

Results go to ``benchmarks/results/embedding_throughput.{md,json}``. Timings
only mean something on an otherwise idle machine: the 1-minute load average
before the run and after the timed part is recorded next to them.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUTPUT = REPO_ROOT / "benchmarks" / "results" / "embedding_throughput"
ST, COLD, NO_CACHE, WARM = "sentence-transformers", "embedder, cold cache", "embedder, no cache", "embedder, warm cache"
GOAL_RATIO, GOAL_WARM = 1.0, 50.0


def load_texts(source: str, max_texts: int | None) -> tuple[list[str], str]:
    """The texts to embed, and where they come from."""
    from skcrosstune.datasets import load_fewshot, load_full_train

    if source == "sst2":
        texts, where = list(load_fewshot("sst2").X_test), "SST-2 test set bundled with skcrosstune"
    elif source == "sst2-train":
        homes = [os.environ.get("SKCROSSTUNE_DATA"), REPO_ROOT.parent / "shared" / "data"]
        home = next((Path(h) for h in homes if h and (Path(h) / "sst2" / "full_train.jsonl").is_file()), None)
        if home is None:
            raise SystemExit("--texts sst2-train: no sst2/full_train.jsonl under $SKCROSSTUNE_DATA or ../shared/data.")
        texts, where = list(load_full_train("sst2", data_home=home)[0]), f"SST-2 full train set ({home})"
    else:  # a .txt file (one text per line) or a .jsonl file with a "text" field
        path = Path(source)
        if not path.is_file():
            raise SystemExit(f"--texts {source!r}: not 'sst2', 'sst2-train' or an existing file.")
        lines = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        texts = [json.loads(line)["text"] for line in lines] if path.suffix == ".jsonl" else lines
        where = str(path)
    texts = texts[:max_texts]
    if not texts:
        raise SystemExit("No texts to embed.")
    return texts, where


def describe_machine(device: str) -> dict:
    """nproc, CPU model, library versions and torch's thread count."""
    import sentence_transformers
    import torch
    import transformers

    cpu_model = platform.processor() or None
    with contextlib.suppress(OSError):
        names = [line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("model name")]
        cpu_model = names[0].split(":", 1)[1].strip() if names else cpu_model
    try:
        git = ["git", "-C", str(REPO_ROOT), "rev-parse", "--short", "HEAD"]
        commit = subprocess.run(git, capture_output=True, text=True, timeout=10).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        commit = None
    return {
        "nproc": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "cpu_model": cpu_model,
        "gpu": torch.cuda.get_device_name() if device == "cuda" else None,
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "transformers": transformers.__version__,
        "sentence_transformers": sentence_transformers.__version__,
        "python": platform.python_version(),
        "git_commit": commit,
    }


def load_average() -> float | None:
    """The 1-minute load average, or None where the system has none."""
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return None


class Sides:
    """The two sides under test, each call timed on its own."""

    def __init__(self, args, texts: list[str], workdir: Path):
        import torch
        from sentence_transformers import SentenceTransformer
        from transformers.utils import logging as hf_logging

        from skcrosstune._training import autocast_dtype
        from skcrosstune.backends.local import resolve_model_path

        self.args, self.texts, self.workdir = args, texts, workdir
        hf_logging.disable_progress_bar()
        model_path = str(resolve_model_path(args.model))
        self.st = SentenceTransformer(model_path, device=args.device, local_files_only=True)
        amp = None if args.st_fp32 else autocast_dtype(args.device)
        self.st_precision = "float32" if amp is None else f"autocast {str(amp).removeprefix('torch.')}"
        self.st_autocast = (lambda: torch.autocast("cuda", dtype=amp)) if amp is not None else contextlib.nullcontext
        self.cold_folder: Path | None = None

    def encode_st(self, texts: list[str]) -> np.ndarray:
        with self.st_autocast():
            return self.st.encode(texts, batch_size=self.args.batch_size, show_progress_bar=False)

    def embed(self, texts: list[str], store) -> tuple[np.ndarray, int]:
        """A new embedder's fit_transform, closing its store; returns the output and the model queries."""
        from skcrosstune import BlackBoxEmbedder

        embedder = BlackBoxEmbedder(
            self.args.model, batch_size=self.args.batch_size, device=self.args.device, store=store
        )
        out = embedder.fit_transform(texts)
        opened = embedder._open_store()
        if opened is not None:
            opened.close()  # checkpoints the SQLite WAL: part of the cost of the writes
        return out, embedder.n_queries_

    def warm_up(self) -> None:
        """Load both models and run one batch through each, and through the cache code."""
        batch = self.texts[: self.args.batch_size]
        self.encode_st(batch)
        self.embed(batch, None)
        self.embed(batch, tempfile.mkdtemp(dir=self.workdir))

    def run(self, method: str) -> tuple[float, np.ndarray, int | None]:
        """Time one side on all the texts: seconds, embeddings, model queries (None for ST)."""
        import torch

        sync = torch.cuda.synchronize if self.args.device == "cuda" else lambda: None
        if method == COLD:  # a fresh, empty folder, which the warm run that follows reads
            self.cold_folder = Path(tempfile.mkdtemp(dir=self.workdir, prefix="cold-"))
        folder = None if method == NO_CACHE else self.cold_folder
        sync()
        start = time.perf_counter()
        out, queries = (self.encode_st(self.texts), None) if method == ST else self.embed(self.texts, folder)
        sync()
        return time.perf_counter() - start, out, queries


def measure(sides: Sides, repeats: int) -> tuple[dict, dict, dict]:
    """Alternate the sides ``repeats`` times: seconds per run, the last outputs, model queries of each."""
    order, n = [ST, COLD, NO_CACHE], len(sides.texts)
    seconds: dict[str, list[float]] = {m: [] for m in (ST, COLD, NO_CACHE, WARM)}
    outputs, queries = {}, {}
    for rep in range(repeats):
        for method in order[rep % len(order) :] + order[: rep % len(order)]:
            for side in (method, WARM) if method == COLD else (method,):  # warm reads what cold just wrote
                spent, outputs[side], queries[side] = sides.run(side)
                seconds[side].append(spent)
                print(f"  rep {rep + 1}/{repeats}  {side:<24}{n / spent:12,.1f} texts/s  ({spent:.3f} s)", flush=True)
    return seconds, outputs, queries


def summarise(seconds: dict, outputs: dict, queries: dict, n: int) -> dict:
    """Median / min / max texts/s, the ratios against the goals, and the output agreement."""
    rates = {m: [n / s for s in runs] for m, runs in seconds.items()}
    methods = {
        m: {
            "median_texts_per_s": statistics.median(r),
            "min_texts_per_s": min(r),
            "max_texts_per_s": max(r),
            "seconds": seconds[m],
            "model_queries": queries[m],
        }
        for m, r in rates.items()
    }
    median = {m: v["median_texts_per_s"] for m, v in methods.items()}
    ratios = {
        "cold_over_st": median[COLD] / median[ST],
        "no_cache_over_st": median[NO_CACHE] / median[ST],
        "warm_over_cold": median[WARM] / median[COLD],
        "cold_over_st_per_repetition": [c / s for c, s in zip(rates[COLD], rates[ST], strict=True)],
    }
    st = np.asarray(outputs[ST], dtype=np.float32)
    agreement = {
        "max_abs_diff_cold_vs_st": float(np.abs(outputs[COLD] - st).max()),
        "max_abs_diff_no_cache_vs_st": float(np.abs(outputs[NO_CACHE] - st).max()),
        "max_abs_diff_warm_vs_cold": float(np.abs(outputs[WARM] - outputs[COLD]).max()),
        "shape": list(st.shape),
    }
    goals = {
        "ratio_target": GOAL_RATIO,
        "ratio_met": ratios["cold_over_st"] >= GOAL_RATIO,
        "warm_target": GOAL_WARM,
        "warm_met": ratios["warm_over_cold"] >= GOAL_WARM,
    }
    return {"methods": methods, "ratios": ratios, "agreement": agreement, "goals": goals}


def verdict_lines(report: dict) -> list[str]:
    """The headline figures, shared by the console and the markdown."""
    ratios, agree, goals = report["ratios"], report["agreement"], report["goals"]
    per_rep = ", ".join(f"{r:.3f}" for r in ratios["cold_over_st_per_repetition"])
    return [
        f"embedder (cold cache) / sentence-transformers: {ratios['cold_over_st']:.3f} (per repetition: {per_rep});"
        f" goal >= {GOAL_RATIO:.1f}: {'met' if goals['ratio_met'] else 'NOT met'}",
        f"embedder (no cache) / sentence-transformers: {ratios['no_cache_over_st']:.3f}",
        f"warm cache / cold cache: {ratios['warm_over_cold']:,.0f}x ({report['methods'][WARM]['model_queries']} model "
        f"queries when warm); goal >= {GOAL_WARM:.0f}x: {'met' if goals['warm_met'] else 'NOT met'}",
        f"max |embedder - sentence-transformers| over the {agree['shape'][0]} x {agree['shape'][1]} matrix: "
        f"{agree['max_abs_diff_cold_vs_st']:.2e} (no cache {agree['max_abs_diff_no_cache_vs_st']:.2e}); "
        f"max |warm - cold| = {agree['max_abs_diff_warm_vs_cold']:.2e}",
    ]


def busy_note(report: dict) -> str:
    """The load averages, flagged when the machine was not idle before the run."""
    before, after = report["load_before"], report["load_after"]
    note = f"1-minute load average: {before} before the run, {after} after the timed part (adding this run's own)"
    return note + ("; the machine was NOT idle, treat the figures as rough" if before and before > 0.5 else "")


def table_lines(report: dict) -> list[str]:
    """The results table, in markdown."""
    st = report["methods"][ST]["median_texts_per_s"]
    return [
        "| method | median texts/s | min | max | vs sentence-transformers |",
        "|---|---:|---:|---:|---:|",
        *(
            f"| {m} | {v['median_texts_per_s']:,.1f} | {v['min_texts_per_s']:,.1f} | {v['max_texts_per_s']:,.1f} | "
            f"{v['median_texts_per_s'] / st:,.2f}x |"
            for m, v in report["methods"].items()
        ),
    ]


def render_markdown(report: dict) -> str:
    """The results file: machine, setup, table, headline figures."""
    cfg, machine = report["config"], report["machine"]
    gpu = f" ({machine['gpu']})" if machine["gpu"] else ""
    lines = [
        "# Embedding throughput: BlackBoxEmbedder vs sentence-transformers",
        "",
        f"Generated by `{report['command']}` on {report['timestamp']}.",
        "",
        "## Machine",
        "",
        f"- CPU: {machine['cpu_model']}; nproc {machine['nproc']}; device `{cfg['device']}`{gpu}",
        f"- torch {machine['torch']}, threads: {machine['torch_threads']}"
        + (" (torch default)" if cfg["threads"] is None else " (set by --threads)")
        + f"; transformers {machine['transformers']}; sentence-transformers {machine['sentence_transformers']}; "
        f"Python {machine['python']}; skcrosstune at `{machine['git_commit']}`",
        f"- {busy_note(report)}",
        "",
        "## Setup",
        "",
        f"- {cfg['n_texts']} texts ({cfg['texts']}), all-MiniLM-L6-v2, batch size {cfg['batch_size']}",
        f"- {cfg['repeats']} alternating repetitions after a warm-up of both sides (load + one batch)",
        f"- sentence-transformers precision: {cfg['st_precision']}; the embedder: float32 on the CPU, "
        "bf16/fp16 autocast on CUDA",
        "- embedder rows are a new `BlackBoxEmbedder(...).fit_transform(texts)` each; cold: a fresh empty "
        "cache folder (cache writes included); no cache: `store=None`; warm: the folder the cold run filled",
        "",
        "## Results",
        "",
        *table_lines(report),
        "",
        *(f"- {line}" for line in verdict_lines(report)),
    ]
    return "\n".join(lines) + "\n"


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.bench_embedding",
        description="Embedding throughput of BlackBoxEmbedder against SentenceTransformer.encode.",
    )
    parser.add_argument(
        "--texts", default="sst2", help="'sst2' (bundled test set, default), 'sst2-train', or a .txt / .jsonl file"
    )
    parser.add_argument("--max-texts", type=int, default=None, help="only the first N texts")
    parser.add_argument(
        "--model",
        default="minilm",
        help="'minilm' (default), 'mpnet' (installed by benchmarks.black_boxes) or a folder",
    )
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3, help="alternating repetitions (default 3)")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--st-fp32", action="store_true", help="on CUDA, run sentence-transformers in float32")
    parser.add_argument("--output", default=str(DEFAULT_OUTPUT), help="path prefix of the .md and .json results")
    parser.add_argument("--no-save", action="store_true", help="print only, write no result files")
    args = parser.parse_args(argv)
    from .black_boxes import resolve_black_box

    args.model = resolve_black_box(args.model)
    return args


def main(argv=None) -> dict:
    args = parse_args(argv)
    import torch

    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit(f"--device cuda: CUDA is not available on this machine (torch {torch.__version__}).")
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    texts, where = load_texts(args.texts, args.max_texts)
    machine = describe_machine(args.device)
    print(
        f"{len(texts)} texts ({where}); batch {args.batch_size}; device {args.device}; torch {machine['torch']}, "
        f"{machine['torch_threads']} threads; {machine['cpu_model']}, nproc {machine['nproc']}",
        flush=True,
    )
    load_before = load_average()  # before this benchmark adds any load of its own
    with tempfile.TemporaryDirectory(prefix="skcrosstune-bench-") as workdir:
        sides = Sides(args, texts, Path(workdir))
        sides.warm_up()
        seconds, outputs, queries = measure(sides, args.repeats)
        load_after = load_average()

    report = {
        "benchmark": "embedding_throughput",
        "command": " ".join(["python -m benchmarks.bench_embedding", *(sys.argv[1:] if argv is None else argv)]),
        "timestamp": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "machine": machine,
        "load_before": load_before,
        "load_after": load_after,
        "config": {
            "texts": where,
            "n_texts": len(texts),
            "batch_size": args.batch_size,
            "repeats": args.repeats,
            "device": args.device,
            "threads": args.threads,
            "st_precision": sides.st_precision,
        },
        **summarise(seconds, outputs, queries, len(texts)),
    }
    print("", *table_lines(report), "", *verdict_lines(report), busy_note(report), sep="\n")
    if not args.no_save:
        md, js = Path(f"{args.output}.md"), Path(f"{args.output}.json")
        md.parent.mkdir(parents=True, exist_ok=True)
        js.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
        md.write_text(render_markdown(report), encoding="utf-8")
        print(f"Wrote {md} and {js}")
    return report


if __name__ == "__main__":
    main()
