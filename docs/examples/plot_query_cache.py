"""
Never paying twice: the query store
===================================

Every answer of the black box is stored on disk, one entry per text, so a
text is queried once no matter how many times it is embedded: across refits,
cross-validation folds, clones and separate Python sessions. This example
watches the two counters ``n_queries_`` and ``n_cache_hits_`` while the same
texts are embedded again.
"""

# %%
# A private store folder
# ----------------------
# By default the store lives in ``~/.cache/skcrosstune`` (or
# ``$SKCROSSTUNE_CACHE_DIR``). Here we point ``store`` at a temporary
# folder so that the first fit really starts empty.
import tempfile
from pathlib import Path

from skcrosstune import BlackBoxEmbedder
from skcrosstune.datasets import load_fewshot
from skcrosstune.stores import fingerprint_digest

data = load_fewshot("sst2", shots=16, seed=13)
store_dir = tempfile.mkdtemp(prefix="skcrosstune-store-")

# %%
# First pass: every text is a query
# ---------------------------------
# The counters restart at each ``fit`` and grow with each ``transform``.
embedder = BlackBoxEmbedder(store=store_dir)
X = embedder.fit_transform(data.X_train)
print(f"first pass:  {embedder.n_queries_} queries, {embedder.n_cache_hits_} cache hits")

# %%
# Second pass: every text comes from the store
# --------------------------------------------
# A new embedder with the same black box and the same folder (as in another
# session, or a clone made by cross-validation) finds every answer on disk.
# Settings applied after the store, such as ``normalize``, do not change the
# key, so they cost nothing either.
again = BlackBoxEmbedder(store=store_dir, normalize=False)
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
BlackBoxEmbedder(store=store_dir, max_length=32).fit_transform(data.X_train[:4])
for path in sorted(Path(store_dir).iterdir()):
    if path.suffix in {".sqlite3", ".json"}:
        print(path.name)
print(Path(store_dir, f"{fingerprint_digest(embedder.backend_.fingerprint())}.json").read_text())

# %%
# What every user of the store paid
# ---------------------------------
# The store itself counts, per black box, the texts sent and the texts it
# answered, whichever process, clone or machine used it.
print(embedder.store_counts())

# %%
# Clearing the store is deleting the folder, or one fingerprint's files.
import shutil

shutil.rmtree(store_dir)
