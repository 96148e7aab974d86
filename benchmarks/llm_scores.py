"""The chat LLM as a black box for scores: zero-shot by label-word log-probabilities, and DecT over them.

One request per text asks the local LLM (``benchmarks.llm``) for a one-token
answer under an instruction that lists the labels with their descriptions
(the generator judge's instruction, ``skcrosstune.augment._judges``); the
log-probabilities of the labels' answer words (their names, or their numbers
when names are not one word each) are the scores. Compared, on the same
test texts:

* ``zero-shot (LLM log-probs)``: the label with the highest score;
* ``zero-shot (MiniLM descriptions)``: the label whose description embeds
  closest (``peers.ZeroShotClassifier``);
* ``DecT (LLM label words)``: DecT on the MiniLM vectors with the LLM's
  scores as its zero-shot term (the paper's setting, with a real language
  model giving the label-word scores), 16 shots;
* ``DecT (MiniLM descriptions)``: DecT as the package's default;

with the cost of the LLM's answers per 1,000 texts (tokens the server
processed, wall time). The test sets are subsampled (``--n-test`` texts drawn
once with seed 0) to keep the LLM's time within a session; every answer goes
through the store (``augment_sim.LLM_STORE``) and into the committed replies
file, so a rerun sends no request.

Run from the repository root::

    python -m benchmarks.llm_scores --seeds 13 21 42
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin, clone

from .augment_sim import LLM_REPLIES, LLM_STORE, TASK_DESCRIPTIONS
from .fewshot import DEFAULT_CACHE_DIR, DEFAULT_DATA_HOME, DEFAULT_RESULTS_DIR, load_descriptions

TASKS = ("sst2", "sst5", "trec", "agnews")
N_TEST = 300


class LLMLabelWordScorer(TransformerMixin, BaseEstimator):
    """Vectors from one black box, label-word log-probabilities from a chat LLM: what DecT reads with label words.

    ``transform`` gives ``embedder``'s vectors; the label-word scores of a
    text are the log-probabilities of the answer words as the first token of
    the LLM's answer under ``instruction``, each answer kept in ``store``.

    Parameters
    ----------
    embedder : transformer
        The representation (fitted clone).
    model, base_url : str
        The chat model and its OpenAI-compatible endpoint.
    instruction : str
        The system message listing the labels and their answer words.
    store : path
        Where the LLM's answers are kept.
    """

    def __init__(self, embedder=None, model=None, base_url=None, instruction=None, store=None):
        self.embedder = embedder
        self.model = model
        self.base_url = base_url
        self.instruction = instruction
        self.store = store

    def fit(self, X, y=None):
        """Fit the embedder's clone."""
        self.embedder_ = clone(self.embedder).fit(X)
        self.n_llm_queries_ = 0
        return self

    def transform(self, X):
        """The embedder's vectors."""
        return self.embedder_.transform(X)

    def label_word_log_probs(self, X, words: list[str]) -> np.ndarray:
        """One row per text: the log-probability of each answer word, through the store."""
        from skcrosstune.backends.openai_logprobs import OpenAILogProbBackend, label_word_fingerprint
        from skcrosstune.cache import query_through_store
        from skcrosstune.stores import open_store

        backend = OpenAILogProbBackend(
            self.model, base_url=self.base_url, api_key_env=None, instruction=self.instruction, timeout=600.0
        )
        store = open_store(self.store, label_word_fingerprint(backend, words))
        scores, report = query_through_store(
            list(X), lambda batch: backend.query_label_words(batch, words), store=store, batch_size=16
        )
        self.n_llm_queries_ += report.n_queried
        return np.asarray(scores, dtype=np.float32)

    def _transform_and_label_word_scores(self, X, label_words, *, output="logits"):
        # DecT's protocol for label words (as BlackBoxEmbedder's for a masked LM): one answer word per class
        return self.transform(X), self.label_word_log_probs(X, [group[0] for group in label_words])


