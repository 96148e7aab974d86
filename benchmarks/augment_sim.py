"""Simulation: what LLMAugmenter's switch is worth, with a stand-in generator of controlled quality.

No real LLM is reachable here, so the generator is a stand-in whose mistakes
we set: an OpenAI-compatible chat endpoint on 127.0.0.1 (the test suite's
HTTP server, tests/_openai_server.py, with the reply logic below) that
answers each request "write n examples of label c" with n real, unseen
training texts of label c from ``full_train.jsonl`` (never a test text, never
the run's gold train or dev texts). Some answers are then spoiled, by kind:
relabelled (a text of another label), off-task (an AG News headline) or a
near-copy of a demonstration shown in the prompt. The augmenter talks to it
through the real ``openai`` client, exactly as to a hosted model.

Conditions (``CONDITIONS``): ``clean``; ``relabel30`` (30 % relabelled);
``mix`` (10 % relabelled, 20 % off-task, 10 % near-copies). Per task (sst2,
sst5, trec, clinc150), 16-shot split seed and condition, CrossTune
(all-MiniLM-L6-v2) accuracy on the full test set for:

* ``gold``: the 16 gold examples per class only;
* ``no switch``: gold + every generation that passes the clean-up;
* ``switch t=...``: gold + the generations the switch keeps at each
  ``threshold`` of the grid (the augmenter's defaults: the off-task check,
  then the out-of-fold label judge; t=0 is the off-task check alone);
* ``switch``: the threshold chosen by GridSearchCV over an imblearn
  Pipeline on the gold training data only, refitted at the best mean score
  (``best mean``) or at the lowest threshold within one standard error of it
  (``one-SE rule``, ``lowest_threshold_within_one_se``), both from the same
  folds;
* ``previous judge (LR)``: the judge the CrossTune teacher replaced (a
  logistic regression, C=10, gold counted 4 times) at t=0.5 and 1, on the
  same generations;
* ``oracle``: gold + only the unspoiled generations;

and the share of each kind of generation the clean-up and the switch reject.
The previous session's runs of the gold-only switch (5 seeds, noise 0, 30
and 50 %) stay in ``results/augment_sim.json`` under ``runs`` and are
reported as they were measured; the code that made them is in the git
history (commit 56ac7d9). Runs of an earlier version of this switch (without
the off-task check) are left out of the report (``SWITCH_VERSION``).

Run from the repository root::

    python -m benchmarks.augment_sim --tasks sst2 sst5 trec --seeds 13 21 42 87 100
    python -m benchmarks.augment_sim --tasks clinc150 --seeds 13 --conditions mix --judge-only clinc150
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
#: Tasks of the out-of-fold switch runs (clinc150: 150 intents, 32 generated per class).
JUDGE_TASKS = ("sst2", "sst5", "trec", "clinc150")
NOISE_LEVELS = (0.0, 0.3, 0.5)
THRESHOLDS = (0.0, 0.3, 0.5, 0.7)
#: Thresholds of the fixed-threshold analysis (lower ones matter with 5 or 6 classes).
FIXED_THRESHOLDS = (0.1, 0.2, 0.3, 0.5, 0.7)
#: The grid of the follow-up run (``--wide-grid``), with the low thresholds that suit 5 or 6 classes.
WIDE_THRESHOLDS = (0.0, 0.1, 0.2, 0.3, 0.5, 0.7)
N_PER_CLASS = 128
GRID_FOLDS = 3
#: What GridSearchCV scores on the gold folds: accuracy (the best mean and the one-SE rule) and log-loss.
GRID_SCORING = {"accuracy": "accuracy", "log_loss": "neg_log_loss"}
TASK_DESCRIPTIONS = {
    "sst2": "Is the sentiment of a movie review sentence negative or positive?",
    "sst5": "How positive is a movie review sentence, on a five-point scale?",
    "trec": "What kind of answer does a question ask for?",
    "clinc150": "What does a user's request to a virtual assistant ask it to do (its intent)?",
    "agnews": "What is a news article about?",
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

    def __init__(
        self, rows: list[dict], exclude: set, noise: float, *, off_task=(), off_task_share=0.0, near_copy_share=0.0
    ):
        self.noise = noise
        self.off_task = list(off_task)
        self.off_task_share = off_task_share
        self.near_copy_share = near_copy_share
        self.pools: dict[str, list[str]] = {}
        for row in rows:
            if row["text"] not in exclude:
                self.pools.setdefault(row["label"], []).append(row["text"])
        self.truth = {text: label for label, texts in self.pools.items() for text in texts}
        #: Texts that are not the asked label's: ``"relabel"``, ``"off_task"`` or ``"near_copy"``.
        self.kind: dict[str, str] = {}

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
        if self.off_task_share or self.near_copy_share:
            # a separate stream, so the relabelled draw above is the same as without these kinds
            extra = np.random.default_rng([int.from_bytes(digest, "little"), 1])
            shown = [
                json.loads(line)["text"]
                for line in body["messages"][-1]["content"].splitlines()
                if line.startswith('{"text"')
            ]
            for j in range(len(texts)):
                u = extra.random()
                if u < self.off_task_share:
                    texts[j] = self.off_task[extra.integers(len(self.off_task))].strip()
                    self.kind[texts[j]] = "off_task"
                elif u < self.off_task_share + self.near_copy_share and shown:
                    texts[j] = near_copy(shown[extra.integers(len(shown))], extra).strip()
                    self.kind[texts[j]] = "near_copy"
        return json.dumps(texts)


def near_copy(text: str, rng) -> str:
    """A demonstration barely reworded: one word of five or more dropped, the first letter's case flipped."""
    words = text.split()
    if len(words) >= 5:
        del words[rng.integers(len(words))]
    out = " ".join(words) + " !"
    return out[:1].swapcase() + out[1:]


def read_rows(data_home: Path, task: str, name: str) -> list[dict]:
    with open(data_home / task / name, encoding="utf-8") as handle:
        return [json.loads(line) for line in handle]


CONDITIONS = {
    "clean": {},
    "relabel30": {"noise": 0.3},
    "mix": {"noise": 0.1, "off_task_share": 0.2, "near_copy_share": 0.1},
}
#: The knob's grid of the new switch (threshold relative to each class's mean probability).
JUDGE_THRESHOLDS = (0.0, 0.5, 1.0)
#: The switch measured: 3 is the off-task check followed by the out-of-fold label judge with a CrossTune teacher
#: (2, its logistic-regression predecessor, is measured again beside it in every run: ``previous_judge``).
SWITCH_VERSION = 3
#: Thresholds at which the previous default judge is measured beside the current one.
PREVIOUS_THRESHOLDS = (0.5, 1.0)
#: LLMAugmenter's default threshold.
DEFAULT_T = 0.5
#: Texts of another task, for off-task generations (news headlines: no simulated task is about news).
OFF_TASK = ("agnews", "test.jsonl", 800)
N_PER_CLASS_BY_TASK = {"clinc150": 32}
#: The real LLM runs (``--generator qwen1.5b``): tasks, GridSearchCV folds, and the generator's settings for a slow
#: local server (one slot, replies of at most 768 tokens, ten minutes before a request counts as failed).
LLM_TASKS = ("sst2", "sst5", "trec", "agnews")
LLM_GRID_FOLDS = 2
LLM_SETTINGS = {"max_tokens": 768, "timeout": 600.0, "n_concurrent": 1}
#: The store of the real LLM's answers (and the judges' vectors), and the committed copy of its answers.
LLM_STORE = DEFAULT_CACHE_DIR / "llm-store"
LLM_REPLIES = DEFAULT_RESULTS_DIR / "augment_llm_replies.jsonl.gz"
#: The real LLM's condition name: its generations are what they are.
REAL = "real"
#: Where the gold-only switch's runs (``runs``) were measured: an earlier session's box, not this run's.
OLD_MACHINE = "an earlier session's 2-core CPU box (these runs were not repeated)"


