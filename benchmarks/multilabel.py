"""Multi-label few-shot benchmark: tags described in words (goemotions), CrossTune and DecT against their peers.

Every method sees the same black-box vectors (MiniLM by default, through the
benchmark's query store) of the 16-shot train split of each seed, and is
scored on the full test split by micro-F1, macro-F1 and subset accuracy
(every label of a row right). Decision thresholds are never chosen on the
test split: CrossTune and DecT choose each label's threshold by internal
cross-validation on the training rows; the peers on the dev split.

Peers:

- ``zero_shot[names]`` / ``zero_shot[descriptions]``: cosine similarity of
  the text to each label's name or description; a label is on when its
  similarity clears its threshold, chosen on the dev split;
- ``ovr_probe[dev]``: one-vs-rest logistic regression, thresholds chosen on
  the dev split; ``ovr_probe[top]``: its most likely label only;
- ``setfit``: SetFit's ``multi_target_strategy="one-vs-rest"`` where
  ``setfit`` is installed (it fine-tunes the encoder: not a black-box
  method).

    python -m benchmarks.multilabel [--tasks goemotions] [--seeds 13 21 42 87 100]

Writes ``results/multilabel.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, f1_score
from sklearn.multiclass import OneVsRestClassifier

from .fewshot import DEFAULT_CACHE_DIR, DEFAULT_RESULTS_DIR, label_names, load_descriptions, resolve_data_home

SEEDS = (13, 21, 42, 87, 100)
TASKS = ("goemotions",)


def best_f1_thresholds(Y, scores) -> np.ndarray:
    """Each label's threshold with the best F1 on ``scores`` of labelled rows (the dev split's, for peers)."""
    from skcrosstune._base import choose_thresholds

    return choose_thresholds(Y, scores)


class DevThresholds:
    """A scorer whose labels switch on where their score clears a threshold chosen on the dev split."""

    def __init__(self, scorer, X_dev, Y_dev):
        self.scorer, self.X_dev, self.Y_dev = scorer, X_dev, Y_dev

    def fit(self, X, Y):
        self.scorer.fit(X, Y)
        self.thresholds_ = best_f1_thresholds(self.Y_dev, self.scorer.predict_proba(self.X_dev))
        return self

    def predict(self, X):
        return (self.scorer.predict_proba(X) >= self.thresholds_).astype(int)


class TopLabel:
    """A multi-label scorer reduced to its single most likely label per row."""

    def __init__(self, scorer):
        self.scorer = scorer

    def fit(self, X, Y):
        self.scorer.fit(X, Y)
        return self

    def predict(self, X):
        proba = self.scorer.predict_proba(X)
        return (proba == proba.max(axis=1, keepdims=True)).astype(int)


class Similarity:
    """Zero-shot label scores: cosine similarity of each vector to each label's text (no training)."""

    def __init__(self, label_vectors: np.ndarray):
        self.label_vectors = label_vectors / np.linalg.norm(label_vectors, axis=1, keepdims=True)

    def fit(self, X, Y):
        return self

    def predict_proba(self, X):
        return (X / np.linalg.norm(X, axis=1, keepdims=True)) @ self.label_vectors.T


def methods(embedder, texts: dict, X_dev, Y_dev) -> dict:
    """Method name -> a factory of an unfitted model on vectors (``texts``: label name -> names / descriptions)."""
    from skcrosstune import CrossTuneClassifier, DecTClassifier

    def keyed(kind):
        return dict(enumerate(texts[kind]))

    def vectors(kind):
        return embedder.transform(texts[kind])

    def probe():
        return OneVsRestClassifier(LogisticRegression(max_iter=1000))

    return {
        "zero_shot[names]": lambda: DevThresholds(Similarity(vectors("names")), X_dev, Y_dev),
        "zero_shot[descriptions]": lambda: DevThresholds(Similarity(vectors("descriptions")), X_dev, Y_dev),
        "ovr_probe[dev]": lambda: DevThresholds(probe(), X_dev, Y_dev),
        "ovr_probe[top]": lambda: TopLabel(probe()),
        "crosstune[names]": lambda: CrossTuneClassifier(embedder, keyed("names"), random_state=0),
        "crosstune": lambda: CrossTuneClassifier(embedder, keyed("descriptions"), random_state=0),
        "dect": lambda: DecTClassifier(embedder, label_descriptions=keyed("descriptions"), random_state=0),
    }


def scores(Y, predicted) -> dict:
    return {
        "micro_f1": float(f1_score(Y, predicted, average="micro", zero_division=0)),
        "macro_f1": float(f1_score(Y, predicted, average="macro", zero_division=0)),
        "subset_accuracy": float(accuracy_score(Y, predicted)),
    }


