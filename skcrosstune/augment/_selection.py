"""Choosing the switch's knob by cross-validation without trusting noise."""

from __future__ import annotations

import numpy as np

__all__ = ["lowest_threshold_within_one_se"]


def lowest_threshold_within_one_se(cv_results: dict) -> int:
    """A ``refit`` rule for GridSearchCV: the lowest threshold that scores within one standard error of the best.

    A few gold examples make a noisy validation set, and a switch set too
    high throws away generations that would have taught something. This
    rule keeps the switch as open as the scores allow: among the
    candidates whose mean validation score is within one standard error
    (over the folds) of the best one, it picks the lowest ``threshold``,
    and among those the best score. With ``threshold=0`` in the grid,
    filtering is chosen only when it beats keeping everything by more than
    the folds disagree.

    Parameters
    ----------
    cv_results : dict
        ``GridSearchCV.cv_results_``, of a grid with exactly one parameter
        whose name ends in ``threshold`` (such as ``augment__threshold``).

    Returns
    -------
    int
        The index of the chosen candidate, as GridSearchCV's ``refit``
        expects.

    See Also
    --------
    LLMAugmenter : Whose ``threshold`` this chooses.

    Examples
    --------
    >>> from skcrosstune.augment import lowest_threshold_within_one_se
    >>> results = {
    ...     "param_augment__threshold": [0.0, 0.5, 1.0],
    ...     "mean_test_score": [0.80, 0.82, 0.70],
    ...     "std_test_score": [0.05, 0.05, 0.05],
    ...     "split0_test_score": [0.75, 0.77, 0.65],
    ...     "split1_test_score": [0.85, 0.87, 0.75],
    ... }
    >>> lowest_threshold_within_one_se(results)
    0

    Give it to the search as ``GridSearchCV(pipe, {"augment__threshold":
    [0, 0.5, 1]}, refit=lowest_threshold_within_one_se)``.
    """
    names = [key for key in cv_results if key.startswith("param_") and key.endswith("threshold")]
    if len(names) != 1:
        raise ValueError(
            f"lowest_threshold_within_one_se needs a grid with exactly one parameter named '...threshold'; "
            f"got {sorted(key[len('param_') :] for key in cv_results if key.startswith('param_'))}."
        )
    n_splits = sum(key.startswith("split") and key.endswith("_test_score") for key in cv_results)
    mean = np.asarray(cv_results["mean_test_score"], dtype=float)
    standard_error = np.asarray(cv_results["std_test_score"], dtype=float) / np.sqrt(max(n_splits, 1))
    best = int(np.nanargmax(mean))
    close = np.flatnonzero(mean >= mean[best] - standard_error[best])
    thresholds = np.asarray(cv_results[names[0]], dtype=float)
    lowest = close[thresholds[close] == thresholds[close].min()]
    return int(lowest[np.argmax(mean[lowest])])