def setup_judge_run(
    task: str,
    seed: int,
    condition: str,
    server,
    data_home: Path,
    n_per_class: int,
    judge_model: str = "minilm",
    generator: str | None = None,
):
    """The split, the stand-in of ``condition``, the CrossTune student and the augmenter (new switch, defaults).

    ``judge_model`` is the black box of the switch's vectors (off-task check and label judge): ``"minilm"``, the
    student's own, leaves the augmenter's ``embedder`` at its default; another name (``"mpnet"``) is resolved by
    ``black_boxes.resolve_black_box``. The student is always CrossTune on all-MiniLM-L6-v2.
    """
    from skcrosstune import BlackBoxEmbedder, CrossTuneClassifier, LLMAugmenter
    from skcrosstune.datasets import load_fewshot

    data = load_fewshot(task, 16, seed, data_home=data_home)
    try:
        descriptions = load_descriptions(task, data.labels)
    except FileNotFoundError:  # clinc150 has no descriptions file: its intent names describe themselves
        descriptions = {label: str(label) for label in data.labels}
    embedder = BlackBoxEmbedder(store=DEFAULT_CACHE_DIR)
    classifier = CrossTuneClassifier(embedder, descriptions, random_state=seed)
    common = dict(
        base_url=server.url,
        api_key_env=None,
        task_description=TASK_DESCRIPTIONS[task],
        label_descriptions=descriptions,
        random_state=seed,
    )
    if generator is not None:  # a real LLM behind ``server`` (benchmarks.llm.LlamaServer)
        from .llm import LLMS

        model = f"openai:{LLMS[generator].alias}"
        augmenter = LLMAugmenter(model, n_per_class=n_per_class, store=LLM_STORE, **common, **LLM_SETTINGS)
        return data, None, classifier, augmenter
    exclude = set(data.X_train) | set(data.X_dev) | set(data.X_test)
    source, name, count = OFF_TASK
    off_task = [row["text"] for row in read_rows(data_home, source, name)[:count]]
    settings = dict(CONDITIONS[condition])
    noise = settings.pop("noise", 0.0)
    stand_in = StandInGenerator(
        read_rows(data_home, task, "full_train.jsonl"), exclude, noise, off_task=off_task, **settings
    )
    server.chat_reply = stand_in
    augmenter = LLMAugmenter(
        f"openai:stand-in-{task}-{condition}",
        n_per_class=N_PER_CLASS_BY_TASK.get(task, n_per_class),
        store=DEFAULT_CACHE_DIR,
        **common,
    )
    if judge_model != "minilm":
        from .black_boxes import resolve_black_box

        augmenter.set_params(embedder=BlackBoxEmbedder(resolve_black_box(judge_model), store=DEFAULT_CACHE_DIR))
    return data, stand_in, classifier, augmenter


