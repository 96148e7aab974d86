"""Where black-box answers are kept: one module per store kind, nothing here knows about scikit-learn.

``open_store(location, fingerprint)`` opens the store an estimator's ``store``
parameter names: ``"auto"`` (the user cache folder of the machine running),
a folder path (SQLite files, :mod:`skcrosstune.stores.sqlite`) or a
``redis://host:port/db`` URL (:mod:`skcrosstune.stores.redis`).
"""

from .base import (
    Store,
    StoreError,
    StoreUnavailable,
    default_location,
    fingerprint_digest,
    open_store,
    query_counts,
)

__all__ = [
    "Store",
    "StoreError",
    "StoreUnavailable",
    "default_location",
    "fingerprint_digest",
    "open_store",
    "query_counts",
]
