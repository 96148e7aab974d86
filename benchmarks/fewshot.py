"""The few-shot benchmark: every registered method on every task, shot count and seed.

Protocol (LM-BFF, Gao et al. 2021): ``k`` training examples per class from
the published 16-shot splits (seeds 13, 21, 42, 87, 100; ``k`` < 16 drawn
from them by ``load_fewshot``), accuracy on the full test set, mean ± std
over the seeds. The dev split (``k`` per class) may select hyper-parameters,
for methods registered with ``uses_dev=True`` only; nothing is ever tuned on
a test set.

A method is one registry entry: a name, a factory building a scikit-learn
estimator from a :class:`RunContext`, and flags. To add one, write its
factory and call :func:`register` below the peers::

    register(Method("crosstune", lambda ctx: CrossTuneClassifier(
        embedder=clone(ctx.embedder), label_descriptions=ctx.descriptions,
        random_state=ctx.seed), uses_descriptions=True))

A method with ``uses_descriptions=True`` also runs as ``<name>[names]``,
with the bare label names in place of the descriptions of
``benchmarks/descriptions/<task>.json``.

Every black-box method embeds through one shared, disk-cached
``BlackBoxEmbedder`` configuration, so each text is queried once in total:
across methods, seeds, shot counts and reruns.

Run from the repository root::

    python -m benchmarks.fewshot --tasks all --shots 1 4 16 --methods all
    python -m benchmarks.fewshot --tasks sst2 rte --shots 16 --methods linear_probe --seeds 13
    python -m benchmarks.fewshot --tasks mrpc rte qnli --shots 16 --methods pair_features
    python -m benchmarks.fewshot --list

Each run's records replace the matching ones (method, task, shots, seed) in
``<results-dir>/fewshot_runs.jsonl``; the tables and the plot are then rebuilt
from the whole file (``--report-only`` rebuilds them without running).
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import time
import traceback
import warnings
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import cache, partial
from inspect import signature
from pathlib import Path

from sklearn.base import BaseEstimator, clone
from sklearn.ensemble import VotingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score
from sklearn.neighbors import NearestCentroid
from sklearn.pipeline import make_pipeline

from skcrosstune import BlackBoxEmbedder, BlackBoxPromptClassifier, CrossTuneClassifier, DecTClassifier
from skcrosstune.datasets import FEWSHOT_SEEDS, list_tasks, load_fewshot
from skcrosstune.embedder import DEFAULT_MODEL

from . import report
from .black_boxes import resolve_black_box
from .peers import DevSelectedClassifier, SetFitClassifier, ZeroShotClassifier

BENCHMARKS_DIR = Path(__file__).resolve().parent
DEFAULT_DATA_HOME = BENCHMARKS_DIR.parent.parent / "shared" / "data"
DEFAULT_CACHE_DIR = BENCHMARKS_DIR / ".cache"
DEFAULT_RESULTS_DIR = BENCHMARKS_DIR / "results"
DESCRIPTIONS_DIR = BENCHMARKS_DIR / "descriptions"

TASK_FAMILIES = {
    "sentiment": ("sst2", "sst5", "mr", "cr", "mpqa", "subj"),
    "topic": ("trec", "agnews"),
    "pair": ("mrpc", "rte", "qnli"),
    "many classes": ("clinc150",),
}
# Tasks without a descriptions file, by choice: their methods run with the label names only.
NAMES_ONLY = ("clinc150",)
TASK_ORDER = tuple(task for family in TASK_FAMILIES.values() for task in family)


# ------------------------------------------------------------------ registry
@dataclass(frozen=True)
class RunContext:
    """What a method's factory may know about one run.

    Attributes
    ----------
    task : str
        Task name, e.g. ``"sst2"``.
    kind : {"single", "pair"}
        Single texts or sentence pairs.
    labels : list of str
        Class names, in the task's canonical order.
    shots : int
        Training examples per class.
    seed : int
        The split seed; use it as the method's ``random_state``.
    embedder : BlackBoxEmbedder
        The run's shared embedder configuration (unfitted): ``clone`` it,
        so every method reads the same cached vectors.
    descriptions : dict of str to str or None
        Label -> text (a description, or the bare name for ``[names]``
        variants); None unless the method ``uses_descriptions``.
    dev : tuple (X_dev, y_dev) or None
        The dev split, for model selection; None unless the method ``uses_dev``.
    """

    task: str
    kind: str
    labels: list
    shots: int
    seed: int
    embedder: BaseEstimator
    descriptions: dict | None = None
    dev: tuple | None = None


@dataclass(frozen=True)
class Method:
    """One benchmarked method.

    Attributes
    ----------
    name : str
        Shown in the tables; variants put their difference in brackets.
    factory : callable
        ``factory(ctx: RunContext) -> estimator``: an unfitted scikit-learn
        classifier taking the task's raw texts (or pairs).
    uses_dev : bool
        Whether the method selects anything on the dev split.
    uses_descriptions : bool
        Whether the method reads label descriptions (it then also runs
        with label names only, as ``<name>[names]``).
    black_box : bool
        Whether it only queries the model (through ``ctx.embedder``);
        white-box methods train the model itself.
    group : str
        The results table it belongs to: ``"fewshot"`` for the main
        comparison, ``"pair_features"`` for the sentence-pair study.
    kinds : tuple of str
        Task kinds it applies to.
    requires : str or None
        A module that must import; otherwise the method is skipped, with
        the reason in the table.
    in_all : bool
        Whether ``--methods all`` selects it.
    label_text : {"descriptions", "names"}
        What ``ctx.descriptions`` holds, for methods using descriptions.
    """

    name: str
    factory: Callable[[RunContext], BaseEstimator]
    uses_dev: bool = False
    uses_descriptions: bool = False
    black_box: bool = True
    group: str = "fewshot"
    kinds: tuple = ("single", "pair")
    requires: str | None = None
    in_all: bool = True
    label_text: str = "descriptions"


REGISTRY: dict[str, Method] = {}


def register(method: Method) -> Method:
    """Add a method (and its ``[names]`` variant when it uses descriptions) to the registry."""
    entries = [method]
    if method.uses_descriptions:
        entries.append(replace(method, name=f"{method.name}[names]", label_text="names"))
    for entry in entries:
        if entry.name in REGISTRY:
            raise ValueError(f"A method named {entry.name!r} is already registered.")
        REGISTRY[entry.name] = entry
    return method


def _zero_shot(ctx: RunContext) -> BaseEstimator:
    embedder = clone(ctx.embedder)
    if ctx.kind == "pair":
        embedder.set_params(pair_encoding="joint")
    return ZeroShotClassifier(embedder, label_descriptions=ctx.descriptions)


def _nearest_centroid(ctx: RunContext) -> BaseEstimator:
    # Unit-length embeddings (the embedder's default) make the distance a cosine one.
    return make_pipeline(clone(ctx.embedder), NearestCentroid())


def _linear_probe(ctx: RunContext, **embedder_params) -> BaseEstimator:
    return make_pipeline(clone(ctx.embedder).set_params(**embedder_params), LogisticRegression(max_iter=1000))


def _linear_probe_dev(ctx: RunContext) -> BaseEstimator:
    X_dev, y_dev = ctx.dev
    grid = {"logisticregression__C": [0.01, 0.1, 1.0, 10.0, 100.0, 1000.0]}
    return DevSelectedClassifier(_linear_probe(ctx), grid, X_dev, y_dev)


def _setfit(ctx: RunContext) -> BaseEstimator:
    return SetFitClassifier(random_state=ctx.seed)


register(Method("zero_shot", _zero_shot, uses_descriptions=True))
register(Method("nearest_centroid", _nearest_centroid))
register(Method("linear_probe", _linear_probe))
register(Method("linear_probe[dev]", _linear_probe_dev, uses_dev=True))
register(Method("setfit", _setfit, black_box=False, requires="setfit", in_all=False))


def _crosstune(ctx: RunContext) -> BaseEstimator:
    return CrossTuneClassifier(clone(ctx.embedder), ctx.descriptions, random_state=ctx.seed)


register(Method("crosstune", _crosstune, uses_descriptions=True))


def _dect(ctx: RunContext) -> BaseEstimator:
    # Pairs: the cosine of the two sides (the harness's pair feature; on the dev
    # splits it beat the joint embedding and u, v, |u-v|, u*v), so no zero-shot term.
    return DecTClassifier(clone(ctx.embedder), label_descriptions=ctx.descriptions, random_state=ctx.seed)


register(Method("dect", _dect, uses_descriptions=True))
# DecT's published choices, for comparison with the defaults chosen on the dev splits
DECT_AS_PUBLISHED = {"prototypes": "random", "normalize": True, "fusion": "probs", "calibration": "content_free"}
register(
    Method(
        "dect[as_published]",
        lambda ctx: _dect(ctx).set_params(**DECT_AS_PUBLISHED),
        uses_descriptions=True,
        group="dect_variants",
        in_all=False,
    )
)

# The three heads soft-voting, weights fixed on clinc150's dev splits (README, "Many classes"); not in 'all'.
# VotingClassifier hands its members y encoded as 0..n-1, so the descriptions are keyed by those integers.
SOFT_VOTE_WEIGHTS = (1, 1, 2)


def _soft_vote(ctx: RunContext) -> BaseEstimator:
    encoded = {i: ctx.descriptions[label] for i, label in enumerate(sorted(ctx.descriptions))}
    members = [
        ("crosstune", CrossTuneClassifier(clone(ctx.embedder), encoded, random_state=ctx.seed)),
        ("dect", DecTClassifier(clone(ctx.embedder), label_descriptions=encoded, random_state=ctx.seed)),
        ("probe", _linear_probe(ctx).set_params(logisticregression__C=100.0)),
    ]
    return VotingClassifier(members, voting="soft", weights=list(SOFT_VOTE_WEIGHTS))


register(Method("soft_vote", _soft_vote, uses_descriptions=True, in_all=False))

# BDPL's search queries the black box ~sample_size times per training text and step, and every
# prompted test text is new to it: a small schedule keeps 8 tasks x 5 seeds within ~40 minutes on a CPU
# (not in 'all' for that cost: run it with --methods bdpl).
BDPL_SCHEDULE = dict(prompt_length=5, n_candidates=50, sample_size=8, batch_size=24, max_queries=2000)


def _bdpl(ctx: RunContext) -> BaseEstimator:
    return BlackBoxPromptClassifier(
        clone(ctx.embedder), label_descriptions=ctx.descriptions, random_state=ctx.seed, **BDPL_SCHEDULE
    )


register(Method("bdpl", _bdpl, uses_descriptions=True, kinds=("single",), in_all=False))

# The sentence-pair study: what the linear probe sees of a pair (embedder settings per variant).
PAIR_PROBES = {
    "cosine": {"pair_encoding": "separate", "pair_features": ("cosine",)},
    "cosine+abs_diff": {"pair_encoding": "separate", "pair_features": ("cosine", "abs_diff")},
    "cosine+product": {"pair_encoding": "separate", "pair_features": ("cosine", "product")},
    "u+v+abs_diff+product+cosine": {
        "pair_encoding": "separate",
        "pair_features": ("u", "v", "abs_diff", "product", "cosine"),
    },
    "joint": {"pair_encoding": "joint"},
}
for _variant, _embedder_params in PAIR_PROBES.items():
    register(
        Method(
            f"linear_probe[{_variant}]",
            partial(_linear_probe, **_embedder_params),
            group="pair_features",
            kinds=("pair",),
            in_all=False,
        )
    )


# -------------------------------------------------------------------- runner
def load_descriptions(task: str, labels: list) -> dict:
    """The label descriptions of ``benchmarks/descriptions/<task>.json``, checked against the labels."""
    path = DESCRIPTIONS_DIR / f"{task}.json"
    if not path.exists():
        raise FileNotFoundError(f"No label descriptions for {task!r}: write {path} mapping each of {labels} to one.")
    descriptions = json.loads(path.read_text(encoding="utf-8"))
    if sorted(descriptions) != sorted(labels):
        raise ValueError(f"{path} describes {sorted(descriptions)}, but the task's labels are {sorted(labels)}.")
    return descriptions


def label_names(labels: list) -> dict:
    """Each label's own name as its text, with underscores read as spaces."""
    return {label: label.replace("_", " ") for label in labels}