def previous_teacher():
    """The switch's previous default judge: a logistic regression (C=10) on the MiniLM vectors."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    from skcrosstune import BlackBoxEmbedder

    return make_pipeline(BlackBoxEmbedder(store=DEFAULT_CACHE_DIR), LogisticRegression(C=10.0, max_iter=1000))


def generation_kind(stand_in: StandInGenerator, text: str, label) -> str:
    """``"clean"``, or which kind of bad generation ``text`` written for ``label`` is."""
    if text in stand_in.truth:
        return "clean" if stand_in.truth[text] == label else "relabel"
    return stand_in.kind[text]


def rejection_rates(kinds: np.ndarray, kept: np.ndarray) -> dict:
    """Per kind of generation: how many there were and the share rejected; precision over the bad ones."""
    out = {
        kind: {"n": int((kinds == kind).sum()), "rejected": float(np.mean(~kept[kinds == kind]))}
        for kind in np.unique(kinds)
    }
    bad = kinds != "clean"
    rejected = ~kept
    out["precision"] = float((rejected & bad).sum() / rejected.sum()) if rejected.any() else None
    out["recall"] = float((rejected & bad).sum() / bad.sum()) if bad.any() else None
    return out


def run_judge(
    task: str,
    seed: int,
    condition: str,
    *,
    server,
    data_home: Path,
    n_per_class: int,
    grid: bool = True,
    judge_only: bool = False,
    judge_model: str = "minilm",
    generator: str | None = None,
) -> dict:
    """Accuracies and rejection rates of the out-of-fold switch on one split and condition.

    With a real ``generator`` (a key of ``benchmarks.llm.LLMS``, served by ``server``) there is no truth about the
    generations: rejections are counted by reason, the generator's own judgement (``teacher="generator"``) is
    measured beside the default judge, and the server's token counters and the paid answers are recorded.
    """
    from imblearn.pipeline import Pipeline
    from sklearn.base import clone
    from sklearn.metrics import accuracy_score
    from sklearn.model_selection import GridSearchCV, StratifiedKFold

    from skcrosstune.augment import lowest_threshold_within_one_se

    data, stand_in, classifier, augmenter = setup_judge_run(
        task, seed, condition, server, data_home, n_per_class, judge_model, generator
    )
    real = stand_in is None
    X, y = list(data.X_train), np.asarray(data.y_train)
    spent = _Spending(server if real else None)

    def test_accuracy(model) -> float:
        return float(accuracy_score(data.y_test, model.predict(data.X_test)))

    def student(kept: list) -> float:
        X_fit = X + [r["text"] for r in kept]
        y_fit = np.concatenate([y, np.asarray([r["label"] for r in kept], dtype=y.dtype)])
        return test_accuracy(clone(classifier).fit(X_fit, y_fit))

    start = time.perf_counter()
    record = {"task": task, "seed": seed, "condition": condition, "switch_version": SWITCH_VERSION}
    if judge_model != "minilm":
        record["judge_model"] = judge_model
    if real:
        record["generator"] = generator
    # the judges' scores once (threshold 1); any other threshold is a multiple of the class means
    judged = clone(augmenter).set_params(threshold=1.0)
    with spent("generation"):
        judged.fit_resample(X, y)
    records = [r for r in judged.generations_ if r["reason"] in ("kept", "off_task", "below_threshold")]
    record["drop_counts"] = judged.drop_counts_
    on_task = np.asarray([r["reason"] != "off_task" for r in records])
    proba = np.asarray([r["probability"] for r in records])
    means = {label: t for label, t in judged.class_thresholds_.items()}  # threshold 1: the class means
    bar = np.asarray([means.get(r["label"], np.inf) for r in records])

    def kept_at(t: float, proba=proba, bar=bar) -> np.ndarray:
        return on_task & (proba >= t * bar) if t > 0 else on_task

    if real:
        record["n_generated"] = len(judged.generations_)
        record["n_clean"] = len(records)
        record["switch_at"] = {str(t): _reasons(kept_at(t), on_task) for t in JUDGE_THRESHOLDS}
        # the generator as judge: its own label-word log-probabilities for the same generations
        with spent("generator_judge"):
            generator_proba, generator_bar = _judged_by(augmenter, X, y, records, teacher="generator")

        def generator_kept(t: float) -> np.ndarray:
            return kept_at(t, generator_proba, generator_bar)

        record["generator_judge"] = {
            "switch_at": {str(t): _reasons(generator_kept(t), on_task) for t in JUDGE_THRESHOLDS[1:]},
            "agreement": float(np.mean(generator_kept(DEFAULT_T)[on_task] == kept_at(DEFAULT_T)[on_task]))
            if on_task.any()
            else None,
        }
        record["examples"] = _example_page(records, kept_at(DEFAULT_T), judged.generations_)
    else:
        near_dropped = [r for r in judged.generations_ if r["reason"] == "near_copy"]
        kinds = np.asarray(
            [generation_kind(stand_in, r["text"], r["label"]) for r in records]
            + [generation_kind(stand_in, r["text"], r["label"]) for r in near_dropped]
        )
        record["n_generated"] = len(kinds)
        record["kinds"] = {k: int((kinds == k).sum()) for k in np.unique(kinds)}

        def rates(kept: np.ndarray) -> dict:
            return rejection_rates(kinds, np.concatenate([kept, np.zeros(len(near_dropped), dtype=bool)]))

        record["switch_at"] = {str(t): rates(kept_at(t)) for t in JUDGE_THRESHOLDS}
        # the previous default judge on the same generations: a logistic regression (C=10), gold counted 4 times
        previous_proba, previous_bar = _judged_by(augmenter, X, y, records, teacher=previous_teacher(), gold_weight=4)

        def previous_kept(t: float) -> np.ndarray:
            return kept_at(t, previous_proba, previous_bar)

        record["previous_judge"] = {"switch_at": {str(t): rates(previous_kept(t)) for t in PREVIOUS_THRESHOLDS}}
        record["clean_up"] = rejection_rates(
            kinds, np.concatenate([np.ones(len(records), bool), np.zeros(len(near_dropped), bool)])
        )

    if judge_only:  # rejection rates only: no student is fitted (time)
        record["seconds"] = round(time.perf_counter() - start, 1)
        return record | spent.record
    record["gold"] = test_accuracy(clone(classifier).fit(X, y))
    record["no_switch"] = student(records)
    # the augmenter refitted at threshold t keeps exactly these: the student of each grid point on all the gold data
    record["switch_t"] = {
        str(t): student([r for r, k in zip(records, kept_at(t), strict=False) if k]) for t in JUDGE_THRESHOLDS
    }
    record["switch_default"] = record["switch_t"][str(DEFAULT_T)]
    if real:
        record["generator_judge"]["switch_t"] = {
            str(t): student([r for r, k in zip(records, generator_kept(t), strict=False) if k])
            for t in JUDGE_THRESHOLDS[1:]
        }
    else:
        record["oracle"] = student([r for r, k in zip(records, kinds, strict=False) if k == "clean"])
        record["previous_judge"]["switch_t"] = {
            str(t): student([r for r, k in zip(records, previous_kept(t), strict=False) if k])
            for t in PREVIOUS_THRESHOLDS
        }
    if grid:
        pipe = Pipeline([("augment", clone(augmenter)), ("clf", clone(classifier))])
        folds = StratifiedKFold(LLM_GRID_FOLDS if real else GRID_FOLDS, shuffle=True, random_state=seed)
        grid_of = {"augment__threshold": list(JUDGE_THRESHOLDS)}
        with spent("grid"):
            search = GridSearchCV(pipe, grid_of, cv=folds, refit=False, scoring=GRID_SCORING).fit(X, y)
        results = search.cv_results_
        accuracy = {key.replace("_test_accuracy", "_test_score"): v for key, v in results.items()}
        # three selections from the same folds: the best mean accuracy, the lowest threshold within one SE of it,
        # and the best mean log-loss (a proper scoring rule: every validation text counts, not only the flips)
        chosen = {
            "": int(np.argmax(results["mean_test_accuracy"])),
            "_1se": lowest_threshold_within_one_se(accuracy),
            "_logloss": int(np.argmax(results["mean_test_log_loss"])),
        }
        for suffix, index in chosen.items():
            record["threshold" + suffix] = float(results["param_augment__threshold"][index])
            record["switch" + suffix] = record["switch_t"][str(record["threshold" + suffix])]
        record["cv_scores"] = [round(float(v), 4) for v in results["mean_test_accuracy"]]
        record["cv_std"] = [round(float(v), 4) for v in results["std_test_accuracy"]]
        record["cv_log_loss"] = [round(float(-v), 4) for v in results["mean_test_log_loss"]]
    record["seconds"] = round(time.perf_counter() - start, 1)
    return record | spent.record


def _judged_by(augmenter, X, y, records: list[dict], **params) -> tuple[np.ndarray, np.ndarray]:
    """Another judge on the same generations: its probability of each record's label, and its class means."""
    from sklearn.base import clone

    other = clone(augmenter).set_params(threshold=1.0, **params)
    other.fit_resample(X, y)
    by_text = {(r["text"], r["label"]): r for r in other.generations_}
    proba = np.asarray([by_text[r["text"], r["label"]]["probability"] for r in records])
    return proba, np.asarray([other.class_thresholds_.get(r["label"], np.inf) for r in records])


class _Spending:
    """What each phase of a real-LLM run paid: answers stored, tokens the server processed, wall time.

    ``record`` holds ``paid`` (phase -> {"answers", "prompt_tokens", "completion_tokens", "seconds"}) for the
    phases that sent anything, and ``chat_requests`` (all answers paid in this run: 0 on a rerun).
    """

    def __init__(self, server):
        self.server = server
        self.record: dict = {}

    def __call__(self, phase: str):
        from contextlib import contextmanager

        from .replies import count_answers

        @contextmanager
        def measured():
            if self.server is None:
                yield
                return
            answers, tokens, start = count_answers(LLM_STORE), self.server.token_counts(), time.perf_counter()
            yield
            paid = count_answers(LLM_STORE) - answers
            self.record["chat_requests"] = self.record.get("chat_requests", 0) + paid
            if paid:  # a rerun from the store keeps the first run's figures (merged records)
                after = self.server.token_counts()
                self.record.setdefault("paid", {})[phase] = {
                    "answers": paid,
                    "prompt_tokens": after["prompt"] - tokens["prompt"],
                    "completion_tokens": after["completion"] - tokens["completion"],
                    "seconds": round(time.perf_counter() - start, 1),
                }

        return measured()


