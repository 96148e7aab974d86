"""Embedding throughput: BlackBoxEmbedder against SentenceTransformer.encode.

Both sides embed the same texts with the same model (the embedded
all-MiniLM-L6-v2 by default), the same batch size, on the same device and
with torch's default thread count, in one process:

1. warm-up: both models are loaded and embed one small batch, so load time
   is left out of every figure;
2. ``--repeats`` repetitions, alternating the measurements (the order rotates
   each repetition, so drift in machine load hits every side alike):

   - ``sentence-transformers``: ``SentenceTransformer.encode``;
   - ``embedder, cold cache``: ``BlackBoxEmbedder(cache_dir=<fresh empty temp
     folder>).fit_transform``: every text is queried *and* written to the
     SQLite cache (the honest comparison);
   - ``embedder, no cache``: the same with ``cache_dir=None``;
   - ``embedder, warm cache``: a new embedder on the folder the cold run just
     filled: every text comes from the cache, no model call.

The median texts/s of each, the ratio embedder / sentence-transformers and
the agreement of the outputs (max abs difference of the two embedding
matrices, both unit-normalised) are printed and written to
``benchmarks/results/embedding_throughput.{md,json}``. ``--profile`` adds a
time breakdown of both pipelines (tokenization, forward pass, pooling, cache
keys, cache reads and writes) and the top cProfile entries.

Run from the repository root::

    python -m benchmarks.bench_embedding                      # SST-2 test, 872 texts, CPU
    python -m benchmarks.bench_embedding --texts sst2-train   # 6920 texts, if the data is there
    python -m benchmarks.bench_embedding --device cuda --profile

Timings are only meaningful on an otherwise idle machine: the load average
before and after the run is recorded next to the figures.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import datetime as _dt
import io
import json
import os
import platform
import pstats
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
RESULTS_DIR = Path(__file__).resolve().parent / "results"
DEFAULT_OUTPUT = RESULTS_DIR / "embedding_throughput"

ST = "sentence-transformers"
COLD = "embedder, cold cache"
NO_CACHE = "embedder, no cache"
WARM = "embedder, warm cache"
METHODS = (ST, COLD, NO_CACHE, WARM)

GOAL_RATIO = 1.0
GOAL_WARM_SPEEDUP = 50.0


# --------------------------------------------------------------------------- inputs
def _full_train_candidates() -> list[Path]:
    candidates = []
    if os.environ.get("SKCROSSTUNE_DATA"):
        candidates.append(Path(os.environ["SKCROSSTUNE_DATA"]) / "sst2" / "full_train.jsonl")
    candidates.append(REPO_ROOT.parent / "shared" / "data" / "sst2" / "full_train.jsonl")
    candidates.append(REPO_ROOT / "shared" / "data" / "sst2" / "full_train.jsonl")
    return candidates


def _read_text_file(path: Path) -> list[str]:
    texts = []
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            if not line.strip():
                continue
            if path.suffix == ".jsonl":
                record = json.loads(line)
                texts.append(record["text"] if isinstance(record, dict) else str(record))
            else:
                texts.append(line.rstrip("\n"))
    return texts


def load_texts(source: str, max_texts: int | None) -> tuple[list[str], str]:
    """The texts to embed and a description of where they come from."""
    if source == "sst2":
        from skcrosstune.datasets import load_fewshot

        texts = list(load_fewshot("sst2").X_test)
        described = "SST-2 test set bundled with skcrosstune (load_fewshot('sst2').X_test)"
    elif source == "sst2-train":
        found = [p for p in _full_train_candidates() if p.is_file()]
        if not found:
            tried = ", ".join(str(p) for p in _full_train_candidates())
            raise SystemExit(f"--texts sst2-train: no full_train.jsonl found (tried {tried}).")
        texts = _read_text_file(found[0])
        described = f"SST-2 full train set ({found[0]})"
    else:
        path = Path(source).expanduser()
        if not path.is_file():
            raise SystemExit(f"--texts {source!r}: not 'sst2', 'sst2-train' or an existing .jsonl/.txt file.")
        texts = _read_text_file(path)
        described = str(path)
    if max_texts is not None:
        texts = texts[:max_texts]
        described += f", first {len(texts)}"
    if not texts:
        raise SystemExit("No texts to embed.")
    return texts, described


# --------------------------------------------------------------------------- machine
def _run_quiet(cmd: list[str]) -> str | None:
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=10, check=True).stdout.strip()
    except Exception:  # noqa: BLE001 - a missing tool only leaves a field empty
        return None


def _cpu_model() -> str | None:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def _load_average() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


class CpuMonitor:
    """CPU time used by *other* processes while a block runs, from /proc/stat and os.times()."""

    def __init__(self):
        self.other_cpus = None  # average number of CPUs busy with other processes
        self.own_cpus = None

    @staticmethod
    def _system():
        try:
            with open("/proc/stat", encoding="utf-8") as handle:
                fields = [int(x) for x in handle.readline().split()[1:]]
        except (OSError, ValueError):
            return None
        user, nice, system, idle, iowait, irq, softirq = fields[:7]
        steal = fields[7] if len(fields) > 7 else 0
        tick = os.sysconf("SC_CLK_TCK")
        return (user + nice + system + irq + softirq + steal) / tick, (idle + iowait) / tick

    def __enter__(self):
        self._start = (time.perf_counter(), self._system(), os.times())
        return self

    def __exit__(self, *exc):
        wall0, sys0, own0 = self._start
        wall, sys1, own1 = time.perf_counter() - wall0, self._system(), os.times()
        own = (own1.user - own0.user) + (own1.system - own0.system)
        self.own_cpus = own / wall
        if sys0 is not None and sys1 is not None:
            busy = sys1[0] - sys0[0]
            self.other_cpus = max(busy - own, 0.0) / wall
        return False


def describe_machine(device: str) -> dict:
    import sentence_transformers
    import torch
    import transformers

    nproc = _run_quiet(["nproc"])
    info = {
        "nproc": int(nproc) if nproc and nproc.isdigit() else os.cpu_count(),
        "cpu_count": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "memory_gib": None,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "torch_interop_threads": torch.get_num_interop_threads(),
        "transformers": transformers.__version__,
        "sentence_transformers": sentence_transformers.__version__,
        "numpy": np.__version__,
        "sqlite": __import__("sqlite3").sqlite_version,
        "device": device,
        "gpu": None,
    }
    try:
        with open("/proc/meminfo", encoding="utf-8") as handle:
            kib = int(handle.readline().split()[1])
        info["memory_gib"] = round(kib / 2**20, 1)
    except (OSError, ValueError, IndexError):
        pass
    if device.startswith("cuda") and torch.cuda.is_available():
        index = torch.device(device).index or 0
        info["gpu"] = torch.cuda.get_device_name(index)
        info["cuda"] = torch.version.cuda
    try:
        import skcrosstune

        info["skcrosstune"] = getattr(skcrosstune, "__version__", None)
    except ImportError:
        pass
    commit = _run_quiet(["git", "-C", str(REPO_ROOT), "rev-parse", "--short", "HEAD"])
    dirty = _run_quiet(["git", "-C", str(REPO_ROOT), "status", "--porcelain", "--", "skcrosstune"])
    info["git_commit"] = (commit + ("+dirty" if dirty else "")) if commit else None
    return info


# --------------------------------------------------------------------------- the two sides
def resolve_device(device: str) -> str:
    from skcrosstune._training import resolve_device as _resolve

    return _resolve(device)


def st_autocast(device: str, enabled: bool):
    """The autocast context the embedder uses on ``device`` (bf16/fp16 on CUDA), for ST too."""
    import torch

    from skcrosstune._training import autocast_dtype

    dtype = autocast_dtype(device) if enabled else None
    if dtype is None:
        return contextlib.nullcontext(), "float32"
    return torch.autocast(device_type="cuda", dtype=dtype), f"autocast {str(dtype).replace('torch.', '')}"


def load_sentence_transformer(model_path: str, device: str):
    from sentence_transformers import SentenceTransformer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    return SentenceTransformer(model_path, device=device, local_files_only=True)


def make_embedder(args, device: str, cache_dir):
    from skcrosstune import BlackBoxEmbedder

    return BlackBoxEmbedder(args.model, batch_size=args.batch_size, device=device, cache_dir=cache_dir)


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize()


class Runner:
    """One timed call of each side; returns (seconds, embeddings, extra info)."""

    def __init__(self, args, device: str, texts: list[str]):
        self.args = args
        self.device = device
        self.texts = texts
        self.st = load_sentence_transformer(args.model_path, device)
        self.st_precision_enabled = not args.st_fp32
        self._tmp_root = Path(tempfile.mkdtemp(prefix="skcrosstune-bench-"))
        self._cold_dirs: list[Path] = []

    def close(self):
        shutil.rmtree(self._tmp_root, ignore_errors=True)

    def warm_up(self, n: int = 8):
        sample = self.texts[:n]
        self.encode_st(sample)
        make_embedder(self.args, self.device, None).fit_transform(sample)
        # Also warm the SQLite code path and the weights digest memo.
        with tempfile.TemporaryDirectory(dir=self._tmp_root) as folder:
            embedder = make_embedder(self.args, self.device, folder)
            embedder.fit_transform(sample)
            embedder.cache_.close()

    def encode_st(self, texts):
        autocast, _ = st_autocast(self.device, self.st_precision_enabled)
        with autocast:
            return self.st.encode(
                texts, batch_size=self.args.batch_size, show_progress_bar=False, convert_to_numpy=True
            )

    def time_st(self):
        _sync(self.device)
        start = time.perf_counter()
        out = self.encode_st(self.texts)
        _sync(self.device)
        return time.perf_counter() - start, out, {}

    def time_cold(self):
        folder = Path(tempfile.mkdtemp(dir=self._tmp_root, prefix="cold-"))
        assert not any(folder.iterdir())
        _sync(self.device)
        start = time.perf_counter()
        embedder = make_embedder(self.args, self.device, folder)
        out = embedder.fit_transform(self.texts)
        _sync(self.device)
        seconds = time.perf_counter() - start
        embedder.cache_.close()
        self._cold_dirs.append(folder)
        return seconds, out, {"n_queries": embedder.n_queries_, "n_cache_hits": embedder.n_cache_hits_}

    def time_no_cache(self):
        _sync(self.device)
        start = time.perf_counter()
        embedder = make_embedder(self.args, self.device, None)
        out = embedder.fit_transform(self.texts)
        _sync(self.device)
        seconds = time.perf_counter() - start
        return seconds, out, {"n_queries": embedder.n_queries_, "n_cache_hits": embedder.n_cache_hits_}

    def time_warm(self):
        """A new embedder (new connection) on the folder the last cold run filled."""
        folder = self._cold_dirs[-1]
        start = time.perf_counter()
        embedder = make_embedder(self.args, self.device, folder)
        out = embedder.fit_transform(self.texts)
        seconds = time.perf_counter() - start
        embedder.cache_.close()
        shutil.rmtree(folder, ignore_errors=True)
        return seconds, out, {"n_queries": embedder.n_queries_, "n_cache_hits": embedder.n_cache_hits_}


def measure(runner: Runner, repeats: int, log) -> tuple[dict, dict]:
    """Alternate the sides ``repeats`` times; return per-method runs and last outputs."""
    runs: dict[str, list[dict]] = {m: [] for m in METHODS}
    outputs: dict[str, np.ndarray] = {}
    calls = {ST: runner.time_st, COLD: runner.time_cold, NO_CACHE: runner.time_no_cache}
    order = [ST, COLD, NO_CACHE]
    n = len(runner.texts)
    for rep in range(repeats):
        rotation = order[rep % len(order) :] + order[: rep % len(order)]
        for method in rotation:
            seconds, out, extra = calls[method]()
            runs[method].append({"seconds": seconds, "texts_per_s": n / seconds, **extra})
            outputs[method] = out
            log(f"  rep {rep + 1}/{repeats}  {method:<22} {n / seconds:10.1f} texts/s  ({seconds:.3f} s)")
            if method == COLD:
                seconds, out, extra = runner.time_warm()
                runs[WARM].append({"seconds": seconds, "texts_per_s": n / seconds, **extra})
                outputs[WARM] = out
                log(f"  rep {rep + 1}/{repeats}  {WARM:<22} {n / seconds:10.1f} texts/s  ({seconds:.4f} s)")
    return runs, outputs


def summarise(runs: dict, n_texts: int) -> dict:
    summary = {}
    for method, entries in runs.items():
        rates = [e["texts_per_s"] for e in entries]
        summary[method] = {
            "median_texts_per_s": statistics.median(rates),
            "min_texts_per_s": min(rates),
            "max_texts_per_s": max(rates),
            "spread_pct": 100.0 * (max(rates) - min(rates)) / statistics.median(rates),
            "median_seconds": statistics.median(e["seconds"] for e in entries),
            "runs": entries,
        }
    st = summary[ST]["median_texts_per_s"]
    cold = summary[COLD]["median_texts_per_s"]
    paired_cold = [c["texts_per_s"] / s["texts_per_s"] for c, s in zip(runs[COLD], runs[ST])]
    paired_none = [c["texts_per_s"] / s["texts_per_s"] for c, s in zip(runs[NO_CACHE], runs[ST])]
    ratios = {
        "cold_over_st": cold / st,
        "no_cache_over_st": summary[NO_CACHE]["median_texts_per_s"] / st,
        "warm_over_cold": summary[WARM]["median_texts_per_s"] / cold,
        "cold_over_st_per_repetition": paired_cold,
        "no_cache_over_st_per_repetition": paired_none,
    }
    return {"methods": summary, "ratios": ratios}


def agreement(outputs: dict, n_unique: int) -> dict:
    st = np.asarray(outputs[ST], dtype=np.float32)
    result = {
        "max_abs_diff_cold_vs_st": float(np.abs(outputs[COLD] - st).max()),
        "max_abs_diff_no_cache_vs_st": float(np.abs(outputs[NO_CACHE] - st).max()),
        "max_abs_diff_warm_vs_cold": float(np.abs(outputs[WARM] - outputs[COLD]).max()),
        "min_cosine_cold_vs_st": float((outputs[COLD] * st).sum(1).min()),
        "shape": list(st.shape),
        "dtype_embedder": str(outputs[COLD].dtype),
        "dtype_st": str(st.dtype),
    }
    return result


# --------------------------------------------------------------------------- profiling
class _Timers:
    def __init__(self, device: str):
        self.device = device
        self.totals: dict[str, float] = {}
        self.counts: dict[str, int] = {}

    def add(self, name: str, seconds: float, count: int = 1):
        self.totals[name] = self.totals.get(name, 0.0) + seconds
        self.counts[name] = self.counts.get(name, 0) + count

    def wrap(self, name: str, func, sync: bool = False):
        def timed(*args, **kwargs):
            if sync:
                _sync(self.device)
            start = time.perf_counter()
            try:
                return func(*args, **kwargs)
            finally:
                if sync:
                    _sync(self.device)
                self.add(name, time.perf_counter() - start)

        return timed

    def hook_forward(self, module, name: str = "forward pass"):
        """Time ``module``'s forward with hooks; count the (padded) tokens it sees."""
        state = {}

        def pre(mod, args, kwargs):
            ids = kwargs.get("input_ids", args[0] if args else None)
            if ids is not None and hasattr(ids, "numel"):
                self.add("padded tokens", 0.0, int(ids.numel()))
            _sync(self.device)
            state["start"] = time.perf_counter()

        def post(mod, args, kwargs, output):
            _sync(self.device)
            self.add(name, time.perf_counter() - state["start"])

        return [
            module.register_forward_pre_hook(pre, with_kwargs=True),
            module.register_forward_hook(post, with_kwargs=True),
        ]