def run(task: str, seeds: list[int], server, data_home: Path, n_test: int, store: Path) -> dict:
    """Test accuracy of the four zero-shot and DecT rows on one task, and what the LLM's answers cost."""
    from sklearn.metrics import accuracy_score

    from skcrosstune import BlackBoxEmbedder, DecTClassifier
    from skcrosstune.augment._judges import answer_words, judge_instruction
    from skcrosstune.datasets import load_fewshot

    from .peers import ZeroShotClassifier
    from .replies import count_answers

    first = load_fewshot(task, 16, seeds[0], data_home=data_home)
    pick = np.sort(
        np.random.default_rng(0).choice(len(first.X_test), size=min(n_test, len(first.X_test)), replace=False)
    )
    X_test = [first.X_test[i] for i in pick]
    y_test = np.asarray(first.y_test)[pick]
    classes = sorted(first.labels)
    descriptions = load_descriptions(task, first.labels)
    words = answer_words(classes)
    instruction = judge_instruction(TASK_DESCRIPTIONS[task], classes, [descriptions[c] for c in classes])
    minilm = BlackBoxEmbedder(store=DEFAULT_CACHE_DIR)
    scorer = LLMLabelWordScorer(minilm, server.alias, server.url, instruction, store)

    answers, tokens, start = count_answers(store), server.token_counts(), time.perf_counter()
    fitted = scorer.fit(X_test)
    log_probs = fitted.label_word_log_probs(X_test, words)
    seconds = time.perf_counter() - start
    paid = count_answers(store) - answers
    after = server.token_counts()
    cost = {
        "answers": paid,
        "prompt_tokens": after["prompt"] - tokens["prompt"],
        "completion_tokens": after["completion"] - tokens["completion"],
        "seconds": round(seconds, 1),
    }
    out = {
        "task": task,
        "n_test": len(X_test),
        "answer_words": words,
        "zero_shot_llm": float(accuracy_score(y_test, np.asarray(classes, dtype=object)[log_probs.argmax(axis=1)])),
        "zero_shot_minilm": float(
            accuracy_score(y_test, ZeroShotClassifier(minilm, descriptions).fit(X_test).predict(X_test))
        ),
        "test_cost": cost if paid else None,
        "seeds": {},
    }
    label_words = {c: [w] for c, w in zip(classes, words, strict=True)}
    for seed in seeds:
        data = load_fewshot(task, 16, seed, data_home=data_home)
        dect_llm = DecTClassifier(scorer, label_words=label_words, random_state=seed).fit(data.X_train, data.y_train)
        dect_minilm = DecTClassifier(minilm, label_descriptions=descriptions, random_state=seed)
        dect_minilm.fit(data.X_train, data.y_train)
        out["seeds"][str(seed)] = {
            "dect_llm": float(accuracy_score(y_test, dect_llm.predict(X_test))),
            "dect_minilm": float(accuracy_score(y_test, dect_minilm.predict(X_test))),
            "zero_shot_weight_llm": float(dect_llm.zero_shot_weight_),
        }
    out["chat_requests"] = count_answers(store) - answers
    for key in ("dect_llm", "dect_minilm"):
        out[key] = float(np.mean([s[key] for s in out["seeds"].values()]))
    return out