@cache
def missing_requirement(module: str | None) -> str | None:
    """Why ``module`` cannot be used, or None when it imports."""
    if module is None:
        return None
    try:
        importlib.import_module(module)
    except Exception as exc:  # noqa: BLE001 - any failure to import means "skip"
        return f"{module} does not import ({type(exc).__name__}: {exc})"
    return None


def embedder_counters(estimator) -> tuple[int, int, int] | None:
    """Queries sent, cache hits and tokens sent, summed over the fitted ``BlackBoxEmbedder``s inside ``estimator``.

    Returns None when the estimator holds no fitted embedder (a white-box method).
    """
    found, seen, stack = [], set(), [estimator]
    while stack:
        obj = stack.pop()
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        if isinstance(obj, BlackBoxEmbedder):
            if hasattr(obj, "n_queries_"):
                found.append(obj)
        elif isinstance(obj, (list, tuple)):
            stack.extend(obj)
        elif isinstance(obj, dict):
            stack.extend(obj.values())
        elif isinstance(obj, BaseEstimator):
            stack.extend(vars(obj).values())
    if not found:
        return None
    return (
        sum(e.n_queries_ for e in found),
        sum(e.n_cache_hits_ for e in found),
        sum(getattr(e, "n_tokens_", 0) for e in found),
    )