@contextlib.contextmanager
def _patched(obj, name, value):
    old = getattr(obj, name)
    setattr(obj, name, value)
    try:
        yield
    finally:
        setattr(obj, name, old)


def breakdown_embedder(runner: Runner, cache: str) -> dict:
    """Where one embedder fit_transform spends its time, with ``cache`` in {"cold", "none", "warm"}."""
    import skcrosstune.cache as cache_module
    texts = runner.texts
    folder = None
    if cache in {"cold", "warm"}:
        folder = Path(tempfile.mkdtemp(dir=runner._tmp_root, prefix="profile-"))
    if cache == "warm":
        filler = make_embedder(runner.args, runner.device, folder)
        filler.fit_transform(texts)
        filler.cache_.close()

    timers = _Timers(runner.device)
    start = time.perf_counter()
    embedder = make_embedder(runner.args, runner.device, folder)
    embedder.fit(texts)
    timers.add("fit (validation, backend, cache object)", time.perf_counter() - start)

    backend = embedder.backend_
    _, model, _ = backend.loaded
    handles = timers.hook_forward(model)
    backend._tokenize = timers.wrap("tokenize (HF tokenizer, padding, tensors)", backend._tokenize)
    backend.encode = timers.wrap("backend.encode", backend.encode, sync=True)
    backend.item_length = timers.wrap("sort key (item_length)", backend.item_length)
    patches = []
    if embedder.cache_ is not None:
        store = embedder.cache_
        store.key = timers.wrap("cache keys (blake2b + canonical JSON)", store.key)
        store.get_many = timers.wrap("cache.get_many (SELECT + decode)", store.get_many)
        store.put_many = timers.wrap("cache.put_many (encode rows + INSERT + COMMIT)", store.put_many)
        store._open = timers.wrap("cache open (connect, PRAGMAs, schema)", store._open)
        store._write_fingerprint_file = timers.wrap(
            "cache fingerprint .json write", store._write_fingerprint_file
        )
        patches.append(
            _patched(cache_module, "_checksum", timers.wrap("  of which row checksums", cache_module._checksum))
        )
        patches.append(
            _patched(cache_module, "_decode", timers.wrap("  of which row decode + checksum", cache_module._decode))
        )
    try:
        with contextlib.ExitStack() as stack:
            for patch in patches:
                stack.enter_context(patch)
            start = time.perf_counter()
            out = embedder.transform(texts)
            _sync(runner.device)
            transform_seconds = time.perf_counter() - start
    finally:
        for handle in handles:
            handle.remove()
        if embedder.cache_ is not None:
            embedder.cache_.close()
    totals = dict(timers.totals)
    total = totals["fit (validation, backend, cache object)"] + transform_seconds
    encode = totals.pop("backend.encode", 0.0)
    forward = totals.get("forward pass", 0.0)
    tokenize = totals.get("tokenize (HF tokenizer, padding, tensors)", 0.0)
    if encode:
        totals["pooling, .to(device), copy out"] = encode - forward - tokenize
    accounted = sum(v for k, v in totals.items() if not k.startswith("  ") and k != "padded tokens")
    totals["other (check_texts, dedup, stack, normalize)"] = total - accounted
    totals.pop("padded tokens", None)
    return {
        "label": f"BlackBoxEmbedder, {cache} cache",
        "total_seconds": total,
        "texts_per_s": len(texts) / total,
        "padded_tokens": timers.counts.get("padded tokens", 0),
        "n_queries": embedder.n_queries_,
        "parts": totals,
        "output_shape": list(out.shape),
    }


