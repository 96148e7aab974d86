"""``python -m skcrosstune``: few-shot classification of the bundled SST-2 split.

Embeds the 16-shot training split with the embedded default black box
(all-MiniLM-L6-v2, no download), fits a logistic-regression head (the linear
probe), a CrossTuneClassifier and a DecTClassifier on it, and prints their
accuracy on the 872 test sentences. Each text is queried once; a second run answers everything
from the query cache.
"""

from __future__ import annotations

import argparse
import time

from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline

from .crosstune import CrossTuneClassifier
from .datasets import FEWSHOT_SEEDS, load_fewshot
from .dect import DecTClassifier
from .embedder import BlackBoxEmbedder

#: Label descriptions for the bundled task; other tasks use their label names.
DESCRIPTIONS = {
    "sst2": {
        "negative": "a negative, critical review of a film",
        "positive": "a positive, enthusiastic review of a film",
    }
}


def main(argv=None) -> float:
    """Run the demo; returns CrossTune's test accuracy."""
    parser = argparse.ArgumentParser(prog="python -m skcrosstune", description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="sst2", help="task name (default: the bundled sst2)")
    parser.add_argument("--shots", type=int, default=16, help="examples per class, 1 to 16")
    parser.add_argument("--seed", type=int, default=13, choices=FEWSHOT_SEEDS, help="published split seed")
    parser.add_argument("--data-home", default=None, help="folder of tasks (default: bundled data)")
    parser.add_argument("--verbose", action="store_true", help="show progress bars")
    args = parser.parse_args(argv)

    data = load_fewshot(args.task, shots=args.shots, seed=args.seed, data_home=args.data_home)
    start = time.perf_counter()
    embedder = BlackBoxEmbedder(verbose=args.verbose)
    probe = make_pipeline(embedder, LogisticRegression(max_iter=1000)).fit(data.X_train, data.y_train)
    probe_accuracy = probe.score(data.X_test, data.y_test)
    crosstune = CrossTuneClassifier(
        embedder, DESCRIPTIONS.get(args.task), random_state=args.seed, verbose=args.verbose
    ).fit(data.X_train, data.y_train)
    accuracy = crosstune.score(data.X_test, data.y_test)
    dect = DecTClassifier(
        embedder, label_descriptions=DESCRIPTIONS.get(args.task), random_state=args.seed, verbose=args.verbose
    ).fit(data.X_train, data.y_train)
    dect_accuracy = dect.score(data.X_test, data.y_test)
    seconds = time.perf_counter() - start
    used = [embedder, crosstune.embedder_, crosstune.description_embedder_, dect.embedder_, dect.description_embedder_]
    print(
        f"{args.task}, {args.shots} shots per class, seed {args.seed}: "
        f"{len(data.X_train)} training texts, {len(data.X_test)} test texts"
    )
    print(f"black box: {embedder.model} (embedded default)")
    print(f"linear probe accuracy: {probe_accuracy:.4f}")
    print(f"CrossTune accuracy: {accuracy:.4f}")
    print(f"DecT accuracy: {dect_accuracy:.4f}")
    print(
        f"black-box queries sent: {sum(e.n_queries_ for e in used)}, answered by the cache: "
        f"{sum(e.n_cache_hits_ for e in used)} ({seconds:.1f} s)"
    )
    return accuracy


if __name__ == "__main__":
    main()
