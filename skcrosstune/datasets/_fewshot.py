"""Loading the standard few-shot splits of the black-box tuning literature.

A data home holds one folder per task::

    <task>/meta.json                 name, kind ("single" or "pair"), labels, source, license
    <task>/labels.json               the same, for a multi-label task (kind "multi")
    <task>/test.jsonl                the full evaluation set
    <task>/16-<seed>/train.jsonl     16 examples per class, seeds 13, 21, 42, 87, 100
    <task>/16-<seed>/dev.jsonl       another 16 per class, for model selection
    <task>/full_train.jsonl          the whole training set, where available

Each line is ``{"text": ..., "label": ...}`` or, for sentence pairs,
``{"text": ..., "text_pair": ..., "label": ...}``; for a multi-label task,
``{"text": ..., "labels": [...]}`` (any number of label names, none included).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
from sklearn.utils import Bunch

__all__ = ["FEWSHOT_SEEDS", "list_tasks", "load_fewshot", "load_full_train"]

FEWSHOT_SEEDS = (13, 21, 42, 87, 100)
BUNDLED_HOME = Path(__file__).parent / "data"
_ENV = "SKCROSSTUNE_DATA"


def _data_home(data_home, task: str | None = None) -> Path:
    """``data_home``, else ``$SKCROSSTUNE_DATA``, else the bundled data (SST-2 only)."""
    if data_home is not None:
        home = Path(data_home).expanduser()
    elif os.environ.get(_ENV):
        home = Path(os.environ[_ENV]).expanduser()
    else:
        home = BUNDLED_HOME
    if not home.is_dir():
        raise FileNotFoundError(f"The few-shot data home {str(home)!r} does not exist.")
    if task is not None and _meta_path(home / task) is None:
        where = "bundled with skcrosstune" if home == BUNDLED_HOME else f"in {str(home)!r}"
        raise ValueError(
            f"Unknown task {task!r}: the tasks {where} are {list_tasks(home)}. Point "
            f"data_home (or ${_ENV}) at a folder laid out as in the load_fewshot docs."
        )
    return home


def _meta_path(folder: Path) -> Path | None:
    """A task folder's metadata: ``meta.json``, or ``labels.json`` for a multi-label task; None if neither."""
    for name in ("meta.json", "labels.json"):
        if (folder / name).exists():
            return folder / name
    return None


def list_tasks(data_home=None, *, kind=None) -> list[str]:
    """Names of the tasks found in a data home (see :func:`load_fewshot`).

    Parameters
    ----------
    data_home : str or path, default=None
        As for :func:`load_fewshot`.
    kind : {"single", "pair", "multi"} or sequence of them, default=None
        Only tasks of these kinds (``"multi"``: multi-label); None lists all.

    Returns
    -------
    tasks : list of str

    Examples
    --------
    >>> from skcrosstune.datasets import list_tasks
    >>> list_tasks(kind="multi")
    []
    """
    home = _data_home(data_home)
    kinds = None if kind is None else {kind} if isinstance(kind, str) else set(kind)
    if kinds is not None and not kinds <= {"single", "pair", "multi"}:
        raise ValueError(f"kind must be 'single', 'pair' or 'multi' (or several of them), got {kind!r}.")
    tasks = []
    for folder in sorted(p for p in home.iterdir() if p.is_dir()):
        meta = _meta_path(folder)
        if meta is not None and (kinds is None or json.loads(meta.read_text("utf-8")).get("kind", "single") in kinds):
            tasks.append(folder.name)
    return tasks


def _read_jsonl(path: Path, pair: bool, labels: list | None = None):
    """Texts and labels of a split; with ``labels`` (a multi-label task), a 0/1 matrix with a column per label."""
    texts, targets = [], []
    column = None if labels is None else {label: i for i, label in enumerate(labels)}
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            row = json.loads(line)
            try:
                texts.append((row["text"], row["text_pair"]) if pair else row["text"])
                targets.append(row["label"] if column is None else row["labels"])
            except KeyError as exc:
                raise ValueError(f"{path}:{number} lacks the field {exc.args[0]!r}.") from None
            if column is not None and not set(targets[-1]) <= set(column):
                unknown = sorted(set(targets[-1]) - set(column))
                raise ValueError(f"{path}:{number} names labels {unknown} that the task does not list.")
    if column is None:
        return texts, np.asarray(targets, dtype=object)
    Y = np.zeros((len(targets), len(column)), dtype=np.int64)
    for i, names in enumerate(targets):
        Y[i, [column[name] for name in names]] = 1
    return texts, Y