def breakdown_st(runner: Runner) -> dict:
    timers = _Timers(runner.device)
    st = runner.st
    auto_model = st[0].auto_model
    handles = timers.hook_forward(auto_model)
    st.preprocess = timers.wrap("tokenize (HF tokenizer, padding, tensors)", st.preprocess)
    try:
        _sync(runner.device)
        start = time.perf_counter()
        runner.encode_st(runner.texts)
        _sync(runner.device)
        total = time.perf_counter() - start
    finally:
        for handle in handles:
            handle.remove()
        del st.preprocess  # back to the class method
    totals = dict(timers.totals)
    totals.pop("padded tokens", None)
    totals["other (sort, to device, pooling, normalize, stack, to numpy)"] = total - sum(totals.values())
    return {
        "label": "SentenceTransformer.encode",
        "total_seconds": total,
        "texts_per_s": len(runner.texts) / total,
        "padded_tokens": timers.counts.get("padded tokens", 0),
        "parts": totals,
    }


def cprofile_top(func, limit: int = 15) -> list[dict]:
    profiler = cProfile.Profile()
    profiler.enable()
    try:
        func()
    finally:
        profiler.disable()
    stats = pstats.Stats(profiler, stream=io.StringIO())
    rows = []
    for (filename, line, name), (_, ncalls, tottime, cumtime, _) in stats.stats.items():
        rows.append(
            {
                "function": f"{_short_path(filename)}:{line}({name})",
                "ncalls": ncalls,
                "tottime": tottime,
                "cumtime": cumtime,
            }
        )
    rows.sort(key=lambda r: r["tottime"], reverse=True)
    return rows[:limit]


