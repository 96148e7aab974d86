"""The one place that imports scikit-learn's private helpers.

scikit-learn may move a private name in any release. ``sklearn-compat``
(a dependency) keeps ``_fit_context`` and ``_check_feature_names``
importable from one place across releases; the
parameter-constraint classes and ``_check_feature_names_in`` are not
covered by it and come from scikit-learn itself, here only. The supported scikit-learn range is declared
in ``pyproject.toml``; the test suite runs on its newest release and ``.ci/run``
also runs the estimator tests on its oldest.
"""

from sklearn.utils._param_validation import HasMethods, Interval, StrOptions
from sklearn.utils.validation import _check_feature_names_in
from sklearn_compat.base import _fit_context
from sklearn_compat.utils.validation import _check_feature_names

__all__ = [
    "HasMethods",
    "Interval",
    "StrOptions",
    "_check_feature_names",
    "_check_feature_names_in",
    "_fit_context",
]