def describe_params(value):
    """A JSON-able summary of an estimator: its class and the parameters changed from their defaults.

    Data held as parameters (``X_*``, ``y_*``, e.g. a dev split) is summarised by its length.
    """
    if isinstance(value, BaseEstimator):
        defaults = {name: p.default for name, p in signature(type(value).__init__).parameters.items() if name != "self"}
        changed = {
            name: f"<{len(param)} samples>" if name.startswith(("X_", "y_")) else describe_params(param)
            for name, param in value.get_params(deep=False).items()
            if repr(param) != repr(defaults.get(name))
        }
        return {type(value).__name__: changed}
    if isinstance(value, (list, tuple)):
        return [describe_params(v) for v in value]
    if isinstance(value, dict):
        return {str(k): describe_params(v) for k, v in value.items()}
    if value is None or isinstance(value, (str, bool, int, float)):
        return value
    return repr(value)


def run_method(method: Method, data, embedder: BaseEstimator) -> dict:
    """Fit one method on one split and score it on the test set; failures become records too.

    Parameters
    ----------
    method : Method
    data : Bunch
        A split from ``load_fewshot``.
    embedder : BlackBoxEmbedder
        The shared embedder configuration.

    Returns
    -------
    record : dict
        One line of ``fewshot_runs.jsonl``; ``status`` is ``"ok"``, ``"error"`` or ``"skipped"``.
    """
    record = {
        "method": method.name,
        "group": method.group,
        "task": data.task,
        "kind": data.kind,
        "n_classes": len(data.labels),
        "shots": data.shots,
        "seed": data.seed,
        "uses_dev": method.uses_dev,
        "uses_descriptions": method.uses_descriptions,
        "label_text": method.label_text if method.uses_descriptions else None,
        "black_box": method.black_box,
    }
    missing = missing_requirement(method.requires)
    if missing:
        return {**record, "status": "skipped", "note": missing}
    if method.uses_descriptions and method.label_text == "descriptions" and data.task in NAMES_ONLY:
        return {**record, "status": "skipped", "note": f"{data.task} is run with label names only"}
    try:
        descriptions = None
        if method.uses_descriptions:
            descriptions = (
                load_descriptions(data.task, data.labels)
                if method.label_text == "descriptions"
                else label_names(data.labels)
            )
        ctx = RunContext(
            task=data.task,
            kind=data.kind,
            labels=data.labels,
            shots=data.shots,
            seed=data.seed,
            embedder=embedder,
            descriptions=descriptions,
            dev=(data.X_dev, data.y_dev) if method.uses_dev else None,
        )
        estimator = method.factory(ctx)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            start = time.perf_counter()
            estimator.fit(data.X_train, data.y_train)
            fit_seconds = time.perf_counter() - start
            start = time.perf_counter()
            y_pred = estimator.predict(data.X_test)
            predict_seconds = time.perf_counter() - start
    except Exception as exc:  # noqa: BLE001 - a failing method is a result, not a crash
        traceback.print_exc()
        return {**record, "status": "error", "error": f"{type(exc).__name__}: {exc}"}
    counters = embedder_counters(estimator)
    return {
        **record,
        "status": "ok",
        "accuracy": float(accuracy_score(data.y_test, y_pred)),
        "fit_seconds": round(fit_seconds, 4),
        "predict_seconds": round(predict_seconds, 4),
        "queries": None if counters is None else counters[0],
        "cache_hits": None if counters is None else counters[1],
        "tokens": None if counters is None else counters[2],
        "n_train": len(data.X_train),
        "n_test": len(data.X_test),
        "selected": getattr(estimator, "best_params_", None),
        "params": describe_params(estimator),
        "warnings": sorted({f"{w.category.__name__}: {w.message}" for w in caught}),
    }