def _short_path(filename: str) -> str:
    for marker in ("site-packages/", "/skcrosstune/", "lib/python"):
        if marker in filename:
            return filename.split(marker, 1)[1] if marker != "/skcrosstune/" else "skcrosstune/" + (
                filename.split(marker, 1)[1]
            )
    return filename


def run_profile(runner: Runner, log) -> dict:
    log("Profiling (instrumented runs; their rates are not the benchmark figures) ...")
    result = {
        "breakdown": [
            breakdown_st(runner),
            breakdown_embedder(runner, "cold"),
            breakdown_embedder(runner, "none"),
            breakdown_embedder(runner, "warm"),
        ]
    }

    def cold_once():
        folder = tempfile.mkdtemp(dir=runner._tmp_root, prefix="cprofile-")
        embedder = make_embedder(runner.args, runner.device, folder)
        embedder.fit_transform(runner.texts)
        embedder.cache_.close()

    def warm_once():
        folder = tempfile.mkdtemp(dir=runner._tmp_root, prefix="cprofile-warm-")
        filler = make_embedder(runner.args, runner.device, folder)
        filler.fit_transform(runner.texts)
        filler.cache_.close()
        holder["folder"] = folder

    holder: dict = {}
    warm_once()

    def warm_read():
        embedder = make_embedder(runner.args, runner.device, holder["folder"])
        embedder.fit_transform(runner.texts)
        embedder.cache_.close()

    result["cprofile"] = {
        ST: cprofile_top(lambda: runner.encode_st(runner.texts)),
        COLD: cprofile_top(cold_once),
        WARM: cprofile_top(warm_read),
    }
    return result


