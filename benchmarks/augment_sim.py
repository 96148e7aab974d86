"""Simulation: what LLMAugmenter's switch is worth, with a stand-in generator of controlled quality.

No real LLM is reachable here, so the generator is a stand-in whose label
noise we set: an OpenAI-compatible chat endpoint on 127.0.0.1 (the test
suite's HTTP server, tests/_openai_server.py, with the reply logic below)
that answers each request "write n examples of label c" with n real, unseen
training texts of label c from ``full_train.jsonl`` (never a test text, never
the run's gold train or dev texts), each replaced with probability ``noise``
by a text of another label. The augmenter talks to it through the real
``openai`` client, exactly as to a hosted model.

Per task (sst2, sst5, trec), 16-shot split seed and noise level, CrossTune
(all-MiniLM-L6-v2) accuracy on the full test set for:

* ``gold``: the 16 gold examples per class only;
* ``no switch``: gold + every clean generation (``threshold=0``);
* ``switch``: gold + the generations the teacher keeps, ``threshold`` chosen
  by GridSearchCV over an imblearn Pipeline on the gold training data only;
* ``oracle``: gold + only the uncorrupted generations (a perfect switch, for
  reference);

and the precision and recall of the switch at rejecting corrupted examples.

Run from the repository root::

    python -m benchmarks.augment_sim                      # all tasks, seeds and noise levels
    python -m benchmarks.augment_sim --tasks sst2 --seeds 13 --noise 0.3 --results-dir /tmp/quick
    python -m benchmarks.augment_sim --report-only
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import time
from pathlib import Path

import numpy as np

from .fewshot import DEFAULT_CACHE_DIR, DEFAULT_DATA_HOME, DEFAULT_RESULTS_DIR, load_descriptions

TASKS = ("sst2", "sst5", "trec")
NOISE_LEVELS = (0.0, 0.3, 0.5)
THRESHOLDS = (0.0, 0.3, 0.5, 0.7)
#: Thresholds of the fixed-threshold analysis (lower ones matter with 5 or 6 classes).
FIXED_THRESHOLDS = (0.1, 0.2, 0.3, 0.5, 0.7)
#: The grid of the follow-up run (``--wide-grid``), with the low thresholds that suit 5 or 6 classes.
WIDE_THRESHOLDS = (0.0, 0.1, 0.2, 0.3, 0.5, 0.7)
N_PER_CLASS = 128
GRID_FOLDS = 3
TASK_DESCRIPTIONS = {
    "sst2": "Is the sentiment of a movie review sentence negative or positive?",
    "sst5": "How positive is a movie review sentence, on a five-point scale?",
    "trec": "What kind of answer does a question ask for?",
}
_REQUEST = re.compile(r'Write (\d+) new, diverse examples of the label (".*?")')


class StandInGenerator:
    """The reply logic of the stand-in LLM: real unseen texts of the asked label, some relabelled.

    Parameters
    ----------
    rows : list of dict
        ``full_train.jsonl`` rows (``text``, ``label``).
    exclude : set of str
        Texts never returned (the run's gold and dev texts, the test set).
    noise : float
        Probability that an answer is replaced by a text of another label.

    Attributes
    ----------
    truth : dict
        Every text answered -> its real label.
    """

    def __init__(self, rows: list[dict], exclude: set, noise: float):
        self.noise = noise
        self.pools: dict[str, list[str]] = {}
        for row in rows:
            if row["text"] not in exclude:
                self.pools.setdefault(row["label"], []).append(row["text"])
        self.truth = {text: label for label, texts in self.pools.items() for text in texts}

    def __call__(self, body: dict) -> str:
        match = _REQUEST.search(body["messages"][-1]["content"])
        n, label = int(match.group(1)), json.loads(match.group(2))
        # the same request always gets the same answer; the clean draw does not depend on the noise level
        digest = hashlib.blake2b(json.dumps([body["messages"], body.get("seed")]).encode(), digest_size=8).digest()
        rng = np.random.default_rng(int.from_bytes(digest, "little"))
        pool = self.pools[label]
        texts = [pool[i] for i in rng.choice(len(pool), size=min(n, len(pool)), replace=False)]
        corrupt = rng.random(len(texts)) < self.noise
        others = [other for other in self.pools if other != label]
        for j in np.flatnonzero(corrupt):
            wrong = self.pools[others[rng.integers(len(others))]]
            texts[j] = wrong[rng.integers(len(wrong))]
        return json.dumps(texts)


def read_rows(data_home: Path, task: str, name: str) -> list[dict]:
    with open(data_home / task / name, encoding="utf-8") as handle:
        return [json.loads(line) for line in handle]


def setup_run(task: str, seed: int, noise: float, server, data_home: Path, n_per_class: int):
    """The split, the stand-in (now answering at ``server``), the classifier and the augmenter of one run."""
    from skcrosstune import BlackBoxEmbedder, CrossTuneClassifier, LLMAugmenter
    from skcrosstune.datasets import load_fewshot

    data = load_fewshot(task, 16, seed, data_home=data_home)
    descriptions = load_descriptions(task, data.labels)
    exclude = set(data.X_train) | set(data.X_dev) | set(data.X_test)
    stand_in = StandInGenerator(read_rows(data_home, task, "full_train.jsonl"), exclude, noise)
    server.chat_reply = stand_in
    embedder = BlackBoxEmbedder(store=DEFAULT_CACHE_DIR)
    classifier = CrossTuneClassifier(embedder, descriptions, random_state=seed)
    augmenter = LLMAugmenter(
        f"openai:stand-in-{task}-noise{round(100 * noise)}",
        base_url=server.url,
        api_key_env=None,
        task_description=TASK_DESCRIPTIONS[task],
        label_descriptions=descriptions,
        n_per_class=n_per_class,
        teacher=CrossTuneClassifier(embedder, descriptions, random_state=seed),
        store=DEFAULT_CACHE_DIR,
        random_state=seed,
    )
    return data, stand_in, classifier, augmenter


def run_fixed(task: str, seed: int, noise: float, *, server, data_home: Path, n_per_class: int) -> dict:
    """Test accuracy of the switch at each fixed threshold (no selection): what a well-chosen threshold gives."""
    from sklearn.base import clone

    data, _, classifier, augmenter = setup_run(task, seed, noise, server, data_home, n_per_class)
    X, y = list(data.X_train), np.asarray(data.y_train)
    accuracies = {}
    for t in FIXED_THRESHOLDS:
        X_res, y_res = clone(augmenter).set_params(threshold=t).fit_resample(X, y)
        accuracies[str(t)] = float(clone(classifier).fit(X_res, y_res).score(data.X_test, data.y_test))
    return {"task": task, "seed": seed, "noise": noise, "n_per_class": n_per_class, "fixed": accuracies}


def grid_search(classifier, augmenter, thresholds, X, y, seed: int):
    """GridSearchCV over the switch's threshold, on the gold training data only."""
    from imblearn.pipeline import Pipeline
    from sklearn.base import clone
    from sklearn.model_selection import GridSearchCV, StratifiedKFold

    pipe = Pipeline([("augment", clone(augmenter)), ("clf", clone(classifier))])
    folds = StratifiedKFold(GRID_FOLDS, shuffle=True, random_state=seed)
    return GridSearchCV(pipe, {"augment__threshold": list(thresholds)}, cv=folds).fit(X, y)


def run_wide(task: str, seed: int, noise: float, *, server, data_home: Path, n_per_class: int) -> dict:
    """The switch with its threshold chosen by GridSearchCV over the wider grid."""
    data, _, classifier, augmenter = setup_run(task, seed, noise, server, data_home, n_per_class)
    search = grid_search(classifier, augmenter, WIDE_THRESHOLDS, list(data.X_train), np.asarray(data.y_train), seed)
    return {
        "task": task,
        "seed": seed,
        "noise": noise,
        "n_per_class": n_per_class,
        "switch_wide": float(search.score(data.X_test, data.y_test)),
        "threshold_wide": search.best_params_["augment__threshold"],
    }


def run_one(task: str, seed: int, noise: float, *, server, data_home: Path, n_per_class: int) -> dict:
    """All four conditions on one split and noise level."""
    from sklearn.base import clone
    from sklearn.metrics import accuracy_score

    data, stand_in, classifier, augmenter = setup_run(task, seed, noise, server, data_home, n_per_class)
    X, y = list(data.X_train), np.asarray(data.y_train)

    def test_accuracy(model) -> float:
        return float(accuracy_score(data.y_test, model.predict(data.X_test)))

    start = time.perf_counter()
    record = {"task": task, "seed": seed, "noise": noise, "n_per_class": n_per_class}
    record["gold"] = test_accuracy(clone(classifier).fit(X, y))

    # every clean generation; the oracle drops exactly the corrupted ones
    X_all, y_all = clone(augmenter).set_params(threshold=0).fit_resample(X, y)
    generated = list(zip(X_all[len(X) :], y_all[len(X) :], strict=True))
    corrupted = np.asarray([stand_in.truth[text] != label for text, label in generated])
    record["no_switch"] = test_accuracy(clone(classifier).fit(X_all, y_all))
    clean = [pair for pair, bad in zip(generated, corrupted, strict=True) if not bad]
    X_oracle = X + [text for text, _ in clean]
    y_oracle = np.concatenate([y, np.asarray([label for _, label in clean], dtype=y.dtype)])
    record["oracle"] = test_accuracy(clone(classifier).fit(X_oracle, y_oracle))

    search = grid_search(classifier, augmenter, THRESHOLDS, X, y, seed)
    record["switch"] = test_accuracy(search)
    record["threshold"] = search.best_params_["augment__threshold"]
    record["cv_scores"] = [round(float(s), 4) for s in search.cv_results_["mean_test_score"]]

    # the switch at every threshold on the final (all-gold) generations: same teacher, same texts
    fitted = clone(augmenter).set_params(threshold=1e-9)
    fitted.fit_resample(X, y)
    records = [r for r in fitted.generations_ if r["reason"] in ("kept", "below_threshold")]
    proba = np.asarray([r["probability"] for r in records])
    bad = np.asarray([stand_in.truth[r["text"]] != r["label"] for r in records])
    record["n_generated"] = len(records)
    record["corrupted_fraction"] = float(bad.mean()) if len(bad) else 0.0
    record["switch_at"] = {}
    for t in THRESHOLDS[1:]:
        rejected = proba < t
        hits = int((rejected & bad).sum())
        record["switch_at"][str(t)] = {
            "rejected": int(rejected.sum()),
            "precision": hits / rejected.sum() if rejected.any() and bad.any() else None,
            "recall": hits / bad.sum() if bad.any() else None,
        }
    chosen = record["switch_at"].get(str(record["threshold"]))
    record["precision"] = chosen["precision"] if chosen else None
    record["recall"] = chosen["recall"] if chosen else None
    record["teacher_accuracy_on_generations"] = float(
        np.mean([stand_in.truth[r["text"]] for r in records] == fitted.teacher_.predict([r["text"] for r in records]))
    )
    record["seconds"] = round(time.perf_counter() - start, 1)
    return record


# -------------------------------------------------------------------- report
def _mean(values) -> float | None:
    values = [v for v in values if v is not None]
    return float(np.mean(values)) if values else None


def summarise(records: list[dict]) -> dict:
    """Mean accuracies per task and noise level, and the share of the clean gain the switch keeps."""
    summary = {"by_task": {}, "gain_kept": {}}
    tasks = [t for t in TASKS if any(r["task"] == t for r in records)]
    levels = sorted({r["noise"] for r in records})
    for task in tasks:
        for noise in levels:
            runs = [r for r in records if r["task"] == task and r["noise"] == noise and "gold" in r]
            if not runs:
                continue
            row = {
                key: _mean(r[key] for r in runs)
                for key in ("gold", "no_switch", "switch", "oracle", "recall", "corrupted_fraction")
            }
            # precision is undefined when nothing was corrupted
            row["precision"] = _mean(r["precision"] for r in runs if r["corrupted_fraction"] > 0)
            row |= {"n_seeds": len(runs), "thresholds": [r["threshold"] for r in runs]}
            if all("switch_wide" in r for r in runs):
                row["switch_wide"] = _mean(r["switch_wide"] for r in runs)
                row["thresholds_wide"] = [r["threshold_wide"] for r in runs]
            if all("fixed" in r for r in runs):
                row["fixed"] = {t: _mean(r["fixed"][t] for r in runs) for t in runs[0]["fixed"]}
            summary["by_task"][f"{task}@{noise}"] = row
    for noise in levels:
        rows = [summary["by_task"].get(f"{t}@{noise}") for t in tasks]
        clean = [summary["by_task"].get(f"{t}@0.0") for t in tasks]
        if any(r is None for r in rows + clean):
            continue
        gold = np.mean([r["gold"] for r in rows])
        clean_gain = np.mean([c["no_switch"] for c in clean]) - gold
        entry = {"clean_gain": float(clean_gain)}
        for key in ("no_switch", "switch", "oracle"):
            gain = np.mean([r[key] for r in rows]) - gold
            entry[key] = float(gain / clean_gain) if clean_gain > 0 else None
        if all("switch_wide" in r for r in rows) and clean_gain > 0:
            entry["switch_wide"] = float((np.mean([r["switch_wide"] for r in rows]) - gold) / clean_gain)
        if all("fixed" in r for r in rows) and clean_gain > 0:
            # one threshold for every task, the best on test: an upper bound of threshold selection
            by_threshold = {t: np.mean([r["fixed"][t] for r in rows]) - gold for t in rows[0]["fixed"]}
            best = max(by_threshold, key=by_threshold.get)
            entry["best_fixed"] = float(by_threshold[best] / clean_gain)
            entry["best_fixed_threshold"] = float(best)
            # each task its own best threshold, 0 (no switch) included: what no threshold rule can beat
            per_task = [max([r["no_switch"], *r["fixed"].values()]) for r in rows]
            entry["best_per_task"] = float((np.mean(per_task) - gold) / clean_gain)
        summary["gain_kept"][str(noise)] = entry
    return summary


def markdown(records: list[dict], summary: dict, machine: str) -> str:
    def pct(v):
        return "–" if v is None else f"{100 * v:.1f}"

    def share(v):
        return "–" if v is None else f"{100 * v:.1f} %"

    lines = [
        "# LLMAugmenter's switch — a SIMULATION (no real LLM)",
        "",
        "The generator is a stand-in (benchmarks/augment_sim.py): each request for n examples of a label is answered "
        "with n real, unseen training texts of that label from `full_train.jsonl`, each replaced with probability "
        "`noise` by a text of another label. CrossTune (all-MiniLM-L6-v2), 16 gold examples per class, "
        f"{N_PER_CLASS} generated per class; split seeds 13, 21, 42, 87, 100; accuracy (%) on the full test set, mean "
        "over seeds. `switch`: the teacher (CrossTune on gold) keeps a generation when its probability for the "
        f"intended label is ≥ threshold, chosen by {GRID_FOLDS}-fold GridSearchCV on the gold training data over "
        f"{list(THRESHOLDS)}. `oracle`: exactly the uncorrupted generations kept. Precision / recall: of the switch "
        "at the chosen threshold, at rejecting corrupted generations (– when it rejected nothing).",
        "",
        f"Machine: {machine}.",
        "",
        "| task | noise | corrupted | gold | + aug, no switch | + aug, switch | + aug, oracle | precision | recall | "
        "thresholds chosen |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for key, row in summary["by_task"].items():
        task, noise = key.split("@")
        lines.append(
            f"| {task} | {100 * float(noise):.0f} % | {pct(row['corrupted_fraction'])} | {pct(row['gold'])} | "
            f"{pct(row['no_switch'])} | {pct(row['switch'])} | {pct(row['oracle'])} | {pct(row['precision'])} | "
            f"{pct(row['recall'])} | {', '.join(str(t) for t in row['thresholds'])} |"
        )
    lines += [
        "",
        "Share of the clean-augmentation gain kept (mean over tasks; gain = accuracy − gold accuracy, "
        "divided by the gain of augmentation at 0 % noise without switch):",
        "",
        "| noise | clean gain (points) | no switch | switch (GridSearchCV) | switch (GridSearchCV, wider grid) | "
        "switch, best fixed threshold (chosen on test: an upper bound) | switch, each task's best threshold "
        "including 0 (chosen on test: an upper bound) | oracle |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for noise, entry in summary["gain_kept"].items():
        fixed = "–"
        if "best_fixed" in entry:
            fixed = f"{share(entry['best_fixed'])} (t={entry['best_fixed_threshold']})"
        lines.append(
            f"| {100 * float(noise):.0f} % | {100 * entry['clean_gain']:.1f} | {share(entry['no_switch'])} | "
            f"{share(entry['switch'])} | {share(entry.get('switch_wide'))} | {fixed} | "
            f"{share(entry.get('best_per_task'))} | {share(entry['oracle'])} |"
        )
    wide = {key: row for key, row in summary["by_task"].items() if "switch_wide" in row}
    if wide:
        lines += [
            "",
            "Follow-up: the switch with its threshold chosen by GridSearchCV over the wider grid "
            f"{list(WIDE_THRESHOLDS)} (the same generations and teacher):",
            "",
            "| task | noise | + aug, switch (wider grid) | thresholds chosen |",
            "|---|---:|---:|---|",
        ]
        for key, row in wide.items():
            task, noise = key.split("@")
            chosen = ", ".join(str(t) for t in row["thresholds_wide"])
            lines.append(f"| {task} | {100 * float(noise):.0f} % | {pct(row['switch_wide'])} | {chosen} |")
    lines += [
        "",
        "Switch at fixed thresholds (accuracy %, mean over seeds; for analysis, not a selection method):",
        "",
        "| task | noise | " + " | ".join(f"t={t}" for t in FIXED_THRESHOLDS) + " |",
        "|---|---:|" + "---:|" * len(FIXED_THRESHOLDS),
    ]
    for key, row in summary["by_task"].items():
        if "fixed" in row:
            task, noise = key.split("@")
            cells = " | ".join(pct(row["fixed"].get(str(t))) for t in FIXED_THRESHOLDS)
            lines.append(f"| {task} | {100 * float(noise):.0f} % | {cells} |")
    return "\n".join(lines) + "\n"


def plot(summary: dict, path: Path) -> None:
    """Accuracy against label noise, one panel per task, one line per condition."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = list(dict.fromkeys(key.split("@")[0] for key in summary["by_task"]))
    fig, axes = plt.subplots(1, len(tasks), figsize=(4 * len(tasks), 3.4), squeeze=False)
    styles = {
        "gold": ("gold only", "k", "--"),
        "no_switch": ("+ aug, no switch", "tab:red", "-"),
        "switch": ("+ aug, switch (GridSearchCV)", "tab:blue", "-"),
        "oracle": ("+ aug, oracle", "tab:green", ":"),
    }
    for ax, task in zip(axes[0], tasks, strict=True):
        rows = {float(k.split("@")[1]): v for k, v in summary["by_task"].items() if k.startswith(task + "@")}
        levels = sorted(rows)
        for key, (label, color, style) in styles.items():
            accuracy = [100 * rows[x][key] for x in levels]
            ax.plot([100 * x for x in levels], accuracy, style, color=color, marker="o", label=label)
        ax.set_title(f"{task} (simulation)")
        ax.set_xlabel("label noise of the generator (%)")
        ax.set_xticks([100 * x for x in levels])
    axes[0][0].set_ylabel("test accuracy (%)")
    axes[0][-1].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_report(records: list[dict], results_dir: Path, machine: str) -> list[Path]:
    summary = summarise(records)
    json_path = results_dir / "augment_sim.json"
    md_path = results_dir / "augment_sim.md"
    json_path.write_text(json.dumps({"machine": machine, "summary": summary, "runs": records}, indent=1) + "\n")
    md_path.write_text(markdown(records, summary, machine))
    written = [json_path, md_path]
    if summary["by_task"]:
        plot(summary, results_dir / "augment_sim.png")
        written.append(results_dir / "augment_sim.png")
    return written


def _key(record: dict) -> tuple:
    return record["task"], record["seed"], record["noise"]


def merge(records: list[dict], new: dict) -> list[dict]:
    """Records with ``new`` merged into the one of the same task, seed and noise (or appended)."""
    out, merged = [], False
    for record in records:
        if _key(record) == _key(new):
            record, merged = {**record, **new}, True
        out.append(record)
    return out if merged else out + [new]


def main(argv=None) -> None:
    """Run the simulation and write results/augment_sim.{json,md}."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.augment_sim", description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", nargs="+", default=list(TASKS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[13, 21, 42, 87, 100])
    parser.add_argument("--noise", nargs="+", type=float, default=list(NOISE_LEVELS))
    parser.add_argument("--n-per-class", type=int, default=N_PER_CLASS)
    parser.add_argument("--fixed", action="store_true", help="only the accuracies at fixed thresholds (analysis)")
    parser.add_argument("--wide-grid", action="store_true", help=f"only the switch over the grid {WIDE_THRESHOLDS}")
    parser.add_argument("--merge", nargs="+", type=Path, default=[], help="merge the runs of these result files")
    parser.add_argument("--data-home", type=Path, default=DEFAULT_DATA_HOME)
    parser.add_argument("--results-dir", type=Path, default=DEFAULT_RESULTS_DIR)
    parser.add_argument("--machine", default="2-core CPU machine, shared with other jobs")
    parser.add_argument("--report-only", action="store_true")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    torch.set_num_threads(1)
    json_path = args.results_dir / "augment_sim.json"
    records = json.loads(json_path.read_text())["runs"] if json_path.exists() else []
    for path in args.merge:
        for record in json.loads(path.read_text())["runs"]:
            records = merge(records, record)
    if not args.report_only:
        from tests._openai_server import OpenAIServer

        run, field = run_one, "gold"
        if args.fixed:
            run, field = run_fixed, "fixed"
        elif args.wide_grid:
            run, field = run_wide, "switch_wide"
        done = {_key(r) for r in records if r.get("n_per_class") == args.n_per_class and field in r}
        with OpenAIServer() as server:
            for task in args.tasks:
                for seed in args.seeds:
                    for noise in args.noise:
                        if (task, seed, noise) in done:
                            continue
                        kwargs = dict(server=server, data_home=args.data_home, n_per_class=args.n_per_class)
                        record = run(task, seed, noise, **kwargs)
                        records = merge(records, record)
                        write_report(records, args.results_dir, args.machine)
                        print(f"{task} seed {seed} noise {noise:.1f}: " + json.dumps(record)[:400], flush=True)
    print("wrote", ", ".join(str(p) for p in write_report(records, args.results_dir, args.machine)))


if __name__ == "__main__":
    main()
