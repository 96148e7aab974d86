"""scikit-learn's and imbalanced-learn's ``parametrize_with_checks``, with the checks in a list.

Both hand pytest a generator of checks (scikit-learn before 1.7, and
imbalanced-learn), which pytest 9 deprecates (``PytestRemovedIn10Warning``)
at every collection. The checks are the same; only the container changes,
so pytest's warning still shows for any generator our own tests pass.
"""

import pytest
from imblearn.utils.estimator_checks import parametrize_with_checks as _imblearn_checks
from sklearn.utils.estimator_checks import parametrize_with_checks as _sklearn_checks

__all__ = ["parametrize_with_checks", "parametrize_with_imblearn_checks"]


def _listed(mark):
    argnames, argvalues = mark.args
    return pytest.mark.parametrize(argnames, list(argvalues), **mark.kwargs)


def parametrize_with_checks(estimators, **kwargs):
    """:func:`sklearn.utils.estimator_checks.parametrize_with_checks`, the checks listed."""
    return _listed(_sklearn_checks(estimators, **kwargs))


def parametrize_with_imblearn_checks(estimators, **kwargs):
    """:func:`imblearn.utils.estimator_checks.parametrize_with_checks`, the checks listed."""
    return _listed(_imblearn_checks(estimators, **kwargs))