# --------------------------------------------------------------------------- report
def _fmt_cpus(x) -> str:
    return "n/a" if x is None else f"{x:.2f}"


def _fmt_rate(x: float) -> str:
    return f"{x:,.0f}" if x >= 100 else f"{x:,.1f}"


def results_table(summary: dict) -> list[str]:
    methods = summary["methods"]
    st = methods[ST]["median_texts_per_s"]
    lines = [
        "| method | median texts/s | min | max | spread | vs sentence-transformers |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for method in METHODS:
        m = methods[method]
        lines.append(
            f"| {method} | {_fmt_rate(m['median_texts_per_s'])} | {_fmt_rate(m['min_texts_per_s'])} | "
            f"{_fmt_rate(m['max_texts_per_s'])} | {m['spread_pct']:.0f}% | "
            f"{m['median_texts_per_s'] / st:.2f}x |"
        )
    return lines


def render_markdown(report: dict) -> str:
    cfg, machine, summary = report["config"], report["machine"], report["summary"]
    ratios, agree, goals = summary["ratios"], report["agreement"], report["goals"]
    out = [
        "# Embedding throughput: BlackBoxEmbedder vs sentence-transformers",
        "",
        f"Generated by `{report['command']}` on {report['timestamp']}.",
        "",
        "## Machine",
        "",
        f"- CPU: {machine['cpu_model']}; `nproc` = {machine['nproc']}; memory {machine['memory_gib']} GiB",
        f"- device: `{cfg['device']}`" + (f" ({machine['gpu']}, CUDA {machine.get('cuda')})" if machine["gpu"] else ""),
        f"- torch {machine['torch']}, {machine['torch_threads']} intra-op threads (torch default"
        + ("" if cfg["threads"] is None else f", set to {cfg['threads']} by --threads")
        + f"), {machine['torch_interop_threads']} inter-op",
        f"- transformers {machine['transformers']}, sentence-transformers {machine['sentence_transformers']}, "
        f"numpy {machine['numpy']}, SQLite {machine['sqlite']}, Python {machine['python']}",
        f"- skcrosstune at `{machine['git_commit']}`; {machine['platform']}",
        f"- load average (1, 5, 15 min) before the run: {report['load_before']}; during the timed "
        f"repetitions other processes kept {_fmt_cpus(report['other_cpus'])} of the {machine['nproc']} CPUs busy "
        f"(this benchmark: {_fmt_cpus(report['own_cpus'])})"
        + (" -- **the machine was busy, treat the figures as rough**" if report["busy"] else ""),
        "",
        "## Setup",
        "",
        f"- model: `{cfg['model']}` (`{cfg['model_path']}`)",
        f"- texts: {cfg['texts']}: {cfg['n_texts']} texts, {cfg['n_unique']} unique, "
        f"{cfg['mean_chars']:.0f} characters on average",
        f"- batch size {cfg['batch_size']}, {cfg['repeats']} repetitions after a warm-up of both sides "
        "(load + one small batch), the order of the sides rotating each repetition",
        f"- sentence-transformers precision on this device: {cfg['st_precision']}; the embedder uses "
        "float32 on the CPU and bf16/fp16 autocast on CUDA",
        "- embedder figures are `BlackBoxEmbedder(...).fit_transform(texts)` of a new estimator; cold: a fresh "
        "empty cache folder each repetition (includes all cache writes); no cache: `cache_dir=None`; "
        "warm: a new estimator on the folder the cold run filled (no model call)",
        "",
        "## Results",
        "",
        *results_table(summary),
        "",
        f"- **embedder (cold cache) / sentence-transformers: {ratios['cold_over_st']:.3f}** "
        f"(per repetition: {', '.join(f'{r:.3f}' for r in ratios['cold_over_st_per_repetition'])}); "
        f"goal >= {GOAL_RATIO:.1f}: **{'met' if goals['ratio'] else 'NOT met'}**",
        f"- embedder (no cache) / sentence-transformers: {ratios['no_cache_over_st']:.3f} "
        f"(per repetition: {', '.join(f'{r:.3f}' for r in ratios['no_cache_over_st_per_repetition'])})",
        f"- **warm cache / cold cache: {ratios['warm_over_cold']:.0f}x**; goal >= {GOAL_WARM_SPEEDUP:.0f}x: "
        f"**{'met' if goals['warm_speedup'] else 'NOT met'}**",
        f"- warm-cache runs sent {summary['methods'][WARM]['runs'][-1]['n_queries']} queries to the model "
        f"({summary['methods'][WARM]['runs'][-1]['n_cache_hits']} cache hits)",
        "",
        "## Agreement",
        "",
        f"- max |embedder - sentence-transformers| over the {agree['shape'][0]} x {agree['shape'][1]} "
        f"matrix: cold {agree['max_abs_diff_cold_vs_st']:.2e}, no cache {agree['max_abs_diff_no_cache_vs_st']:.2e}"
        f"; min cosine {agree['min_cosine_cold_vs_st']:.6f}",
        f"- max |warm - cold| = {agree['max_abs_diff_warm_vs_cold']:.2e} (the cache returns the stored float32 "
        "bytes)",
        "",
    ]
    if report.get("profile"):
        out += render_profile(report["profile"])
    return "\n".join(out)


def render_profile(profile: dict) -> list[str]:
    out = [
        "## Profile",
        "",
        "Instrumented single runs (timers around skcrosstune internals, forward hooks on the model); "
        "the instrumentation costs a little, so these rates differ slightly from the table above.",
        "",
    ]
    for part in profile["breakdown"]:
        out += [
            f"### {part['label']}: {part['total_seconds']:.3f} s, {_fmt_rate(part['texts_per_s'])} texts/s, "
            f"{part['padded_tokens']:,} padded tokens through the model",
            "",
            "| part | seconds | share |",
            "|---|---:|---:|",
        ]
        for name, seconds in part["parts"].items():
            out.append(f"| {name} | {seconds:.4f} | {100 * seconds / part['total_seconds']:.1f}% |")
        out.append("")
    for method, rows in profile["cprofile"].items():
        out += [
            f"### cProfile, {method}: top functions by own time",
            "",
            "| function | calls | own s | cumulative s |",
            "|---|---:|---:|---:|",
        ]
        for row in rows[:12]:
            out.append(f"| `{row['function']}` | {row['ncalls']} | {row['tottime']:.4f} | {row['cumtime']:.4f} |")
        out.append("")
    return out


def print_summary(report: dict) -> None:
    summary = report["summary"]
    print()
    print(f"{'method':<24}{'median texts/s':>16}{'min':>11}{'max':>11}{'vs ST':>8}")
    st = summary["methods"][ST]["median_texts_per_s"]
    for method in METHODS:
        m = summary["methods"][method]
        print(
            f"{method:<24}{_fmt_rate(m['median_texts_per_s']):>16}{_fmt_rate(m['min_texts_per_s']):>11}"
            f"{_fmt_rate(m['max_texts_per_s']):>11}{m['median_texts_per_s'] / st:>7.2f}x"
        )
    ratios, agree, goals = summary["ratios"], report["agreement"], report["goals"]
    print()
    print(
        f"embedder(cold)/ST = {ratios['cold_over_st']:.3f}  (goal >= {GOAL_RATIO}: "
        f"{'met' if goals['ratio'] else 'NOT met'});  embedder(no cache)/ST = {ratios['no_cache_over_st']:.3f}"
    )
    print(
        f"warm/cold = {ratios['warm_over_cold']:.0f}x  (goal >= {GOAL_WARM_SPEEDUP:.0f}x: "
        f"{'met' if goals['warm_speedup'] else 'NOT met'})"
    )
    print(
        f"max abs diff embedder vs ST: {agree['max_abs_diff_cold_vs_st']:.2e}; "
        f"warm vs cold: {agree['max_abs_diff_warm_vs_cold']:.2e}"
    )
    print(
        f"other processes used {_fmt_cpus(report['other_cpus'])} of {report['machine']['nproc']} CPUs during "
        f"the timed repetitions (this benchmark {_fmt_cpus(report['own_cpus'])})"
        + ("  WARNING: busy machine, figures are rough" if report["busy"] else "")
    )
    if report.get("profile"):
        print()
        for part in report["profile"]["breakdown"]:
            print(f"{part['label']}: {part['total_seconds']:.3f} s, {part['padded_tokens']:,} padded tokens")
            for name, seconds in part["parts"].items():
                print(f"    {name:<58}{seconds:9.4f} s {100 * seconds / part['total_seconds']:6.1f}%")


def _jsonable(value):
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    return value


# --------------------------------------------------------------------------- main
def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.bench_embedding",
        description="Embedding throughput of BlackBoxEmbedder against SentenceTransformer.encode.",
    )
    parser.add_argument(
        "--texts",
        default="sst2",
        help="'sst2' (bundled test set, 872 texts; default), 'sst2-train' (full_train.jsonl of the shared "
        "data folder, 6920 texts) or a .jsonl (field 'text') / .txt file",
    )
    parser.add_argument("--max-texts", type=int, default=None, help="use only the first N texts")
    parser.add_argument("--model", default="all-MiniLM-L6-v2", help="the embedder's model (default: embedded)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--device", default="cpu", help="cpu (default), cuda, cuda:1, auto")
    parser.add_argument("--repeats", type=int, default=3, help="alternating repetitions (default 3)")
    parser.add_argument(
        "--threads", type=int, default=None, help="torch intra-op threads (default: torch's own default)"
    )
    parser.add_argument(
        "--st-fp32",
        action="store_true",
        help="on CUDA, run sentence-transformers in float32 instead of the embedder's autocast precision",
    )
    parser.add_argument("--profile", action="store_true", help="add a time breakdown and cProfile tops")
    parser.add_argument(
        "--output",
        default=str(DEFAULT_OUTPUT),
        help="path prefix of the .md and .json results (default benchmarks/results/embedding_throughput)",
    )
    parser.add_argument("--no-save", action="store_true", help="print only, write no result files")
    return parser.parse_args(argv)