def run_benchmark(tasks, shots, methods, seeds, *, data_home, cache_dir, model=DEFAULT_MODEL) -> list[dict]:
    """Run every method on every task, shot count and seed, printing one line per run.

    Parameters
    ----------
    tasks : list of str
    shots : list of int
    methods : list of Method
    seeds : list of int
    data_home : path or None
        As for ``load_fewshot``.
    cache_dir : path
        The query cache folder shared by all black-box methods.
    model : str
        The black box (``BlackBoxEmbedder``'s ``model``); the store keeps
        each black box's answers apart by its fingerprint.

    Returns
    -------
    records : list of dict
    """
    embedder = BlackBoxEmbedder(model, store=os.path.relpath(cache_dir))
    records = []
    for task in tasks:
        for k in shots:
            for seed in seeds:
                data = load_fewshot(task, k, seed, data_home=data_home)
                for method in methods:
                    if data.kind not in method.kinds:
                        continue
                    record = run_method(method, data, embedder)
                    records.append(record)
                    print(_progress_line(record), flush=True)
    return records


def _progress_line(record: dict) -> str:
    head = f"{record['task']:>7} {record['shots']:>2}-shot seed {record['seed']:>3}  {record['method']:<34}"
    if record["status"] == "ok":
        queries = "-" if record["queries"] is None else record["queries"]
        return (
            f"{head} acc {100 * record['accuracy']:5.1f}  fit {record['fit_seconds']:7.2f}s  "
            f"predict {record['predict_seconds']:7.2f}s  queries {queries}"
        )
    return f"{head} {record['status'].upper()}: {record.get('error') or record.get('note')}"


