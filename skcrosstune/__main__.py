"""``python -m skcrosstune``: few-shot classification of the bundled SST-2 split.

Embeds the 16-shot training split with the embedded default black box
(all-MiniLM-L6-v2, no download), fits a logistic-regression head on it and
prints the accuracy on the 872 test sentences. A second run answers every
text from the query cache.
"""

from __future__ import annotations

import argparse
import time

from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline

from .datasets import FEWSHOT_SEEDS, load_fewshot
from .embedder import BlackBoxEmbedder


def main(argv=None) -> float:
    """Run the demo; returns the test accuracy."""
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
    model = make_pipeline(embedder, LogisticRegression(max_iter=1000))
    model.fit(data.X_train, data.y_train)
    accuracy = model.score(data.X_test, data.y_test)
    seconds = time.perf_counter() - start
    print(
        f"{args.task}, {args.shots} shots per class, seed {args.seed}: "
        f"{len(data.X_train)} training texts, {len(data.X_test)} test texts"
    )
    print(f"black box: {embedder.model} (embedded default), linear-probe head")
    print(f"accuracy: {accuracy:.4f}")
    print(
        f"black-box queries sent: {embedder.n_queries_}, answered by the cache: "
        f"{embedder.n_cache_hits_} ({seconds:.1f} s)"
    )
    return accuracy


if __name__ == "__main__":
    main()