def main(argv=None) -> dict:
    args = parse_args(argv)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    from skcrosstune.backends.local import resolve_model_path

    if args.threads is not None:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    args.model_path = str(resolve_model_path(args.model))
    log = lambda msg: print(msg, flush=True)  # noqa: E731

    texts, described = load_texts(args.texts, args.max_texts)
    load_before = _load_average()
    machine = describe_machine(device)
    log(
        f"{len(texts)} texts ({described}); model {args.model}; batch {args.batch_size}; device {device}; "
        f"torch {machine['torch']} with {machine['torch_threads']} threads; {machine['cpu_model']} "
        f"(nproc {machine['nproc']}); load average {load_before}"
    )

    runner = Runner(args, device, texts)
    try:
        start = time.perf_counter()
        runner.warm_up()
        log(f"Warm-up (both models loaded, one small batch each) took {time.perf_counter() - start:.1f} s.")
        with CpuMonitor() as cpu:
            runs, outputs = measure(runner, args.repeats, log)
        profile = run_profile(runner, log) if args.profile else None
    finally:
        runner.close()

    summary = summarise(runs, len(texts))
    n_unique = len(set(texts))
    busy = cpu.other_cpus is not None and cpu.other_cpus > 0.1 * (machine["nproc"] or 1)
    report = {
        "benchmark": "embedding_throughput",
        "command": " ".join(["python -m benchmarks.bench_embedding", *(sys.argv[1:] if argv is None else argv)]),
        "timestamp": _dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "machine": machine,
        "load_before": load_before,
        "other_cpus": cpu.other_cpus,
        "own_cpus": cpu.own_cpus,
        "busy": busy,
        "config": {
            "model": args.model,
            "model_path": args.model_path,
            "texts": described,
            "n_texts": len(texts),
            "n_unique": n_unique,
            "mean_chars": float(np.mean([len(t) for t in texts])),
            "batch_size": args.batch_size,
            "device": device,
            "threads": args.threads,
            "repeats": args.repeats,
            "st_precision": st_autocast(device, not args.st_fp32)[1],
        },
        "summary": summary,
        "agreement": agreement(outputs, n_unique),
        "goals": {
            "ratio_target": GOAL_RATIO,
            "warm_speedup_target": GOAL_WARM_SPEEDUP,
            "ratio": summary["ratios"]["cold_over_st"] >= GOAL_RATIO,
            "warm_speedup": summary["ratios"]["warm_over_cold"] >= GOAL_WARM_SPEEDUP,
        },
        "profile": profile,
    }
    report = _jsonable(report)
    print_summary(report)
    if not args.no_save:
        prefix = Path(args.output)
        prefix.parent.mkdir(parents=True, exist_ok=True)
        prefix.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
        prefix.with_suffix(".md").write_text(render_markdown(report) + "\n", encoding="utf-8")
        print(f"\nWrote {prefix.with_suffix('.md')} and {prefix.with_suffix('.json')}")
    return report


if __name__ == "__main__":
    main()