def run(task: str, seeds, data_home, cache_dir, only=None) -> list[dict]:
    from skcrosstune import BlackBoxEmbedder
    from skcrosstune.datasets import load_fewshot

    embedder = BlackBoxEmbedder(store=os.path.relpath(cache_dir))
    records = []
    for seed in seeds:
        data = load_fewshot(task, 16, seed, data_home=data_home)
        texts = {
            "names": list(label_names(data.labels).values()),
            "descriptions": [load_descriptions(task, data.labels)[label] for label in data.labels],
        }
        X_train = embedder.fit_transform(data.X_train)
        X_dev, X_test = embedder.transform(data.X_dev), embedder.transform(data.X_test)
        for name, build in methods(embedder, texts, X_dev, data.y_dev).items():
            if only and name not in only:
                continue
            model = build()
            start = time.perf_counter()
            model.fit(X_train, data.y_train)
            fit_seconds = time.perf_counter() - start
            record = {"task": task, "seed": seed, "method": name, **scores(data.y_test, model.predict(X_test))}
            record["fit_seconds"] = round(fit_seconds, 3)
            record["thresholds"] = getattr(model, "thresholds_", None)
            if record["thresholds"] is not None:
                record["thresholds"] = [round(float(t), 3) for t in record["thresholds"]]
            records.append(record)
            print(json.dumps({k: v for k, v in record.items() if k != "thresholds"}), flush=True)
    records += setfit_runs(task, seeds, data_home, only)
    return records


def setfit_runs(task, seeds, data_home, only) -> list[dict]:
    """SetFit's one-vs-rest multi-label mode, where ``setfit`` is installed (said, and skipped, where not)."""
    if only and "setfit" not in only:
        return []
    try:
        import setfit  # noqa: F401
    except ImportError:
        print("setfit is not installed: its row is left out (pip install setfit to add it)", flush=True)
        return []
    from setfit import SetFitModel, Trainer

    from skcrosstune.datasets import load_fewshot

    records = []
    for seed in seeds:
        data = load_fewshot(task, 16, seed, data_home=data_home)
        from datasets import Dataset

        train = Dataset.from_dict({"text": data.X_train, "label": data.y_train.tolist()})
        model = SetFitModel.from_pretrained(
            "sentence-transformers/all-MiniLM-L6-v2", multi_target_strategy="one-vs-rest", local_files_only=True
        )
        start = time.perf_counter()
        Trainer(model=model, train_dataset=train).train()
        fit_seconds = time.perf_counter() - start
        predicted = np.asarray(model.predict(data.X_test))
        records.append({"task": task, "seed": seed, "method": "setfit", **scores(data.y_test, predicted)})
        records[-1]["fit_seconds"] = round(fit_seconds, 3)
    return records


def markdown(records: list[dict], machine: str) -> str:
    lines = [
        "# Multi-label few-shot classification",
        "",
        "16 shots per label, mean (± std) over the seeds, on the full test split; MiniLM vectors for every method. "
        "CrossTune and DecT choose each label's threshold by internal cross-validation on the training rows; the "
        f"peers marked [dev] and the zero-shot rows on the dev split. Fit time on cached vectors. Machine: {machine}.",
        "",
    ]
    for task in dict.fromkeys(r["task"] for r in records):
        runs = [r for r in records if r["task"] == task]
        seeds = sorted({r["seed"] for r in runs})
        lines += [
            f"## {task} (seeds {', '.join(map(str, seeds))})",
            "",
            "| method | micro-F1 | macro-F1 | subset accuracy | fit s |",
            "|---|---:|---:|---:|---:|",
        ]
        for method in dict.fromkeys(r["method"] for r in runs):
            mine = [r for r in runs if r["method"] == method]

            def cell(key, mine=mine):
                values = [r[key] for r in mine]
                return f"{np.mean(values):.3f} ± {np.std(values):.3f}"

            fit = np.mean([r["fit_seconds"] for r in mine])
            lines.append(
                f"| {method} | {cell('micro_f1')} | {cell('macro_f1')} | {cell('subset_accuracy')} | {fit:.2f} |"
            )
        lines.append("")
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.multilabel", description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", nargs="+", default=list(TASKS))
    parser.add_argument("--seeds", nargs="+", type=int, default=list(SEEDS))
    parser.add_argument("--methods", nargs="+", default=None, help="only these methods (default: all)")
    parser.add_argument("--data-home", default=None)
    parser.add_argument("--cache-dir", default=DEFAULT_CACHE_DIR)
    parser.add_argument("--results-dir", type=Path, default=DEFAULT_RESULTS_DIR)
    parser.add_argument("--machine", default=f"{platform.machine()} {os.cpu_count()}-core CPU box")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    data_home = resolve_data_home(args.data_home)
    path = args.results_dir / "multilabel.json"
    kept = json.loads(path.read_text())["runs"] if path.exists() else []
    new = [r for task in args.tasks for r in run(task, args.seeds, data_home, args.cache_dir, args.methods)]
    fresh = {(r["task"], r["seed"], r["method"]) for r in new}
    records = [r for r in kept if (r["task"], r["seed"], r["method"]) not in fresh] + new
    args.results_dir.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"machine": args.machine, "runs": records}, indent=1))
    (args.results_dir / "multilabel.md").write_text(markdown(records, args.machine))
    print("wrote", path, args.results_dir / "multilabel.md")


if __name__ == "__main__":
    main()