def _reasons(kept: np.ndarray, on_task: np.ndarray) -> dict:
    """How many clean generations a switch keeps, and rejects as off-task or below its threshold."""
    return {
        "kept": int(kept.sum()),
        "off_task": int((~on_task).sum()),
        "below_threshold": int((on_task & ~kept).sum()),
    }


def _example_page(records: list[dict], kept: np.ndarray, generations: list[dict], per_class: int = 3) -> list[dict]:
    """A few real generations per class and outcome: kept, rejected by the switch, dropped by the clean-up."""
    page, shown = [], {}
    outcomes = [("kept" if k else r["reason"], r) for r, k in zip(records, kept, strict=True)]
    outcomes += [(r["reason"], r) for r in generations if r["reason"] not in ("kept", "off_task", "below_threshold")]
    for outcome, r in outcomes:
        slot = (str(r["label"]), outcome)
        if shown.get(slot, 0) < per_class:
            shown[slot] = shown.get(slot, 0) + 1
            page.append({"label": r["label"], "outcome": outcome, "text": r["text"]})
    return page


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
        "## The previous switch (gold-only CrossTune teacher, absolute thresholds): the previous session's runs",
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


#: The accuracy arms of the switch runs, in the order of the tables.
ARMS = {
    "gold": "gold",
    "no_switch": "+ aug, no switch",
    "switch": "+ aug, switch (GridSearchCV, best mean)",
    "switch_1se": "+ aug, switch (GridSearchCV, one-SE rule)",
    "switch_logloss": "+ aug, switch (GridSearchCV, log-loss)",
    **{f"t={t}": f"+ aug, switch t={t}" for t in JUDGE_THRESHOLDS},
    "best_t": "+ aug, switch, each task's best threshold (chosen on test)",
    **{f"prev={t}": f"+ aug, previous judge (LR) t={t}" for t in PREVIOUS_THRESHOLDS},
    "oracle": "+ aug, oracle",
}


#: The switches GridSearchCV chose, one per selection rule.
SELECTIONS = ("switch", "switch_1se", "switch_logloss")


def _arm(run: dict, key: str):
    if key.startswith("t="):
        return run.get("switch_t", {}).get(key[2:])
    if key.startswith("prev="):
        return run.get("previous_judge", {}).get("switch_t", {}).get(key[5:])
    if key == "best_t":
        return max(run["switch_t"].values()) if "switch_t" in run else None
    return run.get(key)


#: The judges whose rejection rates are reported: where each run keeps them, per threshold.
JUDGES = {
    "CrossTune (default)": lambda run: run["switch_at"],
    "LR C=10 (previous default)": lambda run: run.get("previous_judge", {}).get("switch_at"),
}


def rejection_summary(switch_at: list[dict]) -> dict:
    """Threshold -> the mean over runs of the share of each kind rejected, and of precision and recall."""
    out = {}
    for t in switch_at[0]:
        kinds = sorted({k for at in switch_at for k in at[t] if k not in ("precision", "recall")})
        cell = {k: _mean(at[t].get(k, {}).get("rejected") for at in switch_at) for k in kinds}
        # precision is undefined where nothing was spoiled
        cell["precision"] = _mean(at[t]["precision"] for at in switch_at if at[t]["recall"] is not None)
        cell["recall"] = _mean(at[t]["recall"] for at in switch_at)
        out[t] = cell
    return out


def summarise_judges(records: list[dict]) -> dict:
    """Means over seeds per task and condition, the share of the clean gain kept, and rejection rates per kind."""
    summary: dict = {"by_task": {}, "gain_kept": {}}
    tasks = [t for t in JUDGE_TASKS if any(r["task"] == t for r in records)]
    for task in tasks:
        for condition in CONDITIONS:
            runs = [r for r in records if r["task"] == task and r["condition"] == condition]
            if not runs:
                continue
            row: dict = {key: _mean(_arm(r, key) for r in runs) for key in ARMS}
            row["std"] = {
                key: float(np.std([_arm(r, key) for r in runs]))
                if all(_arm(r, key) is not None for r in runs)
                else None
                for key in ARMS
            }
            if all("cv_scores" in r for r in runs):
                # what GridSearchCV saw: each threshold's mean validation score and the folds' spread
                row["cv"] = {
                    "mean": np.mean([r["cv_scores"] for r in runs], axis=0).tolist(),
                    "fold_std": np.mean([r["cv_std"] for r in runs], axis=0).tolist(),
                }
                if all("cv_log_loss" in r for r in runs):
                    row["cv"]["log_loss"] = np.mean([r["cv_log_loss"] for r in runs], axis=0).tolist()
            row |= {
                "seeds": [r["seed"] for r in runs],
                "thresholds": [r.get("threshold") for r in runs],
                "thresholds_1se": [r.get("threshold_1se") for r in runs],
                "thresholds_logloss": [r.get("threshold_logloss") for r in runs],
            }
            row["rejected"] = {
                judge: rejection_summary([at(r) for r in runs])
                for judge, at in JUDGES.items()
                if all(at(r) is not None for r in runs)
            }
            summary["by_task"][f"{task}@{condition}"] = row
    for condition in CONDITIONS:
        both = [t for t in tasks if f"{t}@{condition}" in summary["by_task"] and f"{t}@clean" in summary["by_task"]]
        both = [t for t in both if summary["by_task"][f"{t}@{condition}"]["gold"] is not None]
        if not both:
            continue
        rows = [summary["by_task"][f"{t}@{condition}"] for t in both]
        clean = [summary["by_task"][f"{t}@clean"] for t in both]
        gold = np.mean([r["gold"] for r in rows])
        clean_gain = np.mean([c["no_switch"] for c in clean]) - gold
        entry = {"tasks": both, "clean_gain": float(clean_gain)}
        for key in ARMS:
            if key != "gold" and clean_gain > 0 and all(r[key] is not None for r in rows):
                entry[key] = float((np.mean([r[key] for r in rows]) - gold) / clean_gain)
        # the bar's second half: how far below no switch each task's chosen switch is
        for key in SELECTIONS:
            if all(r[key] is not None for r in rows):
                entry[f"{key}_vs_no_switch"] = {
                    t: float(r[key] - r["no_switch"]) for t, r in zip(both, rows, strict=True)
                }
        summary["gain_kept"][condition] = entry
    return summary


