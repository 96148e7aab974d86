"""Tables and the plot of the few-shot benchmark, rebuilt from the records of ``fewshot_runs.jsonl``.

The accuracy tables depend on the records' accuracies only, so the same runs
always give the same tables; timings and query counts go to ``fewshot_costs.md``.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np

from skcrosstune.datasets import FEWSHOT_SEEDS

TITLES = {
    "fewshot": "Few-shot accuracy (%), {shots} training example(s) per class",
    "pair_features": "Linear probe on sentence pairs, by pair features (%), {shots} training example(s) per class",
}
PROTOCOL = (
    "Black box: {black_box}, frozen, through `BlackBoxEmbedder` (mean pooling, unit-length vectors). "
    "LM-BFF splits, seeds 13, 21, 42, 87, 100 (fewer than 16 shots drawn from them by `load_fewshot`); "
    "accuracy on the full test sets, mean ± std (numpy, ddof=0) over the seeds; `avg` is the mean over tasks "
    "(clinc150, 150 classes, stands apart, after it). "
    "`dev`: whether the method selected anything on the dev split. Nothing is tuned on test."
)


def black_box_name(records: list[dict]) -> str:
    """The black box the records were run on: the embedder's ``model`` (its folder's name), else the default."""

    def models(value):
        if isinstance(value, dict):
            if isinstance(value.get("BlackBoxEmbedder"), dict) and "model" in value["BlackBoxEmbedder"]:
                yield str(value["BlackBoxEmbedder"]["model"])
            for inner in value.values():
                yield from models(inner)

    found = {model for r in records for model in models(r.get("params") or {})}
    if len(found) > 1:
        raise ValueError(f"the records mix black boxes {sorted(found)}: give each its own --results-dir")
    return Path(found.pop()).name if found else "all-MiniLM-L6-v2"


def _ordered(values, order: list) -> list:
    return sorted(set(values), key=lambda v: (order.index(v) if v in order else len(order), v))


def _cell(runs: list[dict]) -> tuple[str, float | None]:
    """The table cell of one method on one task, and its mean accuracy when it has one."""
    if any(r["status"] == "error" for r in runs):
        return "error", None
    scores = [100 * r["accuracy"] for r in runs if r["status"] == "ok"]
    if not scores:
        return "skipped", None
    text = f"{np.mean(scores):.1f} ± {np.std(scores):.1f}"
    if len(scores) != len(FEWSHOT_SEEDS):
        text += f" (n={len(scores)})"
    return text, float(np.mean(scores))


def accuracy_table(
    records: list[dict], group: str, shots: int, task_order: list, method_order: list, apart: tuple = ()
) -> str:
    """The markdown accuracy table (methods × tasks, with an average column) of one group and shot count.

    Tasks in ``apart`` (the many-class tasks) come after the average, which leaves them out.
    """
    records = [r for r in records if r["group"] == group and r["shots"] == shots]
    ordered = _ordered((r["task"] for r in records), task_order)
    tasks = [t for t in ordered if t not in apart] + [t for t in ordered if t in apart]
    n_averaged = sum(t not in apart for t in tasks)
    methods = _ordered((r["method"] for r in records), method_order)
    runs = defaultdict(list)
    for r in records:
        runs[r["method"], r["task"]].append(r)

    lines = [
        f"# {TITLES.get(group, group + ', {shots} shots').format(shots=shots)}",
        "",
        PROTOCOL.format(black_box=black_box_name(records)),
        "",
        "| method | dev | label text | " + " | ".join(tasks[:n_averaged] + ["avg"] + tasks[n_averaged:]) + " |",
        "|---|---|---|" + "---:|" * (len(tasks) + 1),
    ]
    notes = []
    for method in methods:
        first = next(r for r in records if r["method"] == method)
        cells, means = [], []
        for task in tasks:
            text, mean = _cell(runs[method, task]) if runs[method, task] else ("not run", None)
            cells.append(text)
            means.append(mean)
            for r in runs[method, task]:
                if r["status"] == "error":
                    notes.append(f"`{method}` on {task}: {r['error']}")
                elif r["status"] == "skipped":
                    notes.append(f"`{method}` skipped: {r['note']}")
            if not runs[method, task]:
                notes.append("not run: no records for this method and task (run it with --methods and --tasks).")
        averaged = means[:n_averaged]
        average = f"{np.mean(averaged):.1f}" if averaged and all(m is not None for m in averaged) else "—"
        label_text = first["label_text"] or "—"
        dev = "yes" if first["uses_dev"] else "no"
        cells = cells[:n_averaged] + [average] + cells[n_averaged:]
        lines.append(f"| {method} | {dev} | {label_text} | " + " | ".join(cells) + " |")
    if notes:
        lines += ["", "Notes:", ""] + [f"- {note}" for note in dict.fromkeys(notes)]
    return "\n".join(lines) + "\n"


def costs_table(records: list[dict], method_order: list) -> str:
    """Markdown totals of fit and predict seconds and of black-box queries, per group, shot count and method."""
    lines = [
        "# Cost of the recorded runs",
        "",
        "Totals over tasks and seeds, as last recorded in fewshot_runs.jsonl. Seconds are wall-clock on the machine "
        "that ran them and vary between runs; `queries` are the inputs actually sent to the black box (zero "
        "when the cache already held them), `cache hits` those answered by the cache, `—` for white-box methods.",
    ]
    for group, shots in sorted({(r["group"], r["shots"]) for r in records}):
        subset = [r for r in records if r["group"] == group and r["shots"] == shots and r["status"] == "ok"]
        lines += [
            "",
            f"## {group}, {shots} shot(s)",
            "",
            "| method | runs | fit s | predict s | queries | cache hits |",
            "|---|---:|---:|---:|---:|---:|",
        ]
        for method in _ordered((r["method"] for r in subset), method_order):
            mine = [r for r in subset if r["method"] == method]
            black_box = all(r["queries"] is not None for r in mine)
            queries = f"{sum(r['queries'] for r in mine):,}" if black_box else "—"
            hits = f"{sum(r['cache_hits'] for r in mine):,}" if black_box else "—"
            lines.append(
                f"| {method} | {len(mine)} | {sum(r['fit_seconds'] for r in mine):.1f} | "
                f"{sum(r['predict_seconds'] for r in mine):.1f} | {queries} | {hits} |"
            )
    return "\n".join(lines) + "\n"


def _family_curve(records: list[dict], method: str, tasks: list, shots: int) -> float | None:
    """Mean over ``tasks`` of the method's mean accuracy, or None unless every task has numbers."""
    means = []
    for task in tasks:
        runs = [r for r in records if r["method"] == method and r["task"] == task and r["shots"] == shots]
        if not runs:
            return None
        _, mean = _cell(runs)
        if mean is None:
            return None
        means.append(mean)
    return float(np.mean(means))