def markdown(records: list[dict], machine: str, model: str) -> str:
    def pct(v):
        return "–" if v is None else f"{100 * v:.1f}"

    seeds = sorted({s for r in records for s in r["seeds"]})
    lines = [
        f"# The LLM as a black box for scores: {model}",
        "",
        "Accuracy (%) on a fixed sample of each test set (drawn once, seed 0; `n` texts). Zero-shot rows use no "
        "training data. DecT rows: 16 shots per class, split seeds " + ", ".join(seeds) + ", mean over seeds; "
        "`DecT (LLM label words)` is DecT on the MiniLM vectors with the LLM's label-word log-probabilities as its "
        "zero-shot term (one LLM request per text, training texts included), `DecT (MiniLM descriptions)` the "
        "package's default. The LLM answers with each label's name, or its number when the names are not one "
        "word each (`answer words`). Cost: what the LLM's answers for the test sample cost when they were paid "
        "(the server's token counters, wall time), per 1,000 texts; a rerun reads them from the store. "
        f"Machine: {machine}.",
        "",
        "| task | n | answer words | zero-shot (LLM log-probs) | zero-shot (MiniLM descriptions) | "
        "DecT (LLM label words) | DecT (MiniLM descriptions) | LLM tokens per 1,000 texts | LLM time per 1,000 texts |",
        "|---|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in records:
        cost = r.get("test_cost")
        tokens = seconds = "–"
        if cost:
            per = 1000 / cost["answers"]
            tokens = f"{(cost['prompt_tokens'] + cost['completion_tokens']) * per:,.0f}"
            seconds = f"{cost['seconds'] * per:.0f} s"
        lines.append(
            f"| {r['task']} | {r['n_test']} | {', '.join(r['answer_words'])} | {pct(r['zero_shot_llm'])} | "
            f"{pct(r['zero_shot_minilm'])} | {pct(r['dect_llm'])} | {pct(r['dect_minilm'])} | {tokens} | {seconds} |"
        )
    keys = ("zero_shot_llm", "zero_shot_minilm", "dect_llm", "dect_minilm")
    means = {k: float(np.mean([r[k] for r in records])) for k in keys}
    lines.append("| **mean** | | | " + " | ".join(f"**{pct(means[k])}**" for k in keys) + " | | |")
    lines += [
        "",
        "Chat requests sent by the latest run: " + ", ".join(f"{r['task']} {r['chat_requests']}" for r in records),
    ]
    return "\n".join(lines) + "\n"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.llm_scores", description=__doc__.split("\n\n")[0])
    parser.add_argument("--generator", default="qwen1.5b")
    parser.add_argument("--tasks", nargs="+", default=list(TASKS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[13, 21, 42])
    parser.add_argument("--n-test", type=int, default=N_TEST)
    parser.add_argument("--data-home", type=Path, default=DEFAULT_DATA_HOME)
    parser.add_argument("--results-dir", type=Path, default=DEFAULT_RESULTS_DIR)
    parser.add_argument("--store", type=Path, default=LLM_STORE)
    parser.add_argument("--port", type=int, default=None, help="default: the benchmarks' fixed port")
    parser.add_argument("--machine", default="2-core CPU machine")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    torch.set_num_threads(1)
    from .llm import BENCHMARK_PORT, LLMS, LlamaServer, install_llm, llama_server_binary
    from .replies import export_answers, load_answers

    committed = args.store == LLM_STORE
    if committed:
        load_answers(LLM_REPLIES, args.store)
    spec = LLMS[args.generator]
    json_path = args.results_dir / "llm_scores.json"
    records = json.loads(json_path.read_text())["runs"] if json_path.exists() else []
    port = args.port or BENCHMARK_PORT
    # one slot with the prompt cache on: the instruction, the same for every text, is read once
    binary = llama_server_binary(build=True)  # the shared wheel, else a build (said how long first)
    with LlamaServer(install_llm(args.generator), spec.alias, port=port, cache_prompt=True, binary=binary) as server:
        for task in args.tasks:
            record = run(task, args.seeds, server, args.data_home, args.n_test, args.store)
            old = next((r for r in records if r["task"] == task), {})
            if record["test_cost"] is None and old.get("test_cost"):
                record["test_cost"] = old["test_cost"]  # paid by an earlier run
            records = [r for r in records if r["task"] != task] + [record]
            if committed:
                export_answers(args.store, LLM_REPLIES)
            json_path.write_text(json.dumps({"model": spec.alias, "machine": args.machine, "runs": records}, indent=1))
            (args.results_dir / "llm_scores.md").write_text(markdown(records, args.machine, spec.alias))
            print(task, {k: record[k] for k in ("zero_shot_llm", "zero_shot_minilm", "dect_llm", "dect_minilm")})


if __name__ == "__main__":
    main()
