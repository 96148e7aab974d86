"""Paid LLM answers as a committed file: export a store folder's chat answers, load them into another.

A benchmark run against a real LLM pays for every reply once, into a
SQLite store folder. :func:`export_answers` writes the answers of its chat
black boxes (generations and log-probability judgements: fingerprints whose
``backend`` starts with ``"openai-chat"``) to gzipped JSON lines, keyed as the
store keys them; :func:`load_answers` writes them into a store folder before
a run, so that a rerun on a fresh clone finds every answer and sends no
request. Texts are kept as text (readable with ``zcat``), other answers as
lists of numbers with their dtype and shape.

Each line is one of::

    {"fingerprint": {...}, "digest": "..."}               # a black box
    {"digest": "...", "key": "...", "text": "..."}        # a stored reply
    {"digest": "...", "key": "...", "dtype": "<f4", "shape": [4], "values": [...]}
"""

from __future__ import annotations

import gzip
import json
import sqlite3
from pathlib import Path

import numpy as np

from skcrosstune.stores import open_store
from skcrosstune.stores.base import fingerprint_digest, unpack_entries

CHAT_BACKENDS = ("openai-chat",)


def _chat_fingerprints(folder: Path) -> dict[str, dict]:
    """Digest -> fingerprint of the chat black boxes with a store file in ``folder``."""
    out = {}
    for note in sorted(Path(folder).glob("*.json")):
        fingerprint = json.loads(note.read_text())
        if (
            str(fingerprint.get("backend", "")).startswith(CHAT_BACKENDS)
            and fingerprint_digest(fingerprint) == note.stem
        ):
            out[note.stem] = fingerprint
    return out


def _entries(folder: Path, digest: str) -> list[tuple[str, np.ndarray]]:
    """Every sound ``(key, answer)`` of one fingerprint's SQLite file, read-only."""
    files = sorted(Path(folder).glob(f"{digest}.v*.sqlite3"))
    out = []
    for path in files:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as conn:
            blobs = [row[0] for row in conn.execute("SELECT entry FROM entries")]
        found, _ = unpack_entries(blobs)
        for _, keys, block in found:
            out += [(bytes(key).hex(), np.asarray(row)) for key, row in zip(keys, block, strict=True)]
    return out


def count_answers(folder: Path) -> int:
    """Answers stored for the chat black boxes of ``folder``: one per paid request."""
    return sum(len(_entries(folder, digest)) for digest in _chat_fingerprints(folder))


def export_answers(folder: Path, path: Path) -> int:
    """Write the chat answers of the store ``folder`` to ``path`` (gzipped JSON lines); returns how many."""
    lines, n = [], 0
    for digest, fingerprint in _chat_fingerprints(folder).items():
        entries = sorted(_entries(folder, digest), key=lambda entry: entry[0])
        lines.append({"fingerprint": fingerprint, "digest": digest})
        for key, value in entries:
            if value.dtype == np.uint8 and value.ndim == 1:
                lines.append({"digest": digest, "key": key, "text": value.tobytes().decode("utf-8", "surrogatepass")})
            else:
                shape = list(value.shape)
                lines.append(
                    {
                        "digest": digest,
                        "key": key,
                        "dtype": value.dtype.str,
                        "shape": shape,
                        "values": value.ravel().tolist(),
                    }
                )
            n += 1
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(str(path) + ".tmp")
    with gzip.open(tmp, "wt", encoding="utf-8", compresslevel=9) as handle:
        handle.writelines(json.dumps(line, ensure_ascii=False, sort_keys=True) + "\n" for line in lines)
    tmp.replace(path)
    return n


def load_answers(path: Path, folder: Path) -> int:
    """Store the answers of the file ``path`` in the store ``folder`` (those missing); returns how many were added."""
    if not Path(path).is_file():
        return 0
    fingerprints, answers = {}, {}
    with gzip.open(path, "rt", encoding="utf-8") as handle:
        for line in handle:
            entry = json.loads(line)
            if "fingerprint" in entry:
                if fingerprint_digest(entry["fingerprint"]) != entry["digest"]:
                    raise ValueError(f"{path}: the fingerprint of digest {entry['digest']} does not hash to it.")
                fingerprints[entry["digest"]] = entry["fingerprint"]
            elif "text" in entry:
                answers.setdefault(entry["digest"], []).append((entry["key"], entry["text"]))
            else:
                value = np.asarray(entry["values"], dtype=np.dtype(entry["dtype"])).reshape(entry["shape"])
                answers.setdefault(entry["digest"], []).append((entry["key"], value))
    added = 0
    for digest, entries in answers.items():
        store = open_store(folder, fingerprints[digest])
        have = store.get_many([key for key, _ in entries])[0]
        missing = [(key, value) for key, value in entries if key not in have]
        texts = [(key, value) for key, value in missing if isinstance(value, str)]
        arrays = [(key, value) for key, value in missing if not isinstance(value, str)]
        if texts:
            store.put_texts(texts)
        if arrays:
            store.put_many(arrays)
        added += len(missing)
    return added