def judge_markdown(summary: dict, machine: str, judge_vectors: str = "MiniLM") -> str:
    """The tables of the switch: accuracies, the share of the clean gain kept, and rejection rates per kind.

    ``judge_vectors`` names the black box of the switch's vectors (the student is CrossTune on MiniLM).
    """

    def pct(v):
        return "–" if v is None else f"{100 * v:.1f}"

    def share(v):
        return "–" if v is None else f"{100 * v:.1f} %"

    n_seeds = sorted({len(row["seeds"]) for row in summary["by_task"].values()})
    lines = [
        "",
        "## The switch: off-task check, then the out-of-fold label judge with a CrossTune teacher (this version)",
        "",
        "Conditions: `clean` (no noise), `relabel30` (30 % of the generations are texts of another label), "
        "`mix` (10 % relabelled, 20 % off-task: AG News headlines, 10 % near-copies of a demonstration shown "
        "in the prompt). The switch is the augmenter's defaults: the off-task check (cosine similarity to the gold "
        f"examples' centroid in the {judge_vectors} vectors, rejected below the gold examples' own 5 % quantile), "
        f"then the label judge (CrossTune on the {judge_vectors} vectors with the label descriptions, fitted out of "
        "fold on the gold "
        "examples and the other 3 folds' generations; kept at `threshold` × the class's mean probability). "
        "`previous judge (LR)`: the judge this one replaced (a logistic regression, C=10, on the same vectors, "
        "the gold examples counted 4 times), on the same generations after the same off-task check. "
        f"GridSearchCV: {GRID_FOLDS}-fold on the gold training data over `threshold` in {list(JUDGE_THRESHOLDS)} "
        "(0 = the off-task check only), with the folds' standard deviation; `best mean` refits the best mean score, "
        "`one-SE rule` the lowest "
        "threshold within one standard error of it (`lowest_threshold_within_one_se`). The `mix` condition was "
        "run without GridSearchCV (time). 128 generated per class (clinc150: 32). "
        f"Seeds per row: {', '.join(map(str, n_seeds))}. Machine: {machine}.",
        "",
        "Test accuracy (%), mean over seeds (± standard deviation over seeds for no switch and the switches):",
        "",
        "| task | condition | seeds | "
        + " | ".join(ARMS.values())
        + " | thresholds chosen (best mean; one-SE; log-loss) |",
        "|---|---|---|" + "---:|" * len(ARMS) + "---|",
    ]
    spread = ("no_switch", *SELECTIONS)
    for key, row in summary["by_task"].items():
        task, condition = key.split("@")
        if row["gold"] is None:
            continue
        cells = []
        for arm in ARMS:
            cell = pct(row[arm])
            if arm in spread and row[arm] is not None and row["std"][arm] is not None:
                cell += f" ± {100 * row['std'][arm]:.1f}"
            cells.append(cell)
        chosen = "; ".join(
            ", ".join(str(t) for t in row[k] if t is not None) or "–"
            for k in ("thresholds", "thresholds_1se", "thresholds_logloss")
        )
        seeds = ", ".join(str(s) for s in row["seeds"])
        lines.append(f"| {task} | {condition} | {seeds} | " + " | ".join(cells) + f" | {chosen} |")
    lines += [
        "",
        "Share of the clean-augmentation gain kept (mean over the tasks listed; gain = accuracy − gold accuracy, "
        "divided by the gain of augmentation without switch in the clean condition), and each task's switch "
        "minus no switch (points):",
        "",
        "| condition | tasks | clean gain (points) | "
        + " | ".join(v for k, v in ARMS.items() if k != "gold")
        + " | best mean − no switch | one-SE − no switch | log-loss − no switch |",
        "|---|---|---:|" + "---:|" * (len(ARMS) - 1) + "---|---|---|",
    ]
    for condition, entry in summary["gain_kept"].items():
        cells = " | ".join(share(entry.get(k)) for k in ARMS if k != "gold")
        deltas = [
            ", ".join(f"{t} {100 * d:+.1f}" for t, d in entry[f"{key}_vs_no_switch"].items())
            if f"{key}_vs_no_switch" in entry
            else "–"
            for key in SELECTIONS
        ]
        lines.append(
            f"| {condition} | {', '.join(entry['tasks'])} | {100 * entry['clean_gain']:.1f} | {cells} | "
            + " | ".join(deltas)
            + " |"
        )
    searched = {key: row for key, row in summary["by_task"].items() if "cv" in row}
    if searched:
        lines += [
            "",
            "What GridSearchCV saw: each threshold's mean validation score over its folds of the gold data (%, mean "
            "over seeds), the standard deviation between the folds (mean over seeds), and each threshold's mean "
            "validation log-loss (where recorded):",
            "",
            "| task | condition | " + " | ".join(f"t={t}" for t in JUDGE_THRESHOLDS) + " | fold std | log-loss |",
            "|---|---|" + "---:|" * (len(JUDGE_THRESHOLDS) + 1) + "---:|",
        ]
        for key, row in searched.items():
            task, condition = key.split("@")
            cells = " | ".join(pct(v) for v in row["cv"]["mean"])
            spread = " / ".join(pct(v) for v in row["cv"]["fold_std"])
            losses = " / ".join(f"{v:.3f}" for v in row["cv"].get("log_loss", [])) or "–"
            lines.append(f"| {task} | {condition} | {cells} | {spread} | {losses} |")
    lines += [
        "",
        "Share of each kind of generation rejected (clean-up and switch together; near-copies are dropped by the "
        "clean-up), with the switch's precision and recall at rejecting the spoiled ones, at each threshold "
        "(t=0: the off-task check alone). On-task kept = 100 − clean rejected. Generations the clean-up drops as "
        "too long or duplicate are not counted (many AG News texts are longer than three times the longest sst2 "
        "gold text): the rates are of what reaches the switch, plus the near-copies.",
        "",
        "| task | condition | judge | t | clean | relabelled | off-task | near-copy | precision | recall |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for key, row in summary["by_task"].items():
        task, condition = key.split("@")
        for judge, t, cell in [(j, t, c) for j, cells in row["rejected"].items() for t, c in reversed(cells.items())]:
            if judge == "CrossTune (default)" and judge_vectors != JUDGE_VECTORS["minilm"]:
                judge = f"CrossTune ({judge_vectors} vectors)"  # the default judge, on another black box
            lines.append(
                f"| {task} | {condition} | {judge} | {t} | {pct(cell.get('clean'))} | {pct(cell.get('relabel'))} | "
                f"{pct(cell.get('off_task'))} | {pct(cell.get('near_copy'))} | {pct(cell['precision'])} | "
                f"{pct(cell['recall'])} |"
            )
    return "\n".join(lines) + "\n"


def plot_judges(summary: dict, path: Path) -> None:
    """Each switch's test accuracy minus that of no switch, per task and condition (means over seeds)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    conditions = [
        c
        for c in CONDITIONS
        if any(k.endswith("@" + c) and v["gold"] is not None for k, v in summary["by_task"].items())
    ]
    styles = {
        "switch": ("switch, GridSearchCV (best mean)", "tab:blue"),
        "switch_1se": ("switch, GridSearchCV (one-SE rule)", "tab:purple"),
        "switch_logloss": ("switch, GridSearchCV (log-loss)", "tab:olive"),
        "t=0.0": ("off-task check only (t=0)", "tab:orange"),
        f"t={DEFAULT_T}": (f"switch at the default t={DEFAULT_T}", "tab:cyan"),
        f"prev={DEFAULT_T}": (f"previous judge (LR) at t={DEFAULT_T}", "tab:brown"),
        "oracle": ("oracle", "tab:green"),
    }
    fig, axes = plt.subplots(1, len(conditions), figsize=(5.2 * len(conditions), 3.9), squeeze=False, sharey=True)
    for ax, condition in zip(axes[0], conditions, strict=True):
        rows = {
            k.split("@")[0]: v
            for k, v in summary["by_task"].items()
            if k.endswith("@" + condition) and v["gold"] is not None  # judge-only runs have no accuracy
        }
        tasks = list(rows)
        width = 0.8 / len(styles)
        for j, (key, (label, color)) in enumerate(styles.items()):
            values = [
                100 * (rows[t][key] - rows[t]["no_switch"]) if rows[t].get(key) is not None else np.nan for t in tasks
            ]
            offset = (j - (len(styles) - 1) / 2) * width
            ax.bar(np.arange(len(tasks)) + offset, values, width, color=color, label=label)
        ax.axhline(0, color="tab:red", linewidth=1, label="no switch")
        ax.axhline(-1, color="0.5", linewidth=0.8, linestyle="--", label="1 point below no switch (the bar)")
        ax.set_xticks(np.arange(len(tasks)), tasks)
        seeds = sorted({len(r["seeds"]) for r in rows.values()})
        ax.set_title(f"{condition} (simulation, {'/'.join(map(str, seeds))} seeds)")
    axes[0][0].set_ylabel("test accuracy − no switch (points)")
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=4, fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.13, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)


#: How the report names the black box of the switch's vectors, by ``--judge-model``.
JUDGE_VECTORS = {"minilm": "MiniLM", "mpnet": "all-mpnet-base-v2"}


def write_report(records: list[dict], judge_records: list[dict], results_dir: Path, machine: str) -> list[Path]:
    summary = summarise(records)
    judges = summarise_judges(judge_records)
    json_path = results_dir / "augment_sim.json"
    md_path = results_dir / "augment_sim.md"
    payload = {
        "machine": machine,
        "summary": summary,
        "runs": records,
        "judge_summary": judges,
        "judge_runs": judge_records,
    }
    json_path.write_text(json.dumps(payload, indent=1) + "\n")
    models = sorted({r.get("judge_model", "minilm") for r in judge_records})
    vectors = " / ".join(JUDGE_VECTORS.get(m, m) for m in models) or JUDGE_VECTORS["minilm"]
    md_path.write_text(markdown(records, summary, OLD_MACHINE) + judge_markdown(judges, machine, vectors))
    written = [json_path, md_path]
    if any(row["gold"] is not None for row in judges["by_task"].values()):  # judge-only runs have no accuracy
        plot_judges(judges, results_dir / "augment_sim.png")
        written.append(results_dir / "augment_sim.png")
    return written


def merge(records: list[dict], new: dict, key) -> list[dict]:
    """Records with ``new`` merged into the one with the same ``key`` (or appended)."""
    out, merged = [], False
    for record in records:
        if key(record) == key(new):
            record, merged = {**record, **new}, True
        out.append(record)
    return out if merged else out + [new]


def _judge_key(record: dict) -> tuple:
    return record["task"], record["seed"], record["condition"]


def main(argv=None) -> None:
    """Run the switch against the stand-in (``results/augment_sim.*``) or a real LLM (``results/augment_llm.*``)."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.augment_sim", description=__doc__.split("\n\n")[0])
    parser.add_argument("--generator", default="stand-in", help="stand-in (default) or a local LLM: qwen1.5b")
    parser.add_argument("--tasks", nargs="+", default=None)
    parser.add_argument("--seeds", nargs="+", type=int, default=[13, 21, 42, 87, 100])
    parser.add_argument("--conditions", nargs="+", default=list(CONDITIONS), choices=list(CONDITIONS))
    parser.add_argument("--n-per-class", type=int, default=None)
    parser.add_argument("--no-grid", nargs="*", default=[], help="tasks run without the GridSearchCV row (time)")
    parser.add_argument("--judge-only", nargs="*", default=[], help="tasks run for rejection rates only (time)")
    parser.add_argument("--data-home", type=Path, default=DEFAULT_DATA_HOME)
    parser.add_argument("--results-dir", type=Path, default=DEFAULT_RESULTS_DIR)
    parser.add_argument("--machine", default="2-core CPU machine, shared with other jobs")
    parser.add_argument("--report-only", action="store_true")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads of a local LLM server")
    parser.add_argument(
        "--requests-only",
        action="store_true",
        help="with a local LLM: replay every LLM request of the recorded runs through the store (no server started, "
        "no student fitted) and record how many answers were paid",
    )
    parser.add_argument(
        "--judge-model",
        default="minilm",
        help="black box of the switch's vectors: minilm (the student's, default) or mpnet; give it its own "
        "--results-dir",
    )
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    torch.set_num_threads(1)
    if args.generator != "stand-in":
        return run_llm(args)
    tasks = args.tasks or list(JUDGE_TASKS)
    n_per_class = args.n_per_class or N_PER_CLASS
    json_path = args.results_dir / "augment_sim.json"
    stored = json.loads(json_path.read_text()) if json_path.exists() else {}
    records = stored.get("runs", [])
    # runs of an earlier switch are left out: their code is in the git history
    judge_records = [r for r in stored.get("judge_runs", []) if r.get("switch_version") == SWITCH_VERSION]
    if not args.report_only:
        from tests._openai_server import OpenAIServer

        done = {_judge_key(r) for r in judge_records}
        with OpenAIServer() as server:
            for seed in args.seeds:
                for task in tasks:
                    for condition in args.conditions:
                        if (task, seed, condition) in done:
                            continue
                        kwargs = dict(server=server, data_home=args.data_home, n_per_class=n_per_class)
                        grid = task not in args.no_grid and condition != "mix"
                        kwargs |= dict(grid=grid, judge_only=task in args.judge_only, judge_model=args.judge_model)
                        record = run_judge(task, seed, condition, **kwargs)
                        judge_records = merge(judge_records, record, _judge_key)
                        write_report(records, judge_records, args.results_dir, args.machine)
                        print(f"{task} seed {seed} {condition}: " + json.dumps(record)[:600], flush=True)
    print("wrote", ", ".join(str(p) for p in write_report(records, judge_records, args.results_dir, args.machine)))


