"""
Never paying twice: the query cache
===================================

Every answer of the black box is stored on disk, one entry per text, so a
text is queried once no matter how many times it is embedded: across refits,
cross-validation folds, clones and separate Python sessions. This example
watches the two counters ``n_queries_`` and ``n_cache_hits_`` while the same
texts are embedded again.
"""

# %%
# A private cache folder
# ----------------------
# By default the cache lives in ``~/.cache/skcrosstune`` (or
# ``$SKCROSSTUNE_CACHE_DIR``). Here we point ``cache_dir`` at a temporary
# folder so that the first fit really starts empty.
import tempfile
from pathlib import Path

from skcrosstune import BlackBoxEmbedder
from skcrosstune.datasets import load_fewshot

data = load_fewshot("sst2", shots=16, seed=13)
cache_dir = tempfile.mkdtemp(prefix="skcrosstune-cache-")

# %%
# First pass: every text is a query
# ---------------------------------
# The counters restart at each ``fit`` and grow with each ``transform``.
embedder = BlackBoxEmbedder(cache_dir=cache_dir)
X = embedder.fit_transform(data.X_train)
print(f"first pass:  {embedder.n_queries_} queries, {embedder.n_cache_hits_} cache hits")

# %%
# Second pass: every text comes from the cache
# --------------------------------------------
# A new embedder with the same black box and the same folder (as in another
# session, or a clone made by cross-validation) finds every answer on disk.
# Settings applied after the cache, such as ``normalize``, do not change the
# key, so they cost nothing either.
again = BlackBoxEmbedder(cache_dir=cache_dir, normalize=False)
again.fit_transform(data.X_train)
print(f"second pass: {again.n_queries_} queries, {again.n_cache_hits_} cache hits")

# %%
# Only the new texts are sent
# ---------------------------
# Here 8 known training sentences come with 8 new dev sentences, the new ones
# twice. Only the new ones are queried, and once each. The counters add up
# from ``fit`` on, so they now include the second pass.
mixed = data.X_train[:8] + data.X_dev[:8] + data.X_dev[:8]
again.transform(mixed)
print(f"after a mixed batch: {again.n_queries_} queries, {again.n_cache_hits_} cache hits")

# %%
# What is on disk
# ---------------
# One SQLite file per black-box fingerprint, next to a readable JSON note of
# that fingerprint. A setting that changes the answers, such as the token
# budget ``max_length``, makes a new fingerprint and so a separate store.
BlackBoxEmbedder(cache_dir=cache_dir, max_length=32).fit_transform(data.X_train[:4])
for path in sorted(Path(cache_dir).iterdir()):
    if path.suffix in {".sqlite3", ".json"}:
        print(path.name)
print(Path(cache_dir, f"{embedder.cache_.digest}.json").read_text())

# %%
# Clearing the cache is deleting the folder, or one fingerprint's files.
import shutil

shutil.rmtree(cache_dir)
