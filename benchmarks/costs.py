"""What the benchmark tasks cost in black-box queries and tokens, told before paying and counted after.

For each task (16 shots, seed 13) and black box:

- before: ``CrossTuneClassifier.estimate_queries`` on an empty store gives the
  texts and tokens a fit sends (training texts and label descriptions), and
  ``BlackBoxEmbedder.estimate_queries`` the test texts' tokens, hence tokens
  per 1,000 texts;
- after: the fit is run on that empty store, and its ``store_counts()`` are
  set beside the estimate (they must be equal), then the estimate is asked
  again (it must be 0).

Writes ``results/costs.{json,md}``. Runs in about a minute for MiniLM on the
2-core box: only the training splits are embedded.

    python -m benchmarks.costs [--model mpnet] [--tasks sst2 trec]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

from .fewshot import DEFAULT_RESULTS_DIR, NAMES_ONLY, label_names, load_descriptions, resolve_data_home, select_tasks

SHOTS, SEED = 16, 13


def run(task: str, model: str, data_home: Path | None) -> dict:
    """The estimate and the count of one task's fit, and its test texts' tokens."""
    from skcrosstune import BlackBoxEmbedder, CrossTuneClassifier
    from skcrosstune.datasets import load_fewshot

    data = load_fewshot(task, SHOTS, SEED, data_home=data_home)
    labels = sorted(set(map(str, data.y_train)))
    descriptions = label_names(labels) if task in NAMES_ONLY else load_descriptions(task, labels)
    with tempfile.TemporaryDirectory() as store:
        clf = CrossTuneClassifier(BlackBoxEmbedder(model, store=store), descriptions, random_state=0)
        start = time.perf_counter()
        before = clf.estimate_queries(data.X_train, data.y_train)
        estimate_seconds = time.perf_counter() - start
        clf.fit(data.X_train, data.y_train)
        counts = clf.embedder_.store_counts()
        after = clf.estimate_queries(data.X_train, data.y_train)
    test = BlackBoxEmbedder(model, store=None).estimate_queries(data.X_test)
    return {
        "task": task,
        "model": model,
        "n_train": len(data.X_train),
        "fit_estimate": {"texts": before.n_to_send, "tokens": before.tokens, "seconds": round(estimate_seconds, 3)},
        "fit_counted": {"texts": counts["sent"], "tokens": counts["prompt_tokens"]},
        "fit_estimate_after": after.n_to_send,
        "test": {"texts": test.n_unique, "tokens": test.tokens},
        "tokens_per_1000_texts": round(1000 * test.tokens / test.n_unique, 1),
    }


def write_report(records: list[dict], results_dir: Path, machine: str) -> list[Path]:
    results_dir.mkdir(parents=True, exist_ok=True)
    json_path, md_path = results_dir / "costs.json", results_dir / "costs.md"
    json_path.write_text(json.dumps({"machine": machine, "shots": SHOTS, "seed": SEED, "runs": records}, indent=1))
    lines = [
        "# Black-box cost per task: estimated before, counted after",
        "",
        f"16 shots, seed {SEED}, CrossTune's fit on an empty store (training texts and label descriptions; "
        "clinc150: label names), then the test split. Texts are the unique inputs the store keys (a pair task's "
        "sides, embedded apart). Tokens as the black box's tokenizer counts them, special tokens in, padding out. "
        f"Machine: {machine}.",
        "",
        "| black box | task | fit: texts estimated / sent | fit: tokens estimated / counted | estimate after fit | "
        "test texts | test tokens | tokens per 1,000 texts |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in records:
        e, c = r["fit_estimate"], r["fit_counted"]
        lines.append(
            f"| {r['model']} | {r['task']} | {e['texts']} / {c['texts']} | {e['tokens']:,} / {c['tokens']:,} | "
            f"{r['fit_estimate_after']} | {r['test']['texts']:,} | {r['test']['tokens']:,} | "
            f"{r['tokens_per_1000_texts']:,.0f} |"
        )
    exact = all(
        r["fit_estimate"]["texts"] == r["fit_counted"]["texts"]
        and r["fit_estimate"]["tokens"] == r["fit_counted"]["tokens"]
        and r["fit_estimate_after"] == 0
        for r in records
    )
    lines += ["", f"Every estimate equal to what the fit then sent, and 0 after it: **{exact}**.", ""]
    md_path.write_text("\n".join(lines))
    return [json_path, md_path]


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.costs", description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", nargs="+", default=["all"])
    parser.add_argument("--model", default="minilm", help="minilm (the embedded default) or mpnet")
    parser.add_argument("--data-home", default=None)
    parser.add_argument("--results-dir", type=Path, default=DEFAULT_RESULTS_DIR)
    parser.add_argument("--machine", default=f"{platform.machine()} {os.cpu_count()}-core CPU box")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from .black_boxes import resolve_black_box

    data_home = resolve_data_home(args.data_home)  # None: the SST-2 splits bundled with skcrosstune
    tasks = select_tasks(args.tasks, data_home)
    model = resolve_black_box(args.model)
    path = args.results_dir / "costs.json"
    kept = [r for r in json.loads(path.read_text())["runs"] if r["model"] != model] if path.exists() else []
    records = []
    for task in tasks:
        record = run(task, model, data_home)
        records.append(record)
        print(json.dumps(record), flush=True)
    print("wrote", ", ".join(map(str, write_report(kept + records, args.results_dir, args.machine))))


if __name__ == "__main__":
    main()