def _subsample(X, y, shots: int, rng: np.random.Generator, labels):
    """``shots`` examples per class, kept in their file order."""
    keep = []
    for label in labels:
        members = np.flatnonzero(y == label)
        if len(members) < shots:
            raise ValueError(f"Only {len(members)} examples of class {label!r} to draw {shots} shots from.")
        keep.extend(rng.choice(members, size=shots, replace=False))
    keep = np.sort(keep)
    return [X[i] for i in keep], y[keep]


def load_fewshot(task: str, shots: int = 16, seed: int = 13, *, data_home=None) -> Bunch:
    """Load the train / dev / test splits of a few-shot task.

    ``shots=16`` gives the published 16-shot split of ``seed``. Fewer shots
    (1 to 15) are drawn per class from that split with a generator seeded by
    ``seed``, for train and dev alike, so every run draws the same examples.

    Parameters
    ----------
    task : str
        Task folder name, e.g. ``"sst2"``, ``"rte"`` (see :func:`list_tasks`).
    shots : int, default=16
        Examples per class in train and in dev, from 1 to 16.
    seed : int, default=13
        One of the published split seeds: 13, 21, 42, 87 or 100.
    data_home : str or path, default=None
        Folder of tasks; None uses ``$SKCROSSTUNE_DATA`` when set, else the
        SST-2 splits bundled with the package.

    Returns
    -------
    data : Bunch
        ``X_train, y_train, X_dev, y_dev, X_test, y_test`` (texts as lists of
        str, or of ``(text, text_pair)`` tuples for pair tasks; labels as
        object arrays of readable names, or for a multi-label task 0/1
        matrices with one column per label), ``labels`` (the class names in
        canonical order: the columns of a multi-label task), ``kind``
        (``"single"``, ``"pair"`` or ``"multi"``), ``task``, ``shots``,
        ``seed`` and ``meta`` (the task's metadata).

    Examples
    --------
    >>> from skcrosstune.datasets import load_fewshot
    >>> data = load_fewshot("sst2", shots=16, seed=13)
    >>> len(data.X_train), len(data.X_test), data.labels
    (32, 872, ['negative', 'positive'])
    >>> len(load_fewshot("sst2", shots=4, seed=13).X_train)
    8
    """
    if not isinstance(shots, (int, np.integer)) or not 1 <= shots <= 16:
        raise ValueError(f"shots must be an integer from 1 to 16, got {shots!r}.")
    if seed not in FEWSHOT_SEEDS:
        raise ValueError(f"seed must be one of the published split seeds {FEWSHOT_SEEDS}, got {seed!r}.")
    folder = _data_home(data_home, task) / task
    meta = json.loads(_meta_path(folder).read_text(encoding="utf-8"))
    pair = meta.get("kind") == "pair"
    columns = list(meta["labels"]) if meta.get("kind") == "multi" else None
    if columns is not None and shots != 16:
        raise ValueError(
            f"{task!r} is a multi-label task, published at 16 shots per label only (a row counts for each of its "
            f"labels, so fewer shots cannot be drawn per class); got shots={shots}."
        )
    split = folder / f"16-{seed}"
    X_train, y_train = _read_jsonl(split / "train.jsonl", pair, columns)
    X_dev, y_dev = _read_jsonl(split / "dev.jsonl", pair, columns)
    X_test, y_test = _read_jsonl(folder / "test.jsonl", pair, columns)
    if shots < 16:
        rng = np.random.default_rng(seed)
        X_train, y_train = _subsample(X_train, y_train, shots, rng, meta["labels"])
        X_dev, y_dev = _subsample(X_dev, y_dev, shots, rng, meta["labels"])
    return Bunch(
        X_train=X_train,
        y_train=y_train,
        X_dev=X_dev,
        y_dev=y_dev,
        X_test=X_test,
        y_test=y_test,
        labels=list(meta["labels"]),
        kind=meta.get("kind", "single"),
        task=task,
        shots=shots,
        seed=seed,
        meta=meta,
    )


def load_full_train(task: str, *, data_home=None):
    """The whole training set of a task, where the data home has one (``full_train.jsonl``).

    Returns
    -------
    X : list
    y : ndarray of object
    """
    folder = _data_home(data_home, task) / task
    path = folder / "full_train.jsonl"
    if not path.exists():
        raise ValueError(f"The task {task!r} has no full training set in {str(folder)!r}.")
    meta = json.loads(_meta_path(folder).read_text(encoding="utf-8"))
    columns = list(meta["labels"]) if meta.get("kind") == "multi" else None
    return _read_jsonl(path, meta.get("kind") == "pair", columns)