# ----------------------------------------------------------------------- CLI
def select_methods(tokens: list[str]) -> list[Method]:
    """Methods named by ``tokens``: method names, group names, or ``all``, in registry order."""
    groups = {m.group for m in REGISTRY.values()}
    chosen = set()
    for token in tokens:
        if token == "all":
            chosen.update(name for name, m in REGISTRY.items() if m.in_all)
        elif token in groups:
            chosen.update(name for name, m in REGISTRY.items() if m.group == token)
        elif token in REGISTRY:
            chosen.add(token)
        else:
            raise ValueError(
                f"Unknown method {token!r}: choose from 'all', the groups {sorted(groups)} "
                f"or the methods {list(REGISTRY)}."
            )
    return [m for name, m in REGISTRY.items() if name in chosen]


def resolve_data_home(data_home: str | None) -> Path | None:
    """The data home to use: the one given, else ../shared/data, else the package default."""
    if data_home is not None:
        if not Path(data_home).is_dir():
            raise ValueError(f"The data home {data_home!r} does not exist.")
        return Path(data_home)
    if DEFAULT_DATA_HOME.is_dir():
        return DEFAULT_DATA_HOME
    print(
        f"NOTE: {DEFAULT_DATA_HOME} does not exist; falling back to load_fewshot's default data "
        "($SKCROSSTUNE_DATA, else the SST-2 splits bundled with skcrosstune).",
        flush=True,
    )
    return None


def select_tasks(tokens: list[str], data_home: Path | None) -> list[str]:
    """Tasks named by ``tokens`` (or ``all`` found in the data home), in the benchmark's order.

    Single-label tasks only: multi-label ones (goemotions) are scored by ``benchmarks.multilabel``.
    """
    available = list_tasks(data_home, kind=("single", "pair"))
    chosen = available if tokens == ["all"] else tokens
    unknown = sorted(set(chosen) - set(available))
    if unknown:
        raise ValueError(f"Unknown tasks {unknown}: the data home holds {available}.")
    return sorted(set(chosen), key=task_sort_key)