#: The accuracy arms of the real-LLM tables, in order: (key, heading).
LLM_ARMS = {
    "gold": "gold only",
    "no_switch": "gold + every generation",
    "switch": "switch (GridSearchCV, best mean)",
    "switch_1se": "switch (GridSearchCV, one-SE)",
    "switch_logloss": "switch (GridSearchCV, log-loss)",
    **{f"t={t}": f"default judge t={t}" for t in JUDGE_THRESHOLDS},
    **{f"gen={t}": f"generator judge t={t}" for t in JUDGE_THRESHOLDS[1:]},
    "best_t": "each task's best threshold (chosen on test: an upper reference)",
}


def _llm_arm(run: dict, key: str):
    if key.startswith("gen="):
        return run.get("generator_judge", {}).get("switch_t", {}).get(key[4:])
    return _arm(run, key)


def summarise_llm(records: list[dict]) -> dict:
    """Per task: mean accuracy of each arm over seeds, what was rejected and why, and what the answers cost."""
    by_task = {}
    for task in dict.fromkeys(r["task"] for r in records):
        runs = [r for r in records if r["task"] == task and "gold" in r]
        if not runs:
            continue
        row = {key: _mean(_llm_arm(r, key) for r in runs) for key in LLM_ARMS}
        row["n_runs"] = {key: sum(_llm_arm(r, key) is not None for r in runs) for key in LLM_ARMS}
        row["std"] = {
            key: float(np.std([_llm_arm(r, key) for r in runs]))
            for key in ("gold", "no_switch", "switch")
            if all(_llm_arm(r, key) is not None for r in runs)
        }
        row["seeds"] = [r["seed"] for r in runs]
        row["thresholds"] = [r.get("threshold") for r in runs]
        row["thresholds_1se"] = [r.get("threshold_1se") for r in runs]
        row["thresholds_logloss"] = [r.get("threshold_logloss") for r in runs]
        row["generated"] = int(sum(r["n_generated"] for r in runs))
        dropped: dict = {}
        for r in runs:
            for reason, n in r["drop_counts"].items():
                if reason not in ("off_task", "below_threshold"):
                    dropped[reason] = dropped.get(reason, 0) + n
        row["dropped"] = dropped
        row["switch_at"] = {
            t: {k: int(sum(r["switch_at"][t][k] for r in runs)) for k in ("kept", "off_task", "below_threshold")}
            for t in runs[0]["switch_at"]
        }
        row["generator_switch_at"] = {
            t: {k: int(sum(r["generator_judge"]["switch_at"][t][k] for r in runs)) for k in ("kept", "below_threshold")}
            for t in runs[0]["generator_judge"]["switch_at"]
        }
        row["agreement"] = _mean(r["generator_judge"].get("agreement") for r in runs)
        paid: dict = {}
        for r in runs:
            for phase, cost in r.get("paid", {}).items():
                total = paid.setdefault(phase, dict.fromkeys(cost, 0))
                for k, v in cost.items():
                    total[k] += v
        row["paid"] = paid
        # examples kept at the default threshold in the runs whose generations were paid then (for per-100 figures)
        row["kept_when_paid"] = int(
            sum(r["switch_at"][str(DEFAULT_T)]["kept"] for r in runs if "generation" in r.get("paid", {}))
        )
        row["chat_requests_rerun"] = int(sum(r.get("chat_requests", 0) for r in runs))
        by_task[task] = row
    tasks = list(by_task)
    # a mean over the tasks only where every task has the arm
    overall = {
        key: _mean(by_task[t][key] for t in tasks)
        if all(by_task[t]["n_runs"][key] == len(by_task[t]["seeds"]) for t in tasks)
        else None
        for key in LLM_ARMS
    }
    return {"by_task": by_task, "mean": overall}