def plot_accuracy(
    records: list[dict],
    path: Path,
    *,
    task_order: list,
    method_order: list,
    families: dict,
    baseline: str | None = None,
) -> None:
    """Accuracy against shots per method: averaged over all tasks, then one panel per task family.

    Each panel's axis is fitted to its own curves (heads a few points apart stay apart). With ``baseline`` (a
    method), every other method is drawn as its margin over it, in points, instead of its accuracy.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records = [r for r in records if r["group"] == "fewshot"]
    tasks = _ordered((r["task"] for r in records), task_order)
    many = set(families.get("many classes", ()))
    panels = {"all tasks": [t for t in tasks if t not in many]}
    for family, members in families.items():
        present = [t for t in members if t in tasks]
        if present:
            panels[family] = present
    shot_counts = sorted({r["shots"] for r in records})
    methods = _ordered((r["method"] for r in records), method_order)
    bases = list(dict.fromkeys(m.split("[")[0] for m in methods))
    colors = {base: plt.get_cmap("tab10")(i % 10) for i, base in enumerate(bases)}
    n_classes = {r["task"]: r["n_classes"] for r in records}

    n_rows = (len(panels) + 1) // 2
    fig, axes = plt.subplots(n_rows, 2, figsize=(10, 3.6 * n_rows + 0.8), squeeze=False)
    legend = {}
    for ax, (title, members) in zip(axes.flat, panels.items(), strict=False):
        reference = {k: _family_curve(records, baseline, members, k) for k in shot_counts} if baseline else {}
        for method in methods:
            if method == baseline:
                continue
            points = [(k, _family_curve(records, method, members, k)) for k in shot_counts]
            if baseline:
                points = [(k, y - reference[k]) for k, y in points if y is not None and reference[k] is not None]
            points = [(k, y) for k, y in points if y is not None]
            if not points:
                continue
            base, _, variant = method.partition("[")
            style = "-" if not variant else "--" if variant == "names]" else ":"
            (legend[method],) = ax.plot(*zip(*points, strict=True), style, marker="o", color=colors[base])
        if baseline:
            legend[baseline] = ax.axhline(0, color="0.3", linewidth=1.2)
        else:
            chance = 100 * np.mean([1 / n_classes[t] for t in members])
            legend["uniform guess"] = ax.axhline(chance, color="0.6", linestyle=(0, (1, 3)), linewidth=1)
        ax.set_xscale("log", base=2)
        ax.set_xticks(shot_counts, [str(k) for k in shot_counts])
        ax.minorticks_off()
        ax.set_title(f"all {len(members)} tasks" if title == "all tasks" else f"{title}: {', '.join(members)}")
        ax.set_xlabel("training examples per class")
        ax.grid(alpha=0.3)
    for ax in axes.flat[len(panels) :]:
        ax.set_visible(False)
    for ax in axes[:, 0]:
        ax.set_ylabel(f"accuracy − {baseline} (points)" if baseline else "mean test accuracy (%)")
    fig.legend(legend.values(), legend.keys(), loc="lower center", ncol=4, fontsize=9, frameon=False)
    what = f"margin over {baseline}" if baseline else "Few-shot accuracy"
    fig.suptitle(f"{what[0].upper() + what[1:]} on frozen {black_box_name(records)} (mean over seeds, then tasks)")
    fig.tight_layout(rect=(0, 0.1, 1, 1))
    fig.savefig(path, dpi=120)
    plt.close(fig)


#: The method the margin plot (``fewshot_margin.png``) measures every other against.
BASELINE = "linear_probe"


def write_report(records: list[dict], results_dir: Path, *, task_order, method_order, families) -> list[Path]:
    """Write every accuracy table, ``fewshot_costs.md`` and ``fewshot.png``; returns the paths written.

    The ``"many classes"`` family, if any, stays out of the tables' average (kept comparable over time).
    """
    results_dir = Path(results_dir)
    written = []
    apart = tuple(families.get("many classes", ()))
    for group, shots in sorted({(r["group"], r["shots"]) for r in records}):
        path = results_dir / f"{group}_{shots}shot.md"
        table = accuracy_table(records, group, shots, list(task_order), method_order, apart)
        path.write_text(table, encoding="utf-8")
        written.append(path)
    path = results_dir / "fewshot_costs.md"
    path.write_text(costs_table(records, method_order), encoding="utf-8")
    written.append(path)
    if any(r["group"] == "fewshot" for r in records):
        path = results_dir / "fewshot.png"
        plot_accuracy(records, path, task_order=list(task_order), method_order=method_order, families=families)
        written.append(path)
        if any(r["method"] == BASELINE for r in records):
            path = results_dir / "fewshot_margin.png"
            options = dict(task_order=list(task_order), method_order=method_order, families=families)
            plot_accuracy(records, path, baseline=BASELINE, **options)
            written.append(path)
    return written