def task_sort_key(task: str) -> tuple:
    """Order tasks as in the data README, unknown tasks last, alphabetically."""
    return (TASK_ORDER.index(task) if task in TASK_ORDER else len(TASK_ORDER), task)


def method_sort_key(name: str) -> tuple:
    """Order methods as registered, unknown (retired) methods last, alphabetically."""
    names = list(REGISTRY)
    return (names.index(name) if name in names else len(names), name)


def merge_records(path: Path, new: list[dict]) -> list[dict]:
    """Replace the records of ``path`` that ``new`` reruns, and write the file back in a fixed order."""
    merged = {}
    if path.exists():
        with open(path, encoding="utf-8") as handle:
            for line in handle:
                if line.strip():
                    record = json.loads(line)
                    merged[_record_key(record)] = record
    merged.update((_record_key(r), r) for r in new)
    records = sorted(
        merged.values(),
        key=lambda r: (task_sort_key(r["task"]), r["shots"], method_sort_key(r["method"]), r["seed"]),
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as handle:
        for record in records:
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")
    return records


def _record_key(record: dict) -> tuple:
    return record["method"], record["task"], record["shots"], record["seed"]


def main(argv=None) -> None:
    """Parse the command line, run, merge the records and rebuild the tables and the plot."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.fewshot", description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", nargs="+", default=["all"], help="task names, or 'all' (default)")
    parser.add_argument("--shots", nargs="+", type=int, default=[1, 4, 16], help="examples per class (1 4 16)")
    parser.add_argument(
        "--methods", nargs="+", default=["all"], help="method or group names, or 'all' (default); see --list"
    )
    parser.add_argument("--seeds", nargs="+", type=int, default=list(FEWSHOT_SEEDS), help="split seeds (all five)")
    parser.add_argument("--data-home", default=None, help=f"task folder (default {DEFAULT_DATA_HOME})")
    parser.add_argument("--cache-dir", default=DEFAULT_CACHE_DIR, help="query cache (default benchmarks/.cache)")
    parser.add_argument("--results-dir", default=DEFAULT_RESULTS_DIR, help="default benchmarks/results")
    parser.add_argument(
        "--model",
        default="minilm",
        help="the black box: 'minilm' (the embedded default), 'mpnet' (all-mpnet-base-v2, installed by "
        "benchmarks.black_boxes), or a model folder; use another --results-dir for another black box",
    )
    parser.add_argument("--list", action="store_true", help="list the registered methods and exit")
    parser.add_argument("--report-only", action="store_true", help="rebuild the tables and the plot, run nothing")
    args = parser.parse_args(argv)

    if args.list:
        for m in REGISTRY.values():
            flags = {
                "uses dev": m.uses_dev,
                f"uses {m.label_text}": m.uses_descriptions,
                "white-box": not m.black_box,
                f"needs {m.requires}": m.requires,
                "not in 'all'": not m.in_all,
            }
            print(f"{m.name:<42} {m.group:<14} {', '.join(flag for flag, on in flags.items() if on)}")
        return
    new = []
    if not args.report_only:
        try:
            data_home = resolve_data_home(args.data_home)
            tasks = select_tasks(args.tasks, data_home)
            methods = select_methods(args.methods)
        except ValueError as exc:
            parser.error(str(exc))
        print(f"tasks {tasks}, shots {args.shots}, seeds {args.seeds}, methods {[m.name for m in methods]}", flush=True)
        start = time.perf_counter()
        new = run_benchmark(
            tasks,
            args.shots,
            methods,
            args.seeds,
            data_home=data_home,
            cache_dir=args.cache_dir,
            model=resolve_black_box(args.model),
        )
        queries = sum(r.get("queries") or 0 for r in new)
        tokens = sum(r.get("tokens") or 0 for r in new)
        failures = sum(r["status"] == "error" for r in new)
        print(
            f"{len(new)} runs in {time.perf_counter() - start:.0f} s, {queries} black-box queries sent "
            f"({tokens} tokens), {failures} errors."
        )

    results_dir = Path(args.results_dir)
    records = merge_records(results_dir / "fewshot_runs.jsonl", new)
    written = report.write_report(
        records, results_dir, task_order=TASK_ORDER, method_order=list(REGISTRY), families=TASK_FAMILIES
    )
    print("wrote " + ", ".join(str(p) for p in written))


if __name__ == "__main__":
    main()