def llm_markdown(summary: dict, records: list[dict], machine: str, model: str) -> str:
    """The real LLM's tables: accuracy per arm, rejections per reason, cost, and a page of real generations."""

    def pct(v):
        return "–" if v is None else f"{100 * v:.1f}"

    rows = summary["by_task"]
    seeds = sorted({s for row in rows.values() for s in row["seeds"]})
    lines = [
        f"# LLMAugmenter on real generations: {model}",
        "",
        f"The generator is {model} (GGUF, llama.cpp's `llama-server` on 127.0.0.1, one slot, 2 threads), asked by "
        "`LLMAugmenter` for 16 examples per class (8 per request, 4 gold demonstrations per class in each prompt, "
        "temperature 1.0). The student is CrossTune (all-MiniLM-L6-v2, label descriptions), 16 gold examples per "
        f"class, split seeds {', '.join(map(str, seeds))}; accuracy (%) on the full test set, mean over seeds. "
        "`default judge`: the augmenter's defaults (the off-task check, then CrossTune out of fold) at a fixed "
        'threshold; `generator judge`: `teacher="generator"`, the generating model\'s own label-word '
        "log-probabilities, after the same off-task check; `switch (GridSearchCV)`: the default judge's threshold "
        f"chosen by {LLM_GRID_FOLDS}-fold GridSearchCV over {list(JUDGE_THRESHOLDS)} on the gold training data "
        "(each fold generates for its own training set, from the store on a rerun). No oracle exists for real "
        "generations; `each task's best threshold` is chosen on the test set and only bounds what a selection "
        f"rule could reach. Machine: {machine}.",
        "",
        "| task | seeds | " + " | ".join(LLM_ARMS.values()) + " | thresholds chosen (best mean; one-SE; log-loss) |",
        "|---|---|" + "---:|" * len(LLM_ARMS) + "---|",
    ]
    for task, row in rows.items():
        cells = []
        for key in LLM_ARMS:
            cell = pct(row[key])
            if key in row["std"]:
                cell += f" ± {100 * row['std'][key]:.1f}"
            elif row[key] is not None and row["n_runs"][key] < len(row["seeds"]):
                cell += f" ({row['n_runs'][key]} seed{'s' if row['n_runs'][key] > 1 else ''})"
            cells.append(cell)
        chosen = "; ".join(
            ", ".join(str(t) for t in row[k] if t is not None) or "–"
            for k in ("thresholds", "thresholds_1se", "thresholds_logloss")
        )
        lines.append(f"| {task} | {', '.join(map(str, row['seeds']))} | " + " | ".join(cells) + f" | {chosen} |")
    if rows:
        mean = summary["mean"]
        lines.append("| **mean** | | " + " | ".join(f"**{pct(mean[k])}**" for k in LLM_ARMS) + " | |")
    lines += [
        "",
        "What happened to the generations (summed over seeds; the full training sets only, not the GridSearchCV "
        "folds): dropped by the clean-up, per reason, then the switch's rejections at each threshold.",
        "",
        "| task | generated | clean-up drops | t | off-task | default judge: below threshold | default judge: kept | "
        "generator judge: below threshold | generator judge: kept | agreement of the judges at t=0.5 |",
        "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for task, row in rows.items():
        drops = ", ".join(f"{k} {v}" for k, v in row["dropped"].items() if v) or "none"
        for t, cell in row["switch_at"].items():
            gen = row["generator_switch_at"].get(t)
            gen_cells = f"{gen['below_threshold']} | {gen['kept']}" if gen else "– | –"
            agreement = pct(row["agreement"]) + " %" if t == str(DEFAULT_T) and row["agreement"] is not None else ""
            lines.append(
                f"| {task} | {row['generated']} | {drops} | {t} | {cell['off_task']} | {cell['below_threshold']} | "
                f"{cell['kept']} | {gen_cells} | {agreement} |"
            )
    lines += [
        "",
        "What the answers cost when they were paid (first run; a rerun reads them from the store): answers stored, "
        "tokens the server processed, wall time (for generation, of the whole `fit_resample`: the requests, the "
        "off-task check and the default judge), summed over the seeds whose run paid them; for generation, per 100 "
        "examples those runs kept at the default threshold. Runs stopped and resumed paid a few answers that no "
        "record counts.",
        "",
        "| task | phase | answers | prompt tokens | completion tokens | wall time | per 100 kept: tokens, time |",
        "|---|---|---:|---:|---:|---:|---|",
    ]
    for task, row in rows.items():
        kept = row["kept_when_paid"]
        for phase, cost in row["paid"].items():
            per = "–"
            if phase == "generation" and kept:
                tokens = (cost["prompt_tokens"] + cost["completion_tokens"]) * 100 / kept
                per = f"{tokens:,.0f} tokens, {cost['seconds'] * 100 / kept:.0f} s"
            lines.append(
                f"| {task} | {phase} | {cost['answers']} | {cost['prompt_tokens']:,} | {cost['completion_tokens']:,} | "
                f"{cost['seconds']:.0f} s | {per} |"
            )
    lines += ["", "Chat requests sent by the latest run (0 when every answer came from the store):", ""]
    lines += [f"- {task}: {row['chat_requests_rerun']}" for task, row in rows.items()]
    lines += ["", "## A page of real generations per task (first seed), by outcome at the default threshold", ""]
    for task in rows:
        first = next(r for r in records if r["task"] == task and "examples" in r)
        lines += [f"### {task} (seed {first['seed']})", "", "| label | outcome | text |", "|---|---|---|"]
        for example in first["examples"]:
            text = str(example["text"]).replace("|", "\\|").replace("\n", " ")
            lines.append(f"| {example['label']} | {example['outcome']} | {text[:300]} |")
        lines.append("")
    return "\n".join(lines) + "\n"


def write_llm_report(records: list[dict], results_dir: Path, machine: str, model: str) -> list[Path]:
    """``augment_llm.json`` (the runs, their summary and the bar's figures) and ``augment_llm.md``."""
    summary = summarise_llm(records)
    tasks = {
        task: {
            "gold": _percent(row["gold"]),
            "all": _percent(row["no_switch"]),
            "switch": _percent(row["switch"]),
            "switch_seeds": row["n_runs"]["switch"],  # GridSearchCV runs so far (the other arms: every seed)
            "chat_requests_rerun": row["chat_requests_rerun"],
        }
        for task, row in summary["by_task"].items()
    }
    payload = {"model": model, "machine": machine, "tasks": tasks, "summary": summary, "runs": records}
    json_path, md_path = results_dir / "augment_llm.json", results_dir / "augment_llm.md"
    json_path.write_text(json.dumps(payload, indent=1) + "\n")
    md_path.write_text(llm_markdown(summary, records, machine, model))
    return [json_path, md_path]


def _percent(value):
    return None if value is None else round(100 * value, 2)


def replay_requests(records: list[dict], server, data_home: Path, generator: str) -> list[dict]:
    """Every LLM request of the recorded runs, without the students: each run's generations (of the full training
    set, and of the GridSearchCV folds where the run searched) and the generator judge's answers, through the store.

    Returns the records with ``chat_requests`` set to the answers this replay paid (0 when the store holds every
    one, as on a fresh clone with the committed replies loaded) and ``rerun`` to ``"requests-only replay"``.
    """
    from sklearn.base import clone
    from sklearn.model_selection import StratifiedKFold

    from .replies import count_answers

    out, start = [], time.perf_counter()
    for record in records:
        task, seed = record["task"], record["seed"]
        before = count_answers(LLM_STORE)
        data, _, _, augmenter = setup_judge_run(task, seed, REAL, server, data_home, 16, "minilm", generator)
        X, y = np.asarray(list(data.X_train), dtype=object), np.asarray(data.y_train)
        clone(augmenter).set_params(threshold=1.0, teacher="generator").fit_resample(X, y)
        if "cv_scores" in record:
            for train, _ in StratifiedKFold(LLM_GRID_FOLDS, shuffle=True, random_state=seed).split(X, y):
                clone(augmenter).set_params(threshold=0.0).fit_resample(X[train], y[train])
        paid = count_answers(LLM_STORE) - before
        out.append({**record, "chat_requests": paid, "rerun": "requests-only replay"})
        print(f"{task} seed {seed}: every LLM request replayed, {paid} answers paid", flush=True)
    print(f"replay of {len(records)} runs in {time.perf_counter() - start:.0f} s", flush=True)
    return out


class _Endpoint:
    """The benchmarks' fixed endpoint, with no server started: a replay that finds every answer stored needs none."""

    def __init__(self, port: int, alias: str):
        self.url = f"http://127.0.0.1:{port}/v1"
        self.alias = alias


def run_llm(args) -> None:
    """The real LLM's runs: the committed answers loaded first, every task and seed run (from the store where
    answered before), the answers exported after each, and ``results/augment_llm.*`` written."""
    from .llm import BENCHMARK_PORT, LLMS, LlamaServer, install_llm, llama_server_binary
    from .replies import export_answers, load_answers

    tasks = args.tasks or list(LLM_TASKS)
    n_per_class = args.n_per_class or 16
    json_path = args.results_dir / "augment_llm.json"
    stored = json.loads(json_path.read_text()) if json_path.exists() else {}
    records = stored.get("runs", [])
    if args.requests_only:
        loaded = load_answers(LLM_REPLIES, LLM_STORE)
        print(f"{loaded} committed answers loaded into {LLM_STORE}", flush=True)
        spec = LLMS[args.generator]
        mine = [r for r in records if r["task"] in tasks and r["seed"] in args.seeds]
        replayed = replay_requests(mine, _Endpoint(BENCHMARK_PORT, spec.alias), args.data_home, args.generator)
        for record in replayed:
            records = merge(records, record, _judge_key)
        print("wrote", ", ".join(map(str, write_llm_report(records, args.results_dir, args.machine, spec.alias))))
        return
    if not args.report_only:
        loaded = load_answers(LLM_REPLIES, LLM_STORE)
        print(f"{loaded} committed answers loaded into {LLM_STORE}", flush=True)
        spec = LLMS[args.generator]
        # one slot, the prompt cache on: requests share their beginning (instruction, labels), read once; the
        # store, not the sampler, makes a rerun identical
        server = LlamaServer(
            install_llm(args.generator),
            spec.alias,
            port=BENCHMARK_PORT,
            threads=args.threads,
            cache_prompt=True,
            binary=llama_server_binary(build=True),  # the shared wheel, else a build (said how long first)
        )
        with server:
            for seed in args.seeds:
                for task in tasks:
                    kwargs = dict(server=server, data_home=args.data_home, n_per_class=n_per_class)
                    record = run_judge(
                        task, seed, REAL, generator=args.generator, grid=task not in args.no_grid, **kwargs
                    )
                    record.setdefault("chat_requests", 0)
                    records = merge(records, record, _judge_key)
                    export_answers(LLM_STORE, LLM_REPLIES)
                    write_llm_report(records, args.results_dir, args.machine, spec.alias)
                    brief = {k: record.get(k) for k in ("gold", "no_switch", "switch", "threshold", "chat_requests")}
                    print(f"{task} seed {seed}: {json.dumps(brief)} in {record['seconds']} s", flush=True)
    alias = LLMS[args.generator].alias if args.generator in LLMS else args.generator
    print("wrote", ", ".join(map(str, write_llm_report(records, args.results_dir, args.machine, alias))))


if __name__ == "__main__":
    main()
